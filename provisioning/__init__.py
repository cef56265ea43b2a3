"""The provisioning engine: pattern catalog, HCL-safe rendering, the Terraform runner and the
pipeline steps.

It takes plain values, reports progress through a sink and returns results. It must never
import Django or anything from `portal/`: workers on any host can run it, and it is testable
on its own.
"""

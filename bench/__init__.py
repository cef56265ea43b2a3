"""Benchmark scripts: each prints JSON. Timing goals live here, never in timed tests."""

variable "name" {
  description = "Name of the ECS cluster."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$", var.name))
    error_message = "name must be 1-255 letters, digits, hyphens and underscores."
  }
}

variable "container_insights" {
  description = "Collect CloudWatch Container Insights metrics for the cluster."
  type        = bool
  default     = true
  nullable    = false
}

variable "tags" {
  description = "Extra tags for the cluster (the portal's provider default_tags are added anyway)."
  type        = map(string)
  default     = {}
  nullable    = false
}

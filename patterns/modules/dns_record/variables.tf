variable "zone_id" {
  description = "Route 53 hosted zone the record is created in."
  type        = string
  nullable    = false
}

variable "name" {
  description = "FQDN of the record, inside the zone (e.g. api-shop-dev.sandbox.example.com)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.name)) && length(var.name) <= 253
    error_message = "name must be a lowercase DNS name such as api-shop-dev.sandbox.example.com."
  }
}

variable "alias_dns_name" {
  description = "DNS name of the load balancer the record points to."
  type        = string
  nullable    = false
}

variable "alias_zone_id" {
  description = "Hosted zone id of the load balancer (aws_lb.zone_id), not of the record's zone."
  type        = string
  nullable    = false
}

variable "evaluate_target_health" {
  description = "Let Route 53 answer only while the load balancer has healthy targets."
  type        = bool
  default     = true
  nullable    = false
}

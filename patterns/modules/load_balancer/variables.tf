variable "name" {
  description = "Name of the load balancer (also the prefix of its security group). AWS allows 32 characters."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$", var.name)) && !startswith(lower(var.name), "internal-")
    error_message = "name must be 1-32 letters, digits and hyphens, must not start or end with a hyphen, and must not start with \"internal-\"."
  }
}

variable "vpc_id" {
  description = "VPC the load balancer and its security group live in."
  type        = string
  nullable    = false
}

variable "subnet_ids" {
  description = "Public subnets (at least two, in different availability zones) the load balancer is placed in."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "An application load balancer needs at least two subnets in different availability zones."
  }
}

variable "certificate_domain_name" {
  description = "DNS name the HTTPS listener's ACM certificate is issued for (e.g. the application's FQDN or *.zone)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^(\\*\\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.certificate_domain_name)) && length(var.certificate_domain_name) <= 253
    error_message = "certificate_domain_name must be a lowercase DNS name such as app-dev.sandbox.example.com (a leading \"*.\" is allowed)."
  }
}

variable "subject_alternative_names" {
  description = "Further DNS names on the same certificate."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "zone_id" {
  description = "Route 53 public hosted zone that holds the certificate's DNS validation records (the account's zone)."
  type        = string
  nullable    = false
}

variable "ingress_cidr_blocks" {
  description = "IPv4 ranges allowed to reach ports 80 and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  nullable    = false

  validation {
    condition     = alltrue([for cidr in var.ingress_cidr_blocks : can(cidrhost(cidr, 0))])
    error_message = "ingress_cidr_blocks must be IPv4 CIDRs."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  nullable    = false
}

variable "idle_timeout" {
  description = "Seconds a connection may stay idle."
  type        = number
  default     = 60
  nullable    = false

  validation {
    condition     = var.idle_timeout >= 1 && var.idle_timeout <= 4000
    error_message = "idle_timeout must be between 1 and 4000 seconds."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the load balancer (keep false in sandboxes, or the portal cannot delete the environment)."
  type        = bool
  default     = false
  nullable    = false
}

variable "tags" {
  description = "Extra tags for every resource (the portal's provider default_tags are added anyway)."
  type        = map(string)
  default     = {}
  nullable    = false
}

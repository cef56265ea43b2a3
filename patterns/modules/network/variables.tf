variable "name" {
  description = "Name prefix of the network's resources (Name tags)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,62}$", var.name))
    error_message = "name must be 1-63 letters, digits and hyphens, starting with a letter or digit."
  }
}

variable "cidr" {
  description = "IPv4 CIDR of the VPC, e.g. the block the portal allocated (10.20.0.0/24). Split into four equal subnets: two public, two private."
  type        = string

  # Nullable on purpose, so a missing network gets this message rather than a generic one.
  validation {
    condition     = var.cidr != null
    error_message = "No CIDR was given for the VPC: the portal allocates one only when the sandbox account has a CIDR pool (add one in the portal's admin)."
  }

  validation {
    condition     = var.cidr == null || (can(cidrhost(var.cidr, 0)) && can(regex("^[0-9.]+/[0-9]+$", var.cidr)))
    error_message = "cidr must be an IPv4 CIDR such as 10.20.0.0/24."
  }

  validation {
    # A VPC is /16../28; four subnets of at least /28 each need a /26 or larger. (try():
    # a missing or malformed CIDR is reported by the checks above, once.)
    condition     = try(tonumber(split("/", var.cidr)[1]) >= 16 && tonumber(split("/", var.cidr)[1]) <= 26, true)
    error_message = "cidr must be between /16 and /26 (four subnets of at least /28 are carved out of it)."
  }

  validation {
    condition     = try(cidrhost(var.cidr, 0) == split("/", var.cidr)[0], true)
    error_message = "cidr must be a network address (no host bits set), e.g. 10.20.0.0/24 rather than 10.20.0.1/24."
  }
}

variable "tags" {
  description = "Extra tags for every resource (the portal's provider default_tags are added anyway)."
  type        = map(string)
  default     = {}
  nullable    = false
}

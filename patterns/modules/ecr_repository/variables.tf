variable "name" {
  description = "Repository name, e.g. shop/dev/api (lowercase; slashes group repositories)."
  type        = string
  nullable    = false

  validation {
    condition     = length(var.name) >= 2 && length(var.name) <= 256 && can(regex("^([a-z0-9]+([._-][a-z0-9]+)*/)*[a-z0-9]+([._-][a-z0-9]+)*$", var.name))
    error_message = "name must be 2-256 characters: lowercase letters and digits, separated by single '.', '_', '-' or '/'."
  }
}

variable "image_tag_mutability" {
  description = "MUTABLE lets a tag (such as latest) move to a new image; IMMUTABLE refuses that."
  type        = string
  default     = "MUTABLE"
  nullable    = false

  validation {
    condition     = contains(["MUTABLE", "IMMUTABLE"], var.image_tag_mutability)
    error_message = "image_tag_mutability must be MUTABLE or IMMUTABLE."
  }
}

variable "scan_on_push" {
  description = "Scan every pushed image for known vulnerabilities (basic scanning)."
  type        = bool
  default     = true
  nullable    = false
}

variable "force_delete" {
  description = "Delete the repository even when it holds images (sandboxes: true, or deleting the environment fails once the team has pushed)."
  type        = bool
  default     = false
  nullable    = false
}

variable "max_image_count" {
  description = "Keep only this many most recent images; older ones expire."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = var.max_image_count >= 1 && var.max_image_count <= 10000 && floor(var.max_image_count) == var.max_image_count
    error_message = "max_image_count must be a whole number between 1 and 10000."
  }
}

variable "untagged_image_expiry_days" {
  description = "Untagged images (left behind when a tag moves) expire this many days after they were pushed."
  type        = number
  default     = 7
  nullable    = false

  validation {
    condition     = var.untagged_image_expiry_days >= 1 && floor(var.untagged_image_expiry_days) == var.untagged_image_expiry_days
    error_message = "untagged_image_expiry_days must be a whole number of at least 1."
  }
}

variable "tags" {
  description = "Extra tags for the repository (the portal's provider default_tags are added anyway)."
  type        = map(string)
  default     = {}
  nullable    = false
}

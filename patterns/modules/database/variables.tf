variable "identifier" {
  description = "RDS instance identifier (also names the subnet group and security group). Unique in the account and region."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.identifier)) && !endswith(var.identifier, "-") && !strcontains(var.identifier, "--")
    error_message = "identifier must be 1-63 lowercase letters, digits and hyphens, start with a letter, and contain no trailing or double hyphen."
  }
}

variable "vpc_id" {
  description = "VPC of the database's security group."
  type        = string
  nullable    = false
}

variable "subnet_ids" {
  description = "Private subnets (in at least two availability zones) for the DB subnet group."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "A DB subnet group needs subnets in at least two availability zones."
  }
}

variable "allowed_security_groups" {
  description = "Security groups allowed to connect on the database port, keyed by a fixed label (e.g. { service = module.service.security_group_id }): static keys keep the plan valid while the groups are still being created."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "engine_version" {
  description = "PostgreSQL version. A major version (\"16\") takes AWS's default minor version, and minor upgrades are applied automatically."
  type        = string
  default     = "16"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must look like 16 or 16.4."
  }
}

variable "instance_class" {
  description = "RDS instance class, e.g. db.t4g.micro."
  type        = string
  default     = "db.t4g.micro"
  nullable    = false

  validation {
    condition     = can(regex("^db\\.[a-z0-9-]+\\.[a-z0-9]+$", var.instance_class))
    error_message = "instance_class must look like db.t4g.micro."
  }
}

variable "allocated_storage" {
  description = "Storage in GiB (gp3, encrypted). PostgreSQL on gp3 needs at least 20."
  type        = number
  default     = 20
  nullable    = false

  validation {
    condition     = var.allocated_storage >= 20 && var.allocated_storage <= 65536 && floor(var.allocated_storage) == var.allocated_storage
    error_message = "allocated_storage must be a whole number of GiB between 20 and 65536."
  }
}

variable "max_allocated_storage" {
  description = "Upper limit (GiB) for storage autoscaling; null turns autoscaling off."
  type        = number
  default     = null
}

variable "db_name" {
  description = "Name of the database created on the instance."
  type        = string
  default     = "app"
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must be 1-63 letters, digits and underscores, starting with a letter."
  }
}

variable "username" {
  description = "Master user name. Its password is generated and kept by RDS in AWS Secrets Manager (manage_master_user_password): it never appears in Terraform state."
  type        = string
  default     = "app_admin"
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_]{0,62}$", var.username)) && !contains(["rdsadmin", "rdsrepladmin"], lower(var.username))
    error_message = "username must be 1-63 letters, digits and underscores, start with a letter, and not be a name RDS reserves."
  }
}

variable "port" {
  description = "TCP port of the database."
  type        = number
  default     = 5432
  nullable    = false
}

variable "multi_az" {
  description = "Keep a standby in a second availability zone."
  type        = bool
  default     = false
  nullable    = false
}

variable "backup_retention_period" {
  description = "Days of automated backups (0 turns them off)."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.backup_retention_period >= 0 && var.backup_retention_period <= 35
    error_message = "backup_retention_period must be between 0 and 35 days."
  }
}

variable "skip_final_snapshot" {
  description = "Delete without a final snapshot (sandboxes: true). When false, the snapshot is named <identifier>-final."
  type        = bool
  default     = false
  nullable    = false
}

variable "deletion_protection" {
  description = "Refuse to delete the instance (keep false in sandboxes, or the portal cannot delete the environment)."
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

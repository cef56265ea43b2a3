variable "shared" {
  description = "The sandbox account's pre-existing shared components, as the portal passes them (account.shared in the render context). Every attribute must be set."
  type = object({
    ecs_cluster_arn       = optional(string)
    alb_listener_arn      = optional(string)
    alb_dns_name          = optional(string)
    alb_zone_id           = optional(string)
    alb_security_group_id = optional(string)
    vpc_id                = optional(string)
    private_subnet_ids    = optional(list(string))
  })
  nullable = false

  # Checked while the configuration is validated, before anything is planned: a sandbox
  # account without shared infrastructure gets one clear message instead of many.
  validation {
    condition     = length([for key, value in var.shared : key if value == null || try(length(value) == 0, false)]) == 0
    error_message = "The sandbox account's shared infrastructure lacks ${join(", ", sort([for key, value in var.shared : key if value == null || try(length(value) == 0, false)]))}: an admin sets them in the account's shared_infrastructure in the portal."
  }

  # The shapes of what is set (what is missing is reported above, once).
  validation {
    condition     = var.shared.ecs_cluster_arn == null || can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/.+$", var.shared.ecs_cluster_arn))
    error_message = "shared ecs_cluster_arn must be an ECS cluster ARN (arn:aws:ecs:<region>:<account>:cluster/<name>)."
  }

  validation {
    condition     = var.shared.alb_listener_arn == null || can(regex("^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:listener/app/.+$", var.shared.alb_listener_arn))
    error_message = "shared alb_listener_arn must be the ARN of an application load balancer's listener (arn:aws:elasticloadbalancing:...:listener/app/...)."
  }

  validation {
    condition     = try(startswith(var.shared.vpc_id, "vpc-") && startswith(var.shared.alb_security_group_id, "sg-") && alltrue([for id in var.shared.private_subnet_ids : startswith(id, "subnet-")]), true)
    error_message = "shared vpc_id must be a vpc-..., alb_security_group_id an sg-... and private_subnet_ids a list of subnet-... ids."
  }
}

variable "listener_rule_priority" {
  description = "The listener rule priority the portal allocated to this environment on the shared listener (allocations.listener_priority in the render context)."
  type        = number

  validation {
    condition     = var.listener_rule_priority != null
    error_message = "No listener rule priority was allocated for this environment on the shared listener (the portal allocates one per environment)."
  }

  validation {
    condition     = try(var.listener_rule_priority >= 1 && var.listener_rule_priority <= 50000 && floor(var.listener_rule_priority) == var.listener_rule_priority, true)
    error_message = "The listener rule priority must be a whole number between 1 and 50000."
  }
}

variable "name" {
  description = "Name of the service; also its task definition family, target group, security group, IAM roles (<name>-task, <name>-execution) and log group (/ecs/<name>). 32 characters at most (the target group's limit) and unique in the account."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", var.name))
    error_message = "name must be 1-32 lowercase letters, digits and hyphens, not starting or ending with a hyphen."
  }
}

variable "cluster_arn" {
  description = "ARN of the ECS cluster the service runs in (its own, or a shared one)."
  type        = string
  nullable    = false
}

variable "vpc_id" {
  description = "VPC of the tasks and the target group (the load balancer's VPC)."
  type        = string
  nullable    = false
}

variable "subnet_ids" {
  description = "Subnets the tasks run in (private subnets with a route to a NAT gateway or VPC endpoints, so images can be pulled)."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (only for tasks in public subnets without a NAT gateway)."
  type        = bool
  default     = false
  nullable    = false
}

variable "container_image" {
  description = "Image of the application container, e.g. public.ecr.aws/nginx/nginx:stable or <account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>."
  type        = string
  nullable    = false

  validation {
    condition     = length(var.container_image) >= 1 && length(var.container_image) <= 255 && !can(regex("\\s", var.container_image))
    error_message = "container_image must be 1-255 characters without whitespace."
  }
}

variable "container_name" {
  description = "Name of the application container in the task definition."
  type        = string
  default     = "app"
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$", var.container_name))
    error_message = "container_name must be 1-255 letters, digits, hyphens and underscores."
  }
}

variable "container_port" {
  description = "TCP port the container listens on; the target group sends traffic and health checks there."
  type        = number
  nullable    = false

  validation {
    condition     = var.container_port >= 1 && var.container_port <= 65535 && floor(var.container_port) == var.container_port
    error_message = "container_port must be a whole number between 1 and 65535."
  }
}

variable "cpu" {
  description = "Fargate CPU units of one task (256 = 0.25 vCPU ... 16384 = 16 vCPU)."
  type        = number
  default     = 256
  nullable    = false

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be one of the Fargate sizes 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "memory" {
  description = "Memory (MiB) of one task; must be a valid Fargate combination with cpu (e.g. 256 -> 512/1024/2048, 512 -> 1024..4096)."
  type        = number
  default     = 512
  nullable    = false
}

variable "cpu_architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64 (Graviton)."
  type        = string
  default     = "X86_64"
  nullable    = false

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "desired_count" {
  description = "How many tasks run."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.desired_count >= 0 && var.desired_count <= 100 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count must be a whole number between 0 and 100."
  }
}

variable "environment_variables" {
  description = "Plain environment variables of the container (name -> value). Do not put secrets here: use `secrets`."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for key in keys(var.environment_variables) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", key))])
    error_message = "Environment variable names must be letters, digits and underscores, not starting with a digit."
  }
}

variable "secrets" {
  description = "Environment variables read from AWS Secrets Manager when a task starts (name -> secret ARN, optionally with \":json-key::\"). Only the execution role may read them."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for key in keys(var.secrets) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", key))])
    error_message = "Secret variable names must be letters, digits and underscores, not starting with a digit."
  }

  validation {
    condition     = alltrue([for ref in values(var.secrets) : can(regex("^arn:[a-z-]+:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:", ref))])
    error_message = "Each secret must be a Secrets Manager secret ARN (arn:<partition>:secretsmanager:<region>:<account>:secret:...)."
  }
}

variable "health_check_path" {
  description = "HTTP path the load balancer checks on each task."
  type        = string
  default     = "/"
  nullable    = false

  validation {
    condition     = startswith(var.health_check_path, "/") && length(var.health_check_path) <= 1024
    error_message = "health_check_path must start with / and be at most 1024 characters."
  }
}

variable "health_check_matcher" {
  description = "HTTP status codes that count as healthy, e.g. 200 or 200-399."
  type        = string
  default     = "200-399"
  nullable    = false
}

variable "health_check_grace_period_seconds" {
  description = "Seconds after a task starts during which failed load balancer health checks are ignored."
  type        = number
  default     = 60
  nullable    = false
}

variable "deregistration_delay" {
  description = "Seconds the load balancer drains a stopping task before deregistering it."
  type        = number
  default     = 30
  nullable    = false
}

variable "listener_arn" {
  description = "HTTPS listener the service's host-header rule is attached to (the module's own load balancer, or a shared one)."
  type        = string
  nullable    = false
}

variable "listener_rule_priority" {
  description = "Priority of the listener rule; unique per listener (on a shared listener the portal allocates it)."
  type        = number
  nullable    = false

  validation {
    condition     = var.listener_rule_priority >= 1 && var.listener_rule_priority <= 50000 && floor(var.listener_rule_priority) == var.listener_rule_priority
    error_message = "listener_rule_priority must be a whole number between 1 and 50000."
  }
}

variable "host_name" {
  description = "FQDN the listener rule matches (host-header); requests for it are forwarded to the service."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.host_name)) && length(var.host_name) <= 253
    error_message = "host_name must be a lowercase DNS name such as app-dev.sandbox.example.com."
  }
}

variable "alb_security_group_id" {
  description = "Security group of the load balancer: the only source allowed to reach the tasks."
  type        = string
  nullable    = false
}

variable "manage_alb_egress" {
  description = "Add an egress rule to the load balancer's security group towards this service's port (needed when that group has no allow-all egress, as in modules/load_balancer)."
  type        = bool
  default     = true
  nullable    = false
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the container logs."
  type        = number
  default     = 14
  nullable    = false

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs supports (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "enable_execute_command" {
  description = "Allow `aws ecs execute-command` into the tasks (adds the SSM channel permissions to the task role)."
  type        = bool
  default     = false
  nullable    = false
}

variable "task_role_policy_json" {
  description = "Optional IAM policy (JSON) for the application's own AWS calls, attached to the task role. Must be known at plan time. Null: the task role has no permissions."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags for every resource (the portal's provider default_tags are added anyway)."
  type        = map(string)
  default     = {}
  nullable    = false
}

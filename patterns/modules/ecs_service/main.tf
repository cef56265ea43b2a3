# One Fargate service behind an HTTPS listener: task definition, task and execution roles,
# log group, security group (reachable only from the load balancer), target group and a
# host-header listener rule. Works with the pattern's own load balancer (modules/load_balancer)
# and with a shared listener whose ARN and security group come from the account.

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  # Valid Fargate memory sizes (MiB) per CPU size (Linux).
  fargate_memory = {
    "256"   = [512, 1024, 2048]
    "512"   = [for gib in range(1, 5) : gib * 1024]
    "1024"  = [for gib in range(2, 9) : gib * 1024]
    "2048"  = [for gib in range(4, 17) : gib * 1024]
    "4096"  = [for gib in range(8, 31) : gib * 1024]
    "8192"  = [for gib in range(16, 61, 4) : gib * 1024]
    "16384" = [for gib in range(32, 121, 8) : gib * 1024]
  }

  log_group_name = "/ecs/${var.name}"

  # "arn:aws:secretsmanager:<region>:<account>:secret:<name>-AbCdEf[:json-key:stage:version]"
  # -> the secret's own ARN, which is what IAM matches.
  secret_arns = distinct([for ref in values(var.secrets) : join(":", slice(split(":", ref), 0, 7))])

  ecs_tasks_trust = {
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  }
}

# ------------------------------------------------------------------------------- logs

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days

  tags = var.tags
}

# ------------------------------------------------------------------------------- IAM

# Used by ECS itself to pull the image, write logs and read the task's secrets.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  description        = "ECS task execution role of ${var.name}: pull images, write logs, read its secrets"
  assume_role_policy = jsonencode(local.ecs_tasks_trust)

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  count = length(var.secrets) > 0 ? 1 : 0

  name = "read-task-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "ReadThisTasksSecrets"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = local.secret_arns
    }]
  })
}

# Assumed by the application. No permissions unless task_role_policy_json (or ECS Exec) asks.
resource "aws_iam_role" "task" {
  name        = "${var.name}-task"
  description = "ECS task role of ${var.name} (the application's own AWS permissions)"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      # Only ECS tasks of this account and region may assume it (confused deputy).
      Condition = {
        ArnLike      = { "aws:SourceArn" = "arn:${data.aws_partition.current.partition}:ecs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:*" }
        StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id }
      }
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "task" {
  count = var.task_role_policy_json == null ? 0 : 1

  name   = "application"
  role   = aws_iam_role.task.id
  policy = var.task_role_policy_json
}

resource "aws_iam_role_policy" "task_execute_command" {
  count = var.enable_execute_command ? 1 : 0

  name = "ecs-execute-command"
  role = aws_iam_role.task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid    = "SessionManagerChannels"
      Effect = "Allow"
      Action = [
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
      ]
      Resource = "*"
    }]
  })
}

# ------------------------------------------------------------------------------- network

resource "aws_security_group" "this" {
  name        = "${var.name}-service"
  description = "ECS service ${var.name}: ingress only from its load balancer"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-service" })
}

resource "aws_vpc_security_group_ingress_rule" "from_alb" {
  security_group_id            = aws_security_group.this.id
  description                  = "Application port from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = var.alb_security_group_id

  tags = var.tags
}

# Tasks pull images, write logs, read secrets and reach their database and the internet.
resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.this.id
  description       = "All outbound traffic"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "alb_to_service" {
  count = var.manage_alb_egress ? 1 : 0

  security_group_id            = var.alb_security_group_id
  description                  = "To ECS service ${var.name}"
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = aws_security_group.this.id

  tags = var.tags
}

# ------------------------------------------------------------------------------- load balancing

resource "aws_lb_target_group" "this" {
  name                 = var.name
  vpc_id               = var.vpc_id
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = var.container_port
  deregistration_delay = var.deregistration_delay

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = var.health_check_path
    matcher             = var.health_check_matcher
    interval            = 30
    timeout             = 5
    healthy_threshold   = 3
    unhealthy_threshold = 3
  }

  tags = merge(var.tags, { Name = var.name })
}

resource "aws_lb_listener_rule" "this" {
  listener_arn = var.listener_arn
  priority     = var.listener_rule_priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }

  condition {
    host_header {
      values = [var.host_name]
    }
  }

  tags = merge(var.tags, { Name = var.name })
}

# ------------------------------------------------------------------------------- ECS

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.cpu)
  memory                   = tostring(var.memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([{
    name      = var.container_name
    image     = var.container_image
    essential = true
    portMappings = [{
      containerPort = var.container_port
      protocol      = "tcp"
    }]
    # Sorted, so the JSON is stable and plans show no spurious diffs.
    environment = [for key in sort(keys(var.environment_variables)) : { name = key, value = var.environment_variables[key] }]
    secrets     = [for key in sort(keys(var.secrets)) : { name = key, valueFrom = var.secrets[key] }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = var.container_name
      }
    }
  }])

  tags = var.tags

  lifecycle {
    precondition {
      condition     = contains(lookup(local.fargate_memory, tostring(var.cpu), []), var.memory)
      error_message = "memory ${var.memory} MiB is not a Fargate size for cpu ${var.cpu}; valid: ${join(", ", [for mib in lookup(local.fargate_memory, tostring(var.cpu), []) : tostring(mib)])}."
    }

    precondition {
      condition     = length(setintersection(keys(var.environment_variables), keys(var.secrets))) == 0
      error_message = "These names are both environment_variables and secrets: ${join(", ", setintersection(keys(var.environment_variables), keys(var.secrets)))}."
    }
  }
}

resource "aws_ecs_service" "this" {
  name                              = var.name
  cluster                           = var.cluster_arn
  task_definition                   = aws_ecs_task_definition.this.arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = var.health_check_grace_period_seconds
  enable_execute_command            = var.enable_execute_command
  enable_ecs_managed_tags           = true
  propagate_tags                    = "SERVICE"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.this.id]
    assign_public_ip = var.assign_public_ip
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = var.container_name
    container_port   = var.container_port
  }

  tags = var.tags

  # ECS refuses a target group that no listener uses yet; the ALB must also be able to reach
  # the tasks before their health checks start.
  depends_on = [
    aws_lb_listener_rule.this,
    aws_vpc_security_group_egress_rule.alb_to_service,
    aws_vpc_security_group_ingress_rule.from_alb,
    aws_iam_role_policy_attachment.execution,
    aws_iam_role_policy.execution_secrets,
  ]

  lifecycle {
    # The application team deploys its own task definition revisions (CI/CD) after the
    # environment is created; Terraform must not roll them back.
    ignore_changes = [task_definition]
  }
}

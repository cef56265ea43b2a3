# An ECS cluster for Fargate services (no EC2 capacity: services use launch_type FARGATE).

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }

  tags = merge(var.tags, { Name = var.name })
}

output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "service_arn" {
  description = "ARN of the ECS service."
  value       = aws_ecs_service.this.id
}

output "task_definition_arn" {
  description = "ARN (with revision) of the task definition Terraform registered."
  value       = aws_ecs_task_definition.this.arn
}

output "task_definition_family" {
  description = "Family of the task definition; register new revisions under it to deploy."
  value       = aws_ecs_task_definition.this.family
}

output "container_name" {
  description = "Name of the application container (new task definition revisions must keep it: the load balancer routes to it)."
  value       = var.container_name
}

output "security_group_id" {
  description = "Security group of the tasks (e.g. to allow them into a database)."
  value       = aws_security_group.this.id
}

output "target_group_arn" {
  description = "ARN of the target group."
  value       = aws_lb_target_group.this.arn
}

output "listener_rule_arn" {
  description = "ARN of the host-header listener rule."
  value       = aws_lb_listener_rule.this.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the containers."
  value       = aws_cloudwatch_log_group.this.name
}

output "task_role_arn" {
  description = "ARN of the task role (the application's AWS identity)."
  value       = aws_iam_role.task.arn
}

output "task_role_name" {
  description = "Name of the task role, to attach further policies."
  value       = aws_iam_role.task.name
}

output "execution_role_arn" {
  description = "ARN of the task execution role."
  value       = aws_iam_role.execution.arn
}

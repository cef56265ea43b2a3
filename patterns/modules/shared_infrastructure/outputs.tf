output "ecs_cluster_arn" {
  description = "ARN of the shared ECS cluster."
  value       = var.shared.ecs_cluster_arn
}

output "alb_listener_arn" {
  description = "ARN of the shared load balancer's HTTPS listener."
  value       = var.shared.alb_listener_arn
}

output "alb_dns_name" {
  description = "DNS name of the shared load balancer."
  value       = var.shared.alb_dns_name
}

output "alb_zone_id" {
  description = "Route 53 hosted zone id of the shared load balancer (for alias records)."
  value       = var.shared.alb_zone_id
}

output "alb_security_group_id" {
  description = "Security group of the shared load balancer."
  value       = var.shared.alb_security_group_id
}

output "vpc_id" {
  description = "Id of the shared VPC."
  value       = var.shared.vpc_id
}

output "private_subnet_ids" {
  description = "Ids of the shared private subnets the tasks run in."
  value       = var.shared.private_subnet_ids
}

output "listener_rule_priority" {
  description = "The allocated listener rule priority."
  value       = var.listener_rule_priority
}

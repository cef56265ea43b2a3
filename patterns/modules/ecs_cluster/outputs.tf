output "arn" {
  description = "ARN of the cluster (the ecs_service module's cluster_arn)."
  value       = aws_ecs_cluster.this.arn
}

output "name" {
  description = "Name of the cluster."
  value       = aws_ecs_cluster.this.name
}

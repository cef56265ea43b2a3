# app_fqdn / app_url are the environment's endpoint (see pattern.yaml). They are read from the
# DNS record, so they exist only once the record has been created.
output "app_fqdn" {
  description = "DNS name of the application."
  value       = module.dns_record.fqdn
}

output "app_url" {
  description = "URL of the application."
  value       = "https://${module.dns_record.fqdn}/"
}

output "ecr_repository_url" {
  description = "Push the application's images here."
  value       = module.ecr_repository.repository_url
}

output "service_name" {
  description = "Name of the ECS service (on the shared cluster)."
  value       = module.service.service_name
}

output "cluster_arn" {
  description = "ARN of the shared ECS cluster the service runs on."
  value       = module.shared.ecs_cluster_arn
}

output "task_definition_family" {
  description = "Task definition family: register new revisions under it to deploy (keep the container name)."
  value       = module.service.task_definition_family
}

output "container_name" {
  description = "Name of the application container in the task definition."
  value       = module.service.container_name
}

output "log_group_name" {
  description = "CloudWatch log group of the containers."
  value       = module.service.log_group_name
}

output "listener_rule_priority" {
  description = "Priority of the service's rule on the shared HTTPS listener."
  value       = module.shared.listener_rule_priority
}

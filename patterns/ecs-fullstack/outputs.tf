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

output "ecs_cluster_name" {
  description = "Name of the ECS cluster."
  value       = module.ecs_cluster.name
}

output "ecs_service_name" {
  description = "Name of the ECS service."
  value       = module.service.service_name
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

output "db_endpoint" {
  description = "host:port of the PostgreSQL database."
  value       = module.database.endpoint
}

output "db_name" {
  description = "Name of the application's database."
  value       = module.database.db_name
}

output "db_master_user_secret_arn" {
  description = "Secrets Manager secret (JSON: username, password) of the database's master user."
  value       = module.database.master_user_secret_arn
}

output "vpc_id" {
  description = "Id of the environment's VPC."
  value       = module.network.vpc_id
}

output "network_cidr" {
  description = "CIDR of the environment's VPC (allocated by the portal)."
  value       = module.network.vpc_cidr
}

output "load_balancer_dns_name" {
  description = "DNS name of the load balancer."
  value       = module.load_balancer.dns_name
}

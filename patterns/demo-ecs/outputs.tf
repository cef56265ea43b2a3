# app_fqdn / app_url are the environment's endpoint (see pattern.yaml). They are read from
# the dns_record resource, so they exist only once the record has been "created".
output "app_fqdn" {
  description = "DNS name of the application."
  value       = terraform_data.dns_record.output.fqdn
}

output "app_url" {
  description = "URL of the application."
  value       = "https://${terraform_data.dns_record.output.fqdn}/"
}

output "note" {
  description = "The request's note, exactly as given."
  value       = terraform_data.service.output.note
}

output "tags" {
  description = "The request's tags, exactly as given."
  value       = terraform_data.service.output.tags
}

output "network_cidr" {
  description = "CIDR allocated to the environment's network (null when none was allocated)."
  value       = terraform_data.network.output.cidr
}

output "resource_ids" {
  description = "Ids of the seven simulated resources."
  value = {
    network          = terraform_data.network.id
    load_balancer    = terraform_data.load_balancer.id
    listener_rule    = terraform_data.listener_rule.id
    image_repository = terraform_data.image_repository.id
    service          = terraform_data.service.id
    database         = terraform_data.database.id
    dns_record       = terraform_data.dns_record.id
  }
}

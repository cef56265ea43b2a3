output "repository_url" {
  description = "URL to push and pull images: <account>.dkr.ecr.<region>.amazonaws.com/<name>."
  value       = aws_ecr_repository.this.repository_url
}

output "repository_arn" {
  description = "ARN of the repository (for IAM policies of CI/CD)."
  value       = aws_ecr_repository.this.arn
}

output "repository_name" {
  description = "Name of the repository."
  value       = aws_ecr_repository.this.name
}

output "registry_id" {
  description = "Registry (account) id of the repository."
  value       = aws_ecr_repository.this.registry_id
}

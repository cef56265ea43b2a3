output "fqdn" {
  description = "FQDN of the record (known once the record exists)."
  value       = aws_route53_record.this.fqdn
}

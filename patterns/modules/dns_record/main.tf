# An alias A record from the application's FQDN to a load balancer. An existing record of
# the same name is never overwritten: two environments cannot claim one name.

resource "aws_route53_record" "this" {
  zone_id         = var.zone_id
  name            = var.name
  type            = "A"
  allow_overwrite = false

  alias {
    name                   = var.alias_dns_name
    zone_id                = var.alias_zone_id
    evaluate_target_health = var.evaluate_target_health
  }
}

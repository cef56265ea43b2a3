# A Fargate service on the account's shared ECS cluster, behind the shared load balancer's
# HTTPS listener: the seed's lighter variant. Only the service's own parts are created here;
# the cluster, load balancer, listener (with a certificate covering *.<zone>), VPC and
# subnets come from the account's shared_infrastructure (locals.tf, local.shared). The
# portal copies patterns/modules into the workspace as ./modules and supplies the provider.

locals {
  # Names. Slugs may contain "--", which several AWS names refuse: collapse hyphen runs.
  base_name = replace(lower("${local.product}-${local.environment_name}-${local.app_name}"), "/-+/", "-")
  # At most 32 characters (target group); a long name keeps its start and gets a hash of
  # the whole, so it stays unique in the account.
  short_name = length(local.base_name) <= 32 ? local.base_name : "${replace(substr(local.base_name, 0, 23), "/-+$/", "")}-${substr(md5(local.base_name), 0, 8)}"

  # One DNS label (<app>-<product>-<environment>, at most 63 characters) directly under the
  # account's zone, so the shared listener's *.<zone> certificate covers it.
  fqdn_label_full = replace(lower("${local.app_name}-${local.product}-${local.environment_name}"), "/-+/", "-")
  fqdn_label      = length(local.fqdn_label_full) <= 63 ? local.fqdn_label_full : "${replace(substr(local.fqdn_label_full, 0, 54), "/-+$/", "")}-${substr(md5(local.fqdn_label_full), 0, 8)}"
  zone_name       = lower(trimsuffix(local.dns_zone, "."))
  app_fqdn        = "${local.fqdn_label}.${local.zone_name}"

  repository_name = join("/", [for part in [local.product, local.environment_name, local.app_name] : replace(lower(part), "/-+/", "-")])

  # Shared infrastructure the account lacks (null or empty values): refused before planning.
  missing_shared = sort([for key, value in local.shared : key if value == null || try(length(value) == 0, false)])

  tags = {
    Application = local.app_name
    Pattern     = "ecs-service"
  }
}

# The account's public zone, for the application's record.
data "aws_route53_zone" "this" {
  name         = local.zone_name
  private_zone = false

  lifecycle {
    precondition {
      condition     = length(local.missing_shared) == 0
      error_message = "ecs-service runs on the sandbox account's shared infrastructure, which lacks: ${join(", ", local.missing_shared)}. An admin sets them in the account's shared_infrastructure in the portal."
    }

    precondition {
      condition     = try(local.listener_priority >= 1 && local.listener_priority <= 50000, false)
      error_message = "ecs-service needs a listener rule priority (1-50000) allocated by the portal for the shared listener."
    }
  }
}

module "ecr_repository" {
  source = "./modules/ecr_repository"

  name = local.repository_name
  # A sandbox must be deletable even after the team pushed images.
  force_delete = true
  tags         = local.tags
}

module "service" {
  source = "./modules/ecs_service"

  name                  = local.short_name
  cluster_arn           = local.shared.ecs_cluster_arn
  vpc_id                = local.shared.vpc_id
  subnet_ids            = local.shared.private_subnet_ids
  container_image       = local.container_image
  container_port        = local.container_port
  cpu                   = local.cpu
  memory                = local.memory
  desired_count         = local.desired_count
  health_check_path     = local.health_check_path
  environment_variables = local.environment_variables

  listener_arn           = local.shared.alb_listener_arn
  listener_rule_priority = local.listener_priority
  host_name              = local.app_fqdn
  alb_security_group_id  = local.shared.alb_security_group_id
  # Adds one rule to the shared load balancer's security group (egress to this service's
  # port only); it is removed with the environment. Harmless if that group allows all egress.
  manage_alb_egress = true
  tags              = local.tags
}

module "dns_record" {
  source = "./modules/dns_record"

  zone_id        = data.aws_route53_zone.this.zone_id
  name           = local.app_fqdn
  alias_dns_name = local.shared.alb_dns_name
  alias_zone_id  = local.shared.alb_zone_id

  # The record is created once the service's rule routes the name.
  depends_on = [module.service]
}

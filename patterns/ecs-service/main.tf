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

  tags = {
    Application = local.app_name
    Pattern     = "ecs-service"
  }
}

# The account's shared components and the allocated listener priority, checked: a missing
# entry is one clear error before anything is planned.
module "shared" {
  source = "./modules/shared_infrastructure"

  shared                 = local.shared
  listener_rule_priority = local.listener_priority
}

# The account's public zone, for the application's record.
data "aws_route53_zone" "this" {
  name         = local.zone_name
  private_zone = false
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
  cluster_arn           = module.shared.ecs_cluster_arn
  vpc_id                = module.shared.vpc_id
  subnet_ids            = module.shared.private_subnet_ids
  container_image       = local.container_image
  container_port        = local.container_port
  cpu                   = local.cpu
  memory                = local.memory
  desired_count         = local.desired_count
  health_check_path     = local.health_check_path
  environment_variables = local.environment_variables

  listener_arn           = module.shared.alb_listener_arn
  listener_rule_priority = module.shared.listener_rule_priority
  host_name              = local.app_fqdn
  alb_security_group_id  = module.shared.alb_security_group_id
  # Adds one rule to the shared load balancer's security group (egress to this service's
  # port only); it is removed with the environment. Harmless if that group allows all egress.
  manage_alb_egress = true
  tags              = local.tags
}

module "dns_record" {
  source = "./modules/dns_record"

  zone_id        = data.aws_route53_zone.this.zone_id
  name           = local.app_fqdn
  alias_dns_name = module.shared.alb_dns_name
  alias_zone_id  = module.shared.alb_zone_id

  # The record is created once the service's rule routes the name.
  depends_on = [module.service]
}

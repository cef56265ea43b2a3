# FQDN -> HTTPS load balancer -> ECS Fargate service -> PostgreSQL, in the environment's own
# VPC, composed from the company module set. The portal copies patterns/modules into the
# workspace as ./modules and supplies the AWS provider configuration (portal_provider.tf).
# Request values come from locals.tf (rendered literals); names are derived here.

locals {
  # Names. Slugs may contain "--", which several AWS names refuse: collapse hyphen runs.
  base_name = replace(lower("${local.product}-${local.environment_name}-${local.app_name}"), "/-+/", "-")
  # At most 32 characters (load balancer, target group); a long name keeps its start and
  # gets a hash of the whole, so it stays unique.
  short_name = length(local.base_name) <= 32 ? local.base_name : "${replace(substr(local.base_name, 0, 23), "/-+$/", "")}-${substr(md5(local.base_name), 0, 8)}"

  # One DNS label (<app>-<product>-<environment>, at most 63 characters) under the account's
  # zone: environments of different products in one account never share a name.
  fqdn_label_full = replace(lower("${local.app_name}-${local.product}-${local.environment_name}"), "/-+/", "-")
  fqdn_label      = length(local.fqdn_label_full) <= 63 ? local.fqdn_label_full : "${replace(substr(local.fqdn_label_full, 0, 54), "/-+$/", "")}-${substr(md5(local.fqdn_label_full), 0, 8)}"
  zone_name       = lower(trimsuffix(local.dns_zone, "."))
  app_fqdn        = "${local.fqdn_label}.${local.zone_name}"

  repository_name = join("/", [for part in [local.product, local.environment_name, local.app_name] : replace(lower(part), "/-+/", "-")])
  db_name         = replace(local.app_name, "-", "_")

  tags = {
    Application = local.app_name
    Pattern     = "ecs-fullstack"
  }
}

# The account's public zone: certificate validation records and the application's record.
data "aws_route53_zone" "this" {
  name         = local.zone_name
  private_zone = false
}

module "network" {
  source = "./modules/network"

  name = local.short_name
  # null when the account has no CIDR pool: the module refuses it with a clear message.
  cidr = local.network_cidr
  tags = local.tags
}

module "load_balancer" {
  source = "./modules/load_balancer"

  name                    = local.short_name
  vpc_id                  = module.network.vpc_id
  subnet_ids              = module.network.public_subnet_ids
  certificate_domain_name = local.app_fqdn
  zone_id                 = data.aws_route53_zone.this.zone_id
  tags                    = local.tags
}

module "ecs_cluster" {
  source = "./modules/ecs_cluster"

  name = local.base_name
  tags = local.tags
}

module "ecr_repository" {
  source = "./modules/ecr_repository"

  name = local.repository_name
  # A sandbox must be deletable even after the team pushed images.
  force_delete = true
  tags         = local.tags
}

module "database" {
  source = "./modules/database"

  identifier        = local.short_name
  vpc_id            = module.network.vpc_id
  subnet_ids        = module.network.private_subnet_ids
  instance_class    = local.db_instance_class
  allocated_storage = local.db_allocated_storage
  db_name           = local.db_name
  allowed_security_groups = {
    service = module.service.security_group_id
  }
  # Sandbox: deleting the environment deletes the data.
  skip_final_snapshot     = true
  deletion_protection     = false
  backup_retention_period = 1
  tags                    = local.tags
}

module "service" {
  source = "./modules/ecs_service"

  name              = local.short_name
  cluster_arn       = module.ecs_cluster.arn
  vpc_id            = module.network.vpc_id
  subnet_ids        = module.network.private_subnet_ids
  container_image   = local.container_image
  container_port    = local.container_port
  cpu               = local.cpu
  memory            = local.memory
  desired_count     = local.desired_count
  health_check_path = local.health_check_path

  # The request's variables, then the database's (the reserved DB_* names win).
  environment_variables = merge(local.environment_variables, {
    DB_HOST = module.database.address
    DB_PORT = tostring(module.database.port)
    DB_NAME = module.database.db_name
    DB_USER = module.database.username
  })
  secrets = {
    DB_PASSWORD = "${module.database.master_user_secret_arn}:password::"
  }

  # The pattern owns its listener, so any fixed priority is free.
  listener_arn           = module.load_balancer.https_listener_arn
  listener_rule_priority = 100
  host_name              = local.app_fqdn
  alb_security_group_id  = module.load_balancer.security_group_id
  tags                   = local.tags
}

module "dns_record" {
  source = "./modules/dns_record"

  zone_id        = data.aws_route53_zone.this.zone_id
  name           = local.app_fqdn
  alias_dns_name = module.load_balancer.dns_name
  alias_zone_id  = module.load_balancer.zone_id
}

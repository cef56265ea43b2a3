# The seed company's standard stack, simulated: each terraform_data stands in for the AWS
# resource named in its comment. Request values come from locals.tf (rendered literals).
#
# Drills: every resource sleeps an equal share of delay_seconds while being created; the one
# named by fail_on exits 1 after its sleep (the apply fails there, earlier resources stay in
# state, the failing one is kept as tainted); the one named by fail_on_destroy exits 1 while
# being destroyed. A destroy-time provisioner may only reference `self`, so that flag travels
# in the resource's input. Terraform skips destroy provisioners of tainted resources, so
# naming the same resource in both drills does not make its destroy fail.
#
# Footprint: with `footprint_dir` set (the portal does for `local` accounts), each resource
# touches one file named after it in that folder once its creation succeeded, and removes it
# when it is destroyed (a resource whose creation failed or was interrupted is tainted, and
# Terraform runs no destroy provisioner for a tainted resource: so it leaves no footprint), so what "exists" can be checked outside Terraform (the local orphan report and
# the fault-injection suite compare it with the stored state).
#
# Request text (note, tags, names) is never put into a command: commands use only numbers,
# fixed words and the portal's own footprint path.

variable "footprint_dir" {
  description = "Set by the portal for `local` accounts: the folder standing for this environment in the offline cloud. Each resource keeps one file there while it exists, which the orphan report reads. Empty: no footprint."
  type        = string
  default     = ""
}

locals {
  footprint_dir = var.footprint_dir
  step_seconds  = format("%.3f", local.delay_seconds / 7)
  name_prefix   = lower("${local.product}-${local.environment_name}")
  app_fqdn      = lower("${local.app_name}-${local.environment_name}.${local.dns_zone}")
}

# aws_vpc + subnets
resource "terraform_data" "network" {
  input = {
    name       = "${local.name_prefix}-network"
    cidr       = local.network_cidr
    account_id = local.account_id
    region     = local.region
    # In 512 KiB pieces: a width of millions in format() is rendered in exponent form.
    padding         = join("", [for piece in range(ceil(local.state_padding_kib / 512)) : format("%0524288d", 0)])
    fail_on_destroy = local.fail_on_destroy == "network"
    footprint       = local.footprint_dir == "" ? "" : "${local.footprint_dir}/network"
  }

  provisioner "local-exec" {
    command = local.fail_on == "network" ? "sleep ${local.step_seconds}; echo 'drill: fail_on=network' >&2; exit 1" : "sleep ${local.step_seconds}${local.footprint_dir == "" ? "" : " && mkdir -p '${local.footprint_dir}' && touch '${local.footprint_dir}/network'"}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = self.input.fail_on_destroy ? "echo 'drill: fail_on_destroy=network' >&2; exit 1" : (self.input.footprint == "" ? "true" : "rm -f '${self.input.footprint}'")
  }
}

# aws_lb (application load balancer)
resource "terraform_data" "load_balancer" {
  input = {
    name            = "${local.name_prefix}-alb"
    network_id      = terraform_data.network.id
    dns_name        = "${local.name_prefix}-alb.${local.region}.elb.example.internal"
    fail_on_destroy = local.fail_on_destroy == "load_balancer"
    footprint       = local.footprint_dir == "" ? "" : "${local.footprint_dir}/load_balancer"
  }

  provisioner "local-exec" {
    command = local.fail_on == "load_balancer" ? "sleep ${local.step_seconds}; echo 'drill: fail_on=load_balancer' >&2; exit 1" : "sleep ${local.step_seconds}${local.footprint_dir == "" ? "" : " && mkdir -p '${local.footprint_dir}' && touch '${local.footprint_dir}/load_balancer'"}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = self.input.fail_on_destroy ? "echo 'drill: fail_on_destroy=load_balancer' >&2; exit 1" : (self.input.footprint == "" ? "true" : "rm -f '${self.input.footprint}'")
  }

  depends_on = [terraform_data.network]
}

# aws_lb_listener_rule (host-header rule on the shared HTTPS listener)
resource "terraform_data" "listener_rule" {
  input = {
    load_balancer_id = terraform_data.load_balancer.id
    host_header      = local.app_fqdn
    fail_on_destroy  = local.fail_on_destroy == "listener_rule"
    footprint        = local.footprint_dir == "" ? "" : "${local.footprint_dir}/listener_rule"
  }

  provisioner "local-exec" {
    command = local.fail_on == "listener_rule" ? "sleep ${local.step_seconds}; echo 'drill: fail_on=listener_rule' >&2; exit 1" : "sleep ${local.step_seconds}${local.footprint_dir == "" ? "" : " && mkdir -p '${local.footprint_dir}' && touch '${local.footprint_dir}/listener_rule'"}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = self.input.fail_on_destroy ? "echo 'drill: fail_on_destroy=listener_rule' >&2; exit 1" : (self.input.footprint == "" ? "true" : "rm -f '${self.input.footprint}'")
  }

  depends_on = [terraform_data.load_balancer]
}

# aws_ecr_repository
resource "terraform_data" "image_repository" {
  input = {
    name            = "${local.product}/${local.app_name}"
    fail_on_destroy = local.fail_on_destroy == "image_repository"
    footprint       = local.footprint_dir == "" ? "" : "${local.footprint_dir}/image_repository"
  }

  provisioner "local-exec" {
    command = local.fail_on == "image_repository" ? "sleep ${local.step_seconds}; echo 'drill: fail_on=image_repository' >&2; exit 1" : "sleep ${local.step_seconds}${local.footprint_dir == "" ? "" : " && mkdir -p '${local.footprint_dir}' && touch '${local.footprint_dir}/image_repository'"}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = self.input.fail_on_destroy ? "echo 'drill: fail_on_destroy=image_repository' >&2; exit 1" : (self.input.footprint == "" ? "true" : "rm -f '${self.input.footprint}'")
  }
}

# aws_db_instance (PostgreSQL in the environment's network)
resource "terraform_data" "database" {
  input = {
    identifier      = "${local.name_prefix}-db"
    engine          = "postgres"
    network_id      = terraform_data.network.id
    fail_on_destroy = local.fail_on_destroy == "database"
    footprint       = local.footprint_dir == "" ? "" : "${local.footprint_dir}/database"
  }

  provisioner "local-exec" {
    command = local.fail_on == "database" ? "sleep ${local.step_seconds}; echo 'drill: fail_on=database' >&2; exit 1" : "sleep ${local.step_seconds}${local.footprint_dir == "" ? "" : " && mkdir -p '${local.footprint_dir}' && touch '${local.footprint_dir}/database'"}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = self.input.fail_on_destroy ? "echo 'drill: fail_on_destroy=database' >&2; exit 1" : (self.input.footprint == "" ? "true" : "rm -f '${self.input.footprint}'")
  }

  depends_on = [terraform_data.network]
}

# aws_ecs_service + task definition (Fargate). A new image is a new task definition: the
# service is replaced (so a change of container_image with fail_on=service drills an update
# whose apply fails).
resource "terraform_data" "service" {
  triggers_replace = [local.container_image]

  input = {
    name             = "${local.name_prefix}-${local.app_name}"
    container_image  = local.container_image
    cpu              = local.cpu
    desired_count    = local.desired_count
    repository_id    = terraform_data.image_repository.id
    database_id      = terraform_data.database.id
    listener_rule_id = terraform_data.listener_rule.id
    requester        = local.requester
    department       = local.department
    note             = local.note
    tags             = local.tags
    fail_on_destroy  = local.fail_on_destroy == "service"
    footprint        = local.footprint_dir == "" ? "" : "${local.footprint_dir}/service"
  }

  provisioner "local-exec" {
    command = local.fail_on == "service" ? "sleep ${local.step_seconds}; echo 'drill: fail_on=service' >&2; exit 1" : "sleep ${local.step_seconds}${local.footprint_dir == "" ? "" : " && mkdir -p '${local.footprint_dir}' && touch '${local.footprint_dir}/service'"}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = self.input.fail_on_destroy ? "echo 'drill: fail_on_destroy=service' >&2; exit 1" : (self.input.footprint == "" ? "true" : "rm -f '${self.input.footprint}'")
  }

  depends_on = [
    terraform_data.listener_rule,
    terraform_data.image_repository,
    terraform_data.database,
  ]
}

# aws_route53_record (CNAME of the app to the load balancer)
resource "terraform_data" "dns_record" {
  input = {
    fqdn            = local.app_fqdn
    type            = "CNAME"
    target          = terraform_data.load_balancer.output.dns_name
    fail_on_destroy = local.fail_on_destroy == "dns_record"
    footprint       = local.footprint_dir == "" ? "" : "${local.footprint_dir}/dns_record"
  }

  provisioner "local-exec" {
    command = local.fail_on == "dns_record" ? "sleep ${local.step_seconds}; echo 'drill: fail_on=dns_record' >&2; exit 1" : "sleep ${local.step_seconds}${local.footprint_dir == "" ? "" : " && mkdir -p '${local.footprint_dir}' && touch '${local.footprint_dir}/dns_record'"}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = self.input.fail_on_destroy ? "echo 'drill: fail_on_destroy=dns_record' >&2; exit 1" : (self.input.footprint == "" ? "true" : "rm -f '${self.input.footprint}'")
  }

  depends_on = [terraform_data.load_balancer]
}

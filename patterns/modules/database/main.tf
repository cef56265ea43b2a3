# RDS for PostgreSQL in private subnets, reachable only from the given security groups.
# The master password is generated and rotated by RDS in AWS Secrets Manager
# (manage_master_user_password), so no random provider and no password in Terraform state.

resource "aws_db_subnet_group" "this" {
  name        = var.identifier
  description = "Private subnets of database ${var.identifier}"
  subnet_ids  = var.subnet_ids

  tags = merge(var.tags, { Name = var.identifier })
}

resource "aws_security_group" "this" {
  name        = "${var.identifier}-db"
  description = "Database ${var.identifier}: PostgreSQL from its services only"
  vpc_id      = var.vpc_id

  # No inline rules and no egress: a database only answers.
  tags = merge(var.tags, { Name = "${var.identifier}-db" })
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = var.allowed_security_groups

  security_group_id            = aws_security_group.this.id
  description                  = "PostgreSQL from ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = each.value

  tags = var.tags
}

resource "aws_db_instance" "this" {
  identifier     = var.identifier
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class
  port           = var.port

  db_name                     = var.db_name
  username                    = var.username
  manage_master_user_password = true

  allocated_storage     = var.allocated_storage
  max_allocated_storage = var.max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.this.id]
  publicly_accessible    = false
  multi_az               = var.multi_az

  backup_retention_period    = var.backup_retention_period
  copy_tags_to_snapshot      = true
  delete_automated_backups   = true
  skip_final_snapshot        = var.skip_final_snapshot
  final_snapshot_identifier  = var.skip_final_snapshot ? null : "${var.identifier}-final"
  deletion_protection        = var.deletion_protection
  auto_minor_version_upgrade = true
  apply_immediately          = true

  tags = merge(var.tags, { Name = var.identifier })
}

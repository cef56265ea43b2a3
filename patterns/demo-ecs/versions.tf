# terraform_data is built into Terraform (1.4+): this pattern needs no provider at all, so
# `terraform init` downloads nothing and the demo runs offline.
terraform {
  required_version = ">= 1.5.0"
}

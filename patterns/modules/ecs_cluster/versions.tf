# Every module of the company set pins the same provider range, so any pattern that combines
# them resolves one AWS provider version (see patterns/README.md, "Provider versions").
terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

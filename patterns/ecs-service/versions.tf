# The AWS provider itself is configured by the portal (portal_provider.tf: assume_role,
# allowed_account_ids, region, default_tags); this pattern only pins it. The modules under
# ./modules pin the same range.
terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

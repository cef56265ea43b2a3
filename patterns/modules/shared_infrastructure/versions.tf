# No provider: this module only checks and passes on values.
terraform {
  required_version = ">= 1.6"
}

"""The Terraform `http` backend endpoint: /state/<environment id>/."""

# The account's shared infrastructure (ECS cluster, load balancer with its HTTPS listener,
# VPC and private subnets), checked and handed on. Creates nothing: patterns that build on
# the shared components read them from here, so a missing or malformed entry is one clear
# error while the configuration is validated, before any plan.
#
# Expected of the shared components (set up once per account by the platform team):
# - the HTTPS listener's certificate covers *.<account dns zone> (applications get one
#   label directly under the zone);
# - the private subnets reach ECR, CloudWatch Logs and Secrets Manager (NAT gateway or VPC
#   endpoints), so tasks can start;
# - the load balancer's security group is the one given (services allow ingress from it).

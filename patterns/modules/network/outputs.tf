output "vpc_id" {
  description = "Id of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "IPv4 CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "availability_zones" {
  description = "The two availability zones the subnets are in (public[i] and private[i] share zone i)."
  value       = local.zones
}

output "public_subnet_ids" {
  description = "Ids of the two public subnets (routed to the internet gateway), for load balancers."
  value       = aws_subnet.public[*].id

  depends_on = [aws_route_table_association.public, aws_route.public_internet]
}

output "private_subnet_ids" {
  description = "Ids of the two private subnets, returned once their route through the NAT gateway exists (tasks started in them can pull images at once)."
  value       = aws_subnet.private[*].id

  depends_on = [aws_route_table_association.private, aws_route.private_nat]
}

output "nat_gateway_id" {
  description = "Id of the NAT gateway."
  value       = aws_nat_gateway.this.id
}

output "nat_public_ip" {
  description = "Public IPv4 address the private subnets reach the internet from."
  value       = aws_eip.nat.public_ip
}

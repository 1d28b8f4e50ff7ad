# A small VPC of its own: two public subnets (an ALB needs two availability zones; the instance
# uses the first), no NAT gateway, flow logs to CloudWatch, and security groups that open only
# the app port (and, with expose_grpc, the gRPC port) to the allowed CIDRs.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first two zones by name are used, and a zone AWS adds later sorts after them, so the zones in use never change; availability_zones pins them explicitly.
  state = "available"

  # Real availability zones only: a Local Zone the account opted into (us-east-1-bos-1a) would
  # sort first and lacks most instance types.
  filter {
    name   = "zone-type"
    values = ["availability-zone"]
  }
}

locals {
  azs = length(var.availability_zones) == 2 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, 2)

  # The instance's ports that clients (or the ALB) reach, with the rule's description.
  service_ports = merge(
    { (local.app_port) = "model-manager API" },
    var.expose_grpc ? { (local.grpc_port) = "model-manager gRPC inference" } : {},
  )
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # gives the instance a public DNS name (the service URL)

  tags = {
    Name = var.name
  }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = {
    Name = var.name
  }
}

resource "aws_subnet" "public" {
  count             = 2
  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  # No automatic public addresses: the instance asks for one itself, nothing else gets one.
  map_public_ip_on_launch = false

  tags = {
    Name = "${var.name}-public-${local.azs[count.index]}"
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }

  tags = {
    Name = "${var.name}-public"
  }
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# The VPC's default security group is what a resource gets when none is named: take all its
# rules away so nothing is ever exposed by accident.
resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.this.id

  tags = {
    Name = "${var.name}-default-locked"
  }
}

resource "aws_security_group" "instance" {
  name        = "${var.name}-instance"
  description = "model-manager instance: the app port from allowed CIDRs (from the ALB with enable_waf), SSH only from ssh_cidrs"
  vpc_id      = aws_vpc.this.id

  # Without the WAF, clients come straight to the app port (and the gRPC port with expose_grpc).
  dynamic "ingress" {
    for_each = var.enable_waf ? {} : local.service_ports
    content {
      description = "${ingress.value} from the allowed CIDRs"
      protocol    = "tcp"
      from_port   = ingress.key
      to_port     = ingress.key
      cidr_blocks = var.allowed_cidrs
    }
  }

  # With the WAF, only the ALB may reach the app, so the web ACL cannot be bypassed.
  dynamic "ingress" {
    for_each = var.enable_waf ? local.service_ports : {}
    content {
      description     = "${ingress.value} from the ALB"
      protocol        = "tcp"
      from_port       = ingress.key
      to_port         = ingress.key
      security_groups = [aws_security_group.alb[0].id]
    }
  }

  dynamic "ingress" {
    for_each = length(var.ssh_cidrs) > 0 ? [var.ssh_cidrs] : []
    content {
      description = "SSH from ssh_cidrs"
      protocol    = "tcp"
      from_port   = 22
      to_port     = 22
      cidr_blocks = ingress.value
    }
  }

  # HTTPS out is all the instance needs: package repositories, the image registry and the AWS
  # APIs (CloudWatch Logs, SSM, S3). DNS and time use the VPC's link-local services, which
  # security groups do not filter.
  egress {
    description = "HTTPS to package repositories, the image registry and AWS APIs"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = {
    Name = "${var.name}-instance"
  }

  lifecycle {
    # The ALB passes gRPC on only over HTTPS; a port straight to the instance would bypass the web ACL.
    precondition {
      condition     = !(var.expose_grpc && var.enable_waf && var.certificate_arn == null)
      error_message = "expose_grpc with enable_waf needs certificate_arn: the ALB forwards gRPC over HTTPS only."
    }
  }
}

# --- VPC flow logs --------------------------------------------------------------------------------

resource "aws_flow_log" "vpc" {
  vpc_id                   = aws_vpc.this.id
  traffic_type             = "ALL"
  log_destination_type     = "cloud-watch-logs"
  log_destination          = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn             = aws_iam_role.flow_logs.arn
  max_aggregation_interval = 600 # the cheaper of the two; 60 s detail is rarely needed here

  tags = {
    Name = var.name
  }
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    # Only flow logs of this account may assume the role (confused deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [aws_cloudwatch_log_group.flow_logs.arn, "${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-flow-logs"
  description        = "VPC flow logs of ${var.name} into their log group"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "${var.name}-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

# Optional (enable_waf): an Application Load Balancer in front of the instance, filtered by an AWS
# WAF web ACL with AWS managed rule groups and a per-IP rate limit. Off by default: it adds about
# $35-40 a month (see deploy/README.md).

locals {
  waf   = var.enable_waf ? 1 : 0
  https = var.enable_waf && var.certificate_arn != null
  # gRPC through the ALB: an HTTPS listener on the gRPC port and a gRPC target group.
  alb_grpc = local.https && var.expose_grpc ? 1 : 0
}

resource "aws_security_group" "alb" {
  count       = local.waf
  name        = "${var.name}-alb"
  description = "model-manager ALB: HTTP(S) from the allowed CIDRs, the app port to the instance"
  vpc_id      = aws_vpc.this.id

  ingress {
    description = "HTTP from the allowed CIDRs (redirected to HTTPS when a certificate is set)"
    protocol    = "tcp"
    from_port   = 80
    to_port     = 80
    cidr_blocks = var.allowed_cidrs
  }

  dynamic "ingress" {
    for_each = local.https ? [1] : []
    content {
      description = "HTTPS from the allowed CIDRs"
      protocol    = "tcp"
      from_port   = 443
      to_port     = 443
      cidr_blocks = var.allowed_cidrs
    }
  }

  dynamic "ingress" {
    for_each = local.alb_grpc == 1 ? [1] : []
    content {
      description = "gRPC over HTTPS from the allowed CIDRs"
      protocol    = "tcp"
      from_port   = local.grpc_port
      to_port     = local.grpc_port
      cidr_blocks = var.allowed_cidrs
    }
  }

  # The VPC's range rather than the instance's group: a reference both ways would be a cycle.
  egress {
    description = "The app port of targets in the VPC"
    protocol    = "tcp"
    from_port   = local.app_port
    to_port     = local.app_port
    cidr_blocks = [var.vpc_cidr]
  }

  dynamic "egress" {
    for_each = local.alb_grpc == 1 ? [1] : []
    content {
      description = "The gRPC port of targets in the VPC"
      protocol    = "tcp"
      from_port   = local.grpc_port
      to_port     = local.grpc_port
      cidr_blocks = [var.vpc_cidr]
    }
  }

  tags = {
    Name = "${var.name}-alb"
  }
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:The web ACL logs every request with its verdict (aws_wafv2_web_acl_logging_configuration below), which would duplicate ALB access logs in a second bucket.
  #checkov:skip=CKV_AWS_150:Deletion protection would make terraform destroy fail; the ALB holds no state and is recreated by an apply.
  count                      = local.waf
  name                       = "${var.name}-alb"
  internal                   = false
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb[0].id]
  subnets                    = aws_subnet.public[*].id
  drop_invalid_header_fields = true
  # Model uploads (up to 2 GiB) can take longer than the 60 s default.
  idle_timeout = 300

  tags = {
    Name = "${var.name}-alb"
  }
}

resource "aws_lb_target_group" "app" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; the hop to the instance stays inside the VPC and the server speaks plain HTTP.
  count                = local.waf
  name                 = "${var.name}-app"
  port                 = local.app_port
  protocol             = "HTTP"
  vpc_id               = aws_vpc.this.id
  target_type          = "instance"
  deregistration_delay = 30

  # Ready means the registry answers and the preloaded aliases are loaded.
  health_check {
    path                = "/v2/health/ready"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = {
    Name = "${var.name}-app"
  }
}

resource "aws_lb_target_group_attachment" "app" {
  count            = local.waf
  target_group_arn = aws_lb_target_group.app[0].arn
  target_id        = aws_instance.this.id
  port             = local.app_port
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Plain HTTP only while no certificate_arn is given (a deployment without a domain); with one this listener redirects to the HTTPS listener.
  count             = local.waf
  load_balancer_arn = aws_lb.this[0].arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https ? "redirect" : "forward"
    target_group_arn = local.https ? null : aws_lb_target_group.app[0].arn

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.this[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app[0].arn
  }
}

# --- gRPC (expose_grpc with a certificate) ------------------------------------------------------

# An ALB forwards gRPC only from an HTTPS listener to a target group of protocol version GRPC; the
# web ACL applies to it as to HTTP, except its body rules, which AWS WAF skips for gRPC.
resource "aws_lb_target_group" "grpc" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; the hop to the instance stays inside the VPC and the server speaks plain-text gRPC (HTTP/2).
  count                = local.alb_grpc
  name                 = "${var.name}-grpc"
  port                 = local.grpc_port
  protocol             = "HTTP"
  protocol_version     = "GRPC"
  vpc_id               = aws_vpc.this.id
  target_type          = "instance"
  deregistration_delay = 30

  # The standard gRPC health service: the server answers SERVING once ready.
  health_check {
    path                = "/grpc.health.v1.Health/Check"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "0"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = {
    Name = "${var.name}-grpc"
  }
}

resource "aws_lb_target_group_attachment" "grpc" {
  count            = local.alb_grpc
  target_group_arn = aws_lb_target_group.grpc[0].arn
  target_id        = aws_instance.this.id
  port             = local.grpc_port
}

resource "aws_lb_listener" "grpc" {
  count             = local.alb_grpc
  load_balancer_arn = aws_lb.this[0].arn
  port              = local.grpc_port
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.grpc[0].arn
  }
}

# --- Web ACL --------------------------------------------------------------------------------------

resource "aws_wafv2_web_acl" "this" {
  count       = local.waf
  name        = var.name
  description = "model-manager ${var.name}: AWS managed rules and a per-IP rate limit"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "aws-common"
    priority = 10

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"

        # The rule set blocks bodies over 8 KB; model uploads and inference requests with real
        # tensors are larger, so that rule only counts. The server enforces its own size limits
        # (--max-upload-size, --max-request-size).
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-aws-common"
      sampled_requests_enabled   = true
    }
  }

  # Known exploit payloads (Log4j/Log4Shell and others).
  rule {
    name     = "aws-known-bad-inputs"
    priority = 20

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-aws-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  # Addresses Amazon threat intelligence lists as bots and attackers.
  rule {
    name     = "aws-ip-reputation"
    priority = 30

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-aws-ip-reputation"
      sampled_requests_enabled   = true
    }
  }

  # Anonymising services (Tor, VPN exits). Its HostingProviderIPList rule would block every
  # client running in a cloud, and servers calling the inference API usually do: count only.
  rule {
    name     = "aws-anonymous-ip"
    priority = 35

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"

        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-aws-anonymous-ip"
      sampled_requests_enabled   = true
    }
  }

  # Inference is expensive: one address may not monopolise the instance.
  rule {
    name     = "rate-limit-per-ip"
    priority = 40

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit
        aggregate_key_type = "IP"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-rate-limit-per-ip"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }

  tags = {
    Name = var.name
  }
}

resource "aws_wafv2_web_acl_association" "alb" {
  count        = local.waf
  resource_arn = aws_lb.this[0].arn
  web_acl_arn  = aws_wafv2_web_acl.this[0].arn
}

# WAF logs go to CloudWatch; the group name must start with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "waf" {
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days, 30 days by default to keep the bill small; set 365 or more where a year of logs is required.
  count             = local.waf
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  count                   = local.waf
  resource_arn            = aws_wafv2_web_acl.this[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]

  # Credentials never reach the logs (the API key, once the server checks one).
  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
}

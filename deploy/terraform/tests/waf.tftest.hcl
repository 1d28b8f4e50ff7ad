# `terraform test` of enable_waf with a mocked provider: an ALB with a WAFv2 web ACL in front of
# the instance, which then accepts the app port from the ALB only.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  image         = "ghcr.io/example/ml-model-manager:0.1.0"
  allowed_cidrs = ["203.0.113.0/24"]
  enable_waf    = true
}

run "apply_with_waf" {
  command = apply

  assert {
    condition     = length(aws_lb.this) == 1 && !aws_lb.this[0].internal && aws_lb.this[0].drop_invalid_header_fields
    error_message = "an internet-facing ALB that drops invalid headers"
  }
  assert {
    condition     = length(aws_lb.this[0].subnets) == 2
    error_message = "the ALB spans both subnets (two availability zones)"
  }
  assert {
    condition = (
      aws_lb_target_group.app[0].port == 8080
      && aws_lb_target_group.app[0].health_check[0].path == "/v2/health/ready"
      && aws_lb_target_group.app[0].health_check[0].matcher == "200"
    )
    error_message = "the target group checks readiness on the app port"
  }
  assert {
    condition     = aws_lb_target_group_attachment.app[0].target_id == aws_instance.this.id
    error_message = "the instance is the target"
  }
  assert {
    condition     = aws_lb_listener.http[0].port == 80 && aws_lb_listener.http[0].default_action[0].type == "forward" && length(aws_lb_listener.https) == 0
    error_message = "without a certificate the ALB forwards plain HTTP"
  }
  assert {
    condition     = aws_wafv2_web_acl.this[0].scope == "REGIONAL" && length(aws_wafv2_web_acl.this[0].default_action[0].allow) == 1
    error_message = "a regional web ACL that allows what no rule blocks"
  }
  assert {
    condition = toset(flatten([
      for r in aws_wafv2_web_acl.this[0].rule : [for s in r.statement : [for m in s.managed_rule_group_statement : m.name]]
      ])) == toset([
      "AWSManagedRulesCommonRuleSet",
      "AWSManagedRulesKnownBadInputsRuleSet",
      "AWSManagedRulesAmazonIpReputationList",
      "AWSManagedRulesAnonymousIpList",
    ])
    error_message = "the AWS managed rule groups are in the web ACL"
  }
  assert {
    condition = [
      for r in aws_wafv2_web_acl.this[0].rule : r.statement[0].rate_based_statement[0].limit
      if length(r.statement[0].rate_based_statement) > 0
    ] == [2000]
    error_message = "a per-IP rate-based rule with the default limit"
  }
  assert {
    condition     = aws_wafv2_web_acl_association.alb[0].resource_arn == aws_lb.this[0].arn && aws_wafv2_web_acl_association.alb[0].web_acl_arn == aws_wafv2_web_acl.this[0].arn
    error_message = "the web ACL is associated with the ALB"
  }
  assert {
    condition     = aws_cloudwatch_log_group.waf[0].name == "aws-waf-logs-model-manager" && length(aws_wafv2_web_acl_logging_configuration.this) == 1
    error_message = "the web ACL logs to its own log group"
  }
  assert {
    condition = (
      length(aws_security_group.instance.ingress) == 1
      && try(length(one(aws_security_group.instance.ingress).cidr_blocks), 0) == 0
      && one(aws_security_group.instance.ingress).security_groups == toset([aws_security_group.alb[0].id])
    )
    error_message = "with the WAF the instance accepts the app port from the ALB only, so the web ACL cannot be bypassed"
  }
  assert {
    condition     = [for r in aws_security_group.alb[0].ingress : r.cidr_blocks] == [tolist(["203.0.113.0/24"])]
    error_message = "the ALB admits the allowed CIDRs"
  }
  assert {
    condition     = output.service_url == "http://model-manager-alb-123456789.us-east-1.elb.amazonaws.com"
    error_message = "with the WAF the service URL is the ALB"
  }
  assert {
    condition     = output.alb_dns_name == aws_lb.this[0].dns_name && output.web_acl_arn == aws_wafv2_web_acl.this[0].arn
    error_message = "ALB and web ACL outputs"
  }
}

run "https_with_a_certificate" {
  command = plan

  variables {
    certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  }

  assert {
    condition     = length(aws_lb_listener.https) == 1 && aws_lb_listener.https[0].ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    error_message = "a certificate adds an HTTPS listener with a TLS 1.2+ policy"
  }
  assert {
    condition     = aws_lb_listener.http[0].default_action[0].type == "redirect" && aws_lb_listener.http[0].default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "and HTTP redirects to HTTPS"
  }
  assert {
    condition     = length(aws_lb_listener.grpc) == 0 && toset([for r in aws_security_group.alb[0].ingress : r.from_port]) == toset([80, 443])
    error_message = "no gRPC listener unless expose_grpc"
  }
}

# `terraform test` of expose_grpc with a mocked provider: the gRPC port is published and opened to
# allowed_cidrs only when asked, straight to the instance, or through the ALB (HTTPS) with the WAF.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  image         = "ghcr.io/example/ml-model-manager:0.1.0"
  allowed_cidrs = ["203.0.113.0/24"]
  expose_grpc   = true
}

run "grpc_straight_to_the_instance" {
  command = apply

  override_resource {
    target = aws_instance.this
    values = {
      public_dns = "ec2-198-51-100-10.compute-1.amazonaws.com"
    }
  }

  assert {
    condition = (
      toset([for r in aws_security_group.instance.ingress : [r.from_port, r.to_port]]) == toset([[8080, 8080], [8081, 8081]])
      && alltrue([for r in aws_security_group.instance.ingress : r.cidr_blocks == tolist(["203.0.113.0/24"])])
    )
    error_message = "the app port and the gRPC port, both from allowed_cidrs only"
  }
  assert {
    condition     = strcontains(local.user_data, "-p 8080:8080 \\\n  -p 8081:8081 \\\n")
    error_message = "the container's gRPC port is published on the host"
  }
  assert {
    condition     = output.grpc_address == "ec2-198-51-100-10.compute-1.amazonaws.com:8081"
    error_message = "the gRPC address is the instance's gRPC port"
  }
  assert {
    condition     = length(aws_lb.this) == 0 && length(aws_lb_listener.grpc) == 0 && length(aws_lb_target_group.grpc) == 0
    error_message = "no ALB without enable_waf"
  }
}

run "grpc_through_the_alb_with_the_waf" {
  command = apply

  variables {
    enable_waf      = true
    certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  }

  assert {
    condition = (
      aws_lb_listener.grpc[0].port == 8081 && aws_lb_listener.grpc[0].protocol == "HTTPS"
      && aws_lb_listener.grpc[0].ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06"
      && aws_lb_listener.grpc[0].certificate_arn == var.certificate_arn
      && aws_lb_listener.grpc[0].default_action[0].type == "forward"
      && aws_lb_listener.grpc[0].default_action[0].target_group_arn == aws_lb_target_group.grpc[0].arn
    )
    error_message = "an HTTPS listener on 8081 forwards to the gRPC target group"
  }
  assert {
    condition = (
      aws_lb_target_group.grpc[0].port == 8081 && aws_lb_target_group.grpc[0].protocol_version == "GRPC"
      && aws_lb_target_group.grpc[0].health_check[0].path == "/grpc.health.v1.Health/Check"
      && aws_lb_target_group.grpc[0].health_check[0].matcher == "0"
      && aws_lb_target_group_attachment.grpc[0].target_id == aws_instance.this.id
    )
    error_message = "the gRPC target group checks the standard health service on the instance's gRPC port"
  }
  assert {
    condition = (
      toset([for r in aws_security_group.instance.ingress : r.from_port]) == toset([8080, 8081])
      && alltrue([for r in aws_security_group.instance.ingress : try(length(r.cidr_blocks), 0) == 0 && r.security_groups == toset([aws_security_group.alb[0].id])])
    )
    error_message = "with the WAF the instance accepts both ports from the ALB only, so the web ACL cannot be bypassed"
  }
  assert {
    condition     = [for r in aws_security_group.alb[0].ingress : r.cidr_blocks if r.from_port == 8081] == [tolist(["203.0.113.0/24"])]
    error_message = "the ALB admits gRPC from the allowed CIDRs"
  }
  assert {
    condition     = contains([for r in aws_security_group.alb[0].egress : r.from_port], 8081)
    error_message = "the ALB may reach the instance's gRPC port"
  }
  assert {
    condition     = output.grpc_address == "model-manager-alb-123456789.us-east-1.elb.amazonaws.com:8081"
    error_message = "with the WAF the gRPC address is the ALB's"
  }
}

run "grpc_with_the_waf_needs_a_certificate" {
  command = plan

  variables {
    enable_waf = true
  }

  expect_failures = [aws_security_group.instance]
}

run "grpc_port_is_fixed_by_the_image" {
  command = plan

  variables {
    extra_environment = {
      MODEL_MANAGER_GRPC_PORT = "9000"
    }
  }

  expect_failures = [var.extra_environment]
}

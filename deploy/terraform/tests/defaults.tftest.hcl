# `terraform test` without AWS: a mocked provider, the defaults (only the required variables
# set), then the optional SSH, API key and ECR settings, and invalid inputs.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  image         = "ghcr.io/example/ml-model-manager:0.1.0"
  allowed_cidrs = ["203.0.113.0/24"]
}

run "plan_with_defaults" {
  command = plan

  assert {
    condition     = aws_instance.this.metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required"
  }
  assert {
    condition     = aws_instance.this.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "containers must not reach the metadata service (hop limit 1)"
  }
  assert {
    condition     = aws_instance.this.root_block_device[0].encrypted && aws_ebs_volume.data.encrypted
    error_message = "the root and data volumes must be encrypted"
  }
  assert {
    condition     = aws_instance.this.monitoring && aws_instance.this.instance_type == "t3.small"
    error_message = "detailed monitoring on a t3.small by default"
  }
  assert {
    condition     = aws_instance.this.ami == "ami-0123456789abcdef0"
    error_message = "the AMI comes from the public SSM parameter by default"
  }
  assert {
    condition     = data.aws_ssm_parameter.ami[0].name == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    error_message = "the default AMI parameter is Amazon Linux 2023 x86_64"
  }
  assert {
    condition     = length([for r in aws_security_group.instance.ingress : r if r.from_port <= 22 && r.to_port >= 22]) == 0
    error_message = "no SSH rule unless ssh_cidrs is set"
  }
  assert {
    condition = (
      length(aws_security_group.instance.ingress) == 1
      && one(aws_security_group.instance.ingress).from_port == 8080
      && one(aws_security_group.instance.ingress).to_port == 8080
      && one(aws_security_group.instance.ingress).cidr_blocks == tolist(["203.0.113.0/24"])
    )
    error_message = "the only ingress is the app port from allowed_cidrs"
  }
  assert {
    condition     = !strcontains(local.user_data, "8081") && length(aws_lb_listener.grpc) == 0
    error_message = "the gRPC port is neither published nor opened unless expose_grpc"
  }
  assert {
    condition     = [for r in aws_security_group.instance.egress : [r.from_port, r.to_port]] == [[443, 443]]
    error_message = "egress is HTTPS only"
  }
  assert {
    condition     = aws_subnet.public[0].availability_zone == "us-east-1a" && aws_subnet.public[1].availability_zone == "us-east-1b"
    error_message = "two subnets in the region's first two zones"
  }
  assert {
    condition     = aws_vpc.this.enable_dns_hostnames && aws_flow_log.vpc.traffic_type == "ALL"
    error_message = "DNS hostnames and VPC flow logs"
  }
  assert {
    condition     = length(aws_lb.this) == 0 && length(aws_wafv2_web_acl.this) == 0 && length(aws_wafv2_web_acl_association.alb) == 0 && length(aws_cloudwatch_log_group.waf) == 0
    error_message = "no ALB or WAF unless enable_waf"
  }
  assert {
    condition     = aws_cloudwatch_log_group.app.name == "/model-manager/server" && aws_cloudwatch_log_group.app.retention_in_days == 30
    error_message = "the server's log group keeps 30 days by default"
  }
  assert {
    condition     = aws_kms_key.this.enable_key_rotation
    error_message = "the KMS key rotates"
  }
  assert {
    condition = alltrue([
      strcontains(local.user_data, "MODEL_MANAGER_MEMORY_BUDGET=1GiB\n"),
      strcontains(local.user_data, "MODEL_MANAGER_LOG_LEVEL=info\n"),
      strcontains(local.user_data, "--log-driver awslogs"),
      strcontains(local.user_data, "awslogs-group=/model-manager/server"),
      strcontains(local.user_data, "-v /var/lib/model-manager:/data"),
      strcontains(local.user_data, "'ghcr.io/example/ml-model-manager:0.1.0'"),
      !strcontains(local.user_data, "MODEL_MANAGER_STORE_URL"),
      !strcontains(local.user_data, "MODEL_MANAGER_API_KEY"),
      !strcontains(local.user_data, "docker login"),
      strcontains(local.user_data, "for candidate in /dev/sdf /dev/xvdf"),
    ])
    error_message = "the user data mounts the data volume and runs the image with its settings, logging to CloudWatch"
  }
  assert {
    condition     = aws_volume_attachment.data.device_name == "/dev/sdf" && aws_volume_attachment.data.stop_instance_before_detaching
    error_message = "the data volume is attached where the user data looks for it, and detached only from a stopped instance"
  }
  assert {
    condition     = aws_cloudwatch_log_metric_filter.request_failures.pattern == "\"request failed: status=5\""
    error_message = "request failures are counted from the server's log lines"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.request_failures.metric_name == "RequestFailures" && aws_cloudwatch_metric_alarm.load_failures.metric_name == "LoadFailures"
    error_message = "alarms watch the log metrics"
  }
  assert {
    condition     = length(aws_sns_topic.alarms) == 0 && length(aws_cloudwatch_metric_alarm.cpu.alarm_actions) == 0
    error_message = "no alarm topic without alarm_email"
  }
  assert {
    condition     = aws_s3_bucket_versioning.artifacts.versioning_configuration[0].status == "Enabled"
    error_message = "the artifact bucket is versioned"
  }
  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.artifacts.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms"
    error_message = "the artifact bucket is encrypted with KMS"
  }
  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.artifacts.block_public_acls,
      aws_s3_bucket_public_access_block.artifacts.block_public_policy,
      aws_s3_bucket_public_access_block.artifacts.ignore_public_acls,
      aws_s3_bucket_public_access_block.artifacts.restrict_public_buckets,
    ])
    error_message = "public access to the bucket is blocked"
  }
  assert {
    condition     = !contains([for s in data.aws_iam_policy_document.instance.statement : s.sid], "ReadApiKey")
    error_message = "no SSM permission without an API key parameter"
  }
}

run "apply_with_defaults" {
  command = apply

  override_resource {
    target = aws_instance.this
    values = {
      id         = "i-0123456789abcdef0"
      public_ip  = "198.51.100.10"
      public_dns = "ec2-198-51-100-10.compute-1.amazonaws.com"
    }
  }

  assert {
    condition     = output.service_url == "http://ec2-198-51-100-10.compute-1.amazonaws.com:8080"
    error_message = "without the WAF the service URL is the instance's app port"
  }
  assert {
    condition     = output.instance_id == "i-0123456789abcdef0" && output.public_ip == "198.51.100.10"
    error_message = "instance outputs"
  }
  assert {
    condition     = output.alb_dns_name == null && output.web_acl_arn == null && output.alarm_topic_arn == null && output.grpc_address == null
    error_message = "no ALB, web ACL, alarm topic or gRPC outputs by default"
  }
  assert {
    condition     = output.log_group == "/model-manager/server" && output.artifact_bucket == "model-manager-artifacts-mocked"
    error_message = "log group and bucket outputs"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.cpu.dimensions.InstanceId == "i-0123456789abcdef0"
    error_message = "the alarms watch the instance"
  }
}

run "ssh_and_alarm_email_when_asked" {
  command = plan

  variables {
    ssh_cidrs   = ["198.51.100.7/32"]
    key_name    = "ops"
    alarm_email = "oncall@example.com"
  }

  assert {
    condition     = [for r in aws_security_group.instance.ingress : r.cidr_blocks if r.from_port == 22] == [tolist(["198.51.100.7/32"])]
    error_message = "SSH is opened to ssh_cidrs only"
  }
  assert {
    condition     = aws_instance.this.key_name == "ops"
    error_message = "the key pair is used"
  }
  assert {
    condition     = length(aws_sns_topic.alarms) == 1 && aws_sns_topic_subscription.alarm_email[0].endpoint == "oncall@example.com"
    error_message = "alarm_email creates a topic and an email subscription"
  }
}

run "api_key_and_ecr_image" {
  command = plan

  variables {
    image                 = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml-model-manager:0.1.0"
    api_key_ssm_parameter = "/model-manager/api-key"
    memory_budget         = "512MiB"
    store_url             = "/data/store"
    preload               = "production"
  }

  assert {
    condition = alltrue([
      strcontains(local.user_data, "aws ssm get-parameter --region us-east-1 --name '/model-manager/api-key'"),
      strcontains(local.user_data, "MODEL_MANAGER_API_KEY=%s"),
      strcontains(local.user_data, "docker login --username AWS --password-stdin 123456789012.dkr.ecr.us-east-1.amazonaws.com"),
      strcontains(local.user_data, "MODEL_MANAGER_MEMORY_BUDGET=512MiB\n"),
      strcontains(local.user_data, "MODEL_MANAGER_STORE_URL=/data/store\n"),
      strcontains(local.user_data, "MODEL_MANAGER_PRELOAD=production\n"),
    ])
    error_message = "the API key is fetched from SSM at boot and the ECR image is pulled after a login"
  }
  assert {
    condition = [for s in data.aws_iam_policy_document.instance.statement : s.resources if s.sid == "ReadApiKey"] == [
      toset(["arn:aws:ssm:us-east-1:123456789012:parameter/model-manager/api-key"]),
    ]
    error_message = "the role may read only the API key parameter"
  }
  assert {
    condition = [for s in data.aws_iam_policy_document.instance.statement : s.resources if s.sid == "PullImage"] == [
      toset(["arn:aws:ecr:us-east-1:123456789012:repository/ml-model-manager"]),
    ]
    error_message = "the role may pull only the image's repository"
  }
}

run "rejects_invalid_inputs" {
  command = plan

  variables {
    allowed_cidrs = ["not-a-cidr"]
    ssh_cidrs     = ["0.0.0.0/0"]
    memory_budget = "lots"
    extra_environment = {
      MODEL_MANAGER_API_KEY = "in-plain-text"
    }
  }

  expect_failures = [var.allowed_cidrs, var.ssh_cidrs, var.memory_budget, var.extra_environment]
}

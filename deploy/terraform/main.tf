# One EC2 instance running the model-manager container, its data volume and its IAM role.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# The public SSM parameter always names the latest Amazon Linux 2023 AMI, so no AMI id is pinned.
data "aws_ssm_parameter" "ami" {
  count = var.ami_id == null ? 1 : 0
  name  = var.ami_ssm_parameter
}

locals {
  # The image serves HTTP on 8080 and gRPC on 8081 (deploy/docker/Dockerfile); the host publishes
  # the same ports, gRPC only with expose_grpc.
  app_port   = 8080
  grpc_port  = 8081
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  ami_id     = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.ami[0].insecure_value

  # Host folder mounted as the container's /data: the separate data volume, attached as this device.
  data_dir    = "/var/lib/model-manager"
  data_device = "/dev/sdf"

  # An ECR image needs a registry login and pull permissions; other registries are pulled anonymously.
  ecr = try(regex("^(?P<account>[0-9]{12})\\.dkr\\.ecr\\.(?P<region>[a-z0-9-]+)\\.amazonaws\\.com(?:\\.cn)?/(?P<repository>[^:@]+)", var.image), null)

  api_key_parameter_arn = var.api_key_ssm_parameter == null ? null : format(
    "arn:%s:ssm:%s:%s:parameter/%s", local.partition, var.region, local.account_id, trimprefix(var.api_key_ssm_parameter, "/"),
  )

  # The server's settings, written to an env file on the instance (MODEL_MANAGER_API_KEY is added
  # there, at boot, from SSM, so the key never appears in Terraform state or user data).
  environment = merge(
    {
      MODEL_MANAGER_MEMORY_BUDGET = var.memory_budget
      MODEL_MANAGER_LOG_LEVEL     = var.log_level
    },
    var.store_url == "" ? {} : { MODEL_MANAGER_STORE_URL = var.store_url },
    var.preload == "" ? {} : { MODEL_MANAGER_PRELOAD = var.preload },
    var.idle_unload == "" ? {} : { MODEL_MANAGER_IDLE_UNLOAD = var.idle_unload },
    var.extra_environment,
  )

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    region                = var.region
    image                 = var.image
    container_user        = var.container_user
    app_port              = local.app_port
    grpc_port             = var.expose_grpc ? local.grpc_port : 0
    data_dir              = local.data_dir
    data_device           = local.data_device
    log_group             = aws_cloudwatch_log_group.app.name
    environment           = local.environment
    api_key_ssm_parameter = var.api_key_ssm_parameter == null ? "" : var.api_key_ssm_parameter
    ecr_registry          = local.ecr == null ? "" : split("/", var.image)[0]
    ecr_region            = local.ecr == null ? "" : local.ecr.region
  })
}

# --- Instance role: its own log group, artifact bucket and (optionally) API key parameter -------

data "aws_iam_policy_document" "instance_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "instance" {
  # Docker's awslogs driver (running on the host) creates the stream and writes to it.
  statement {
    sid       = "WriteOwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.app.arn}:*"]
  }

  statement {
    sid       = "ListArtifactBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.artifacts.arn]
  }

  statement {
    sid       = "ReadWriteArtifacts"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }

  # The bucket is encrypted with the deployment's key; only S3 may use it on the role's behalf.
  statement {
    sid       = "UseKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = local.api_key_parameter_arn == null ? [] : [local.api_key_parameter_arn]
    content {
      sid       = "ReadApiKey"
      actions   = ["ssm:GetParameter"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.ecr == null ? [] : [local.ecr]
    content {
      sid       = "PullImage"
      actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
      resources = ["arn:${local.partition}:ecr:${statement.value.region}:${statement.value.account}:repository/${statement.value.repository}"]
    }
  }

  # GetAuthorizationToken has no resource-level permissions: "*" is the only valid resource.
  dynamic "statement" {
    for_each = local.ecr == null ? [] : [local.ecr]
    content {
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-instance"
  description        = "model-manager instance ${var.name}: its log group, artifact bucket and API key parameter only"
  assume_role_policy = data.aws_iam_policy_document.instance_assume.json
}

resource "aws_iam_role_policy" "instance" {
  name   = "${var.name}-instance"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.instance.json
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-instance"
  role = aws_iam_role.instance.name
}

# --- Data volume: the registry and model store outlive the instance ----------------------------

# Kept apart from the root volume so that replacing the instance (a new AMI, changed settings)
# keeps every model; the user data waits for it, and formats it only when it is blank. The
# instance does not depend on it, so both are created at the same time.
resource "aws_ebs_volume" "data" {
  availability_zone = aws_subnet.public[0].availability_zone
  size              = var.data_volume_size
  type              = "gp3"
  encrypted         = true
  kms_key_id        = aws_kms_key.this.arn

  tags = {
    Name = "${var.name}-data"
  }
}

resource "aws_volume_attachment" "data" {
  device_name = local.data_device
  volume_id   = aws_ebs_volume.data.id
  instance_id = aws_instance.this.id
  # Stop the instance first so the filesystem is unmounted cleanly when the attachment goes.
  stop_instance_before_detaching = true
}

# --- Instance -----------------------------------------------------------------------------------

resource "aws_instance" "this" {
  #checkov:skip=CKV_AWS_88:A public address is how the instance reaches its image registry and the AWS APIs without a NAT gateway (about $33 a month) and, without enable_waf, how clients reach it; its security group admits only allowed_cidrs on the app port and, with expose_grpc, the gRPC port (with enable_waf: only the ALB) and SSH only from ssh_cidrs.
  ami                         = local.ami_id
  instance_type               = var.instance_type
  subnet_id                   = aws_subnet.public[0].id
  vpc_security_group_ids      = [aws_security_group.instance.id]
  associate_public_ip_address = true
  iam_instance_profile        = aws_iam_instance_profile.instance.name
  key_name                    = var.key_name
  monitoring                  = true # detailed (1-minute) CloudWatch metrics
  ebs_optimized               = true

  user_data = local.user_data
  # The user data runs once, at first boot: a changed setting or image takes effect through a new
  # instance, which gets the same data volume.
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint          = "enabled"
    http_tokens            = "required" # IMDSv2 only
    instance_metadata_tags = "disabled"
    # One hop: the host reaches the metadata service, containers (one hop further) do not, so the
    # server cannot borrow the instance role's credentials.
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    kms_key_id            = aws_kms_key.this.arn
    delete_on_termination = true
  }

  tags = {
    Name = var.name
  }

  lifecycle {
    # The SSM parameter moves to each new Amazon Linux release; following it would replace the
    # instance on an unrelated apply. Upgrade on purpose: terraform apply -replace=aws_instance.this
    ignore_changes = [ami]
  }
}

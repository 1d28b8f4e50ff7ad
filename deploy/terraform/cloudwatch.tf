# Logs, the deployment's KMS key, metric filters on the server's own log lines, and alarms.

locals {
  metric_namespace = "ModelManager/${var.name}"
  log_group_arn    = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group"
  # Alarm notifications: a new topic for alarm_email and/or an existing topic.
  alarm_actions = concat(
    var.alarm_email == null ? [] : [aws_sns_topic.alarms[0].arn],
    var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn],
  )
}

# --- KMS key: logs, volumes, artifacts and the alarm topic ----------------------------------------

resource "aws_kms_key" "this" {
  description             = "model-manager ${var.name}: CloudWatch logs, EBS volumes, artifact bucket, alarm topic"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # The account administers the key through IAM policies (the default key policy); without
        # this statement the key could become unmanageable.
        Sid       = "AccountAdministersThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        # CloudWatch Logs encrypts this deployment's log groups, and only those.
        Sid       = "CloudWatchLogsForOwnLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = [
              "${local.log_group_arn}:/${var.name}/*",
              "${local.log_group_arn}:aws-waf-logs-${var.name}",
            ]
          }
        }
      },
      {
        # CloudWatch alarms publish to the encrypted alarm topic.
        Sid       = "CloudWatchAlarmsToEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
    ]
  })

  tags = {
    Name = var.name
  }
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# --- Log groups -----------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "app" {
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days, 30 days by default to keep the bill small; set 365 or more where a year of logs is required.
  name              = "/${var.name}/server"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_cloudwatch_log_group" "flow_logs" {
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days, 30 days by default to keep the bill small; set 365 or more where a year of logs is required.
  name              = "/${var.name}/vpc-flow-logs"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

# --- The server's own signals, from its log lines -------------------------------------------------

# One line per server-side failed request (5xx), at WARNING, or ERROR for a bug:
#   ... WARNING model_manager.api.errors: request failed: status=503 method=POST path=... error=...
# The server writes no line per successful request, so this counts failures per period; the
# failure ratio is in /metrics (Prometheus).
resource "aws_cloudwatch_log_metric_filter" "request_failures" {
  name           = "${var.name}-request-failures"
  log_group_name = aws_cloudwatch_log_group.app.name
  pattern        = "\"request failed: status=5\""

  metric_transformation {
    name          = "RequestFailures"
    namespace     = local.metric_namespace
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}

# One line per failed model load (a version that cannot be loaded is retried with backoff):
#   ... WARNING model_manager.serving.cache: loading NAME vN failed (attempt K): REASON
resource "aws_cloudwatch_log_metric_filter" "load_failures" {
  name           = "${var.name}-load-failures"
  log_group_name = aws_cloudwatch_log_group.app.name
  pattern        = "\"model_manager.serving.cache: loading\" \"failed (attempt\""

  metric_transformation {
    name          = "LoadFailures"
    namespace     = local.metric_namespace
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}

# --- Alarm topic (optional) -----------------------------------------------------------------------

resource "aws_sns_topic" "alarms" {
  count             = var.alarm_email == null ? 0 : 1
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.this.id
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email == null ? 0 : 1
  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# --- Alarms -----------------------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "cpu" {
  alarm_name          = "${var.name}-cpu-high"
  alarm_description   = "CPU of the model-manager instance above ${var.cpu_alarm_threshold}% for 5 minutes: inference is saturating it."
  namespace           = "AWS/EC2"
  metric_name         = "CPUUtilization"
  dimensions          = { InstanceId = aws_instance.this.id }
  statistic           = "Average"
  period              = 60 # detailed monitoring gives 1-minute data points
  evaluation_periods  = 5
  threshold           = var.cpu_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "missing"
  actions_enabled     = true
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# A failed system check is AWS's hardware or network: recover the instance onto healthy hardware
# (same id, addresses and volumes) and notify.
resource "aws_cloudwatch_metric_alarm" "system_status" {
  alarm_name          = "${var.name}-system-status-check"
  alarm_description   = "System status check of the model-manager instance failing: EC2 recovers it onto other hardware."
  namespace           = "AWS/EC2"
  metric_name         = "StatusCheckFailed_System"
  dimensions          = { InstanceId = aws_instance.this.id }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "missing"
  actions_enabled     = true
  alarm_actions       = concat(["arn:${local.partition}:automate:${var.region}:ec2:recover"], local.alarm_actions)
  ok_actions          = local.alarm_actions
}

# A failed instance check is the operating system (out of memory, full disk, kernel): notify.
resource "aws_cloudwatch_metric_alarm" "instance_status" {
  alarm_name          = "${var.name}-instance-status-check"
  alarm_description   = "Instance status check of the model-manager instance failing: the OS is unhealthy (memory, disk, kernel)."
  namespace           = "AWS/EC2"
  metric_name         = "StatusCheckFailed_Instance"
  dimensions          = { InstanceId = aws_instance.this.id }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "missing"
  actions_enabled     = true
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "request_failures" {
  alarm_name          = "${var.name}-request-failures"
  alarm_description   = "The server answered at least ${var.request_failure_alarm_threshold} requests with 5xx in 5 minutes; see 'request failed' lines in ${aws_cloudwatch_log_group.app.name}."
  namespace           = local.metric_namespace
  metric_name         = aws_cloudwatch_log_metric_filter.request_failures.metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.request_failure_alarm_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching" # no log lines at all: nothing failed
  actions_enabled     = true
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "load_failures" {
  alarm_name          = "${var.name}-load-failures"
  alarm_description   = "At least ${var.load_failure_alarm_threshold} model loads failed in 5 minutes; see 'loading ... failed' lines in ${aws_cloudwatch_log_group.app.name}."
  namespace           = local.metric_namespace
  metric_name         = aws_cloudwatch_log_metric_filter.load_failures.metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.load_failure_alarm_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

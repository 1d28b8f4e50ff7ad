output "instance_id" {
  description = "EC2 instance running the server."
  value       = aws_instance.this.id
}

output "public_ip" {
  description = "Public IPv4 address of the instance (it changes when the instance is replaced)."
  value       = aws_instance.this.public_ip
}

output "public_dns" {
  description = "Public DNS name of the instance."
  value       = aws_instance.this.public_dns
}

output "service_url" {
  description = "Base URL of the server: the ALB with enable_waf (HTTPS with certificate_arn), else the instance's app port."
  value = (
    var.enable_waf
    ? "${local.https ? "https" : "http"}://${aws_lb.this[0].dns_name}"
    : "http://${aws_instance.this.public_dns}:${local.app_port}"
  )
}

output "grpc_address" {
  description = "host:port of the gRPC inference endpoint: the ALB's (TLS) with enable_waf, else the instance's plain-text port; null without expose_grpc."
  value = (
    !var.expose_grpc ? null
    : var.enable_waf ? "${aws_lb.this[0].dns_name}:${local.grpc_port}"
    : "${aws_instance.this.public_dns}:${local.grpc_port}"
  )
}

output "alb_dns_name" {
  description = "DNS name of the ALB (point a CNAME or alias record at it); null without enable_waf."
  value       = var.enable_waf ? aws_lb.this[0].dns_name : null
}

output "web_acl_arn" {
  description = "ARN of the WAF web ACL; null without enable_waf."
  value       = var.enable_waf ? aws_wafv2_web_acl.this[0].arn : null
}

output "artifact_bucket" {
  description = "Name of the artifact bucket."
  value       = aws_s3_bucket.artifacts.bucket
}

output "log_group" {
  description = "CloudWatch log group with the server's log (one stream per instance)."
  value       = aws_cloudwatch_log_group.app.name
}

output "data_volume_id" {
  description = "EBS volume holding the registry and model store (the server's /data)."
  value       = aws_ebs_volume.data.id
}

output "alarm_topic_arn" {
  description = "SNS topic created for alarm_email; null without it."
  value       = var.alarm_email == null ? null : aws_sns_topic.alarms[0].arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the logs, volumes, artifact bucket and alarm topic."
  value       = aws_kms_key.this.arn
}

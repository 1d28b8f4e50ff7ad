# Inputs. Only `image` and `allowed_cidrs` are required: what to run, and who may reach it.

# --- Naming and placement ---------------------------------------------------------------------

variable "name" {
  description = "Prefix for every resource name and the Deployment tag; one per deployment in an account and region."
  type        = string
  default     = "model-manager"

  validation {
    # 24 characters keeps the derived names within AWS limits (ALB and target group names: 32,
    # S3 bucket prefixes: 37).
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.name))
    error_message = "name must be 2-24 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region code such as us-east-1."
  }
}

variable "tags" {
  description = "Extra tags for every resource (merged into the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; two public subnets are carved from it (one per availability zone)."
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && can(regex("^[0-9.]+/(1[6-9]|2[0-4])$", var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block from /16 to /24."
  }
}

variable "availability_zones" {
  description = "Two availability zones for the subnets (the instance runs in the first; an ALB needs both). Empty: the region's first two."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == 2
    error_message = "availability_zones must be empty or list exactly two zones."
  }
}

# --- Instance -----------------------------------------------------------------------------------

variable "ami_ssm_parameter" {
  description = "Public SSM parameter holding the AMI id to use when ami_id is not set (Amazon Linux 2023, x86_64)."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

  validation {
    condition     = startswith(var.ami_ssm_parameter, "/")
    error_message = "ami_ssm_parameter must be a full parameter path starting with /."
  }
}

variable "ami_id" {
  description = "Explicit AMI id (an Amazon Linux 2023 image: the user data uses dnf); overrides ami_ssm_parameter."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "instance_type" {
  description = "EC2 instance type; its memory must hold memory_budget plus the server itself (t3.small: 2 GiB)."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like t3.small."
  }
}

variable "key_name" {
  description = "Name of an existing EC2 key pair for SSH; null for none (SSH also needs ssh_cidrs)."
  type        = string
  default     = null
}

variable "root_volume_size" {
  description = "Root volume size in GiB (operating system and Docker images)."
  type        = number
  default     = 16

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 1024
    error_message = "root_volume_size must be between 8 and 1024 GiB."
  }
}

variable "data_volume_size" {
  description = "Size in GiB of the separate EBS volume mounted as the server's data dir (registry and model store); it survives instance replacement."
  type        = number
  default     = 20

  validation {
    condition     = var.data_volume_size >= 1 && var.data_volume_size <= 16384
    error_message = "data_volume_size must be between 1 and 16384 GiB."
  }
}

# --- Access -------------------------------------------------------------------------------------

variable "allowed_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the service (the app port and, with expose_grpc, the gRPC port; or the ALB when enable_waf). No default on purpose: the API has no authentication yet, so choose who can reach it."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "allowed_cidrs must list at least one IPv4 CIDR block, e.g. [\"203.0.113.0/24\"]."
  }
}

variable "expose_grpc" {
  description = "Open the server's gRPC inference endpoint (port 8081) to allowed_cidrs: straight to the instance, or with enable_waf through the ALB (an HTTPS listener on 8081, which needs certificate_arn) so the web ACL still applies. Off by default: HTTP only."
  type        = bool
  default     = false
}

variable "ssh_cidrs" {
  description = "IPv4 CIDR blocks allowed to SSH to the instance; empty (the default) opens no SSH port."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":") && !endswith(c, "/0")])
    error_message = "ssh_cidrs must be IPv4 CIDR blocks narrower than /0 (SSH is never opened to the whole internet)."
  }
}

# --- The server ---------------------------------------------------------------------------------

variable "image" {
  description = "Container image to run, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/ml-model-manager:0.1.0 (an ECR image gets pull permissions and a login)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][A-Za-z0-9._/:@-]*$", var.image))
    error_message = "image must be an image reference such as registry/repository:tag."
  }
}

variable "container_user" {
  description = "uid:gid the image runs as; the data volume is handed to it (deploy/docker/Dockerfile uses 10001:10001)."
  type        = string
  default     = "10001:10001"

  validation {
    condition     = can(regex("^[0-9]+:[0-9]+$", var.container_user))
    error_message = "container_user must be numeric uid:gid, e.g. 10001:10001."
  }
}

variable "memory_budget" {
  description = "MODEL_MANAGER_MEMORY_BUDGET: bytes loaded models may hold in all, e.g. 1GiB; keep it well under the instance's memory."
  type        = string
  default     = "1GiB"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?\\s*(?i:[kmgt]i?b?|b)?$", var.memory_budget))
    error_message = "memory_budget must be a size such as 512MiB, 1GiB or 2GB."
  }
}

variable "store_url" {
  description = "MODEL_MANAGER_STORE_URL; empty keeps the artifact store on the data volume (<data dir>/store)."
  type        = string
  default     = ""
}

variable "preload" {
  description = "MODEL_MANAGER_PRELOAD: comma-separated aliases (e.g. production) loaded before the server reports ready; empty for none."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9._,-]*$", var.preload))
    error_message = "preload must be a comma-separated list of aliases."
  }
}

variable "idle_unload" {
  description = "MODEL_MANAGER_IDLE_UNLOAD: unload versions unused this long, e.g. 30m; empty or 0 never unloads."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d)?)?$", var.idle_unload))
    error_message = "idle_unload must be a duration such as 30m, 1h or 0."
  }
}

variable "log_level" {
  description = "MODEL_MANAGER_LOG_LEVEL of the server."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warning", "error", "critical"], var.log_level)
    error_message = "log_level must be one of debug, info, warning, error, critical."
  }
}

variable "extra_environment" {
  description = "Further MODEL_MANAGER_* settings for the container, e.g. { MODEL_MANAGER_LOAD_WAIT = \"30s\" }."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.extra_environment : can(regex("^MODEL_MANAGER_[A-Z0-9_]+$", k)) && !can(regex("[\r\n]", v))
    ])
    error_message = "extra_environment keys must be MODEL_MANAGER_* names and values single lines."
  }

  # The container's address, ports and data dir are fixed by the image and the host's mounts (the
  # published ports and the security groups assume them); the API key comes from
  # api_key_ssm_parameter, never from plain text.
  validation {
    condition = length(setintersection(keys(var.extra_environment), [
      "MODEL_MANAGER_HOST", "MODEL_MANAGER_PORT", "MODEL_MANAGER_GRPC_PORT", "MODEL_MANAGER_DATA_DIR",
      "MODEL_MANAGER_API_KEY",
    ])) == 0
    error_message = "extra_environment may not set MODEL_MANAGER_HOST, _PORT, _GRPC_PORT, _DATA_DIR or _API_KEY (use api_key_ssm_parameter)."
  }
}

variable "api_key_ssm_parameter" {
  description = "Name of an SSM Parameter Store parameter (SecureString) holding the API key, passed to the server as MODEL_MANAGER_API_KEY; null for none."
  type        = string
  default     = null

  validation {
    condition     = var.api_key_ssm_parameter == null || can(regex("^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.api_key_ssm_parameter))
    error_message = "api_key_ssm_parameter must be a parameter name such as /model-manager/api-key."
  }
}

# --- Artifact bucket ----------------------------------------------------------------------------

variable "artifact_noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept in the artifact bucket before it expires."
  type        = number
  default     = 90

  validation {
    condition     = var.artifact_noncurrent_version_days >= 1
    error_message = "artifact_noncurrent_version_days must be at least 1."
  }
}

variable "artifact_bucket_force_destroy" {
  description = "Let terraform destroy delete the artifact bucket with every object version in it. Off by default so a destroy cannot lose artifacts."
  type        = bool
  default     = false
}

# --- WAF ----------------------------------------------------------------------------------------

variable "enable_waf" {
  description = "Put an Application Load Balancer with an AWS WAF web ACL in front of the instance; the instance then accepts its ports only from the ALB."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ACM certificate ARN for an HTTPS listener on the ALB (enable_waf); HTTP then redirects to HTTPS. Null: the ALB listens on plain HTTP."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "waf_rate_limit" {
  description = "Requests one client IP may make in 5 minutes before the WAF blocks it (enable_waf)."
  type        = number
  default     = 2000

  validation {
    condition     = var.waf_rate_limit >= 100 && var.waf_rate_limit <= 2000000000
    error_message = "waf_rate_limit must be between 100 and 2000000000."
  }
}

# --- Logs and alarms ----------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Days CloudWatch keeps the server, VPC flow and WAF logs."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, ...)."
  }
}

variable "alarm_email" {
  description = "Email address subscribed to a new SNS topic that receives the alarms; null for none (the subscription must be confirmed from the email)."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an email address."
  }
}

variable "alarm_sns_topic_arn" {
  description = "Existing SNS topic ARN that also receives the alarms; null for none."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_sns_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be an SNS topic ARN."
  }
}

variable "cpu_alarm_threshold" {
  description = "Average CPU utilization (percent) over 5 minutes that raises the CPU alarm."
  type        = number
  default     = 80

  validation {
    condition     = var.cpu_alarm_threshold > 0 && var.cpu_alarm_threshold <= 100
    error_message = "cpu_alarm_threshold must be a percentage in (0, 100]."
  }
}

variable "request_failure_alarm_threshold" {
  description = "Failed requests (5xx, from the server's log) in 5 minutes that raise the request-failure alarm."
  type        = number
  default     = 10

  validation {
    condition     = var.request_failure_alarm_threshold >= 1
    error_message = "request_failure_alarm_threshold must be at least 1."
  }
}

variable "load_failure_alarm_threshold" {
  description = "Failed model loads (from the server's log) in 5 minutes that raise the load-failure alarm."
  type        = number
  default     = 1

  validation {
    condition     = var.load_failure_alarm_threshold >= 1
    error_message = "load_failure_alarm_threshold must be at least 1."
  }
}

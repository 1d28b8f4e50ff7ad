terraform {
  # 1.5 for the language features used here; `terraform test` with mock providers
  # (deploy/terraform/tests) needs 1.7 or later.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.region

  # Every taggable resource gets these, so a deployment's resources (and its bill) can be found
  # by the Deployment tag; resources add only their Name.
  default_tags {
    tags = merge(var.tags, {
      Application = "ml-model-manager"
      Deployment  = var.name
      ManagedBy   = "terraform"
    })
  }
}

terraform {
  # use_lockfile (S3-native state locking) needs Terraform >= 1.10.
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Partial configuration: bucket, key (pods/<customer>/<environment>/terraform.tfstate), region
  # and use_lockfile = true are passed with -backend-config by the deploy workflow.
  backend "s3" {}
}

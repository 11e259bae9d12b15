# The pod's spec.yml is the single source of truth: the deploy workflow renders and validates it
# with deployments/podspec.py, Terraform applies it, and the workflow commits it.
locals {
  spec = yamldecode(file(var.spec_file))
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      ManagedBy = "pod-portal"
    }
  }
}

module "pod" {
  source = "./modules/pod"

  customer      = local.spec.customer
  environment   = local.spec.environment
  instance_name = local.spec.instance_name
  instance_type = local.spec.instance_type
  # podspec renders a YAML boolean; tobool also accepts the "true"/"false" strings.
  waf_enabled = tobool(local.spec.waf_enabled)

  # Every pod answers at https://<instance_name>.<domain_name>, under one certificate for the
  # domain (e.g. a wildcard *.<domain_name>).
  domain_name         = "${local.spec.instance_name}.${var.domain_name}"
  certificate_arn     = var.certificate_arn
  deletion_protection = var.deletion_protection
  detailed_monitoring = var.detailed_monitoring

  vpc_id     = var.vpc_id
  subnet_ids = var.subnet_ids
  ami_id     = var.ami_id
}

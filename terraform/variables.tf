variable "spec_file" {
  description = "Path to the pod's spec.yml (rendered by `python -m deployments.podspec render`), relative to this directory: a saved plan records it, and the apply reads the file again."
  type        = string
}

variable "aws_region" {
  description = "AWS region; null uses the provider's environment (AWS_REGION)."
  type        = string
  default     = null
}

variable "domain_name" {
  description = "DNS domain the pods are served under: a pod answers at https://<instance_name>.<domain_name> (the deploy workflow: repository variable POD_DOMAIN)."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS domain, e.g. pods.example.com (set the repository variable POD_DOMAIN)."
  }
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate, in the pods' region, covering <instance_name>.<domain_name>, e.g. a wildcard *.<domain_name> (the deploy workflow: repository variable POD_CERTIFICATE_ARN)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN, arn:aws:acm:REGION:ACCOUNT:certificate/ID (set the repository variable POD_CERTIFICATE_ARN)."
  }
}

variable "deletion_protection" {
  description = "Deletion protection of the pod's load balancer (the deploy workflow: repository variable POD_DELETION_PROTECTION, default true). Renaming a pod replaces its load balancer: AWS refuses that while protection is on."
  type        = bool
  default     = true
}

variable "detailed_monitoring" {
  description = "EC2 detailed monitoring of the pod's instance (1-minute metrics, charged per instance)."
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "VPC for the pod; null uses the region's default VPC."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Subnets for the pod's load balancer (first one for the instance); empty uses the VPC's subnets."
  type        = list(string)
  default     = []
}

variable "ami_id" {
  description = "AMI override; null resolves the Amazon Linux 2023 SSM parameter."
  type        = string
  default     = null
}

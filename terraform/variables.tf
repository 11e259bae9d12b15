variable "spec_file" {
  description = "Path to the pod's spec.yml (rendered by `python -m deployments.podspec render`), relative to this directory: a saved plan records it, and the apply reads the file again."
  type        = string
}

variable "aws_region" {
  description = "AWS region; null uses the provider's environment (AWS_REGION)."
  type        = string
  default     = null
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

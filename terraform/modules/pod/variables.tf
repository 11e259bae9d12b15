variable "customer" {
  description = "Customer name (a path component of the specs repository)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$", var.customer))
    error_message = "customer must be 1-32 lowercase letters, digits or hyphens."
  }
}

variable "environment" {
  description = "Environment name (a path component of the specs repository)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$", var.environment))
    error_message = "environment must be 1-32 lowercase letters, digits or hyphens."
  }
}

variable "instance_name" {
  description = "Name tag of the EC2 instance; also the base of the other resource names."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,61}[a-z0-9]$", var.instance_name))
    error_message = "instance_name must be 3-63 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "instance_type" {
  description = "EC2 instance type. The allow-list lives in deployments/podspec.py; this only checks the shape."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like family.size, e.g. t3.medium."
  }
}

variable "waf_enabled" {
  description = "Put an AWS WAFv2 web ACL with AWS managed rule groups in front of the load balancer."
  type        = bool
}

variable "vpc_id" {
  description = "VPC to deploy into; null uses the region's default VPC."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Subnets (at least two, in different AZs) for the load balancer; the instance uses the first. Empty uses the VPC's subnets."
  type        = list(string)
  default     = []
}

variable "ami_id" {
  description = "AMI for the instance; null resolves ami_ssm_parameter."
  type        = string
  default     = null
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter holding the AMI ID, used when ami_id is null."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

variable "root_volume_size" {
  description = "Size of the encrypted root volume in GiB (at least the AMI's snapshot size)."
  type        = number
  default     = 20
}

variable "allowed_ingress_cidrs" {
  description = "CIDR blocks allowed to reach the load balancer on HTTP."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "app_port" {
  description = "Port the application listens on inside the instance."
  type        = number
  default     = 80
}

variable "waf_managed_rule_groups" {
  description = "AWS managed rule groups evaluated by the web ACL, in priority order."
  type        = list(string)
  default = [
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
  ]
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

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
  description = "CIDR blocks allowed to reach the load balancer (HTTPS, and HTTP which redirects to it)."
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

  validation {
    # Its Log4JRCE rules block the Log4j (CVE-2021-44228) exploits.
    condition     = contains(var.waf_managed_rule_groups, "AWSManagedRulesKnownBadInputsRuleSet")
    error_message = "waf_managed_rule_groups must include AWSManagedRulesKnownBadInputsRuleSet (Log4j protection)."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "domain_name" {
  description = "The pod's DNS name (served over HTTPS; plain HTTP redirects to it). Point it (CNAME or alias) at the load balancer's DNS name."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name)) && length(var.domain_name) <= 253
    error_message = "domain_name must be a lowercase DNS name, e.g. acme-prod-web.pods.example.com."
  }
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate, in the pod's region, for domain_name (e.g. a wildcard *.pods.example.com)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "ssl_policy" {
  description = "TLS security policy of the HTTPS listener (TLS 1.3 and 1.2 only by default)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "deletion_protection" {
  description = "Deletion protection of the load balancer. While on, AWS refuses to delete it: turn it off for the run that renames the pod (a rename replaces the load balancer) or removes it."
  type        = bool
  default     = true
}

variable "detailed_monitoring" {
  description = "EC2 detailed monitoring (1-minute CloudWatch metrics; charged per instance)."
  type        = bool
  default     = true
}

variable "access_log_retention_days" {
  description = "Days the load balancer's access logs are kept in their S3 bucket."
  type        = number
  default     = 365
}

variable "waf_log_retention_days" {
  description = "Days WAF logs are kept in CloudWatch Logs (at least a year)."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.waf_log_retention_days)
    error_message = "waf_log_retention_days must be a CloudWatch Logs retention of at least 365 days (365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

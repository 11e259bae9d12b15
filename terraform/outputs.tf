output "pod" {
  description = "customer/environment of the applied spec."
  value       = "${local.spec.customer}/${local.spec.environment}"
}

output "instance_id" {
  description = "ID of the pod's EC2 instance."
  value       = module.pod.instance_id
}

output "load_balancer_arn" {
  description = "ARN of the pod's application load balancer."
  value       = module.pod.load_balancer_arn
}

output "load_balancer_dns_name" {
  description = "DNS name of the pod's application load balancer."
  value       = module.pod.load_balancer_dns_name
}

output "url" {
  description = "The pod's HTTPS address (point its DNS name at load_balancer_dns_name)."
  value       = module.pod.url
}

output "access_log_bucket" {
  description = "S3 bucket of the load balancer's access logs."
  value       = module.pod.access_log_bucket
}

output "waf_log_group" {
  description = "CloudWatch log group of the WAF logs, or null when WAF is disabled."
  value       = module.pod.waf_log_group
}

output "web_acl_arn" {
  description = "ARN of the WAFv2 web ACL, or null when WAF is disabled."
  value       = module.pod.web_acl_arn
}

# The deploy workflow reads this from a saved plan (terraform show -json) before applying it:
# a plan is applied only by a run whose spec is the one planned.
output "spec" {
  description = "The pod's spec as planned (spec.yml's five fields)."
  value = {
    customer      = local.spec.customer
    environment   = local.spec.environment
    instance_name = local.spec.instance_name
    instance_type = local.spec.instance_type
    waf_enabled   = tobool(local.spec.waf_enabled)
  }
}

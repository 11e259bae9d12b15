output "instance_id" {
  description = "ID of the pod's EC2 instance."
  value       = aws_instance.this.id
}

output "load_balancer_arn" {
  description = "ARN of the pod's application load balancer."
  value       = aws_lb.this.arn
}

output "load_balancer_dns_name" {
  description = "DNS name of the pod's application load balancer."
  value       = aws_lb.this.dns_name
}

output "web_acl_arn" {
  description = "ARN of the WAFv2 web ACL, or null when WAF is disabled."
  value       = var.waf_enabled ? aws_wafv2_web_acl.this[0].arn : null
}

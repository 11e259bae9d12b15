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

output "url" {
  description = "The pod's HTTPS address."
  value       = "https://${var.domain_name}/"
}

output "access_log_bucket" {
  description = "S3 bucket of the load balancer's access logs (under alb/)."
  value       = aws_s3_bucket.alb_logs.id
}

output "waf_log_group" {
  description = "CloudWatch log group of the WAF logs, or null when WAF is disabled."
  value       = var.waf_enabled ? aws_cloudwatch_log_group.waf[0].name : null
}

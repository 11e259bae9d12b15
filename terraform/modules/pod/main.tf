locals {
  pod = "${var.customer}/${var.environment}"

  tags = merge(var.tags, {
    Customer    = var.customer
    Environment = var.environment
    ManagedBy   = "pod-portal"
    Pod         = local.pod
  })

  # ALB and target group names: at most 32 characters, unique per pod.
  short_name = "${trimsuffix(substr(var.instance_name, 0, 23), "-")}-${substr(sha1(local.pod), 0, 8)}"

  # Names AWS keeps per account (IAM) or worldwide (S3), and the WAF log group: from the pod
  # (customer/environment, which never changes for a pod), not from instance_name, so that a
  # rename does not replace them. The hash keeps two pods apart whose names only differ in where
  # a hyphen falls (a-b/c and a/b-c).
  pod_hash = substr(sha1(local.pod), 0, 8)
  pod_key  = "${trimsuffix(substr("${var.customer}-${var.environment}", 0, 40), "-")}-${local.pod_hash}"
  # S3 bucket names: at most 63 characters, unique worldwide (the account id).
  log_bucket = "${trimsuffix(substr("${var.customer}-${var.environment}", 0, 20), "-")}-${local.pod_hash}-alb-logs-${data.aws_caller_identity.current.account_id}"

  vpc_id     = data.aws_vpc.this.id
  subnet_ids = length(var.subnet_ids) > 0 ? var.subnet_ids : sort(data.aws_subnets.selected[0].ids)
  ami_id     = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.ami[0].insecure_value
}

# --- networking: from variables, or the region's default VPC ---------------------------------

data "aws_vpc" "this" {
  id      = var.vpc_id
  default = var.vpc_id == null ? true : null
}

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

data "aws_subnets" "selected" {
  count = length(var.subnet_ids) == 0 ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [local.vpc_id]
  }
}

data "aws_ssm_parameter" "ami" {
  count = var.ami_id == null ? 1 : 0
  name  = var.ami_ssm_parameter
}

resource "aws_security_group" "alb" {
  name        = "${var.instance_name}-alb"
  description = "Load balancer of pod ${local.pod}"
  vpc_id      = local.vpc_id

  #checkov:skip=CKV_AWS_260:Port 80 only answers a redirect to HTTPS (aws_lb_listener.http), so that a browser given the plain name still reaches the pod; nothing is served over HTTP. allowed_ingress_cidrs narrows both ports.
  ingress {
    description = "HTTPS from allowed networks"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.allowed_ingress_cidrs
  }

  ingress {
    description = "HTTP from allowed networks, redirected to HTTPS"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = var.allowed_ingress_cidrs
  }

  # To the targets and their health checks only: the application port, inside the VPC.
  egress {
    description = "Application port of the pod targets in the VPC"
    from_port   = var.app_port
    to_port     = var.app_port
    protocol    = "tcp"
    cidr_blocks = [data.aws_vpc.this.cidr_block]
  }

  tags = merge(local.tags, { Name = "${var.instance_name}-alb" })

  lifecycle {
    # Renaming the pod (instance_name) replaces its security groups. AWS refuses to delete a
    # group still attached to the load balancer or the instance (DependencyViolation), so the
    # new group is created and attached first, and the old one deleted once it is free. (A
    # replacement that kept the name would be refused at once as a duplicate, not hang.)
    create_before_destroy = true
  }
}

resource "aws_security_group" "instance" {
  name        = "${var.instance_name}-instance"
  description = "Instance of pod ${local.pod}: traffic only from its load balancer"
  vpc_id      = local.vpc_id

  ingress {
    description     = "Application port from the load balancer"
    from_port       = var.app_port
    to_port         = var.app_port
    protocol        = "tcp"
    security_groups = [aws_security_group.alb.id]
  }

  # HTTPS only: the SSM agent (ssm, ssmmessages, ec2messages endpoints) and the Amazon Linux
  # package repositories. DNS (the VPC resolver) and NTP (169.254.169.123) are not filtered by
  # security groups.
  egress {
    description = "HTTPS: SSM endpoints and package repositories"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(local.tags, { Name = "${var.instance_name}-instance" })

  lifecycle {
    create_before_destroy = true # see aws_security_group.alb
  }
}

# --- instance role: AWS Systems Manager (Session Manager, patching), no SSH --------------------

resource "aws_iam_role" "instance" {
  name        = "${local.pod_key}-instance"
  description = "EC2 instance of pod ${local.pod}: managed through AWS Systems Manager"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "instance" {
  name = "${local.pod_key}-instance"
  role = aws_iam_role.instance.name

  tags = local.tags
}

# --- compute -----------------------------------------------------------------------------------

resource "aws_instance" "this" {
  ami                    = local.ami_id
  instance_type          = var.instance_type
  subnet_id              = local.subnet_ids[0]
  vpc_security_group_ids = [aws_security_group.instance.id]
  # Shell access through SSM Session Manager only: no key pair, no SSH port.
  iam_instance_profile = aws_iam_instance_profile.instance.name
  # Every allowed type (deployments/podspec.py) is a Nitro type, EBS-optimised anyway.
  ebs_optimized = true
  monitoring    = var.detailed_monitoring

  metadata_options {
    http_tokens                 = "required"
    http_endpoint               = "enabled"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    encrypted   = true
    volume_type = "gp3"
    volume_size = var.root_volume_size
  }

  tags        = merge(local.tags, { Name = var.instance_name })
  volume_tags = merge(local.tags, { Name = var.instance_name })

  lifecycle {
    # A newer AMI in SSM must not replace a running pod; changing instance_type is an in-place
    # stop/modify/start.
    ignore_changes = [ami]
  }
}

# --- load balancer -----------------------------------------------------------------------------

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_76:The web ACL's rules come from var.waf_managed_rule_groups through a dynamic block, which checkov does not expand; that list must hold AWSManagedRulesKnownBadInputsRuleSet (its Log4JRCE rules; variables.tf refuses a list without it, tests/infra reads it back from the applied ACL). The check also demands AWSManagedRulesAnonymousIpList, which blocks VPN and cloud-hosted clients, not Log4j exploits.
  name                       = local.short_name
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = local.subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  access_logs {
    bucket  = aws_s3_bucket.alb_logs.id
    prefix  = "alb"
    enabled = true
  }

  tags = merge(local.tags, { Name = "${var.instance_name}-alb" })

  # Enabling access logs checks the load balancer can write to the bucket.
  depends_on = [aws_s3_bucket_policy.alb_logs]
}

resource "aws_lb_target_group" "this" {
  name        = local.short_name
  port        = var.app_port
  protocol    = "HTTP"
  target_type = "instance"
  vpc_id      = local.vpc_id

  health_check {
    path    = "/"
    matcher = "200-399"
  }

  tags = merge(local.tags, { Name = "${var.instance_name}-tg" })
}

resource "aws_lb_target_group_attachment" "this" {
  target_group_arn = aws_lb_target_group.this.arn
  target_id        = aws_instance.this.id
  port             = var.app_port
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }

  tags = local.tags
}

# Plain HTTP is only ever redirected to the pod's HTTPS address.
resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      host        = var.domain_name
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }

  tags = local.tags
}

# --- access logs of the load balancer ----------------------------------------------------------
# ALB access logs support SSE-S3 only ("The only server-side encryption option that's supported
# is Amazon S3-managed keys (SSE-S3)", https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html),
# and the bucket needs a policy letting Elastic Load Balancing write to it (same page: the
# region's ELB account, or the log delivery service principal in regions opened since
# August 2022).

resource "aws_s3_bucket" "alb_logs" {
  #checkov:skip=CKV_AWS_145:ALB access logs can only be written to a bucket encrypted with SSE-S3 (AES256), not SSE-KMS: see the AWS page cited above.
  #checkov:skip=CKV_AWS_144:A log bucket per pod; cross-region replication would double the storage of logs that expire after access_log_retention_days. The bucket is versioned.
  #checkov:skip=CKV_AWS_18:This bucket only receives the load balancer's access logs; S3 server access logs of it would need yet another bucket, whose own logs would need another.
  #checkov:skip=CKV2_AWS_62:Nothing consumes new-object events of the access logs; they are read on demand (e.g. Athena).
  bucket = local.log_bucket

  tags = merge(local.tags, { Name = local.log_bucket })
}

resource "aws_s3_bucket_public_access_block" "alb_logs" {
  bucket                  = aws_s3_bucket.alb_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    # The whole bucket: it only holds the access logs.
    filter {}

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.alb_logs]
}

data "aws_elb_service_account" "current" {}

resource "aws_s3_bucket_policy" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "ElbLogDelivery"
        Effect    = "Allow"
        Principal = { AWS = data.aws_elb_service_account.current.arn }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.alb_logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"
      },
      {
        Sid       = "ElbLogDeliveryServicePrincipal"
        Effect    = "Allow"
        Principal = { Service = "logdelivery.elasticloadbalancing.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.alb_logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.alb_logs.arn, "${aws_s3_bucket.alb_logs.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.alb_logs]
}

# --- WAF ---------------------------------------------------------------------------------------

resource "aws_wafv2_web_acl" "this" {
  count = var.waf_enabled ? 1 : 0

  name        = "${var.instance_name}-waf"
  description = "Web ACL of pod ${local.pod}"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  dynamic "rule" {
    for_each = var.waf_managed_rule_groups
    content {
      name     = rule.value
      priority = rule.key + 1

      override_action {
        none {}
      }

      statement {
        managed_rule_group_statement {
          name        = rule.value
          vendor_name = "AWS"
        }
      }

      visibility_config {
        cloudwatch_metrics_enabled = true
        metric_name                = "${var.instance_name}-${rule.value}"
        sampled_requests_enabled   = true
      }
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.instance_name}-waf"
    sampled_requests_enabled   = true
  }

  tags = merge(local.tags, { Name = "${var.instance_name}-waf" })
}

resource "aws_wafv2_web_acl_association" "this" {
  count = var.waf_enabled ? 1 : 0

  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this[0].arn
}

# --- WAF logging: CloudWatch Logs, encrypted with the pod's key --------------------------------

resource "aws_kms_key" "waf_logs" {
  count = var.waf_enabled ? 1 : 0

  description         = "WAF logs of pod ${local.pod}"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        # https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${data.aws_region.current.name}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:aws-waf-logs-${local.pod_key}"
          }
        }
      },
    ]
  })

  tags = local.tags
}

# WAF only logs to a log group whose name starts with aws-waf-logs-
# (https://docs.aws.amazon.com/waf/latest/developerguide/logging-cw-logs.html).
resource "aws_cloudwatch_log_group" "waf" {
  count = var.waf_enabled ? 1 : 0

  name              = "aws-waf-logs-${local.pod_key}"
  retention_in_days = var.waf_log_retention_days
  kms_key_id        = aws_kms_key.waf_logs[0].arn

  tags = local.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  count = var.waf_enabled ? 1 : 0

  resource_arn            = aws_wafv2_web_acl.this[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]
}

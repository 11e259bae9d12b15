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

  vpc_id     = var.vpc_id != null ? var.vpc_id : data.aws_vpc.default[0].id
  subnet_ids = length(var.subnet_ids) > 0 ? var.subnet_ids : sort(data.aws_subnets.selected[0].ids)
  ami_id     = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.ami[0].insecure_value
}

# --- networking: from variables, or the region's default VPC ---------------------------------

data "aws_vpc" "default" {
  count   = var.vpc_id == null ? 1 : 0
  default = true
}

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

  ingress {
    description = "HTTP from allowed networks"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = var.allowed_ingress_cidrs
  }

  egress {
    description = "To the pod targets"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
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

  egress {
    description = "Outbound (package updates)"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(local.tags, { Name = "${var.instance_name}-instance" })

  lifecycle {
    create_before_destroy = true # see aws_security_group.alb
  }
}

# --- compute -----------------------------------------------------------------------------------

resource "aws_instance" "this" {
  ami                    = local.ami_id
  instance_type          = var.instance_type
  subnet_id              = local.subnet_ids[0]
  vpc_security_group_ids = [aws_security_group.instance.id]

  metadata_options {
    http_tokens   = "required"
    http_endpoint = "enabled"
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
  name                       = local.short_name
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = local.subnet_ids
  drop_invalid_header_fields = true

  tags = merge(local.tags, { Name = "${var.instance_name}-alb" })
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

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }

  tags = local.tags
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

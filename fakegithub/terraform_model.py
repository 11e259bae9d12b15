"""What ``terraform plan`` shows for one pod: a model of terraform/modules/pod for the emulator.

The emulated deploy workflow (``fakegithub.pytest_plugin.deploy_pod``) has no AWS and no
Terraform state: the spec.yml committed on the branch stands for what was last applied, and
``plan_summary(before, after)`` tells what Terraform would do to get from one to the other, in
the plan summary format the real workflow publishes (``plan-summary.json``, format 1).

What it represents, as the AWS provider (~> 5.100) plans the module's resources:

- every resource of the module, under ``module.pod.`` (the root calls it ``module "pod"``), with
  the WAF resources at index ``[0]`` (``count = var.waf_enabled ? 1 : 0``); sorted by address,
  each with its action: create, update, replace, delete or no-op (unchanged resources are listed,
  as ``terraform show -json`` lists them);
- a new pod: everything created (the WAF resources, its logging included, only with WAF on);
- ``instance_type``: the instance updated in place (AWS stops, resizes and starts it);
- ``waf_enabled``: the web ACL, its association with the load balancer, and its logging (log
  group, KMS key, logging configuration) created, or deleted;
- ``instance_name``, from which most resource names derive: names AWS cannot change
  (security groups, load balancer, target group, web ACL) force replacement
  (``forces_replacement`` on the ``name`` change). The load balancer and target group share
  ``short_name`` (the first 23 characters of the instance name and a hash of the pod), so a
  rename past those 23 characters replaces neither. Replacements cascade through arguments that
  force replacement too (the listeners' ``load_balancer_arn``, the target group attachment's
  ``target_group_arn``, the WAF association's and logging configuration's ARNs); arguments that
  merely refer to a replaced resource (the instance's security groups, the listener's target
  group) change in place to ``(known after apply)`` (of a replaced resource only the arguments it
  sets are listed, as deployments.plan.summarize lists them); ``Name`` tags change in place
  (``tags`` and the provider's ``tags_all``), and so does the HTTP listener's redirect to the
  pod's address (``<instance_name>.POD_DOMAIN``). What is named after the pod itself
  (customer/environment: the instance role and profile, the access-log bucket and its settings,
  the WAF log group and key) is never renamed.

What it does not represent:

- drift, or anything outside the spec: AMI updates (``ignore_changes = [ami]`` anyway), VPC and
  subnet changes, module variables other than the spec's five fields (the domain, certificate,
  deletion protection: repository variables), provider upgrades;
- data sources (``read``; they are read during plan and not listed) and output changes;
- computed attributes of created or replaced resources (ids, ARNs, DNS names): a created or
  deleted resource lists no attribute changes, a replaced one only the arguments that changed;
- sensitive values: the module has none, so ``(sensitive)`` never appears;
- failures: AWS refusing an apply (e.g. deleting a security group still in use during a rename).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

FORMAT = 1
TERRAFORM_VERSION = "1.11.4"
MODULE = "module.pod"
KNOWN_AFTER_APPLY = "(known after apply)"
# variables.tf: waf_managed_rule_groups' default, in priority order.
WAF_RULE_GROUPS = (
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
)
# The pods' DNS domain (the workflow's POD_DOMAIN, terraform/variables.tf's domain_name): a pod
# answers at https://<instance_name>.<POD_DOMAIN>, where plain HTTP redirects.
POD_DOMAIN = "pods.example.com"
# Stand-ins for ids and ARNs of what exists already (the "before" of a reference that changes).
_REGION, _ACCOUNT = "eu-west-1", "123456789012"
_ELB = f"arn:aws:elasticloadbalancing:{_REGION}:{_ACCOUNT}"


@dataclass(frozen=True)
class PodValues:
    """The spec's five fields, as Terraform's root module passes them to the pod module."""

    customer: str
    environment: str
    instance_name: str
    instance_type: str
    waf_enabled: bool

    @property
    def pod(self) -> str:
        return f"{self.customer}/{self.environment}"


@dataclass(frozen=True)
class Resource:
    type: str
    # Arguments that follow from the spec, as displayed strings.
    values: dict[str, str]
    # Arguments holding another resource's id or ARN: {argument: that resource's address}.
    refs: dict[str, str] = field(default_factory=dict)
    # Arguments AWS cannot change in place: a change plans a replacement.
    force_new: frozenset[str] = frozenset()
    # What the resource is called in AWS (its id or ARN derives from it).
    identity: str = ""


def short_name(values: PodValues) -> str:
    """main.tf's ``local.short_name``: ALB and target group names, at most 32 characters."""
    head = values.instance_name[:23].removesuffix("-")
    return f"{head}-{hashlib.sha1(values.pod.encode(), usedforsecurity=False).hexdigest()[:8]}"


def _pod_hash(values: PodValues) -> str:
    return hashlib.sha1(values.pod.encode(), usedforsecurity=False).hexdigest()[:8]


def pod_key(values: PodValues) -> str:
    """main.tf's ``local.pod_key``: IAM and WAF log group names, from the pod (never renamed)."""
    head = f"{values.customer}-{values.environment}"[:40].removesuffix("-")
    return f"{head}-{_pod_hash(values)}"


def log_bucket(values: PodValues) -> str:
    """main.tf's ``local.log_bucket``: the access-log bucket, unique worldwide (the account id)."""
    head = f"{values.customer}-{values.environment}"[:20].removesuffix("-")
    return f"{head}-{_pod_hash(values)}-alb-logs-{_ACCOUNT}"


def _named(name: str) -> dict[str, str]:
    return {"tags.Name": name, "tags_all.Name": name}


def resources(values: PodValues) -> dict[str, Resource]:
    """The module's resources for these values, by address (terraform/modules/pod/main.tf)."""
    n = values.instance_name
    sn = short_name(values)
    sg_alb = f"{MODULE}.aws_security_group.alb"
    sg_instance = f"{MODULE}.aws_security_group.instance"
    instance = f"{MODULE}.aws_instance.this"
    lb = f"{MODULE}.aws_lb.this"
    tg = f"{MODULE}.aws_lb_target_group.this"
    acl = f"{MODULE}.aws_wafv2_web_acl.this[0]"
    role = f"{MODULE}.aws_iam_role.instance"
    profile = f"{MODULE}.aws_iam_instance_profile.instance"
    bucket = f"{MODULE}.aws_s3_bucket.alb_logs"
    key = pod_key(values)
    logs = log_bucket(values)
    found = {
        sg_alb: Resource(
            "aws_security_group",
            {"name": f"{n}-alb", **_named(f"{n}-alb")},
            force_new=frozenset({"name"}),
            identity=f"{n}-alb",
        ),
        sg_instance: Resource(
            "aws_security_group",
            {"name": f"{n}-instance", **_named(f"{n}-instance")},
            refs={"ingress[0].security_groups": sg_alb},
            force_new=frozenset({"name"}),
            identity=f"{n}-instance",
        ),
        role: Resource(
            "aws_iam_role",
            {"name": f"{key}-instance"},
            force_new=frozenset({"name"}),
            identity=f"{key}-instance",
        ),
        f"{MODULE}.aws_iam_role_policy_attachment.ssm": Resource(
            "aws_iam_role_policy_attachment", {}, refs={"role": role}, force_new=frozenset({"role"})
        ),
        profile: Resource(
            "aws_iam_instance_profile",
            {"name": f"{key}-instance"},
            refs={"role": role},
            force_new=frozenset({"name"}),
            identity=f"{key}-instance",
        ),
        instance: Resource(
            "aws_instance",
            {"instance_type": values.instance_type, **_named(n), "volume_tags.Name": n},
            refs={"vpc_security_group_ids": sg_instance, "iam_instance_profile": profile},
        ),
        bucket: Resource(
            "aws_s3_bucket", {"bucket": logs, **_named(logs)}, force_new=frozenset({"bucket"}), identity=logs
        ),
        **{
            f"{MODULE}.{type_}.alb_logs": Resource(
                type_, {}, refs={"bucket": bucket}, force_new=frozenset({"bucket"})
            )
            for type_ in (
                "aws_s3_bucket_public_access_block",
                "aws_s3_bucket_ownership_controls",
                "aws_s3_bucket_server_side_encryption_configuration",
                "aws_s3_bucket_versioning",
                "aws_s3_bucket_lifecycle_configuration",
                "aws_s3_bucket_policy",
            )
        },
        lb: Resource(
            "aws_lb",
            {"name": sn, **_named(f"{n}-alb")},
            refs={"security_groups": sg_alb, "access_logs[0].bucket": bucket},
            force_new=frozenset({"name"}),
            identity=sn,
        ),
        tg: Resource(
            "aws_lb_target_group",
            {"name": sn, **_named(f"{n}-tg")},
            force_new=frozenset({"name"}),
            identity=sn,
        ),
        f"{MODULE}.aws_lb_target_group_attachment.this": Resource(
            "aws_lb_target_group_attachment",
            {},
            refs={"target_group_arn": tg, "target_id": instance},
            force_new=frozenset({"target_group_arn", "target_id"}),
        ),
        f"{MODULE}.aws_lb_listener.https": Resource(
            "aws_lb_listener",
            {},
            refs={"load_balancer_arn": lb, "default_action[0].target_group_arn": tg},
            force_new=frozenset({"load_balancer_arn"}),
        ),
        f"{MODULE}.aws_lb_listener.http": Resource(
            "aws_lb_listener",
            {"default_action[0].redirect[0].host": f"{n}.{POD_DOMAIN}"},
            refs={"load_balancer_arn": lb},
            force_new=frozenset({"load_balancer_arn"}),
        ),
    }
    if values.waf_enabled:
        rules = {
            f"rule[{i}].visibility_config[0].metric_name": f"{n}-{group}"
            for i, group in enumerate(WAF_RULE_GROUPS)
        }
        log_group = f"{MODULE}.aws_cloudwatch_log_group.waf[0]"
        kms_key = f"{MODULE}.aws_kms_key.waf_logs[0]"
        found[acl] = Resource(
            "aws_wafv2_web_acl",
            {
                "name": f"{n}-waf",
                "visibility_config[0].metric_name": f"{n}-waf",
                **rules,
                **_named(f"{n}-waf"),
            },
            force_new=frozenset({"name"}),
            identity=f"{n}-waf",
        )
        found[f"{MODULE}.aws_wafv2_web_acl_association.this[0]"] = Resource(
            "aws_wafv2_web_acl_association",
            {},
            refs={"resource_arn": lb, "web_acl_arn": acl},
            force_new=frozenset({"resource_arn", "web_acl_arn"}),
        )
        found[kms_key] = Resource("aws_kms_key", {}, identity=key)
        found[log_group] = Resource(
            "aws_cloudwatch_log_group",
            {"name": f"aws-waf-logs-{key}"},
            refs={"kms_key_id": kms_key},
            force_new=frozenset({"name"}),
            identity=f"aws-waf-logs-{key}",
        )
        found[f"{MODULE}.aws_wafv2_web_acl_logging_configuration.this[0]"] = Resource(
            "aws_wafv2_web_acl_logging_configuration",
            {},
            refs={"resource_arn": acl, "log_destination_configs": log_group},
            force_new=frozenset({"resource_arn", "log_destination_configs"}),
        )
    return found


def _existing_id(address: str, resource: Resource, pod: str) -> str:
    """A stable stand-in for the id or ARN AWS gave an existing resource."""
    digest = hashlib.sha1(f"{pod}|{address}|{resource.identity}".encode(), usedforsecurity=False).hexdigest()
    if resource.type == "aws_security_group":
        return f"sg-{digest[:17]}"
    if resource.type == "aws_instance":
        return f"i-{digest[:17]}"
    if resource.type == "aws_lb":
        return f"{_ELB}:loadbalancer/app/{resource.identity}/{digest[:16]}"
    if resource.type == "aws_lb_target_group":
        return f"{_ELB}:targetgroup/{resource.identity}/{digest[:16]}"
    if resource.type == "aws_wafv2_web_acl":
        return f"arn:aws:wafv2:{_REGION}:{_ACCOUNT}:regional/webacl/{resource.identity}/{digest[:8]}"
    if resource.type in ("aws_iam_role", "aws_iam_instance_profile", "aws_s3_bucket"):
        return resource.identity
    if resource.type == "aws_cloudwatch_log_group":
        return f"arn:aws:logs:{_REGION}:{_ACCOUNT}:log-group:{resource.identity}"
    if resource.type == "aws_kms_key":
        uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        return f"arn:aws:kms:{_REGION}:{_ACCOUNT}:key/{uuid}"
    return digest[:20]


# Set arguments holding one reference: shown as a list, as the plan renders them.
_SETS = frozenset(
    {"vpc_security_group_ids", "security_groups", "ingress[0].security_groups", "log_destination_configs"}
)


def _display(argument: str, value: str) -> str:
    return f'["{value}"]' if argument in _SETS else value


def plan_summary(before: PodValues | None, after: PodValues, *, spec_blob: str | None) -> dict:
    """The plan summary (format 1) of applying ``after`` to a pod last applied as ``before``
    (None: a new pod). ``spec_blob`` is the git blob SHA of the spec.yml planned from."""
    old = resources(before) if before is not None else {}
    new = resources(after)
    actions: dict[str, str] = {}
    rows = []
    # Dict order is dependency order: a reference is always decided before what refers to it.
    for address in [*new, *(a for a in old if a not in new)]:
        if address not in new:
            actions[address] = "delete"
            rows.append(_row(address, old[address].type, "delete", []))
            continue
        resource = new[address]
        if address not in old:
            actions[address] = "create"
            rows.append(_row(address, resource.type, "create", []))
            continue
        previous = old[address]
        changes = []
        for argument, value in resource.values.items():
            was = previous.values.get(argument)
            if was != value:
                changes.append(_change(argument, was or "", value, argument in resource.force_new))
        for argument, target in resource.refs.items():
            if actions[target] in ("create", "replace"):
                was = (
                    _display(argument, _existing_id(target, old[target], after.pod)) if target in old else ""
                )
                changes.append(_change(argument, was, KNOWN_AFTER_APPLY, argument in resource.force_new))
        replaced = any(change.get("forces_replacement") for change in changes)
        if replaced:
            # A replacement gets new ids anyway: its references becoming unknown are no news.
            changes = [c for c in changes if c.get("forces_replacement") or c["after"] != KNOWN_AFTER_APPLY]
        action = "replace" if replaced else "update" if changes else "no-op"
        actions[address] = action
        # terraform show -json lists attributes in key order.
        rows.append(_row(address, resource.type, action, sorted(changes, key=lambda c: c["attribute"])))
    return {
        "format": FORMAT,
        "pod": after.pod,
        "terraform_version": TERRAFORM_VERSION,
        "spec_blob": spec_blob,
        "resources": sorted(rows, key=lambda row: row["address"]),
    }


def _row(address: str, type_: str, action: str, changes: list[dict]) -> dict:
    return {"address": address, "type": type_, "action": action, "changes": changes}


def _change(argument: str, before: str, after: str, forces: bool) -> dict:
    change: dict = {"attribute": argument, "before": before, "after": after}
    if forces:
        change["forces_replacement"] = True
    return change

"""Apply the real Terraform (terraform/) against moto, the way the deploy workflow does.

Each pod goes through ``scripts/deploy/terraform.sh init|plan|summarize|apply`` (the workflow's
deploy mode: plan -out, the plan summary, apply of that plan file) with a spec rendered by
``python -m deployments.podspec render``; then AWS is read back through boto3, and each plan's
summary through the portal's ``deployments.plan.parse``. Two pods are created concurrently (one
with WAF, one without) so the provider's fixed ALB wait is paid once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deployments import plan, podspec

from .conftest import (
    POD_DOMAIN,
    REPO_ROOT,
    SCRIPTS_DIR,
    STATE_BUCKET,
    TERRAFORM_DIR,
    TIMINGS,
    backend_args,
    moto_override,
    plugin_dir_args,
)

pytestmark = pytest.mark.infra

RUNNING = ["pending", "running"]


@dataclass
class Pod:
    """One pod's Terraform working copy, driven through the workflow's own scripts."""

    customer: str
    environment: str
    instance_name: str
    instance_type: str
    waf_enabled: bool
    root: Path
    env: dict[str, str]
    moto_url: str
    outputs: dict = field(default_factory=dict)
    # The plan summary of the last deploy: what it applied.
    summary: plan.PlanSummary | None = None

    @property
    def tf_dir(self) -> Path:
        return self.root / "terraform"

    @property
    def spec_file(self) -> Path:
        return self.root / "pods" / self.customer / self.environment / "spec.yml"

    @property
    def summary_file(self) -> Path:
        return self.root / "step-summary.md"

    @property
    def plan_summary_file(self) -> Path:
        return self.root / "runner-temp" / "plan-summary.json"

    @property
    def state_key(self) -> str:
        return f"pods/{self.customer}/{self.environment}/terraform.tfstate"

    def _script_env(self) -> dict[str, str]:
        return {
            **self.env,
            "CUSTOMER": self.customer,
            "ENVIRONMENT": self.environment,
            "TF_DIR": str(self.tf_dir),
            "TF_STATE_BUCKET": STATE_BUCKET,
            "SPEC_FILE": str(self.spec_file),
            "GITHUB_STEP_SUMMARY": str(self.summary_file),
            "PLAN_SUMMARY": str(self.plan_summary_file),
            "PYTHON": sys.executable,
        }

    def terraform_sh(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(SCRIPTS_DIR / "terraform.sh"), *args],
            env=self._script_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"terraform.sh {args[0]} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def setup(self) -> None:
        shutil.copytree(
            TERRAFORM_DIR, self.tf_dir, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
        )
        (self.tf_dir / "moto_override.tf").write_text(moto_override(self.moto_url))
        self.terraform_sh("init", *plugin_dir_args(), *backend_args(self.moto_url))

    def render_spec(self) -> None:
        """Render spec.yml with the podspec CLI, exactly as the workflow does."""
        inputs = {
            "CUSTOMER": self.customer,
            "ENVIRONMENT": self.environment,
            "INSTANCE_NAME": self.instance_name,
            "INSTANCE_TYPE": self.instance_type,
            "WAF_ENABLED": "true" if self.waf_enabled else "false",
        }
        result = subprocess.run(
            [sys.executable, "-m", "deployments.podspec", "render", "--out", str(self.spec_file)],
            cwd=REPO_ROOT,
            env={"PATH": os.environ.get("PATH", ""), **inputs},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr

    def deploy(self, label: str) -> float:
        """Render, plan (-out), summarize and apply the saved plan; return and record the elapsed
        seconds."""
        self.render_spec()
        start = time.monotonic()
        self.terraform_sh("plan")
        self.terraform_sh("summarize")
        self.summary = plan.parse(self.plan_summary_file.read_bytes())
        self.terraform_sh("apply")
        elapsed = time.monotonic() - start
        TIMINGS.append((f"{self.customer}/{self.environment}: {label}", elapsed))
        result = subprocess.run(
            ["terraform", f"-chdir={self.tf_dir}", "output", "-json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        self.outputs = {name: value["value"] for name, value in json.loads(result.stdout).items()}
        return elapsed

    def plan_exit_code(self) -> int:
        result = subprocess.run(
            [
                "terraform",
                f"-chdir={self.tf_dir}",
                "plan",
                "-input=false",
                "-no-color",
                "-detailed-exitcode",
                f"-var=spec_file={self.spec_file}",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode in (0, 2), result.stderr
        return result.returncode


def pod_instances(ec2, pod: Pod, states=RUNNING) -> list[dict]:
    reservations = ec2.describe_instances(
        Filters=[
            {"Name": "tag:Customer", "Values": [pod.customer]},
            {"Name": "tag:Environment", "Values": [pod.environment]},
            {"Name": "tag:ManagedBy", "Values": ["pod-portal"]},
            {"Name": "instance-state-name", "Values": states},
        ]
    )["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def web_acl_for(wafv2, pod: Pod) -> dict | None:
    return wafv2.get_web_acl_for_resource(ResourceArn=pod.outputs["load_balancer_arn"]).get("WebACL")


@pytest.fixture(scope="module")
def pods(terraform_env, moto_server, tmp_path_factory) -> dict[str, Pod]:
    """Two new pods, initialised and applied concurrently: one with WAF, one without."""
    specs = {
        "waf": dict(
            customer="acme", environment="prod", instance_name="acme-prod-web", instance_type="t3.small"
        ),
        "plain": dict(
            customer="globex",
            environment="staging",
            instance_name="globex-staging-api",
            instance_type="m5.large",
        ),
    }
    created = {}
    for key, spec in specs.items():
        created[key] = Pod(
            **spec,
            waf_enabled=(key == "waf"),
            root=tmp_path_factory.mktemp(f"pod-{key}"),
            env=terraform_env,
            moto_url=moto_server.url,
        )

    # terraform init one at a time: the shared plugin cache is not safe for concurrent installs.
    for pod in created.values():
        pod.setup()
    with ThreadPoolExecutor(max_workers=len(created)) as pool:
        futures = [pool.submit(pod.deploy, "create (new pod)") for pod in created.values()]
        for future in futures:
            future.result()
    return created


class TestPodLifecycle:
    """Ordered: create, then change the instance type, then toggle WAF both ways."""

    def test_new_pods_plans_were_all_creates(self, pods):
        # The WAF resources (web ACL, its association, its logging: log group, key, configuration)
        # only with WAF on.
        assert pods["waf"].summary.counts == {"create": 23, "update": 0, "replace": 0, "delete": 0}
        assert pods["plain"].summary.counts == {"create": 18, "update": 0, "replace": 0, "delete": 0}
        assert pods["waf"].summary.pod == "acme/prod"
        assert pods["waf"].summary.spec_blob is None, "no spec.yml committed: a new pod"

    def test_new_pod_instance_has_spec_type_and_tags(self, pods, moto_server):
        ec2 = moto_server.client("ec2")
        for pod in pods.values():
            instances = pod_instances(ec2, pod)
            assert len(instances) == 1, f"{pod.customer}/{pod.environment}: {instances}"
            instance = instances[0]
            assert instance["InstanceType"] == pod.instance_type
            assert instance["InstanceId"] == pod.outputs["instance_id"]
            tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
            assert tags["Name"] == pod.instance_name
            assert tags["Customer"] == pod.customer
            assert tags["Environment"] == pod.environment
            assert tags["ManagedBy"] == "pod-portal"
            assert instance["MetadataOptions"]["HttpTokens"] == "required"

    def test_alb_serves_https_and_forwards_to_the_instance(self, pods, moto_server, terraform_env):
        elbv2 = moto_server.client("elbv2")
        ec2 = moto_server.client("ec2")
        for pod in pods.values():
            (lb,) = elbv2.describe_load_balancers(LoadBalancerArns=[pod.outputs["load_balancer_arn"]])[
                "LoadBalancers"
            ]
            assert lb["Type"] == "application"
            # moto omits Scheme for the default (internet-facing) scheme.
            assert lb.get("Scheme", "internet-facing") == "internet-facing"
            assert len(lb["AvailabilityZones"]) >= 2
            listeners = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
            by_port = {listener["Port"]: listener for listener in listeners}
            assert sorted(by_port) == [80, 443]
            https = by_port[443]
            assert https["Protocol"] == "HTTPS"
            assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
            assert [c["CertificateArn"] for c in https["Certificates"]] == [
                terraform_env["TF_VAR_certificate_arn"]
            ]
            (action,) = https["DefaultActions"]
            assert action["Type"] == "forward"
            # Plain HTTP only redirects, to the pod's own name.
            (redirect,) = by_port[80]["DefaultActions"]
            assert redirect["Type"] == "redirect"
            assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
            assert redirect["RedirectConfig"]["Host"] == f"{pod.instance_name}.{POD_DOMAIN}"
            assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
            assert pod.outputs["url"] == f"https://{pod.instance_name}.{POD_DOMAIN}/"
            attributes = {
                a["Key"]: a["Value"]
                for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])[
                    "Attributes"
                ]
            }
            assert attributes["deletion_protection.enabled"] == "true"
            assert attributes["access_logs.s3.enabled"] == "true"
            assert attributes["access_logs.s3.bucket"] == pod.outputs["access_log_bucket"]
            health = elbv2.describe_target_health(TargetGroupArn=action["TargetGroupArn"])
            targets = [d["Target"]["Id"] for d in health["TargetHealthDescriptions"]]
            assert targets == [pod.outputs["instance_id"]]
            # The instance only accepts traffic from the ALB's security group.
            instance = pod_instances(ec2, pod)[0]
            (instance_sg,) = ec2.describe_security_groups(
                GroupIds=[g["GroupId"] for g in instance["SecurityGroups"]]
            )["SecurityGroups"]
            sources = [
                (rule["FromPort"], pair["GroupId"])
                for rule in instance_sg["IpPermissions"]
                for pair in rule["UserIdGroupPairs"]
            ]
            assert sources == [(80, lb["SecurityGroups"][0])]
            assert all(not rule["IpRanges"] for rule in instance_sg["IpPermissions"])
            # No open egress: the instance reaches out on HTTPS only (SSM, packages), the load
            # balancer only reaches the application port inside the VPC.
            assert [(r["IpProtocol"], r["FromPort"]) for r in instance_sg["IpPermissionsEgress"]] == [
                ("tcp", 443)
            ]
            (alb_sg,) = ec2.describe_security_groups(GroupIds=lb["SecurityGroups"])["SecurityGroups"]
            (vpc,) = ec2.describe_vpcs(VpcIds=[alb_sg["VpcId"]])["Vpcs"]
            assert [
                (r["IpProtocol"], r["FromPort"], [i["CidrIp"] for i in r["IpRanges"]])
                for r in alb_sg["IpPermissionsEgress"]
            ] == [("tcp", 80, [vpc["CidrBlock"]])]
            assert sorted(r["FromPort"] for r in alb_sg["IpPermissions"]) == [80, 443]

    def test_instance_is_managed_through_ssm_with_an_encrypted_root_volume(self, pods, moto_server):
        ec2, iam = moto_server.client("ec2"), moto_server.client("iam")
        for pod in pods.values():
            (instance,) = pod_instances(ec2, pod)
            assert "KeyName" not in instance, "no SSH key pair"
            assert instance["EbsOptimized"] is True
            profile_name = instance["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
            (role,) = iam.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]["Roles"]
            attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
            assert [p["PolicyName"] for p in attached] == ["AmazonSSMManagedInstanceCore"]
            (volume,) = ec2.describe_volumes(
                Filters=[{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}]
            )["Volumes"]
            assert volume["Encrypted"] is True

    def test_access_log_bucket_is_private_encrypted_versioned_and_expires_logs(self, pods, moto_server):
        s3 = moto_server.client("s3")
        for pod in pods.values():
            bucket = pod.outputs["access_log_bucket"]
            block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            assert all(block.values()) and len(block) == 4
            (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
            (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
            assert lifecycle["Expiration"]["Days"] == 365
            policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
            writers = [st["Principal"] for st in policy["Statement"] if st["Action"] == "s3:PutObject"]
            assert {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"} in writers
            denied = [st for st in policy["Statement"] if st["Effect"] == "Deny"]
            assert denied[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    def test_web_acl_associated_iff_waf_enabled(self, pods, moto_server):
        wafv2 = moto_server.client("wafv2")
        acl = web_acl_for(wafv2, pods["waf"])
        assert acl is not None, "WAF enabled but no web ACL associated with the ALB"
        assert acl["ARN"] == pods["waf"].outputs.get("web_acl_arn")
        groups = {rule["Statement"]["ManagedRuleGroupStatement"]["Name"] for rule in acl["Rules"]}
        assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= groups
        assert web_acl_for(wafv2, pods["plain"]) is None
        assert pods["plain"].outputs.get("web_acl_arn") is None  # null outputs are omitted

    def test_waf_logs_to_an_encrypted_log_group_kept_a_year(self, pods, moto_server):
        pod = pods["waf"]
        config = moto_server.client("wafv2").get_logging_configuration(ResourceArn=pod.outputs["web_acl_arn"])
        (destination,) = config["LoggingConfiguration"]["LogDestinationConfigs"]
        logs = moto_server.client("logs")
        (group,) = logs.describe_log_groups(logGroupNamePrefix=pod.outputs["waf_log_group"])["logGroups"]
        assert group["logGroupName"].startswith("aws-waf-logs-")
        assert destination.removesuffix(":*") == group["arn"].removesuffix(":*")
        assert group["retentionInDays"] == 365
        key = moto_server.client("kms").describe_key(KeyId=group["kmsKeyId"])["KeyMetadata"]
        assert key["KeyState"] == "Enabled"
        assert moto_server.client("kms").get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]
        assert pods["plain"].outputs.get("waf_log_group") is None

    def test_state_is_in_s3_per_pod_and_unlocked(self, pods, moto_server):
        s3 = moto_server.client("s3")
        keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket=STATE_BUCKET).get("Contents", [])}
        for pod in pods.values():
            assert pod.state_key in keys
            assert f"{pod.state_key}.tflock" not in keys, "S3 lock file left behind after apply"

    def test_plan_is_in_step_summary(self, pods):
        summary = pods["waf"].summary_file.read_text()
        assert "### Terraform plan for `acme/prod`" in summary
        assert "**23 to add, 0 to change, 0 to replace, 0 to destroy**" in summary
        assert "| `module.pod.aws_wafv2_web_acl_association.this[0]` | create |" in summary
        assert "| `module.pod.aws_instance.this` | create |" in summary

    def test_reapplying_unchanged_spec_is_a_noop(self, pods):
        assert pods["plain"].plan_exit_code() == 0, "an unchanged spec must plan no changes"

    def test_changing_instance_type_keeps_exactly_one_instance(self, pods, moto_server):
        pod = pods["waf"]
        before = pod.outputs["instance_id"]
        pod.instance_type = "t3.large"
        elapsed = pod.deploy("reapply (instance_type t3.small -> t3.large)")
        assert pod.summary.counts == {"create": 0, "update": 1, "replace": 0, "delete": 0}
        (resized,) = pod.summary.changed
        assert (resized.address, resized.action) == ("module.pod.aws_instance.this", "update")
        changes = {change.attribute: (change.before, change.after) for change in resized.changes}
        assert changes["instance_type"] == ("t3.small", "t3.large")
        instances = pod_instances(moto_server.client("ec2"), pod)
        assert [i["InstanceType"] for i in instances] == ["t3.large"]
        # Resized in place (stop/modify/start): same instance, still behind the ALB.
        assert instances[0]["InstanceId"] == before
        print(f"reapply with new instance type took {elapsed:.1f}s")

    def test_disabling_waf_removes_the_association(self, pods, moto_server):
        pod = pods["waf"]
        pod.waf_enabled = False
        pod.deploy("reapply (waf_enabled true -> false)")
        assert pod.summary.counts == {"create": 0, "update": 0, "replace": 0, "delete": 5}
        assert pod.summary.destructive
        wafv2 = moto_server.client("wafv2")
        assert web_acl_for(wafv2, pod) is None
        names = {acl["Name"] for acl in wafv2.list_web_acls(Scope="REGIONAL")["WebACLs"]}
        assert "acme-prod-web-waf" not in names
        # The rest of the pod is untouched.
        assert [i["InstanceType"] for i in pod_instances(moto_server.client("ec2"), pod)] == [
            pod.instance_type
        ]

    def test_enabling_waf_on_existing_pod_associates_it(self, pods, moto_server):
        pod = pods["plain"]
        pod.waf_enabled = True
        pod.deploy("reapply (waf_enabled false -> true)")
        assert pod.summary.counts == {"create": 5, "update": 0, "replace": 0, "delete": 0}
        assert [r.address for r in pod.summary.changed] == [
            "module.pod.aws_cloudwatch_log_group.waf[0]",
            "module.pod.aws_kms_key.waf_logs[0]",
            "module.pod.aws_wafv2_web_acl.this[0]",
            "module.pod.aws_wafv2_web_acl_association.this[0]",
            "module.pod.aws_wafv2_web_acl_logging_configuration.this[0]",
        ]
        acl = web_acl_for(moto_server.client("wafv2"), pod)
        assert acl is not None
        assert acl["Name"] == "globex-staging-api-waf"


def test_module_rejects_a_hostile_spec(tmp_path, terraform_env, moto_server):
    """A spec podspec rejects is also rejected by the module's own checks (defence in depth)."""
    spec = podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.micro", True).as_dict()
    spec["customer"] = "../etc"
    spec_file = tmp_path / "spec.yml"
    spec_file.write_text(json.dumps(spec))  # JSON is YAML
    tf_dir = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, tf_dir, ignore=shutil.ignore_patterns(".terraform*"))
    (tf_dir / "moto_override.tf").write_text(moto_override(moto_server.url))
    (tf_dir / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
    env = terraform_env
    subprocess.run(
        ["terraform", f"-chdir={tf_dir}", "init", "-input=false", *plugin_dir_args()],
        env=env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    result = subprocess.run(
        ["terraform", f"-chdir={tf_dir}", "plan", "-input=false", "-no-color", f"-var=spec_file={spec_file}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "customer must be 1-32 lowercase letters" in result.stderr


def test_terraform_is_formatted_and_valid(terraform_bin, terraform_env, tmp_path):
    fmt = subprocess.run(
        [terraform_bin, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)],
        env=terraform_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fmt.returncode == 0, f"terraform fmt would change:\n{fmt.stdout}"
    tf_dir = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, tf_dir, ignore=shutil.ignore_patterns(".terraform*"))
    init = subprocess.run(
        [terraform_bin, f"-chdir={tf_dir}", "init", "-backend=false", "-input=false", *plugin_dir_args()],
        env=terraform_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stderr
    validate = subprocess.run(
        [terraform_bin, f"-chdir={tf_dir}", "validate", "-no-color"],
        env=terraform_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validate.returncode == 0, validate.stderr

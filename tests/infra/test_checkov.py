"""checkov (scripts/ensure_checkov.sh, pinned in requirements-checkov.txt) over terraform/: no
failed check, and every skip is one of those reviewed, written next to its resource with a reason."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.checkov import checkov

from .conftest import REPO_ROOT, TERRAFORM_DIR

pytestmark = pytest.mark.infra

# The reviewed skips (terraform/modules/pod/main.tf gives each one's reason next to the resource).
REVIEWED_SKIPS = {
    ("CKV_AWS_260", "module.pod.aws_security_group.alb"),  # port 80: only the redirect to HTTPS
    ("CKV2_AWS_76", "module.pod.aws_lb.this"),  # Log4j rules: a dynamic block checkov cannot read
    ("CKV_AWS_145", "module.pod.aws_s3_bucket.alb_logs"),  # ALB access logs: SSE-S3 only
    ("CKV_AWS_144", "module.pod.aws_s3_bucket.alb_logs"),  # no cross-region copy of expiring logs
    ("CKV_AWS_18", "module.pod.aws_s3_bucket.alb_logs"),  # the log bucket's own access logs
    ("CKV2_AWS_62", "module.pod.aws_s3_bucket.alb_logs"),  # no consumer of new-object events
}


def test_checkov_passes_on_the_terraform():
    # `checkov -d terraform` (terraform/README.md), every framework: terraform, secrets, ...
    command = [checkov(), "--directory", str(TERRAFORM_DIR)]
    command += ["--compact", "--output", "json", "--skip-download"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert result.stdout, result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    results = {
        kind: [check for report in reports for check in report["results"].get(kind, [])]
        for kind in ("failed_checks", "passed_checks", "skipped_checks")
    }
    summary = {
        key: sum(report["summary"][key] for report in reports)
        for key in ("passed", "failed", "skipped", "parsing_errors")
    }
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for check in results["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert summary["parsing_errors"] == 0
    skipped = {(check["check_id"], check["resource"]) for check in results["skipped_checks"]}
    assert skipped == REVIEWED_SKIPS
    reasons = {
        check["check_id"]: check.get("check_result", {}).get("suppress_comment", "")
        for check in results["skipped_checks"]
    }
    assert all(len(reason) > 40 for reason in reasons.values()), reasons
    # What the module must have, among the checks that passed.
    passed = {check["check_id"] for check in results["passed_checks"]}
    assert {
        "CKV_AWS_2",  # HTTPS listener
        "CKV_AWS_103",  # TLS >= 1.2
        "CKV2_AWS_20",  # HTTP redirects to HTTPS
        "CKV_AWS_91",  # ALB access logs
        "CKV2_AWS_31",  # WAF logging
        "CKV_AWS_79",  # IMDSv2
        "CKV_AWS_8",  # encrypted root volume
        "CKV2_AWS_41",  # instance role
        "CKV_AWS_150",  # deletion protection
        "CKV_AWS_382",  # no open egress
    } <= passed
    counts = f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped"
    print(f"checkov on terraform/: {counts}")

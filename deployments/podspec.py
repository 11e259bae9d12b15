"""The pod spec: schema, validation rules, parse/render/diff, and a CLI for the workflow.

This module imports no Django so that the deploy workflow can run it with only PyYAML
installed (``python -m deployments.podspec validate|render``). The Django form calls the
same rules, so the portal and the workflow can never disagree about what is valid.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import yaml

FIELDS = ("customer", "environment", "instance_name", "instance_type", "waf_enabled")

# Lowercase path components: no "..", "/", spaces, upper case or unicode look-alikes.
PATH_COMPONENT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$", re.ASCII)
# 3-63 chars, starts with a letter, lowercase letters/digits/hyphens, no trailing hyphen.
INSTANCE_NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{1,61}[a-z0-9])$", re.ASCII)

DEFAULT_INSTANCE_TYPES = (
    *(f"t3.{size}" for size in ("micro", "small", "medium", "large", "xlarge", "2xlarge")),
    *(
        f"{family}.{size}"
        for family in ("m5", "m6i", "c6i", "r6i")
        for size in ("large", "xlarge", "2xlarge", "4xlarge")
    ),
)

# libyaml's loader is ~10x faster than the pure-Python one; both are safe loaders.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# A value longer than this is rejected before any regex runs on it.
MAX_VALUE_LENGTH = 100


class SpecError(ValueError):
    """A spec failed validation. ``errors`` maps each bad field to its message."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in self.errors.items()))


@dataclass(frozen=True)
class PodSpec:
    customer: str
    environment: str
    instance_name: str
    instance_type: str
    waf_enabled: bool

    @property
    def pod(self) -> str:
        return f"{self.customer}/{self.environment}"

    def as_dict(self) -> dict:
        return asdict(self)

    def workflow_inputs(self) -> dict[str, str]:
        """The workflow_dispatch inputs: all strings, as GitHub expects."""
        inputs = {field: str(value) for field, value in self.as_dict().items()}
        inputs["waf_enabled"] = "true" if self.waf_enabled else "false"
        return inputs


def _check_text(value: object, label: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{label} must be text")
    if not value:
        raise ValueError(f"{label} cannot be empty")
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"{label} is too long (at most {MAX_VALUE_LENGTH} characters)")
    return value


def validate_path_component(value: object, field: str) -> str:
    """A customer or environment name: it becomes a directory in the specs repository."""
    value = _check_text(value, field)
    if not PATH_COMPONENT_RE.match(value):
        raise ValueError(
            f"{field} must be 1-32 lowercase letters, digits or hyphens, "
            "starting and ending with a letter or digit"
        )
    return value


def validate_instance_name(value: object) -> str:
    value = _check_text(value, "instance_name")
    if not INSTANCE_NAME_RE.match(value):
        raise ValueError(
            "instance_name must be 3-63 lowercase letters, digits or hyphens, "
            "start with a letter and not end with a hyphen"
        )
    return value


def validate_instance_type(value: object, allowed: Iterable[str] = DEFAULT_INSTANCE_TYPES) -> str:
    value = _check_text(value, "instance_type")
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"instance_type '{value[:40]}' is not allowed; choose one of: {', '.join(allowed)}")
    return value


def validate_waf_enabled(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("waf_enabled must be true or false")


def validate(data: Mapping[str, object], allowed_types: Iterable[str] = DEFAULT_INSTANCE_TYPES) -> PodSpec:
    """Check every field of ``data``; raise SpecError naming each bad one."""
    errors: dict[str, str] = {}
    unknown = sorted(str(key) for key in data if key not in FIELDS)
    if unknown:
        errors["spec"] = f"unknown field(s): {', '.join(unknown)}"
    checks = {
        "customer": lambda v: validate_path_component(v, "customer"),
        "environment": lambda v: validate_path_component(v, "environment"),
        "instance_name": validate_instance_name,
        "instance_type": lambda v: validate_instance_type(v, allowed_types),
        "waf_enabled": validate_waf_enabled,
    }
    values: dict[str, Any] = {}
    for field, check in checks.items():
        if field not in data:
            errors[field] = f"{field} is required"
            continue
        try:
            values[field] = check(data[field])
        except ValueError as exc:
            errors[field] = str(exc)
    if errors:
        raise SpecError(errors)
    return PodSpec(**values)


def parse(text: str, allowed_types: Iterable[str] = DEFAULT_INSTANCE_TYPES) -> PodSpec:
    """Parse and validate a spec.yml document."""
    try:
        data = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader, the C one when built
    except yaml.YAMLError as exc:
        raise SpecError({"spec": f"not valid YAML: {str(exc).splitlines()[0]}"}) from None
    if not isinstance(data, dict):
        raise SpecError({"spec": "spec.yml must be a mapping of field: value"})
    return validate(data, allowed_types)


def render(spec: PodSpec) -> str:
    """The canonical spec.yml text; ``parse(render(spec)) == spec``."""
    # safe_dump quotes anything YAML could misread, so values cannot inject keys.
    return yaml.safe_dump(spec.as_dict(), sort_keys=False, default_flow_style=False)


def diff(before: str | None, after: str, path: str = "spec.yml") -> str:
    """A unified diff of spec.yml; a new pod shows the whole file added."""
    lines = difflib.unified_diff(
        (before or "").splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile="/dev/null" if before is None else f"a/{path}",
        tofile=f"b/{path}",
    )
    return "".join(lines)


def spec_path(specs_path: str, customer: str, environment: str) -> str:
    return f"{specs_path.strip('/')}/{customer}/{environment}/spec.yml"


# --- CLI used by .github/workflows/deploy-pod.yml -------------------------------------------

ENV_NAMES = {field: field.upper() for field in FIELDS}


def _spec_from_env(environ: Mapping[str, str]) -> PodSpec:
    allowed = environ.get("ALLOWED_INSTANCE_TYPES")
    allowed_types = (
        [t.strip() for t in allowed.split(",") if t.strip()] if allowed else DEFAULT_INSTANCE_TYPES
    )
    data = {field: environ.get(name, "") for field, name in ENV_NAMES.items()}
    data = {field: value for field, value in data.items() if value != ""}
    return validate(data, allowed_types)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.podspec",
        description="Validate or render a pod spec from the environment variables "
        + ", ".join(ENV_NAMES.values()),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("validate", help="exit 0 if the inputs make a valid spec, 1 otherwise")
    render_cmd = sub.add_parser("render", help="write spec.yml for the inputs")
    render_cmd.add_argument("--out", help="file to write (its directories are created); default stdout")
    args = parser.parse_args(argv)
    try:
        spec = _spec_from_env(os.environ if environ is None else environ)
    except SpecError as exc:
        for field, message in exc.errors.items():
            print(f"invalid {field}: {message}", file=sys.stderr)
        return 1
    if args.command == "validate":
        print(f"valid spec for {spec.pod}")
    elif args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(render(spec))
    else:
        sys.stdout.write(render(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())

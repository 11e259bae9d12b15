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
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import yaml

FIELDS = ("customer", "environment", "instance_name", "instance_type", "waf_enabled")

# Every rule is applied with fullmatch, and anchored with \A...\Z as well: "$" would also
# match before a trailing newline, and "acme\n" once slipped through as a customer.
# Lowercase path components: no "..", "/", spaces, upper case or unicode look-alikes.
PATH_COMPONENT_RE = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?\Z", re.ASCII)
# 3-63 chars, starts with a letter, lowercase letters/digits/hyphens, no trailing hyphen.
INSTANCE_NAME_RE = re.compile(r"\A[a-z](?:[a-z0-9-]{1,61}[a-z0-9])\Z", re.ASCII)
# The portal's DeploymentRequest key, as str(uuid.UUID) writes it.
REQUEST_ID_RE = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.ASCII)
# The workflow's plan_run_id: a GitHub run id (a positive 64-bit integer).
PLAN_RUN_ID_RE = re.compile(r"\A[1-9][0-9]{0,19}\Z", re.ASCII)
# SPECS_PATH in the workflow: relative, no "." or ".." components, nothing a shell or an
# Actions output file could misread.
SPECS_PATH_COMPONENT_RE = re.compile(r"\A(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,100}\Z", re.ASCII)

# The workflow's action: plan and apply in one run (the default, as a hand dispatch does), plan
# only (nothing committed or applied), or apply the plan saved by run plan_run_id.
WORKFLOW_ACTIONS = ("deploy", "plan", "apply")

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

# A spec is five short "field: value" lines, about 100 bytes. Longer text is refused before
# YAML sees it; exported so the inventory can refuse larger blobs by their size in the tree.
MAX_SPEC_BYTES = 4096
# Upper bound on the structure a spec may hold: keys, list items and brackets, counted
# outside comment lines. Every nested collection needs at least one of them, so this bounds
# the nesting depth whatever the quoting, and keeps both loaders far from deep recursion: the
# C loader's composer recurses without a limit (tens of KiB of "[" crashed a worker with
# SIGSEGV), the pure-Python one raises RecursionError.
MAX_SPEC_INDICATORS = 64
# A spec is one flat mapping (depth 1). Depth 2 still reaches validate(), which then names
# the field ("customer must be text"); anything deeper is refused before it is loaded.
MAX_SPEC_DEPTH = 2

_INDICATOR_RE = re.compile(r"[\[{]|[-?:](?=\s|\Z)")
# A line whose first non-blank character is "#" is a comment, or text inside a quoted or
# block scalar: never structure, so it is not counted. CR alone ends a line too, for YAML.
_COMMENT_LINE_RE = re.compile(r"(?:\A|(?<=[\r\n]))[ \t]*#[^\r\n]*")

# Unicode categories never allowed in a value: controls (Cc: NUL, tab, CR, LF, U+0085...),
# invisible format characters (Cf: zero-width space, bidi overrides...), surrogates,
# private-use and unassigned code points, line and paragraph separators (U+2028/U+2029).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_ASCII_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_CHAR_NAMES = {
    "\n": "a line break",
    "\r": "a carriage return",
    "\t": "a tab",
    "\x00": "a NUL character",
    "\x85": "a line break",
    "\u2028": "a line separator",
    "\u2029": "a paragraph separator",
    "\ufeff": "a byte order mark",
}
_CATEGORY_NAMES = {
    "Cf": "an invisible formatting character",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned character",
}


class SpecError(ValueError):
    """A spec failed validation. ``errors`` maps each bad field to its message."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in self.errors.items()))


@dataclass(frozen=True, slots=True)  # slots: 10,000 of them live in each worker's pod listing
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


def _unsafe_char(text: str, allowed: str = "") -> int | None:
    """The index of the first control or invisible character of ``text`` not in ``allowed``."""
    if text.isascii():  # the usual case, and ASCII's only such characters are its controls
        found = (m.start() for m in _ASCII_CONTROL_RE.finditer(text) if m.group() not in allowed)
        return next(found, None)
    for index, char in enumerate(text):
        if char not in allowed and unicodedata.category(char) in _UNSAFE_CATEGORIES:
            return index
    return None


def _describe_char(char: str) -> str:
    """'a line break (U+000A)': a character a person cannot see, named in words."""
    name = _CHAR_NAMES.get(char) or _CATEGORY_NAMES.get(unicodedata.category(char), "a control character")
    return f"{name} (U+{ord(char):04X})"


def _check_text(value: object, label: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{label} must be text")
    if not value:
        raise ValueError(f"{label} cannot be empty")
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"{label} is too long (at most {MAX_VALUE_LENGTH} characters)")
    index = _unsafe_char(value)
    if index is not None:
        raise ValueError(f"{label} must not contain {_describe_char(value[index])}")
    return value


def validate_path_component(value: object, field: str) -> str:
    """A customer or environment name: it becomes a directory in the specs repository."""
    value = _check_text(value, field)
    if not PATH_COMPONENT_RE.fullmatch(value):
        raise ValueError(
            f"{field} must be 1-32 lowercase letters, digits or hyphens, "
            "starting and ending with a letter or digit"
        )
    return value


def validate_instance_name(value: object) -> str:
    value = _check_text(value, "instance_name")
    if not INSTANCE_NAME_RE.fullmatch(value):
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


def validate_request_id(value: object) -> str:
    """The workflow's ``request_id``: empty (a hand dispatch) or the portal's request UUID."""
    if value == "":
        return ""
    value = _check_text(value, "request_id")
    if not REQUEST_ID_RE.fullmatch(value):
        raise ValueError(
            "request_id must be empty or a lowercase UUID such as 123e4567-e89b-42d3-a456-426614174000"
        )
    return value


def validate_action(value: object) -> str:
    """The workflow's ``action``: deploy, plan or apply."""
    if value not in WORKFLOW_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(WORKFLOW_ACTIONS)}")
    return str(value)


def validate_plan_run_id(value: object, action: object) -> str:
    """The workflow's ``plan_run_id``: the plan run's id with action apply, else empty."""
    if action != "apply":
        if value != "":
            raise ValueError("plan_run_id is only given with action apply")
        return ""
    if value == "":
        raise ValueError("plan_run_id is required with action apply: the id of the plan run to apply")
    value = _check_text(value, "plan_run_id")
    if not PLAN_RUN_ID_RE.fullmatch(value):
        raise ValueError("plan_run_id must be a workflow run id (digits)")
    return value


def validate_specs_path(value: object) -> str:
    """The workflow's ``SPECS_PATH``: a relative directory of plain names, e.g. ``pods``."""
    value = _check_text(value, "SPECS_PATH")
    parts = value.rstrip("/").split("/")
    if not all(SPECS_PATH_COMPONENT_RE.fullmatch(part) for part in parts):
        raise ValueError(
            "SPECS_PATH must be a relative path of names made of letters, digits, '.', '_' or '-' (no '..')"
        )
    return value


def _show_key(key: object) -> str:
    """A spec key as it may appear in an error message: short, with nothing invisible."""
    text = key if isinstance(key, str) else repr(key)
    if len(text) > 40 or _unsafe_char(text) is not None:
        return repr(text[:40]) + ("..." if len(text) > 40 else "")
    return text


def validate(data: Mapping[str, object], allowed_types: Iterable[str] = DEFAULT_INSTANCE_TYPES) -> PodSpec:
    """Check every field of ``data``; raise SpecError naming each bad one."""
    errors: dict[str, str] = {}
    unknown = sorted(_show_key(key) for key in data if key not in FIELDS)
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        errors["spec"] = f"unknown field(s): {', '.join(unknown[:5])}{more}"
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


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _check_text_shape(text: str) -> None:
    """Refuse, without any YAML parser, text too large or too structured to be a spec."""
    if len(text) > MAX_SPEC_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise SpecError(
            {"spec": f"spec.yml is larger than {MAX_SPEC_BYTES} bytes; a spec is five short lines"}
        )
    # Tabs and line ends are YAML's own, and a byte order mark may open the file. Anything else
    # invisible is refused everywhere, comments included (YAML 1.1 reads U+0085 and U+2028/9
    # as line breaks, which would make the comment-line count below miss lines).
    body = text.removeprefix("\ufeff")
    index = _unsafe_char(body, allowed="\t\n\r")
    if index is not None:
        index += len(text) - len(body)
        where = f"on line {_line(text, index)}"
        raise SpecError({"spec": f"spec.yml contains {_describe_char(text[index])} {where}"})
    indicators = len(_INDICATOR_RE.findall(_COMMENT_LINE_RE.sub("", text)))
    if indicators > MAX_SPEC_INDICATORS:
        raise SpecError(
            {
                "spec": f"spec.yml has more structure than a spec ({indicators} keys, list items or "
                f"brackets; at most {MAX_SPEC_INDICATORS}): a spec is one flat mapping of field: value"
            }
        )


def _check_events(text: str) -> None:
    """Walk the YAML events (an iterative parse, no recursion) before anything is built.

    Refuses nesting deeper than MAX_SPEC_DEPTH, anchors, aliases and tags (a spec needs none,
    and aliases are how "billion laughs" documents grow), more than one document, and a
    field given twice (YAML would silently keep the last one).
    """
    depth = documents = children = 0
    top_is_mapping = False
    keys: dict[str, int] = {}
    for event in yaml.parse(text, Loader=_SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise SpecError({"spec": f"spec.yml holds more than one YAML document (line {line})"})
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise SpecError({"spec": f"spec.yml uses a YAML anchor or alias on line {line}; a spec may not"})
        if getattr(event, "tag", None):
            raise SpecError({"spec": f"spec.yml uses a YAML tag on line {line}; a spec may not"})
        if isinstance(event, yaml.NodeEvent) and depth == 1 and top_is_mapping:
            children += 1
            if children % 2 and isinstance(event, yaml.ScalarEvent):
                if event.value in keys:
                    field = _show_key(event.value)
                    raise SpecError(
                        {"spec": f"{field} is given twice (lines {keys[event.value]} and {line})"}
                    )
                keys[event.value] = line
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth == 1:
                top_is_mapping = isinstance(event, yaml.MappingStartEvent)
            if depth > MAX_SPEC_DEPTH:
                raise SpecError(
                    {
                        "spec": f"spec.yml nests lists or mappings {depth} deep on line {line}; "
                        "a spec is one flat mapping of field: value"
                    }
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{exc.problem}{where}"[:200]
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def parse(text: str, allowed_types: Iterable[str] = DEFAULT_INSTANCE_TYPES) -> PodSpec:
    """Parse and validate a spec.yml document.

    Any text at all, however hostile, gives a PodSpec or a SpecError with a reason a person
    can act on: size, characters and structure are checked before YAML builds anything.
    """
    _check_text_shape(text)
    try:
        _check_events(text)
        data = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader, the C one when built
    except yaml.YAMLError as exc:
        raise SpecError({"spec": f"not valid YAML: {_yaml_problem(exc)}"}) from None
    except RecursionError:  # not expected after the checks above; never a crashed worker
        raise SpecError({"spec": "spec.yml nests too deeply to read"}) from None
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


# The repository variables the deploy workflow hands Terraform (job env TF_VAR_*), checked here as
# terraform/variables.tf checks them (the same patterns: a test compares them), because a one-run
# deploy commits spec.yml before Terraform plans: a missing POD_DOMAIN must stop the run before the
# commit, not after it. An apply of a saved plan uses the values the plan was made with.
POD_VARIABLES = (
    (
        "TF_VAR_domain_name",
        "POD_DOMAIN",
        r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        "POD_DOMAIN must be set to a lowercase DNS domain, e.g. pods.example.com",
    ),
    (
        "TF_VAR_certificate_arn",
        "POD_CERTIFICATE_ARN",
        r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$",
        "POD_CERTIFICATE_ARN must be set to an ACM certificate ARN, "
        "arn:aws:acm:REGION:ACCOUNT:certificate/ID",
    ),
    (
        "TF_VAR_deletion_protection",
        "POD_DELETION_PROTECTION",
        r"^(true|false)$",
        'POD_DELETION_PROTECTION must be "true" or "false" (lowercase), or unset for true',
    ),
)

# Unset deletion protection is Terraform's default, true (the workflow always sets it).
POD_VARIABLE_UNSET = {"TF_VAR_deletion_protection": "true"}


def _pod_variable_errors(environ: Mapping[str, str], action: str) -> dict[str, str]:
    """Errors of the pods' repository variables, where the workflow passes them (its job env
    always has the TF_VAR_* names; the portal's and the tests' own runs of the CLI do not)."""
    if action == "apply" or not any(name in environ for name, *_ in POD_VARIABLES):
        return {}
    return {
        variable: message
        for name, variable, pattern, message in POD_VARIABLES
        if not re.fullmatch(pattern, environ.get(name, POD_VARIABLE_UNSET.get(name, "")))
    }


def _spec_from_env(environ: Mapping[str, str]) -> PodSpec:
    """The spec from the workflow's environment, with REQUEST_ID, SPECS_PATH, ACTION and
    PLAN_RUN_ID checked too: the workflow writes them into a commit message, a step output,
    an error message, and chooses its steps by them."""
    allowed = environ.get("ALLOWED_INSTANCE_TYPES")
    allowed_types = (
        [t.strip() for t in allowed.split(",") if t.strip()] if allowed else DEFAULT_INSTANCE_TYPES
    )
    data = {field: environ.get(name, "") for field, name in ENV_NAMES.items()}
    data = {field: value for field, value in data.items() if value != ""}
    errors: dict[str, str] = {}
    try:
        spec = validate(data, allowed_types)
    except SpecError as exc:
        errors |= exc.errors
    for name, check, default in (
        ("request_id", validate_request_id, ""),
        ("specs_path", validate_specs_path, "pods"),
    ):
        try:
            check(environ.get(name.upper(), default))
        except ValueError as exc:
            errors[name] = str(exc)
    action = environ.get("ACTION", "deploy")
    try:
        validate_action(action)
    except ValueError as exc:
        errors["action"] = str(exc)
    try:
        validate_plan_run_id(environ.get("PLAN_RUN_ID", ""), action)
    except ValueError as exc:
        errors["plan_run_id"] = str(exc)
    errors |= _pod_variable_errors(environ, action)
    if errors:
        raise SpecError(errors)
    return spec


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

"""The deploy workflow as the emulator sees it: declared inputs, run-name, dispatch validation."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

WORKFLOW_PATH = ".github/workflows/deploy-pod.yml"
# The project's real workflow file, relative to this package (repo root / WORKFLOW_PATH).
PROJECT_WORKFLOW = Path(__file__).resolve().parent.parent / WORKFLOW_PATH

DEFAULT_NAME = "Deploy pod"
DEFAULT_RUN_NAME = (
    "Deploy ${{ inputs.customer }}/${{ inputs.environment }} [${{ inputs.request_id || 'manual' }}]"
)


@dataclass(frozen=True)
class Input:
    name: str
    required: bool = False
    default: str | None = None
    type: str = "string"


@dataclass
class WorkflowDef:
    name: str = DEFAULT_NAME
    run_name: str | None = DEFAULT_RUN_NAME
    inputs: dict[str, Input] = field(default_factory=dict)
    # Whether ``on:`` names workflow_dispatch; GitHub refuses to dispatch a workflow that does not.
    dispatchable: bool = True

    @classmethod
    def default(cls) -> WorkflowDef:
        required = ("customer", "environment", "instance_name", "instance_type", "waf_enabled")
        inputs = {name: Input(name, required=True) for name in required}
        inputs["request_id"] = Input("request_id", required=False, default="")
        # deploy: plan and apply in one run; plan: plan only; apply: the saved plan of plan_run_id.
        inputs["action"] = Input("action", required=False, default="deploy")
        inputs["plan_run_id"] = Input("plan_run_id", required=False, default="")
        # The blob SHA of spec.yml the request was made against; "" checks nothing.
        inputs["expected_spec_sha"] = Input("expected_spec_sha", required=False, default="")
        return cls(inputs=inputs)

    @classmethod
    def from_yaml(cls, text: str) -> WorkflowDef:
        doc = yaml.safe_load(text) or {}
        # YAML 1.1 reads the bare key `on` as the boolean True.
        triggers = doc.get("on", doc.get(True)) or {}
        # `on:` is an event name, a list of them, or a mapping of events to their settings.
        events = [triggers] if isinstance(triggers, str) else list(triggers)
        dispatch = triggers.get("workflow_dispatch") if isinstance(triggers, dict) else None
        declared = (dispatch or {}).get("inputs") or {}
        inputs = {}
        for name, spec in declared.items():
            spec = spec or {}
            default = spec.get("default")
            inputs[name] = Input(
                name,
                required=bool(spec.get("required", False)),
                default=None if default is None else _as_input(default),
                type=str(spec.get("type", "string")),
            )
        return cls(
            name=str(doc.get("name") or WORKFLOW_PATH),
            run_name=doc.get("run-name"),
            inputs=inputs,
            dispatchable="workflow_dispatch" in events,
        )

    @classmethod
    def load(cls, path: Path = PROJECT_WORKFLOW) -> WorkflowDef:
        """The project's workflow when the file exists, else the built-in identical default."""
        if path.is_file():
            return cls.from_yaml(path.read_text(encoding="utf-8"))
        return cls.default()

    def check_inputs(self, given: dict) -> tuple[dict[str, str] | None, str | None]:
        """(inputs with defaults filled, None) or (None, GitHub's 422 message)."""
        unexpected = [name for name in given if name not in self.inputs]
        if unexpected:
            return None, f"Unexpected inputs provided: {json.dumps(unexpected)}"
        values = {}
        for name, spec in self.inputs.items():
            if name in given:
                values[name] = _as_input(given[name])
            elif spec.required and spec.default is None:
                return None, f"Required input '{name}' not provided"
            elif spec.default is not None:
                values[name] = spec.default
        return values, None

    def display_title(self, inputs: dict[str, str]) -> str:
        if not self.run_name:
            return self.name
        return render_expressions(self.run_name, inputs)


def _as_input(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_OPERAND = re.compile(r"^(?:(?:github\.event\.)?inputs\.([A-Za-z_][\w-]*)|'((?:[^']|'')*)')$")


def render_expressions(template: str, inputs: dict[str, str]) -> str:
    """Render ``${{ inputs.x }}`` and ``${{ inputs.x || 'literal' }}`` as Actions would."""

    def evaluate(match: re.Match) -> str:
        for operand in match.group(1).split("||"):
            parsed = _OPERAND.match(operand.strip())
            if not parsed:
                continue
            if parsed.group(1) is not None:
                value = inputs.get(parsed.group(1), "")
            else:
                value = parsed.group(2).replace("''", "'")
            if value:
                return value
        return ""

    return _EXPR.sub(evaluate, template)

"""The plan summary: what a saved Terraform plan will do to a pod, small enough to store and show.

The deploy workflow turns ``terraform show -json tfplan`` into ``plan-summary.json`` (format 1)
with ``summarize()`` and publishes it as the ``plan-summary`` artifact; the portal reads that
artifact (untrusted: it comes back from GitHub) with ``parse()`` and shows it. Per resource
address: its action (create, update, replace, delete, read, no-op) and, for an update or a
replacement, the changed attributes with their values before and after, as short strings;
sensitive values are masked, never copied.

The workflow also uses this module to check a saved plan before it applies it (``check-saved``:
the plan belongs to this pod, was made from this spec, and the state has not moved since).

This module imports no Django: the workflow runs it with only PyYAML installed
(``python -m deployments.plan summarize|markdown|restore-lock-file|check-saved``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import unicodedata
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployments import podspec

FORMAT = 1
ACTIONS = ("create", "update", "replace", "delete", "read", "no-op")
# What Terraform's change.actions mean, as the summary names them. Replacement comes in two
# orders: delete then create (the default), create then delete (create_before_destroy).
_TERRAFORM_ACTIONS = {
    ("no-op",): "no-op",
    ("create",): "create",
    ("read",): "read",
    ("update",): "update",
    ("delete",): "delete",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
}
COUNTED = ("create", "update", "replace", "delete")

MAX_SUMMARY_BYTES = 256 * 1024
MAX_RESOURCES = 1000
MAX_CHANGES = 200
# Displayed values and attribute paths are cut to this many characters (an ellipsis included).
MAX_VALUE_CHARS = 200
MAX_ADDRESS_CHARS = 500
# Nested blocks deeper than this are shown as one JSON value.
MAX_DEPTH = 8

SENSITIVE = "(sensitive)"
KNOWN_AFTER_APPLY = "(known after apply)"
ELLIPSIS = "\u2026"

_TERRAFORM_VERSION_RE = re.compile(
    r"\A[0-9]{1,5}\.[0-9]{1,5}\.[0-9]{1,5}(?:-[0-9A-Za-z.]{1,30})?\Z", re.ASCII
)
# A git blob id: SHA-1, or SHA-256 for a repository in that object format.
_BLOB_RE = re.compile(r"\A(?:[0-9a-f]{40}|[0-9a-f]{64})\Z", re.ASCII)
# Terraform resource types: provider prefix and name, e.g. aws_wafv2_web_acl_association.
_TYPE_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9_-]{0,99}\Z", re.ASCII)
_IDENTIFIER_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_-]*\Z", re.ASCII)
# Characters a person cannot see or that break a line or a table: controls (newlines too),
# invisible format characters (bidi overrides, zero-width spaces), surrogates, line and
# paragraph separators. summarize() escapes them; parse() refuses them.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SUMMARY_KEYS = frozenset({"format", "pod", "terraform_version", "spec_blob", "resources"})
_RESOURCE_KEYS = frozenset({"address", "type", "action", "changes"})
_CHANGE_KEYS = frozenset({"attribute", "before", "after"})
_CHANGE_OPTIONAL_KEYS = frozenset({"forces_replacement"})


class PlanSummaryError(ValueError):
    """Not a plan summary this portal can show, or a Terraform plan it cannot summarize."""


@dataclass(frozen=True)
class AttributeChange:
    attribute: str
    before: str
    after: str
    forces_replacement: bool = False


@dataclass(frozen=True)
class ResourceChange:
    address: str
    type: str
    action: str
    changes: tuple[AttributeChange, ...]


@dataclass(frozen=True)
class PlanSummary:
    pod: str
    terraform_version: str
    spec_blob: str | None
    resources: tuple[ResourceChange, ...]

    @property
    def counts(self) -> dict[str, int]:
        """How many resources each action touches: always create, update, replace and delete."""
        counts = dict.fromkeys(COUNTED, 0)
        for resource in self.resources:
            if resource.action in counts:
                counts[resource.action] += 1
        return counts

    @property
    def headline(self) -> str:
        """'1 to add, 1 to change, 0 to replace, 0 to destroy'."""
        c = self.counts
        return (
            f"{c['create']} to add, {c['update']} to change, "
            f"{c['replace']} to replace, {c['delete']} to destroy"
        )

    @property
    def destructive(self) -> bool:
        """Whether applying the plan replaces or destroys anything."""
        c = self.counts
        return c["replace"] + c["delete"] > 0

    @property
    def changed(self) -> tuple[ResourceChange, ...]:
        """The resources the apply changes (no no-op, no data source read)."""
        return tuple(r for r in self.resources if r.action not in ("no-op", "read"))

    def to_json(self) -> dict:
        """The summary as plan-summary.json holds it (format 1); ``parse(s.to_json()) == s``."""
        return {
            "format": FORMAT,
            "pod": self.pod,
            "terraform_version": self.terraform_version,
            "spec_blob": self.spec_blob,
            "resources": [
                {
                    "address": r.address,
                    "type": r.type,
                    "action": r.action,
                    "changes": [_change_json(c) for c in r.changes],
                }
                for r in self.resources
            ],
        }


def _change_json(change: AttributeChange) -> dict:
    data: dict[str, Any] = {"attribute": change.attribute, "before": change.before, "after": change.after}
    if change.forces_replacement:
        data["forces_replacement"] = True
    return data


# --- parse: untrusted plan-summary.json -> PlanSummary ----------------------------------------


def parse(raw: bytes | str | dict) -> PlanSummary:
    """Read a plan summary (format 1) from JSON text or an already decoded object.

    The input is untrusted (an artifact GitHub hands back, or a stored copy): its size, every
    type, the actions, and the length and characters of every string are checked. Anything
    else raises PlanSummaryError with a message a person can act on; nothing raises otherwise.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        data = _load_json(bytes(raw))
    elif isinstance(raw, str):
        if len(raw) > MAX_SUMMARY_BYTES or len(raw.encode("utf-8", "surrogatepass")) > MAX_SUMMARY_BYTES:
            raise PlanSummaryError(_too_large())
        data = _load_json(raw.encode("utf-8", "surrogatepass"))
    elif isinstance(raw, dict):
        data = raw
    else:
        raise PlanSummaryError(f"a plan summary is JSON text or an object, not {type(raw).__name__}")
    return _Reader().summary(data)


def _too_large() -> str:
    return f"the plan summary is larger than {MAX_SUMMARY_BYTES // 1024} KiB"


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise PlanSummaryError(f"the key {_quote(key)} is given twice")
        data[key] = value
    return data


def _refuse_constant(name: str) -> None:
    raise PlanSummaryError(f"{name} is not a JSON value")


def _load_json(data: bytes) -> Any:
    if len(data) > MAX_SUMMARY_BYTES:
        raise PlanSummaryError(_too_large())
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PlanSummaryError("the plan summary is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)
    except RecursionError:
        raise PlanSummaryError("the plan summary nests too deeply to read") from None
    except PlanSummaryError:
        raise
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise PlanSummaryError(f"the plan summary is not valid JSON: {str(exc)[:200]}") from None


def _quote(text: object) -> str:
    """A value as an error message may show it: short and with nothing invisible."""
    shown = json.dumps(text if isinstance(text, str) else repr(text), ensure_ascii=True)
    return shown if len(shown) <= 60 else shown[:57] + "..."


_ASCII_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _unsafe_index(text: str) -> int | None:
    if text.isascii():  # the usual case, and ASCII's only such characters are its controls
        match = _ASCII_CONTROL_RE.search(text)
        return match.start() if match else None
    for index, char in enumerate(text):
        if unicodedata.category(char) in _UNSAFE_CATEGORIES:
            return index
    return None


class _Reader:
    """One parse: checks as it goes and keeps a running size, so no input costs much."""

    def __init__(self) -> None:
        self.size = 0

    def _string(self, value: object, where: str, *, max_chars: int, empty: bool = True) -> str:
        if not isinstance(value, str):
            raise PlanSummaryError(f"{where} must be a string")
        if not value and not empty:
            raise PlanSummaryError(f"{where} cannot be empty")
        if len(value) > max_chars:
            raise PlanSummaryError(f"{where} is longer than {max_chars} characters")
        index = _unsafe_index(value)
        if index is not None:
            raise PlanSummaryError(
                f"{where} contains the control or invisible character U+{ord(value[index]):04X}"
            )
        self.size += len(value) + 16
        if self.size > MAX_SUMMARY_BYTES:
            raise PlanSummaryError(_too_large())
        return value

    @staticmethod
    def _object(value: object, where: str, required: frozenset[str], optional: frozenset[str]) -> dict:
        if not isinstance(value, dict):
            raise PlanSummaryError(f"{where} must be an object")
        missing = sorted(required - value.keys())
        if missing:
            raise PlanSummaryError(f"{where} has no {', '.join(missing)}")
        unknown = [key for key in value if key not in required and key not in optional]
        if unknown:
            shown = ", ".join(_quote(key) for key in unknown[:5])
            raise PlanSummaryError(f"{where} has unknown field(s): {shown}")
        return value

    @staticmethod
    def _list(value: object, where: str, max_items: int) -> list:
        if not isinstance(value, list):
            raise PlanSummaryError(f"{where} must be a list")
        if len(value) > max_items:
            raise PlanSummaryError(f"{where} has more than {max_items} entries")
        return value

    def summary(self, data: object) -> PlanSummary:
        data = self._object(data, "the plan summary", _SUMMARY_KEYS, frozenset())
        version = data["format"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise PlanSummaryError("format must be a number")
        if version != FORMAT:
            raise PlanSummaryError(f"format {version} is not supported (this portal reads format {FORMAT})")
        pod = self._string(data["pod"], "pod", max_chars=65)
        if pod:
            customer, _, environment = pod.partition("/")
            valid = podspec.PATH_COMPONENT_RE.fullmatch
            if not (valid(customer) and valid(environment)):
                raise PlanSummaryError(f"pod {_quote(pod)} is not customer/environment")
        terraform_version = self._string(data["terraform_version"], "terraform_version", max_chars=50)
        if not _TERRAFORM_VERSION_RE.fullmatch(terraform_version):
            raise PlanSummaryError(f"terraform_version {_quote(terraform_version)} is not a version")
        spec_blob = data["spec_blob"]
        if spec_blob is not None:
            spec_blob = self._string(spec_blob, "spec_blob", max_chars=64)
            if not _BLOB_RE.fullmatch(spec_blob):
                raise PlanSummaryError(f"spec_blob {_quote(spec_blob)} is not a git blob id")
        resources = []
        addresses: set[str] = set()
        for index, item in enumerate(self._list(data["resources"], "resources", MAX_RESOURCES)):
            resource = self.resource(item, f"resources[{index}]")
            if resource.address in addresses:
                raise PlanSummaryError(f"resource {_quote(resource.address)} is listed twice")
            addresses.add(resource.address)
            resources.append(resource)
        return PlanSummary(
            pod=pod, terraform_version=terraform_version, spec_blob=spec_blob, resources=tuple(resources)
        )

    def resource(self, item: object, where: str) -> ResourceChange:
        item = self._object(item, where, _RESOURCE_KEYS, frozenset())
        address = self._string(item["address"], f"{where}.address", max_chars=MAX_ADDRESS_CHARS, empty=False)
        type_ = self._string(item["type"], f"{where}.type", max_chars=100)
        if not _TYPE_RE.fullmatch(type_):
            raise PlanSummaryError(f"{where}.type {_quote(type_)} is not a resource type")
        action = item["action"]
        if action not in ACTIONS:
            raise PlanSummaryError(f"{where}.action {_quote(action)} is not one of {', '.join(ACTIONS)}")
        changes = tuple(
            self.change(change, f"{where}.changes[{i}]")
            for i, change in enumerate(self._list(item["changes"], f"{where}.changes", MAX_CHANGES))
        )
        return ResourceChange(address=address, type=type_, action=action, changes=changes)

    def change(self, item: object, where: str) -> AttributeChange:
        item = self._object(item, where, _CHANGE_KEYS, _CHANGE_OPTIONAL_KEYS)
        forces = item.get("forces_replacement", False)
        if not isinstance(forces, bool):
            raise PlanSummaryError(f"{where}.forces_replacement must be true or false")
        return AttributeChange(
            attribute=self._string(
                item["attribute"], f"{where}.attribute", max_chars=MAX_VALUE_CHARS, empty=False
            ),
            before=self._string(item["before"], f"{where}.before", max_chars=MAX_VALUE_CHARS),
            after=self._string(item["after"], f"{where}.after", max_chars=MAX_VALUE_CHARS),
            forces_replacement=forces,
        )


# --- summarize: terraform show -json -> plan-summary.json --------------------------------------


def summarize(show: dict, *, pod: str = "", spec_blob: str | None = None) -> dict:
    """The plan summary (format 1) of ``terraform show -json tfplan``'s output.

    Every resource change is listed, sorted by address, with its action. An update or a
    replacement lists the attributes that change (``tags.Name``, ``ingress[0].cidr_blocks``),
    with the ones that force the replacement marked; values are display strings, JSON for
    non-strings, masked when sensitive, "(known after apply)" when unknown until the apply.
    The result always parses with ``parse()``: a plan too large for the summary keeps every
    resource and loses attribute details first (never the counts).
    """
    if not isinstance(show, dict):
        raise PlanSummaryError("terraform show -json output must be an object")
    version = show.get("terraform_version")
    if not isinstance(version, str) or not _TERRAFORM_VERSION_RE.fullmatch(version):
        raise PlanSummaryError(f"terraform show -json gave no Terraform version ({_quote(version)})")
    items = show.get("resource_changes")
    items = [] if items is None else items
    if not isinstance(items, list):
        raise PlanSummaryError("resource_changes must be a list")
    resources = sorted((_resource_change(item) for item in items), key=lambda r: r["address"])
    summary = {
        "format": FORMAT,
        "pod": pod,
        "terraform_version": version,
        "spec_blob": spec_blob,
        "resources": resources,
    }
    return _fit(summary)


def _fit(summary: dict) -> dict:
    """The summary, made to fit MAX_SUMMARY_BYTES and MAX_RESOURCES if it has to be."""
    resources = summary["resources"]
    if len(resources) > MAX_RESOURCES:
        resources = [r for r in resources if r["action"] not in ("no-op", "read")]
    if len(resources) > MAX_RESOURCES:
        raise PlanSummaryError(
            f"the plan changes {len(resources)} resources; a summary holds at most {MAX_RESOURCES}"
        )
    attempts: list[Callable[[list[dict]], list[dict]]] = [
        lambda rs: rs,
        lambda rs: [r for r in rs if r["action"] not in ("no-op", "read")],
        *(
            lambda rs, n=n: [{**r, "changes": _first_changes(r["changes"], n)} for r in rs]
            for n in (20, 3, 0)
        ),
    ]
    for attempt in attempts:
        resources = attempt(resources)
        candidate = {**summary, "resources": resources}
        if len(_dump(candidate)) <= MAX_SUMMARY_BYTES:
            parse(candidate)  # what summarize writes, parse reads: checked, not assumed
            return candidate
    raise PlanSummaryError(f"the plan's summary does not fit in {MAX_SUMMARY_BYTES // 1024} KiB")


def _first_changes(changes: list[dict], n: int) -> list[dict]:
    """The first n changes, those that force a replacement first."""
    return sorted(changes, key=lambda c: not c.get("forces_replacement"))[:n]


def _dump(summary: dict) -> bytes:
    return json.dumps(summary, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _resource_change(item: object) -> dict:
    if not isinstance(item, dict):
        raise PlanSummaryError("a resource change must be an object")
    address, type_, change = item.get("address"), item.get("type"), item.get("change")
    if (
        not isinstance(address, str)
        or not address
        or not isinstance(type_, str)
        or not isinstance(change, dict)
    ):
        raise PlanSummaryError(f"resource change {_quote(address)} has no address, type or change")
    actions = change.get("actions")
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise PlanSummaryError(f"resource change {_quote(address)} has no actions")
    action = _TERRAFORM_ACTIONS.get(tuple(actions))
    if action is None:
        # e.g. "forget" (a removed block): not something this summary can show truthfully.
        raise PlanSummaryError(f"{_quote(address)}: Terraform action {_quote(actions)} is not summarized")
    changes: list[dict] = []
    if action in ("update", "replace"):
        forced = {_path_text(p) for p in _paths(change.get("replace_paths"))}
        for path, before, after in _diff(change):
            forces = any(path == f or path.startswith((f + ".", f + "[")) for f in forced)
            # A new resource gets new ids, ARNs..., and leaves unset what the configuration
            # does not set: of a replacement, only the arguments it sets are news.
            if action == "replace" and after in (KNOWN_AFTER_APPLY, "null") and not forces:
                continue
            entry: dict[str, Any] = {"attribute": _clip(path), "before": before, "after": after}
            if forces:
                entry["forces_replacement"] = True
            changes.append(entry)
        changes = _first_changes(changes, MAX_CHANGES) if len(changes) > MAX_CHANGES else changes
    return {
        "address": _clip(_display(address), MAX_ADDRESS_CHARS),
        "type": type_ if _TYPE_RE.fullmatch(type_) else "unknown",
        "action": action,
        "changes": changes,
    }


def _paths(value: object) -> Iterator[list]:
    if isinstance(value, list):
        for path in value:
            if isinstance(path, list) and path and all(isinstance(s, str | int) for s in path):
                yield path


def _path_text(steps: Sequence[str | int]) -> str:
    """["ingress", 0, "cidr_blocks"] -> "ingress[0].cidr_blocks"; odd map keys are quoted."""
    text = ""
    for step in steps:
        if isinstance(step, int) and not isinstance(step, bool):
            text += f"[{step}]"
        elif _IDENTIFIER_RE.fullmatch(str(step)):
            text += f".{step}" if text else str(step)
        else:
            text += f"[{json.dumps(str(step), ensure_ascii=False)}]"
    return text


def _diff(change: dict) -> Iterator[tuple[str, str, str]]:
    """(attribute path, before, after) of every leaf that differs between before and after."""
    yield from _walk(
        [],
        change.get("before"),
        change.get("after"),
        change.get("after_unknown", False),
        change.get("before_sensitive", False),
        change.get("after_sensitive", False),
    )


def _walk(
    path: list[str | int], before: Any, after: Any, unknown: Any, before_sens: Any, after_sens: Any
) -> Iterator[tuple[str, str, str]]:
    if unknown is True:
        shown = SENSITIVE if _any_true(before_sens) else _display(before)
        yield _path_text(path) or "(value)", shown, KNOWN_AFTER_APPLY
        return
    if before_sens is True or after_sens is True:
        if before != after or before_sens != after_sens:
            yield (
                _path_text(path) or "(value)",
                SENSITIVE if _any_true(before_sens) else _display(before),
                SENSITIVE if _any_true(after_sens) else _display(after),
            )
        return
    if len(path) < MAX_DEPTH:
        if _is_mapping(before) and _is_mapping(after) and (before or after or unknown):
            keys = {*(before or {}), *(after or {}), *(unknown if isinstance(unknown, dict) else {})}
            for key in sorted(keys):
                yield from _walk(
                    [*path, key],
                    (before or {}).get(key),
                    (after or {}).get(key),
                    _at(unknown, key),
                    _at(before_sens, key),
                    _at(after_sens, key),
                )
            return
        if _is_sequence(before) and _is_sequence(after) and (before or after or unknown):
            length = max(
                len(before or ()), len(after or ()), len(unknown) if isinstance(unknown, list) else 0
            )
            for index in range(length):
                yield from _walk(
                    [*path, index],
                    _item(before, index),
                    _item(after, index),
                    _at(unknown, index),
                    _at(before_sens, index),
                    _at(after_sens, index),
                )
            return
    if before == after and not _any_true(unknown):
        return
    yield (
        _path_text(path) or "(value)",
        SENSITIVE if _any_true(before_sens) else _display(before),
        SENSITIVE
        if _any_true(after_sens)
        else KNOWN_AFTER_APPLY
        if _any_true(unknown) and after is None
        else _display(after),
    )


def _is_mapping(value: object) -> bool:
    return value is None or isinstance(value, dict)


def _is_sequence(value: object) -> bool:
    return value is None or isinstance(value, list)


def _item(value: object, index: int) -> Any:
    return value[index] if isinstance(value, list) and index < len(value) else None


def _at(mask: object, key: str | int) -> Any:
    """The part of a sensitivity or unknown mask at ``key``: all of it when the mask is True."""
    if mask is True:
        return True
    if isinstance(mask, dict) and isinstance(key, str):
        return mask.get(key, False)
    if isinstance(mask, list) and isinstance(key, int) and key < len(mask):
        return mask[key]
    return False


def _any_true(mask: object) -> bool:
    """Whether a mask marks anything at all (conservative: a mask too deep to read counts)."""
    stack: list[tuple[object, int]] = [(mask, 0)]
    while stack:
        value, depth = stack.pop()
        if value is True:
            return True
        if isinstance(value, dict | list):
            if depth > 32:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def _display(value: object) -> str:
    """A value as one short line: strings as they are, anything else as JSON; unsafe
    characters escaped as \\uXXXX; at most MAX_VALUE_CHARS characters."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError, RecursionError):
            text = "(unreadable value)"
    if _unsafe_index(text) is not None:
        text = "".join(
            f"\\u{ord(char):04x}" if unicodedata.category(char) in _UNSAFE_CATEGORIES else char
            for char in text
        )
    return _clip(text)


def _clip(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


# --- markdown: the job's step summary --------------------------------------------------------


def markdown(summary: PlanSummary) -> str:
    """The step summary of a plan: the headline, a warning when destructive, and a table."""
    title = f"### Terraform plan for {_code(summary.pod)}" if summary.pod else "### Terraform plan"
    lines = [title, "", f"**{summary.headline}**", ""]
    if summary.destructive:
        lines += ["> [!WARNING]", "> This plan replaces or destroys resources.", ""]
    changed = summary.changed
    if not changed:
        lines.append("No changes: the infrastructure matches the spec.")
        return "\n".join(lines) + "\n"
    lines += ["| resource | action | attribute | before | after |", "|---|---|---|---|---|"]
    for resource in changed:
        address = _code(resource.address)
        if not resource.changes:
            lines.append(f"| {address} | {resource.action} | | | |")
        for change in resource.changes:
            attribute = _code(change.attribute) + (
                " (forces replacement)" if change.forces_replacement else ""
            )
            values = f"{_code(change.before)} | {_code(change.after)}"
            lines.append(f"| {address} | {resource.action} | {attribute} | {values} |")
            address = ""
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    """Text as a Markdown code span in a table cell: shown as it is, never as Markdown or HTML.

    A code span is delimited by a backtick run longer than any inside it (CommonMark); a pipe
    is escaped even there, since GitHub splits table cells before it reads code spans."""
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


# --- checks of a saved plan before it is applied ----------------------------------------------

# A saved plan (terraform plan -out) is a zip archive: the plan, the prior state snapshot
# ("tfstate", with its lineage and serial: what Terraform's own staleness check compares), the
# configuration and the dependency lock file. Entries are read with a size limit, never shown.
_PLAN_STATE_ENTRY = "tfstate"
_PLAN_LOCK_ENTRY = ".terraform.lock.hcl"
MAX_PLAN_ENTRY_BYTES = 64 * 1024 * 1024


class SavedPlanError(Exception):
    """A saved plan cannot be applied: ``title`` is the workflow annotation's title."""

    def __init__(self, title: str, message: str):
        self.title = title
        self.message = message
        super().__init__(message)


STALE_PLAN = "Stale plan"
PLAN_NOT_FOUND = "Plan not found"
STALE_LEAD = "The plan is out of date \u2014 plan again."


def _plan_entry(plan_file: str, name: str) -> bytes | None:
    try:
        with zipfile.ZipFile(plan_file) as archive:
            try:
                info = archive.getinfo(name)
            except KeyError:
                return None
            if info.file_size > MAX_PLAN_ENTRY_BYTES:
                raise SavedPlanError(PLAN_NOT_FOUND, f"the saved plan's {name} is too large to read")
            return archive.read(info)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SavedPlanError(PLAN_NOT_FOUND, f"the saved plan is not a Terraform plan file ({exc})") from None


def state_meta(state: bytes | str) -> tuple[str, int]:
    """(lineage, serial) of a Terraform state file; ("", 0) when there is no state yet."""
    if not state.strip():
        return "", 0
    try:
        data = json.loads(state)
    except ValueError:
        raise SavedPlanError(STALE_PLAN, "the current Terraform state is not JSON") from None
    if not isinstance(data, dict):
        raise SavedPlanError(STALE_PLAN, "the current Terraform state is not a state file")
    lineage, serial = data.get("lineage", ""), data.get("serial", 0)
    if not isinstance(lineage, str) or not isinstance(serial, int) or isinstance(serial, bool):
        raise SavedPlanError(STALE_PLAN, "the Terraform state has no lineage or serial")
    return lineage, serial


def planned_state_meta(plan_file: str) -> tuple[str, int]:
    """(lineage, serial) of the state the saved plan was made from; ("", 0) for none."""
    entry = _plan_entry(plan_file, _PLAN_STATE_ENTRY)
    if entry is None:
        raise SavedPlanError(PLAN_NOT_FOUND, "the saved plan holds no state snapshot")
    return state_meta(entry)


def check_state(plan_file: str, current_state: bytes | str, pod: str) -> None:
    """Raise SavedPlanError (Stale plan) unless the state is still the one the plan was made from.

    The comparison Terraform makes when it applies a saved plan ("Saved plan is stale": the
    state snapshot in the plan against the state now, by lineage and serial), made before the
    workflow commits anything, so that a stale plan leaves the branch as it was.
    """
    planned = planned_state_meta(plan_file)
    current = state_meta(current_state)
    if planned == current:
        return
    if not planned[0]:
        detail = f"{pod} had no Terraform state when it was planned; another run has applied it since"
    elif not current[0]:
        detail = f"the Terraform state of {pod} the plan was made from no longer exists"
    elif planned[0] != current[0]:
        detail = f"the Terraform state of {pod} was replaced since the plan (another lineage)"
    else:
        serials = f"serial {planned[1]} then, {current[1]} now"
        detail = f"the Terraform state of {pod} changed since the plan ({serials})"
    raise SavedPlanError(STALE_PLAN, f"{STALE_LEAD} {detail}. Nothing was changed.")


def check_spec(show: Mapping[str, Any], spec: podspec.PodSpec) -> None:
    """Raise SavedPlanError unless the saved plan was made from exactly ``spec`` (the root
    module's ``spec`` output, as planned)."""
    planned: object = show
    for key in ("planned_values", "outputs", "spec", "value"):
        planned = planned.get(key) if isinstance(planned, Mapping) else None
    if not isinstance(planned, dict):
        raise SavedPlanError(
            STALE_PLAN, f"{STALE_LEAD} The saved plan does not say which spec it was made from."
        )
    if planned.get("customer") != spec.customer or planned.get("environment") != spec.environment:
        raise SavedPlanError(
            PLAN_NOT_FOUND,
            f"The saved plan is not a plan of {spec.pod}: it was made for "
            f"{_quote(planned.get('customer'))}/{_quote(planned.get('environment'))}.",
        )
    given = spec.as_dict()
    differ = [field for field in podspec.FIELDS if planned.get(field) != given[field]]
    if differ:
        shown = ", ".join(f"{f} {_display(planned.get(f))} planned, {_display(given[f])} now" for f in differ)
        raise SavedPlanError(STALE_PLAN, f"{STALE_LEAD} This run's spec is not the one planned ({shown}).")


def check_summary(summary: PlanSummary, pod: str) -> None:
    """Raise SavedPlanError (Plan not found) unless the plan run's summary is this pod's."""
    if summary.pod != pod:
        raise SavedPlanError(PLAN_NOT_FOUND, f"The plan run planned {_quote(summary.pod)}, not {pod}.")


def check_spec_blob(summary: PlanSummary, spec_blob: str | None) -> None:
    """Raise SavedPlanError (Stale plan) unless the spec.yml on the branch is still the one the
    plan was made against (``spec_blob``: its blob now, None for no spec.yml)."""
    if summary.spec_blob != spec_blob:
        then = summary.spec_blob or "no spec.yml"
        now = spec_blob or "no spec.yml"
        raise SavedPlanError(
            STALE_PLAN,
            f"{STALE_LEAD} The spec.yml of {summary.pod} on the branch changed since the plan "
            f"({then} then, {now} now). Nothing was changed.",
        )


def check_config(plan_file: str, tf_dir: str) -> None:
    """Raise SavedPlanError (Stale plan) unless the saved plan was made from the Terraform
    configuration in ``tf_dir`` as it is now, file for file.

    ``terraform apply tfplan`` applies the configuration snapshot inside the plan, not the
    files on disk: a plan made before terraform/ changed on the branch would apply the old
    configuration, and a plan file from anywhere else would apply whatever it holds.
    """
    index = _plan_entry(plan_file, "tfconfig/modules.json")
    try:
        modules = json.loads(index) if index is not None else None
    except ValueError:
        modules = None
    if not isinstance(modules, list) or not modules:
        raise SavedPlanError(PLAN_NOT_FOUND, "the saved plan holds no configuration snapshot")
    changed: list[str] = []
    with zipfile.ZipFile(plan_file) as archive:
        names = set(archive.namelist())
        for module in modules:
            key, folder = (module.get("Key"), module.get("Dir")) if isinstance(module, dict) else (None, None)
            if not isinstance(key, str) or not isinstance(folder, str) or ".." in Path(folder).parts:
                raise SavedPlanError(
                    PLAN_NOT_FOUND, "the saved plan's configuration snapshot is not readable"
                )
            prefix = f"tfconfig/m-{key}/"
            planned = {
                n[len(prefix) :] for n in names if n.startswith(prefix) and "/" not in n[len(prefix) :]
            }
            local_dir = Path(tf_dir, folder)
            local = {
                p.name for p in local_dir.glob("*") if p.is_file() and p.name.endswith((".tf", ".tf.json"))
            }
            shown = "terraform" if folder == "." else f"terraform/{folder}"
            for name in sorted(planned | local):
                same = (
                    name in planned
                    and name in local
                    and archive.getinfo(prefix + name).file_size <= MAX_PLAN_ENTRY_BYTES
                    and archive.read(prefix + name) == (local_dir / name).read_bytes()
                )
                if not same:
                    changed.append(f"{shown}/{name}")
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise SavedPlanError(
            STALE_PLAN,
            f"{STALE_LEAD} The Terraform configuration changed since the plan "
            f"({', '.join(changed[:3])}{more}). Nothing was changed.",
        )


def check_plan_run(
    run: Mapping[str, Any], *, run_id: str, repository: str, workflow: str, branch: str
) -> None:
    """Raise SavedPlanError (Plan not found) unless ``run`` (GitHub's workflow run object) is a
    successful, dispatched run of this workflow file, in this repository, on this branch.

    The saved plan is applied with the deploy role's credentials, and a plan file carries the
    configuration it applies: only this workflow's own plan runs may hand one over (a pull
    request's workflow, for one, can upload an artifact named tfplan too).
    """
    repo = run.get("repository")
    path = run.get("path")
    path = path.split("@", 1)[0] if isinstance(path, str) else ""
    problems = []
    if not isinstance(repo, Mapping) or repo.get("full_name") != repository:
        problems.append("of another repository")
    if path not in (workflow, f"{repository}/{workflow}"):
        problems.append(f"of another workflow ({_quote(path)})")
    if run.get("event") != "workflow_dispatch":
        problems.append(f"started by {_quote(run.get('event'))}, not a dispatch")
    if run.get("head_branch") != branch:
        problems.append(f"on {_quote(run.get('head_branch'))}, not {branch}")
    if (run.get("status"), run.get("conclusion")) != ("completed", "success"):
        problems.append(f"not a success ({_quote(run.get('conclusion') or run.get('status'))})")
    if problems:
        raise SavedPlanError(
            PLAN_NOT_FOUND,
            f"Run {run_id} is not a plan run of {workflow} on {branch}: {'; '.join(problems)}.",
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # the token stays with GitHub
        return None


MAX_RUN_BYTES = 1024 * 1024


def fetch_run(api_url: str, repository: str, run_id: str, token: str, timeout: float = 15) -> dict:
    """GitHub's workflow run ``run_id`` (GET /repos/{owner}/{repo}/actions/runs/{run_id},
    https://docs.github.com/en/rest/actions/workflow-runs#get-a-workflow-run).
    A 404 raises SavedPlanError (Plan not found); any other failure OSError."""
    if not podspec.PLAN_RUN_ID_RE.fullmatch(run_id):
        raise SavedPlanError(PLAN_NOT_FOUND, f"{_quote(run_id)} is not a workflow run id")
    if not api_url.startswith(("https://", "http://")):
        raise OSError(f"GITHUB_API_URL is not an HTTP URL: {_quote(api_url)}")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
        f"{api_url.rstrip('/')}/repos/{repository}/actions/runs/{run_id}",
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "deploy-pod-workflow",
        },
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_RUN_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise SavedPlanError(PLAN_NOT_FOUND, f"Run {run_id} does not exist in {repository}.") from None
        raise OSError(f"GitHub answered {exc.code} to GET run {run_id}") from None
    if len(body) > MAX_RUN_BYTES:
        raise OSError(f"GitHub's answer about run {run_id} is larger than {MAX_RUN_BYTES} bytes")
    try:
        run = json.loads(body)
    except ValueError:
        run = None
    if not isinstance(run, dict):
        raise OSError(f"GitHub's answer about run {run_id} is not a workflow run")
    return run


def annotation(title: str, message: str) -> str:
    """A workflow command that GitHub shows as an error annotation titled ``title``
    (https://docs.github.com/en/actions/reference/workflow-commands-for-github-actions)."""

    def escape(text: str, *, property_: bool) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if property_ else text

    return f"::error title={escape(title, property_=True)}::{escape(message, property_=False)}"


# --- CLI used by .github/workflows/deploy-pod.yml (scripts/deploy/terraform.sh) ---------------


def _read(path: str, limit: int) -> bytes:
    if path == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    if len(data) > limit:
        raise PlanSummaryError(f"{path} is larger than {limit // (1024 * 1024)} MiB")
    return data


# terraform show -json of a plan holds every planned value; pods are far below this.
MAX_SHOW_JSON_BYTES = 256 * 1024 * 1024


def _load_show(path: str) -> dict:
    try:
        show = json.loads(_read(path, MAX_SHOW_JSON_BYTES))
    except ValueError as exc:
        raise PlanSummaryError(f"{path} is not terraform show -json output: {str(exc)[:200]}") from None
    if not isinstance(show, dict):
        raise PlanSummaryError(f"{path} is not terraform show -json output")
    return show


def _cmd_summarize(args: argparse.Namespace) -> int:
    summary = summarize(_load_show(args.show_json), pod=args.pod, spec_blob=args.spec_blob or None)
    parsed = parse(summary)
    with open(args.out, "wb") as fh:
        fh.write(_dump(summary) + b"\n")
    print(f"Plan: {parsed.headline}.")
    return 0


def _cmd_markdown(args: argparse.Namespace) -> int:
    sys.stdout.write(markdown(parse(_read(args.summary, MAX_SUMMARY_BYTES))))
    return 0


def _cmd_restore_lock_file(args: argparse.Namespace) -> int:
    """Write the dependency lock file the saved plan was made with, so that terraform init
    installs exactly the provider versions the plan needs."""
    entry = _plan_entry(args.plan, _PLAN_LOCK_ENTRY)
    if entry is None:
        print("the saved plan holds no dependency lock file; terraform init chooses the providers")
        return 0
    with open(args.out, "wb") as fh:
        fh.write(entry)
    return 0


def _cmd_check_saved(args: argparse.Namespace) -> int:
    """Refuse a saved plan that is not this pod's or is out of date, as an annotation."""
    environ = os.environ
    pod = f"{environ.get('CUSTOMER', '')}/{environ.get('ENVIRONMENT', '')}"
    try:
        try:
            summary = parse(_read(args.summary, MAX_SUMMARY_BYTES))
        except (OSError, PlanSummaryError) as exc:
            raise SavedPlanError(
                PLAN_NOT_FOUND, f"The plan run's plan-summary cannot be read: {exc}"
            ) from None
        check_summary(summary, pod)
        if args.spec_blob is not None:
            check_spec_blob(summary, args.spec_blob or None)
        if args.show_json:
            try:
                spec = podspec.parse(_read(args.spec, podspec.MAX_SPEC_BYTES).decode("utf-8"))
            except (OSError, UnicodeDecodeError, podspec.SpecError) as exc:
                raise SavedPlanError(
                    STALE_PLAN, f"{STALE_LEAD} This run's spec.yml cannot be read: {exc}"
                ) from None
            check_spec(_load_show(args.show_json), spec)
        if args.tf_dir:
            check_config(args.plan, args.tf_dir)
        if args.state:
            check_state(args.plan, _read(args.state, MAX_SHOW_JSON_BYTES), pod)
    except SavedPlanError as exc:
        print(annotation(exc.title, exc.message), file=sys.stderr)
        return 1
    print(f"The saved plan of {pod} is current: {summary.headline}.")
    return 0


def _cmd_check_run(args: argparse.Namespace) -> int:
    """Refuse, as an annotation, a plan_run_id that is not this workflow's successful plan run.
    Reads the environment GitHub Actions sets (GITHUB_API_URL, GITHUB_REPOSITORY,
    GITHUB_WORKFLOW_REF, GITHUB_REF_NAME) and GH_TOKEN, PLAN_RUN_ID."""
    environ = os.environ
    run_id = environ.get("PLAN_RUN_ID", "")
    repository = environ.get("GITHUB_REPOSITORY", "")
    # owner/repo/.github/workflows/deploy-pod.yml@refs/heads/main
    workflow = environ.get("GITHUB_WORKFLOW_REF", "").split("@", 1)[0].removeprefix(f"{repository}/")
    branch = environ.get("GITHUB_REF_NAME", "")
    if not (repository and workflow and branch and environ.get("GH_TOKEN")):
        print(
            "error: GITHUB_REPOSITORY, GITHUB_WORKFLOW_REF, GITHUB_REF_NAME and GH_TOKEN are needed",
            file=sys.stderr,
        )
        return 1
    try:
        run = fetch_run(
            environ.get("GITHUB_API_URL", "https://api.github.com"), repository, run_id, environ["GH_TOKEN"]
        )
        check_plan_run(run, run_id=run_id, repository=repository, workflow=workflow, branch=branch)
    except SavedPlanError as exc:
        print(annotation(exc.title, f"{exc.message} Plan again; nothing was changed."), file=sys.stderr)
        return 1
    print(f"Run {run_id} is a plan run of {workflow} on {branch}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.plan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("summarize", help="write plan-summary.json from terraform show -json output")
    cmd.add_argument("--show-json", required=True, help="terraform show -json tfplan output ('-': stdin)")
    cmd.add_argument("--out", required=True, help="plan-summary.json to write")
    cmd.add_argument("--pod", default="", help="customer/environment")
    cmd.add_argument("--spec-blob", default="", help="git blob id of spec.yml on the branch (empty: none)")
    cmd.set_defaults(run=_cmd_summarize)
    cmd = sub.add_parser("markdown", help="print a plan summary as Markdown (the job's step summary)")
    cmd.add_argument("--summary", required=True, help="plan-summary.json")
    cmd.set_defaults(run=_cmd_markdown)
    cmd = sub.add_parser("restore-lock-file", help="write the lock file a saved plan was made with")
    cmd.add_argument("--plan", required=True, help="the saved plan (terraform plan -out)")
    cmd.add_argument("--out", required=True, help=".terraform.lock.hcl to write")
    cmd.set_defaults(run=_cmd_restore_lock_file)
    cmd = sub.add_parser(
        "check-saved", help="check a saved plan against this run (CUSTOMER, ENVIRONMENT) before applying it"
    )
    cmd.add_argument("--plan", required=True, help="the saved plan (terraform plan -out)")
    cmd.add_argument("--summary", required=True, help="the plan run's plan-summary.json")
    cmd.add_argument(
        "--spec-blob", help="git blob id of spec.yml on the branch now (empty: none): checks the spec.yml"
    )
    cmd.add_argument("--show-json", help="terraform show -json of the saved plan: checks the planned spec")
    cmd.add_argument("--spec", help="this run's rendered spec.yml (with --show-json)")
    cmd.add_argument("--state", help="terraform state pull output ('-': stdin): checks the state")
    cmd.add_argument("--tf-dir", help="the Terraform configuration: checks it is the one planned")
    cmd.set_defaults(run=_cmd_check_saved)
    cmd = sub.add_parser(
        "check-run", help="check PLAN_RUN_ID is this workflow's successful plan run (asks GitHub)"
    )
    cmd.set_defaults(run=_cmd_check_run)
    args = parser.parse_args(argv)
    if getattr(args, "show_json", None) and args.command == "check-saved" and not args.spec:
        parser.error("--show-json needs --spec")
    try:
        return int(args.run(args))
    except (OSError, PlanSummaryError, SavedPlanError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

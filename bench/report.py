"""Statistics, the printed table and the JSON file."""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def summary(samples: list[float]) -> dict:
    """Median and p95 (nearest rank) of a list of samples."""
    if not samples:
        return {"n": 0, "median": None, "p95": None}
    ordered = sorted(samples)
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return {"n": len(ordered), "median": statistics.median(ordered), "p95": ordered[rank - 1]}


@dataclass
class Row:
    """One line of the table: the portal's figure beside the baseline's, and the target."""

    scenario: str
    unit: str  # "ms", "s", "req/s", "MiB", "correct", "probes"
    portal: dict
    baseline_name: str
    baseline: dict
    portal_requests: float | None = None
    baseline_requests: float | None = None
    # "speedup" = baseline / portal (bigger is better for the portal), "share" = portal / baseline.
    ratio_kind: str = "speedup"
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        p, b = self.portal.get("median"), self.baseline.get("median")
        if p is None or b is None:
            return None
        if self.ratio_kind == "speedup":
            return b / p if p else math.inf
        return p / b if b else None


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("ms", "req/s", "MiB") or unit == "s":
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _cell(stats: dict, unit: str) -> str:
    if stats.get("text"):
        return stats["text"]
    median = _fmt(stats.get("median"), unit)
    if stats.get("p95") is not None and stats.get("n", 0) > 1:
        return f"{median} ({_fmt(stats['p95'], unit)})"
    return median + (f" {stats['tag']}" if stats.get("tag") else "")


def _ratio(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "—"
    if math.isinf(ratio):
        return "∞"
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.2f}×"


def _requests(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if isinstance(value, float) and not value.is_integer() else f"{value:,.0f}"


def table(rows: list[Row]) -> str:
    """A Markdown table (readable in a terminal and pasteable into the README)."""
    header = (
        "| scenario | unit | portal median (p95) | GH req | baseline | baseline median (p95) | GH req "
        "| ratio | target | met |"
    )
    lines = [header, "|" + "---|" * 10]
    for row in rows:
        met = "—" if row.met is None else ("yes" if row.met else "**NO**")
        portal = _cell(row.portal, row.unit)
        lines.append(
            f"| {row.scenario} | {row.unit} | {portal} | {_requests(row.portal_requests)} "
            f"| {row.baseline_name} | {_cell(row.baseline, row.unit)} | {_requests(row.baseline_requests)} "
            f"| {_ratio(row)} | {row.target} | {met} |"
        )
    return "\n".join(lines)


def notes(rows: list[Row], general: list[str]) -> str:
    lines = [f"- {note}" for note in general]
    for row in rows:
        lines += [f"- *{row.scenario}*: {note}" for note in row.notes]
    return "\n".join(lines)


def write_json(rows: list[Row], general: list[str], config: dict, elapsed: float) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    payload = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "config": config,
        "elapsed_seconds": round(elapsed, 1),
        "notes": general,
        "rows": [asdict(row) | {"ratio": row.ratio} for row in rows],
    }
    text = json.dumps(payload, indent=2, default=str)
    path = RESULTS_DIR / f"bench-{stamp}.json"
    path.write_text(text)
    (RESULTS_DIR / "latest.json").write_text(text)
    return path

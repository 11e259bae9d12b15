"""The deploy and pods-page scenarios again on PostgreSQL, in the same ``make bench`` run.

``scripts/test_postgres.sh`` starts a throw-away PostgreSQL server (installing Debian's package
when it is missing and the bench runs as root) and runs ``python -m bench --only
cold,deploy,throughput`` against it (``BENCH_DATABASE_URL``); its rows are read back from JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .report import Row
from .stack import ROOT

SCENARIOS = "cold,deploy,throughput"


def rows(*, latency: float, quick: bool) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        out = Path(tmp) / "rows.json"
        inner = (
            f'BENCH_DATABASE_URL="$DATABASE_URL" exec {sys.executable} -m bench --only {SCENARIOS} '
            f"--latency {latency} --rows-out {out}" + (" --quick" if quick else "")
        )
        done = subprocess.run(
            [str(ROOT / "scripts" / "test_postgres.sh"), "bash", "-c", inner],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout)[-600:].strip().replace("\n", " ")
            return [
                Row(
                    "cold listing, deploy and throughput on PostgreSQL",
                    "ms",
                    {},
                    "—",
                    {},
                    notes=[f"not measured: scripts/test_postgres.sh exited {done.returncode}: {tail}"],
                )
            ]
        return [Row(**{k: v for k, v in row.items() if k != "ratio"}) for row in json.loads(out.read_text())]

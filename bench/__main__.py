"""``python -m bench``: run every scenario, print the table, write bench/results/*.json."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from . import postgres, report, scenarios
from .stack import Stack

ALL = (
    "inventory",
    "deploy",
    "api",
    "concurrency",
    "review",
    "health",
    "throughput",
    "memory",
    "live",
    "sync",
    "scale",
)
ALL += ("postgres",)
# Not in ALL: "cold" (the cold listing alone at the largest size), which the PostgreSQL run adds.
# --quick: about a minute; no 10,000-pod rows and no PostgreSQL run (ask for them with --only).
QUICK = ("inventory", "deploy", "api", "concurrency", "review", "health", "throughput", "memory", "sync")

GENERAL_NOTES = [
    "Emulator: fakegithub in-process on 127.0.0.1 with {latency:.0f} ms added to every API call; "
    "portal: gunicorn portal.wsgi -w 2 (sync workers), DEBUG=false, SQLite, database cache.",
    "Baselines are the seed's code (seed/000_b00814fe0b204ac0.txt) run with PyGithub's defaults as the "
    "seed wrote it, including its client-side throttle (0.25 s between requests, 1 s between writes).",
    "Latency figures are median (p95) over the repetitions in the JSON; ratio = baseline ÷ portal for "
    "times (speed-up), portal ÷ baseline for counts, throughput and memory. "
    "GH req = GitHub requests the emulator received for one operation (304s included).",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added per GitHub call")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, sizes 10 and 100 only")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma list of scenarios to run (default: {','.join(ALL)}; with --quick: {','.join(QUICK)})",
    )
    parser.add_argument("--rows-out", help="also write the rows as JSON to this file (the PostgreSQL run)")
    args = parser.parse_args(argv)
    cfg = scenarios.Config(latency=args.latency)
    if args.quick:
        cfg = scenarios.Config(
            latency=args.latency,
            sizes=(10, 100),
            warm_runs=5,
            cold_runs=1,
            change_runs=2,
            deploys=5,
            seed_dispatches=1,
            seed_list_runs=1,
            seed_list_cap=10,
            health_seconds=3,
            load_seconds=3,
            page_views=100,
            sync_requests=20,
            diagnostics=False,
            settings_row=False,
            review_syncs=1,
        )
    wanted = set((args.only or ",".join(QUICK if args.quick else ALL)).split(","))
    started = time.perf_counter()
    rows: list[report.Row] = []
    print(f"bench: latency {cfg.latency * 1000:.0f} ms per GitHub call; starting emulator and gunicorn…")
    with Stack(latency=cfg.latency) as stack:
        session = stack.login()
        client, seed_repo = scenarios.seed_client(stack)
        pods = scenarios.Pods(start=0)
        steps = [
            ("inventory", lambda: scenarios.inventory(stack, cfg, session, seed_repo)),
            ("cold", lambda: scenarios.cold(stack, cfg, session)),
            ("deploy", lambda: scenarios.deploy(stack, cfg, session, seed_repo, pods)),
            ("concurrency", lambda: scenarios.concurrency(stack, cfg, session, seed_repo, pods)),
            ("review", lambda: scenarios.review(stack, cfg, session, seed_repo, pods)),
            ("health", lambda: scenarios.health(stack, cfg, client, seed_repo)),
            ("throughput", lambda: scenarios.throughput(stack, cfg, session)),
            ("memory", lambda: scenarios.memory(stack, cfg)),
            ("live", lambda: scenarios.live(stack, cfg, session, pods)),
            ("api", lambda: scenarios.api(stack, cfg, session, pods)),
            ("sync", lambda: scenarios.sync(stack, cfg, session, pods)),
            ("scale", lambda: scenarios.scale(stack, cfg, session)),
        ]
        if "inventory" not in wanted:
            stack.grow_pods(cfg.sizes[-1])
        for name, step in steps:
            if name not in wanted:
                continue
            t0 = time.perf_counter()
            print(f"bench: {name}…", flush=True)
            try:
                rows += step()
            except Exception as exc:  # the other scenarios' rows are still printed
                traceback.print_exc()
                rows.append(report.Row(f"{name}: failed", "—", {}, "—", {}, met=False, notes=[repr(exc)]))
            print(f"bench: {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    if "postgres" in wanted:
        t0 = time.perf_counter()
        print("bench: postgres (cold listing, deploy, throughput; scripts/test_postgres.sh)…", flush=True)
        rows += postgres.rows(latency=cfg.latency, quick=args.quick)
        print(f"bench: postgres done in {time.perf_counter() - t0:.1f} s", flush=True)
    elapsed = time.perf_counter() - started
    if args.rows_out:
        Path(args.rows_out).write_text(json.dumps([asdict(row) for row in rows], default=str))
    general = [note.format(latency=cfg.latency * 1000) for note in GENERAL_NOTES]
    print()
    print(report.table(rows))
    print()
    print(report.notes(rows, general))
    path = report.write_json(rows, general, asdict(cfg), elapsed)
    missed = [row.scenario for row in rows if row.met is False]
    print(f"\nbench: {elapsed:.0f} s; results in {path}; targets missed: {len(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m fakegithub``: serve the emulator for the sandbox (``make run``) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from fakegithub.pytest_plugin import deploy_pod
from fakegithub.server import FakeGitHub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakegithub", description=__doc__)
    parser.add_argument("--port", type=int, default=8001, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--repo", default="demo/pods", help="owner/name of the specs repository")
    parser.add_argument("--specs", default=None, help="local directory whose files seed the repository")
    parser.add_argument("--specs-path", default="pods", help="where those files live inside the repository")
    parser.add_argument("--token", default="sandbox-token", help="the accepted API token")
    parser.add_argument("--scopes", default="repo, workflow", help="x-oauth-scopes value ('' = no header)")
    parser.add_argument("--api-prefix", default="", help='"/api/v3" to look like GitHub Enterprise Server')
    parser.add_argument("--webhook-url", default=None, help="POST signed workflow_run events here")
    parser.add_argument("--webhook-secret", default=None)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API call")
    parser.add_argument("--auto-runs", action="store_true", help="advance workflow runs on a clock")
    parser.add_argument("--queued-for", type=float, default=1.0)
    parser.add_argument("--in-progress-for", type=float, default=2.0)
    parser.add_argument(
        "--ghes", action="store_true", help="GHES 3.20: reject return_run_details with 400, no rate limiting"
    )
    parser.add_argument(
        "--rate-limiting",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="API rate limiting (default on; off with --ghes, as GHES ships; off: /rate_limit answers 404)",
    )
    parser.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="CUSTOMER/ENV",
        help="runs for this pod conclude 'failure'",
    )
    args = parser.parse_args(argv)

    gh = FakeGitHub(
        repo=args.repo,
        specs_dir=args.specs,
        specs_path=args.specs_path,
        token=args.token,
        scopes=args.scopes or None,
        api_prefix=args.api_prefix,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        auto_runs=args.auto_runs,
        queued_for=args.queued_for,
        in_progress_for=args.in_progress_for,
        latency=args.latency,
        ghes=args.ghes,
        rate_limiting_enabled=args.rate_limiting,
        workflow_effect=deploy_pod,
        # Like GitHub's, run ids never repeat, even across restarts of the sandbox.
        first_run_id=int(time.time() * 10),
    ).start(port=args.port)
    gh.conclusions.update({pod: "failure" for pod in args.fail})
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"fakegithub serving {args.repo} at {gh.url} (API {gh.api_url}, {len(gh.files)} files)",
        flush=True,
    )
    stop.wait()
    gh.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

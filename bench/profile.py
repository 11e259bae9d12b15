"""``python -m bench.profile``: where a warm pods-page view spends its time (cProfile, in-process).

Runs the portal's real view through Django's test client against the emulator (same latency
as ``make bench``) with N pods, then prints the hottest functions. Not part of ``make bench``:
use it to explain a missed target.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import time

from .stack import CREATE_DEPLOYER, USERNAME, Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--path", default="/")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)

    stack = Stack(latency=args.latency)
    try:
        stack.gh.start()
        stack.env = stack._portal_env() | {"DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1"}
        stack.manage("migrate", "--noinput")
        stack.manage("collectstatic", "--noinput")
        stack.manage("shell", "-c", CREATE_DEPLOYER)
        stack.grow_pods(args.pods)
        os.environ.update(stack.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
        # Django is imported only now: settings are read from the environment set just above.
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.test import Client

        client = Client()
        client.force_login(User.objects.get(username=USERNAME))
        assert client.get(args.path).status_code == 200  # cold: fills the cache
        timings = []
        profiler = cProfile.Profile()
        for _ in range(args.views):
            started = time.perf_counter()
            profiler.enable()
            response = client.get(args.path)
            profiler.disable()
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        timings.sort()
        print(
            f"{args.views} warm views of {args.path} with {args.pods} pods, {args.latency * 1000:.0f} ms "
            f"per GitHub call: median {timings[len(timings) // 2]:.1f} ms, {len(response.content):,} bytes"
        )
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(args.top)
            print(out.getvalue())
    finally:
        stack.gh.stop()
        shutil.rmtree(stack.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""API deploy latency beside the form's, in the bench's deploy scenario (``python -m bench``'s
stack: the emulator with 50 ms per GitHub call, gunicorn with 2 workers, SQLite):

    .venv/bin/python -m tests.api.bench_deploy [--deploys 20] [--latency 0.05]

Alternates a form POST /deploy/ (a signed-in session) and an API POST /api/v1/requests/ (a
bearer token) on fresh pods, and prints each one's median and p95 and GitHub requests.
"""

from __future__ import annotations

import argparse
import time
import uuid

from bench import scenarios
from bench.report import summary
from bench.stack import USERNAME, Stack

MS = 1000


def api_deploy(stack: Stack, token: str, index: int) -> tuple[float, int]:
    import requests

    values = scenarios._edit(stack, index)
    body = {**values, "waf_enabled": values["waf_enabled"] == "true"}
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
    started = time.perf_counter()
    response = requests.post(stack.url("/api/v1/requests/"), json=body, headers=headers, timeout=60)
    return (time.perf_counter() - started) * MS, response.status_code


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deploys", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    with Stack(latency=args.latency) as stack:
        stack.grow_pods(2 * args.deploys + 2)
        token_file = stack.tmp / "token"
        stack.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; from api.models import ApiToken; "
            f"user = User.objects.get(username={USERNAME!r}); "
            f"open({str(token_file)!r}, 'w').write(ApiToken.issue(user=user, name='bench')[1])",
        )
        token = token_file.read_text()
        session = stack.login()
        session.get(stack.url("/"), timeout=60).raise_for_status()
        pods = scenarios.Pods(start=0)
        form_ms, page_ms, api_ms, form_req, api_req = [], [], [], [], []
        for _ in range(args.deploys):
            stack.gh.clear_requests()
            result = scenarios._portal_deploy(stack, session, pods.take())
            assert result["status"] == 302, result
            form_ms.append(result["ms"])
            started = time.perf_counter()
            session.get(stack.url(f"/requests/{result['pk']}/"), timeout=60).raise_for_status()
            page_ms.append(result["ms"] + (time.perf_counter() - started) * MS)
            form_req.append(len(stack.gh.requests))
            stack.gh.clear_requests()
            ms, status = api_deploy(stack, token, pods.take())
            assert status == 201, status
            api_ms.append(ms)
            api_req.append(len(stack.gh.requests))
    rows = (
        ("form POST /deploy/ (→ 302)", form_ms, form_req),
        ("form POST + request page", page_ms, form_req),
        ("API POST /api/v1/requests/", api_ms, api_req),
    )
    for name, times, counts in rows:
        s = summary(times)
        print(
            f"{name:28} median {s['median']:6.1f} ms, p95 {s['p95']:6.1f} ms, "
            f"GitHub requests {max(counts)}, n={s['n']}"
        )


if __name__ == "__main__":
    main()

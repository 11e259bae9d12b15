"""`make run`: migrate and start the portal on 127.0.0.1:8000.

With no GitHub credentials in the environment it starts the GitHub emulator (the sandbox),
seeded from pods/, and a demo/demo user; it says so on screen and on every page. Only the
sandbox runs with DJANGO_DEBUG: with real credentials the portal runs with production settings,
relaxed only for plain HTTP on the loopback address.
"""

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORTAL = "127.0.0.1:8000"
EMULATOR_PORT = int(os.environ.get("SANDBOX_GITHUB_PORT", "8001"))
# Deployments of these sandbox pods fail on purpose, to show what a failed run looks like.
FAILING_PODS = os.environ.get("SANDBOX_FAILING_PODS", "umbrella/dev").split(",")


def is_sandbox(environ: Mapping[str, str]) -> bool:
    """No GitHub credentials: the portal talks to the emulator."""
    return not (environ.get("GH_TOKEN") or environ.get("GITHUB_APP_ID"))


def portal_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The portal's environment: debug mode in the sandbox only, never with real credentials
    (debug pages show settings and tracebacks to anyone who reaches the portal)."""
    env = dict(environ)
    if is_sandbox(env):
        env.setdefault("DJANGO_DEBUG", "true")
        return env
    env["DJANGO_DEBUG"] = "false"
    # Production settings, but served over plain HTTP on 127.0.0.1 by runserver.
    env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    env.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
    env.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    env.setdefault("DJANGO_SESSION_COOKIE_SECURE", "false")
    env.setdefault("DJANGO_CSRF_COOKIE_SECURE", "false")
    env.setdefault("DJANGO_SECURE_HSTS_SECONDS", "0")
    return env


def manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def start_emulator(env: dict) -> subprocess.Popen:
    secret = secrets.token_hex(16)
    # Always its own database: the emulator starts afresh each time, so does the sandbox's
    # history, and the demo/demo superuser never lands in a real database.
    sandbox_db = ROOT / ".sandbox" / "db.sqlite3"
    sandbox_db.parent.mkdir(exist_ok=True)
    sandbox_db.unlink(missing_ok=True)
    env["DATABASE_URL"] = f"sqlite:///{sandbox_db}"
    env.update(
        GH_TOKEN="sandbox-token",  # noqa: S106 - the emulator's own token
        GH_REPO="demo/pods",
        GITHUB_API_URL=f"http://127.0.0.1:{EMULATOR_PORT}",
        GITHUB_WEBHOOK_SECRET=secret,
        PORTAL_SANDBOX="true",
    )
    emulator = subprocess.Popen(
        [
            sys.executable, "-m", "fakegithub", "--port", str(EMULATOR_PORT), "--repo", "demo/pods",
            "--specs", "pods", "--specs-path", env.get("SPECS_PATH", "pods"), "--token", "sandbox-token",
            "--webhook-url", f"http://{PORTAL}/webhooks/github", "--webhook-secret", secret,
            "--auto-runs", "--queued-for", "3", "--in-progress-for", "6",
            *(arg for pod in FAILING_PODS for arg in ("--fail", pod)),
        ],
        cwd=ROOT,
    )  # fmt: skip
    for _ in range(50):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{EMULATOR_PORT}/rate_limit", timeout=1)  # noqa: S310
            return emulator
        except urllib.error.HTTPError:
            return emulator  # it answers (401 without a token): it is up
        except OSError:
            if emulator.poll() is not None:
                sys.exit(
                    f"The GitHub emulator did not start (port {EMULATOR_PORT} busy? set SANDBOX_GITHUB_PORT)."
                )
            time.sleep(0.1)
    sys.exit("The GitHub emulator did not answer.")


def main() -> None:
    sandbox = is_sandbox(os.environ)
    env = portal_environment(os.environ)
    if not sandbox and os.environ.get("DJANGO_DEBUG", "false").lower() != "false":
        print("\n  DJANGO_DEBUG is ignored: real GitHub credentials are set.", flush=True)
    emulator = start_emulator(env) if sandbox else None
    try:
        manage("migrate", "--noinput", "--verbosity", "0", env=env)
        if sandbox:
            manage("shell", "-c", CREATE_DEMO_USER, env=env)
            print(
                "\n  SANDBOX: no GH_TOKEN or GitHub App is set, so the portal uses the built-in GitHub"
                f"\n  emulator on 127.0.0.1:{EMULATOR_PORT}. Log in at http://{PORTAL}/ as demo / demo."
                f"\n  Deployments of {', '.join(FAILING_PODS)} fail on purpose (SANDBOX_FAILING_PODS).\n",
                flush=True,
            )
        else:
            # Without debug mode the portal serves the collected (hashed) static files.
            manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
            print(
                f"\n  Portal on http://{PORTAL}/ talking to {env.get('GITHUB_API_URL', 'api.github.com')}\n",
                flush=True,
            )
        manage("runserver", PORTAL, "--noreload", env=env)
    except (KeyboardInterrupt, subprocess.CalledProcessError):
        pass
    finally:
        if emulator:
            emulator.terminate()


CREATE_DEMO_USER = """
from django.contrib.auth.models import Group, User
user, _ = User.objects.get_or_create(username="demo", defaults={"is_staff": True, "is_superuser": True})
user.set_password("demo")
user.save()
user.groups.add(Group.objects.get(name="Deployers"))
"""

if __name__ == "__main__":
    main()

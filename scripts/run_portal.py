"""`make run`: migrate and start the portal on 127.0.0.1:8000 (`PORT` chooses another port).

With no GitHub credentials in the environment it starts the sandbox: the GitHub emulator seeded
from pods/ (on PORT+1), the users demo/demo (Deployers) and lead/lead (Deployers and Approvers),
and a notification receiver (on PORT+2) that prints every notification the portal sends; it says
so on screen and on every page. Only the sandbox runs with DJANGO_DEBUG: with real credentials
the portal runs with production settings, relaxed only for plain HTTP on the loopback address.
"""

import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("PORT", "8000"))
PORTAL = f"127.0.0.1:{PORT}"
EMULATOR_PORT = int(os.environ.get("SANDBOX_GITHUB_PORT", str(PORT + 1)))
NOTIFY_PORT = int(os.environ.get("SANDBOX_NOTIFY_PORT", str(PORT + 2)))
# Deployments of these sandbox pods fail on purpose, to show what a failed run looks like.
FAILING_PODS = os.environ.get("SANDBOX_FAILING_PODS", "umbrella/dev").split(",")


def is_sandbox(environ: Mapping[str, str]) -> bool:
    """No GitHub credentials: the portal talks to the emulator."""
    return not (environ.get("GH_TOKEN") or environ.get("GITHUB_APP_ID"))


def portal_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The portal's environment: debug mode in the sandbox only, never with real credentials
    (debug pages show settings and tracebacks to anyone who reaches the portal)."""
    env = dict(environ)
    env.setdefault("PORTAL_URL", f"http://{PORTAL}")  # the link in notifications
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
    # history, and the sandbox users never land in a real database.
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


class NotificationReceiver:
    """The sandbox's stand-in for a team's webhook: receives the portal's signed JSON
    notifications (hmac://) on 127.0.0.1, checks X-Portal-Signature-256 (401 when it does not
    match), prints one line each and lists the latest ones as JSON on GET /."""

    KEEP = 50
    MAX_BODY = 64 * 1024

    def __init__(self, port: int, secret: str, out: Callable[[str], None] = print) -> None:
        self.secret = secret
        self.out = out
        self.received: deque[dict] = deque(maxlen=self.KEEP)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= receiver.MAX_BODY:
                    self.answer(413 if length else 400, {"error": "bad length"})
                    return
                body = self.rfile.read(length)
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(self.headers.get("X-Portal-Signature-256", ""), expected):
                    receiver.out("  NOTIFICATION REFUSED: its X-Portal-Signature-256 does not match")
                    self.answer(401, {"error": "bad signature"})
                    return
                try:
                    message = json.loads(body)
                    line = f"{message['title']} ({message['event']}) {message.get('url') or ''}"
                except (ValueError, TypeError, KeyError):
                    self.answer(400, {"error": "not a portal notification"})
                    return
                receiver.received.append(message)
                receiver.out(f"  NOTIFICATION (signature verified): {line}")
                self.answer(200, {"ok": True})

            def do_GET(self) -> None:
                self.answer(200, list(receiver.received))

            def answer(self, status: int, document: object) -> None:
                data = json.dumps(document, indent=2).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass  # one line per notification is printed above

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_notification_receiver(env: dict, port: int = NOTIFY_PORT) -> NotificationReceiver | None:
    """Point the portal's notifications at a receiver in this process, unless NOTIFY_URLS is set."""
    if env.get("NOTIFY_URLS"):
        return None
    secret = secrets.token_hex(16)
    try:
        receiver = NotificationReceiver(port, secret)
    except OSError:
        print(f"\n  No notification receiver: port {port} is busy (set SANDBOX_NOTIFY_PORT).", flush=True)
        return None
    env.update(
        NOTIFY_URLS=f"hmac://127.0.0.1:{receiver.port}/notifications",
        NOTIFY_SIGNING_SECRET=secret,
    )
    return receiver


def create_sandbox_users() -> None:
    """demo/demo deploys; lead/lead deploys and approves other people's plans. Both may read the
    audit history in the admin. Run inside Django (manage.py shell)."""
    from django.contrib.auth.models import Group, Permission, User

    deployers = Group.objects.get(name="Deployers")
    approvers, created = Group.objects.get_or_create(name="Approvers")
    if created:  # the data migration normally creates it
        approvers.permissions.add(
            Permission.objects.get(
                content_type__app_label="deployments", codename="approve_deploymentrequest"
            )
        )
    audit = Permission.objects.filter(content_type__app_label="deployments", codename__startswith="view_")
    for username, groups in (("demo", [deployers]), ("lead", [deployers, approvers])):
        user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True})
        user.set_password(username)
        user.save()
        user.groups.add(*groups)
        user.user_permissions.add(*audit)


def main() -> None:
    sandbox = is_sandbox(os.environ)
    env = portal_environment(os.environ)
    if not sandbox and os.environ.get("DJANGO_DEBUG", "false").lower() != "false":
        print("\n  DJANGO_DEBUG is ignored: real GitHub credentials are set.", flush=True)
    emulator = start_emulator(env) if sandbox else None
    receiver = start_notification_receiver(env) if sandbox else None
    try:
        manage("migrate", "--noinput", "--verbosity", "0", env=env)
        if sandbox:
            manage("shell", "--verbosity", "0", "-c", CREATE_SANDBOX_USERS, env=env)
            notifications = (
                f"\n  Notifications are printed here (and listed at http://127.0.0.1:{receiver.port}/)."
                if receiver
                else ""
            )
            print(
                "\n  SANDBOX: no GH_TOKEN or GitHub App is set, so the portal uses the built-in GitHub"
                f"\n  emulator on 127.0.0.1:{EMULATOR_PORT}. Log in at http://{PORTAL}/ as demo / demo"
                "\n  (deploys) or lead / lead (deploys, and approves other people's plans for production)."
                f"\n  Deployments of {', '.join(FAILING_PODS)} fail on purpose (SANDBOX_FAILING_PODS)."
                f"{notifications}\n",
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
        if receiver:
            receiver.close()


# manage.py shell runs this file's create_sandbox_users() inside Django.
CREATE_SANDBOX_USERS = (
    f"import runpy; runpy.run_path({str(Path(__file__).resolve())!r})['create_sandbox_users']()"
)

if __name__ == "__main__":
    main()

"""Loopback servers that receive notifications: HTTP(S) webhooks and SMTP mail.

Each records what it received and lets a test wait for it (no sleeps). ``HttpReceiver`` can
answer any status or hold every request until it is closed, to play a notifier that is down.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socketserver
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1_000_000


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class _Recorder:
    def __init__(self) -> None:
        self.items: list = []
        self._changed = threading.Condition()

    def add(self, item) -> None:
        with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> list:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.items) >= count, timeout):
                raise AssertionError(f"received {len(self.items)} of {count} within {timeout} s")
            return list(self.items)


class HttpReceiver:
    """A webhook endpoint on 127.0.0.1: records each POST, answers ``status`` (or, with
    ``hang``, nothing until closed). ``tls_dir`` serves HTTPS with a self-signed certificate."""

    def __init__(self, *, status: int = 200, hang: bool = False, tls_dir: Path | None = None) -> None:
        self.status = status
        self.hang = hang
        self.received = _Recorder()
        self.arrived = _Recorder()  # every request as soon as its body is read, answered or not
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                url = urlsplit(self.path)
                item = Received(
                    "POST", url.path, parse_qs(url.query), dict(self.headers.items()), self.rfile.read(length)
                )
                receiver.arrived.add(item)
                if receiver.hang:
                    receiver._release.wait(30)
                    return
                receiver.received.add(item)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls_dir is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self_signed_certificate(tls_dir))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def wait_for(self, count: int = 1, timeout: float = 10) -> list[Received]:
        return self.received.wait_for(count, timeout)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """Just enough of an SMTP server on 127.0.0.1 (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA,
    RSET, NOOP, QUIT) to accept mail from smtplib and keep each message."""

    def __init__(self) -> None:
        self.received = _Recorder()
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(f"{line}\r\n".encode())

            def handle(self) -> None:
                self.reply("220 localhost ESMTP test receiver")
                sender, recipients = "", []
                while line := self.rfile.readline(MAX_BODY):
                    verb = line[:4].decode("ascii", "replace").upper()
                    if verb == "EHLO":
                        self.reply("250-localhost")
                        self.reply("250 8BITMIME")
                    elif verb == "HELO":
                        self.reply("250 localhost")
                    elif verb == "MAIL":
                        sender, recipients = line.decode().split(":", 1)[1].strip(), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(line.decode().split(":", 1)[1].strip())
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        data = []
                        while (chunk := self.rfile.readline(MAX_BODY)) not in (b".\r\n", b""):
                            data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                        message = email.message_from_bytes(b"".join(data), policy=email.policy.default)
                        receiver.received.add((sender, recipients, message))
                        self.reply("250 OK queued")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 OK")
                    else:
                        self.reply("502 Command not implemented")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def wait_for(self, count: int = 1, timeout: float = 10) -> list[tuple[str, list[str], EmailMessage]]:
        return self.received.wait_for(count, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    """A certificate and key for 127.0.0.1, written to ``directory``; returns their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "receiver.crt", directory / "receiver.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)

"""A browser-like HTTP client over http.client: cookies, CSRF token, login, the deploy form."""

from __future__ import annotations

import http.client
import re
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

HOST = "127.0.0.1"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    text: str


@dataclass
class Browser:
    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None,
        port: int | None = None, timeout: float = 30,
    ) -> Answer:  # fmt: skip
        connection = http.client.HTTPConnection(HOST, port or self.port, timeout=timeout)
        sent = {"Host": HOST, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
        finally:
            connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie(header)
            self.cookies.update({name: morsel.value for name, morsel in cookie.items()})
        return Answer(response.status, response.headers, text)

    def get(self, path: str, **kwargs) -> Answer:
        return self.request("GET", path, **kwargs)

    def post_form(self, path: str, data: dict, **kwargs) -> Answer:
        if "csrftoken" not in self.cookies:
            self.get("/accounts/login/")
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": self.cookies["csrftoken"], **data}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.request("POST", path, body=body, headers=headers, **kwargs)

    def login(self, username: str, password: str) -> None:
        answer = self.post_form("/accounts/login/", {"username": username, "password": password})
        assert answer.status == 302, (answer.status, answer.text[:500])
        assert "sessionid" in self.cookies

    def deploy(self, customer: str, environment: str, instance_name: str, instance_type: str, *,
               key: str | None = None, port: int | None = None) -> Answer:  # fmt: skip
        """POST the edit form for this pod, as the pod's edit page submits it."""
        data = {
            "customer": customer,
            "environment": environment,
            "instance_name": instance_name,
            "instance_type": instance_type,
            "mode": "edit",
            "idempotency_key": key or str(uuid.uuid4()),
        }
        return self.post_form("/deploy/", data, port=port)


def static_paths(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html)

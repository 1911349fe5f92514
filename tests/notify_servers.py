"""Loopback stand-ins for what notifications reach: a webhook receiver that checks the
signature and refuses replays, a chat hook, the GitHub and Jira Data Center REST APIs
(each request checked against the documented shape and auth header), and a real SMTP
server (aiosmtpd) that keeps the mails it receives."""

from __future__ import annotations

import base64
import email
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.errors import Forbidden
from appliance.notify import webhook


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, dict[str, Any]]


class HttpStandIn:
    """A threaded HTTP server on loopback; ``handle(request) -> (status, json)``.
    ``start``/``stop`` can repeat on the same port (a destination down, then back)."""

    def __init__(self, handle: Callable[[Request], Answer], port: int | None = None) -> None:
        self.handle, self.port = handle, port or free_port()
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpStandIn:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                n = int(self.headers.get("Content-Length") or 0)
                req = Request("POST", self.path, dict(self.headers.items()), self.rfile.read(n))
                with outer.lock:
                    outer.requests.append(req)
                    status, body = outer.handle(req)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class WebhookReceiver:
    """Accepts a delivery only with a valid signature, a fresh timestamp and a delivery
    id it has not taken before; keeps the accepted bodies in order."""

    key: str
    tolerance_s: float = 300
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def __call__(self, req: Request) -> Answer:
        try:
            webhook.verify(self.key, req.headers, req.body, time.time(), self.tolerance_s)
        except Forbidden as exc:
            self.refused.append(exc.message)
            return 403, {"error": exc.message}
        delivery = req.headers.get(webhook.DELIVERY, "")
        if delivery in self.seen:
            self.refused.append(f"duplicate delivery {delivery}")
            return 200, {"ok": True, "duplicate": True}
        self.seen.add(delivery)
        self.accepted.append(req.json())
        return 200, {"ok": True}


@dataclass
class ChatReceiver:
    texts: list[str] = field(default_factory=list)

    def __call__(self, req: Request) -> Answer:
        body = req.json()
        if req.headers.get("Content-Type") != "application/json" or not body.get("text"):
            return 400, {"error": "a Slack-compatible hook takes JSON with text"}
        self.texts.append(body["text"])
        return 200, {"ok": True}


@dataclass
class GitHubApi:
    """``POST /repos/{owner}/{repo}/issues`` and ``.../issues/{n}/comments``."""

    owner_repo: str
    token: str
    issues: list[dict[str, Any]] = field(default_factory=list)
    comments: list[tuple[int, str]] = field(default_factory=list)
    base_path: str = ""

    def __call__(self, req: Request) -> Answer:
        auth = req.headers.get("Authorization", "")
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            return 401, {"message": "Bad credentials",
                         "documentation_url": "https://docs.github.com/rest"}
        if req.headers.get("Accept") != "application/vnd.github+json":
            return 415, {"message": "Accept must be application/vnd.github+json"}
        prefix = f"{self.base_path}/repos/{self.owner_repo}/issues"
        body = req.json()
        if req.path == prefix:
            if not isinstance(body.get("title"), str) or not body["title"] or \
                    not isinstance(body.get("body"), str) or \
                    not all(isinstance(x, str) for x in body.get("labels", [])) or \
                    set(body) - {"title", "body", "labels", "assignees", "milestone"}:
                return 422, {"message": "Validation Failed"}
            number = len(self.issues) + 1
            self.issues.append(body)
            return 201, {"number": number, "html_url": f"https://ghe.example/{self.owner_repo}"
                                                       f"/issues/{number}"}
        if req.path.startswith(prefix + "/") and req.path.endswith("/comments"):
            number = int(req.path[len(prefix) + 1:-len("/comments")])
            if not 1 <= number <= len(self.issues) or set(body) != {"body"}:
                return 404, {"message": "Not Found"}
            self.comments.append((number, body["body"]))
            return 201, {"id": len(self.comments)}
        return 404, {"message": "Not Found"}


@dataclass
class JiraApi:
    """``POST /rest/api/2/issue`` and ``/rest/api/2/issue/{key}/comment`` (Data Center)."""

    project: str
    user: str | None
    token: str
    issues: list[dict[str, Any]] = field(default_factory=list)
    comments: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, req: Request) -> Answer:
        auth = req.headers.get("Authorization", "")
        wanted = (f"Basic {base64.b64encode(f'{self.user}:{self.token}'.encode()).decode()}"
                  if self.user else f"Bearer {self.token}")
        if auth != wanted:
            return 401, {"errorMessages": ["You are not authenticated."]}
        body = req.json()
        if req.path == "/rest/api/2/issue":
            f = body.get("fields", {})
            if set(body) != {"fields"} or f.get("project", {}).get("key") != self.project or \
                    not f.get("summary") or not isinstance(f.get("description"), str) or \
                    not f.get("issuetype", {}).get("name"):
                return 400, {"errors": {"fields": "missing or wrong"}}
            self.issues.append(body)
            key = f"{self.project}-{len(self.issues)}"
            return 201, {"id": str(10000 + len(self.issues)), "key": key,
                         "self": f"/rest/api/2/issue/{key}"}
        prefix = "/rest/api/2/issue/"
        if req.path.startswith(prefix) and req.path.endswith("/comment"):
            key = req.path[len(prefix):-len("/comment")]
            if set(body) != {"body"}:
                return 400, {"errors": {"body": "required"}}
            self.comments.append((key, body["body"]))
            return 201, {"id": str(len(self.comments))}
        return 404, {"errorMessages": ["not found"]}


class _Mailbox:
    def __init__(self) -> None:
        self.mails: list[Message] = []

    async def handle_DATA(self, server: SMTPServer, session: Session,  # noqa: N802
                          envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        self.mails.append(email.message_from_bytes(raw))
        return "250 OK"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class SmtpServer:
    """aiosmtpd on loopback; with ``login`` it offers STARTTLS (a self-signed certificate
    written to ``folder``, ``ca_file`` is its CA) and requires AUTH with that
    user/password after it."""

    def __init__(self, login: tuple[str, str] | None = None,
                 folder: Path | None = None) -> None:
        self.box = _Mailbox()
        self.port = free_port()
        self.ca_file: Path | None = None
        kw: dict[str, Any] = {}
        if login:
            assert folder is not None, "STARTTLS needs a folder for its certificate"
            self.ca_file, key_file = self_signed(folder)
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.ca_file, key_file)

            def check(server: SMTPServer, session: Session, envelope: Envelope,
                      mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and \
                    (data.login.decode(), data.password.decode()) == login
                return AuthResult(success=ok)
            kw = {"authenticator": check, "auth_required": True, "tls_context": tls,
                  "require_starttls": True}
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port, **kw)

    @property
    def mails(self) -> list[Message]:
        return self.box.mails

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def destinations_toml(hook: HttpStandIn, chat: HttpStandIn, smtp: SmtpServer) -> str:
    """config.toml's three destinations of the end-to-end tests: the signed webhook
    (secret ``hook``), the chat hook and the e-mail relay, at these stand-ins."""
    return f"""
[[notify.destinations]]
name = "hook"
kind = "webhook"
url = "{hook.url}/tracehold"
[[notify.destinations]]
name = "chat"
kind = "chat"
url = "{chat.url}/hooks/xyz"
[[notify.destinations]]
name = "mail"
kind = "email"
url = "smtp://127.0.0.1:{smtp.port}"
mail_from = "tracehold@example.org"
mail_to = ["oncall@example.org"]
"""

"""Real receivers for the notification tests: an HTTP webhook server (http.server in a
thread) and an SMTP server with STARTTLS and AUTH (aiosmtpd) presenting a self-signed
certificate (made with `cryptography`, as for the nginx tests)."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from scada.tools.cluster.selfsigned import make_certificate


class WebhookReceiver:
    """Records every POST; `fail_next` requests are recorded and then answered 503 (so the
    sender retries what the receiver already has: duplicates the event id must unmask).
    While `refuse` is set every request is answered 503. Each entry keeps its `status`."""

    def __init__(self, port: int, secret: bytes, tls: tuple[Path, Path] | None = None) -> None:
        self.port = port
        self.secret = secret
        self.tls = tls  # (certificate, key): serve https
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self.refuse = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hooks/scada?token=in-the-query"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    fail = receiver.fail_next > 0
                    receiver.fail_next -= int(fail)
                    status = 503 if fail or receiver.refuse else 200
                receiver._record(body, dict(self.headers), status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _record(self, body: bytes, headers: dict[str, str], status: int) -> None:
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        entry = {
            "body": json.loads(body),
            "headers": headers,
            "signed": hmac.compare_digest(expected, headers.get("X-Scada-Signature", "")),
            "status": status,
        }
        with self._lock:
            self.requests.append(entry)

    def unique(self) -> list[dict[str, Any]]:
        """Bodies de-duplicated by event id, in order of first arrival (what a receiver
        that honours the id processes)."""
        seen: set[str] = set()
        out = []
        with self._lock:
            for entry in self.requests:
                body = entry["body"]
                if body["id"] not in seen:
                    seen.add(body["id"])
                    out.append(body)
        return out


class MailReceiver:
    """aiosmtpd on a free port: STARTTLS required, AUTH (PLAIN/LOGIN) required."""

    def __init__(self, port: int, directory: Path, user: str, password: str) -> None:
        self.port = port
        self.cert, key = make_certificate(directory)
        self.user, self.password = user, password
        self.messages: list[Message] = []
        self.logins: list[tuple[str, bool]] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            authenticator=self._authenticate,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.user
            and data.password.decode() == self.password
        )
        self.logins.append((mechanism, ok))
        # handled=False: aiosmtpd answers a refusal with 535 itself.
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert session.ssl is not None, "a message arrived without TLS"
        content = envelope.original_content or b""
        self.messages.append(message_from_bytes(content))
        return "250 OK"

    def start(self) -> MailReceiver:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

"""Sending one notification: an HTTP POST over asyncio streams, or one mail over SMTP.

Both raise DeliveryError with a short reason that names no secret (no URL path or query, no
password, no server reply that could echo a login), fit for logs and /api/notifications.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from scada.core.errors import ScadaError

USER_AGENT = "scada-stream-notify/1"


class DeliveryError(ScadaError):
    """A receiver did not confirm a notification; it stays queued and is retried."""


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def redacted_url(url: str) -> str:
    """scheme://host:port only: paths and queries of webhook URLs often carry tokens."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


async def post_json(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    context: ssl.SSLContext | None,
) -> int:
    """POST `body`; return the status when it is 2xx, else raise DeliveryError."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.username is not None:  # https://user:password@host/...: HTTP basic auth
        login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers = {**headers, "Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=(context or tls_context(None)) if https else None
            )
            try:
                writer.write(_request(target, parts.netloc, body, headers))
                await writer.drain()
                status_line = await reader.readuntil(b"\r\n")
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                    await writer.wait_closed()
    except TimeoutError as err:
        raise DeliveryError(f"no answer within {timeout:g} s") from err
    except ssl.SSLError as err:
        raise DeliveryError(f"TLS error: {err.reason or type(err).__name__}") from err
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
        raise DeliveryError(_os_reason(err)) from err
    status = _status(status_line)
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")
    return status


def _request(target: str, netloc: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {netloc.rpartition('@')[2]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"User-Agent: {USER_AGENT}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _status(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise DeliveryError("not an HTTP response")
    return int(parts[1])


def _os_reason(err: Exception) -> str:
    if isinstance(err, asyncio.IncompleteReadError):
        return "connection closed before an answer"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return type(err).__name__


def send_mail(
    message: EmailMessage,
    *,
    host: str,
    port: int,
    security: str,
    username: str | None,
    password: str,
    timeout: float,
    context: ssl.SSLContext,
) -> None:
    """Blocking: run it in a thread of its own. Raises DeliveryError."""
    try:
        smtp: smtplib.SMTP
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if security == "starttls":
                smtp.starttls(context=context)
            if username:
                smtp.login(username, password)
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as err:
        raise DeliveryError(f"SMTP login refused ({err.smtp_code})") from err
    except smtplib.SMTPNotSupportedError as err:
        raise DeliveryError("SMTP server does not offer STARTTLS or AUTH") from err
    except smtplib.SMTPResponseException as err:
        raise DeliveryError(f"SMTP error {err.smtp_code}") from err
    except smtplib.SMTPRecipientsRefused as err:
        raise DeliveryError(f"SMTP refused {len(err.recipients)} recipient(s)") from err
    except smtplib.SMTPException as err:
        raise DeliveryError(f"SMTP: {type(err).__name__}") from err
    except ssl.SSLError as err:
        raise DeliveryError(f"TLS error: {err.reason or type(err).__name__}") from err
    except TimeoutError as err:
        raise DeliveryError(f"no answer within {timeout:g} s") from err
    except OSError as err:
        raise DeliveryError(_os_reason(err)) from err

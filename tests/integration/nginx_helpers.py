"""Real nginx with the shipped nginx/scada.conf, rewritten for a test: ports, upstream, cert paths.

Everything nginx writes (pid, logs, temp files) lives in the test's tmp_path; nothing in /etc or
/var is read or touched.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from scada.tools.cluster.nginxconf import main_conf
from scada.tools.cluster.selfsigned import make_certificate
from tests.conftest import ROOT, eventually, free_port

SHIPPED_CONF = ROOT / "nginx" / "scada.conf"


def nginx_binary() -> str:
    """The nginx executable; skip (or fail under SCADA_REQUIRE_SYSTEM_TOOLS) when missing."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("SCADA_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail("nginx is required (apt-get install nginx)")
        pytest.skip(
            "nginx not installed (apt-get install nginx); set SCADA_REQUIRE_SYSTEM_TOOLS to fail"
        )
    return found


def client_ssl_context(cert: Path) -> ssl.SSLContext:
    """Trusts exactly the test certificate, with hostname checks on."""
    return ssl.create_default_context(cafile=str(cert))


def _sub(pattern: str, replacement: str, text: str, expected: int | None = None) -> str:
    out, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if expected is not None:
        assert n == expected, (
            f"nginx/scada.conf: expected {expected} match(es) of {pattern!r}, got {n}"
        )
    else:
        assert n >= 1, f"nginx/scada.conf: no match for {pattern!r}"
    return out


def render_conf(
    text: str,
    *,
    http_port: int,
    https_port: int,
    upstream_port: int,
    cert: Path,
    key: Path,
    log_dir: Path,
    ws_read_timeout: str | None = None,
) -> str:
    """The shipped config with test ports, upstream, certificate and log paths filled in."""
    text = _sub(r"^\s*listen\s+\[::\]:\d+[^;]*;\n", "", text, expected=2)  # IPv4 loopback only
    text = _sub(r"^(\s*listen\s+)80\b", rf"\g<1>127.0.0.1:{http_port}", text, expected=1)
    text = _sub(r"^(\s*listen\s+)443\b", rf"\g<1>127.0.0.1:{https_port}", text, expected=1)
    text = _sub(r"^(\s*server\s+)127\.0\.0\.1:8000\b", rf"\g<1>127.0.0.1:{upstream_port}", text, 1)
    text = _sub(r"^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{cert};", text, expected=1)
    text = _sub(r"^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{key};", text, expected=1)
    text = _sub(r"/var/log/nginx/", f"{log_dir}/", text)
    text = _sub(r"/var/www/letsencrypt", f"{log_dir}/acme", text, expected=1)
    live = re.sub(r"#.*", "", text)
    assert "/var/" not in live and "/etc/" not in live, "a system path is left in the config"
    if ws_read_timeout is not None:
        # The WebSocket locations (those passing Upgrade) get the test's read timeout.
        def shorten(block: re.Match[str]) -> str:
            if "proxy_set_header Upgrade" not in block.group(0):
                return block.group(0)
            return _sub(r"(proxy_read_timeout\s+)\S+;", rf"\g<1>{ws_read_timeout};", block[0], 1)

        blocks = r"^    location [^{]*\{.*?\n    \}"
        shortened = re.sub(blocks, shorten, text, flags=re.DOTALL | re.MULTILINE)
        assert shortened != text, "nginx/scada.conf: no WebSocket location with proxy_read_timeout"
        text = shortened
    return text


class NginxProcess:
    """nginx in the foreground (`daemon off`) with a wrapper main config in `directory`."""

    def __init__(
        self,
        directory: Path,
        *,
        upstream_port: int,
        ws_read_timeout: str | None = None,
        rendered: str | None = None,
    ) -> None:
        """`rendered`: use this config text as it is instead of rendering the shipped file."""
        self.binary = nginx_binary()
        self.dir = directory
        self.http_port = free_port()
        self.https_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (directory / "logs").mkdir(parents=True, exist_ok=True)
        (directory / "logs" / "acme").mkdir(exist_ok=True)
        (directory / "tmp").mkdir(exist_ok=True)
        self.cert, self.key = make_certificate(directory / "tls")
        self.conf = directory / "scada.conf"
        self.conf.write_text(
            rendered
            if rendered is not None
            else render_conf(
                SHIPPED_CONF.read_text(),
                http_port=self.http_port,
                https_port=self.https_port,
                upstream_port=upstream_port,
                cert=self.cert,
                key=self.key,
                log_dir=directory / "logs",
                ws_read_timeout=ws_read_timeout,
            )
        )
        self.main = directory / "main.conf"
        self.main.write_text(main_conf(directory, "scada.conf", connections=512, level="info"))
        self.output = directory / "logs" / "nginx.out"

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def wss(self) -> str:
        return f"wss://127.0.0.1:{self.https_port}/ws"

    def _cmd(self, *extra: str) -> list[str]:
        errors = str(self.dir / "logs" / "startup.error.log")
        return [self.binary, "-p", f"{self.dir}/", "-e", errors, "-c", str(self.main), *extra]

    def check(self) -> str:
        """`nginx -t`: the rendered config is valid; returns nginx's report."""
        result = subprocess.run(
            self._cmd("-t"), capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, f"nginx -t failed:\n{result.stderr}\n{self.conf.read_text()}"
        return result.stderr

    def start(self) -> NginxProcess:
        self.check()
        out = self.output.open("ab")
        self.proc = subprocess.Popen(
            self._cmd("-g", "daemon off;"), stdout=out, stderr=subprocess.STDOUT
        )
        eventually(self._listening, timeout=15)
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.logs()}")
        for port in (self.http_port, self.https_port):
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    def logs(self) -> str:
        parts: list[str] = []
        for path in [*sorted((self.dir / "logs").glob("*.log")), self.output]:
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def access_log(self) -> str:
        path = self.dir / "logs" / "scada.access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # fast shutdown: workers close every connection
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

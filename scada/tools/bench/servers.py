"""Servers under test, each a subprocess: the real one, and the reference broadcasters."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (0 when it is not on this box)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int | None) -> int:
    if pid is None:
        return 0
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB


def pss_kb(pid: int) -> int:
    """Proportional set size: pages shared between processes (a fork server's children)
    counted once in total, not once per process as RSS does."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def descendants_pss_kb(pid: int | None) -> int:
    """PSS of every process below `pid` (a server's heavy-read workers and their fork
    server); 0 for one that has none or has just gone."""
    if pid is None:
        return 0
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                total += pss_kb(child) + descendants_pss_kb(child)
            except OSError:
                continue
    return total


def bare_reference() -> str:
    """What the `bare` reference runs here: `picows <version>`, or `asyncio` without picows."""
    try:
        return f"picows {metadata.version('picows')}"
    except metadata.PackageNotFoundError:
        return "asyncio"


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return orjson.loads(response.read())


@dataclass
class ServerUnderTest:
    """`kind` is `scada` (the real server, `scada serve`) or a reference: `naive`, `bare`."""

    kind: str
    compression: str | None = None  # scada only: off, per-client, shared
    config: str | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    workdir: tempfile.TemporaryDirectory[str] | None = None
    url: str | None = None  # `--url`: a running server, measured from the outside
    external_pid: int | None = None  # its pid, when it runs on this box (CPU and RSS)
    host: str = "127.0.0.1"
    path: str = "/ws"

    @classmethod
    def from_url(cls, url: str, pid: int | None = None) -> ServerUnderTest:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname:
            raise SystemExit(f"--url: expected ws://HOST:PORT/PATH, got {url!r}")
        return cls(
            "url",
            url=url,
            external_pid=pid,
            host=parts.hostname,
            port=parts.port or 80,
            path=parts.path or "/",
        )

    @property
    def label(self) -> str:
        return self.kind if self.compression is None else f"{self.kind}/{self.compression}"

    @property
    def pid(self) -> int | None:
        return self.external_pid if self.url else self.proc.pid if self.proc else None

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        config = ["--config", self.config] if self.config else []
        if self.kind == "scada":
            extra = ["--ws-compression", self.compression] if self.compression else []
            return [
                sys.executable,
                "-m",
                "scada",
                "serve",
                "--port",
                str(self.port),
                *config,
                *extra,
            ]
        return [
            sys.executable,
            "-m",
            "scada.tools.bench.refs",
            self.kind,
            "--port",
            str(self.port),
            *config,
        ]

    def start(self, timeout: float = 30.0) -> None:
        if self.url:
            return
        self.workdir = tempfile.TemporaryDirectory(prefix="scada-bench-")
        with Path(self.workdir.name, "server.log").open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir.name,  # the journal goes to ./data of a throwaway directory
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} server exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.http}/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.label} server not ready within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if self.workdir is None:
            return ""
        path = Path(self.workdir.name, "server.log")
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def health(self) -> dict[str, Any] | None:
        if self.kind not in ("scada", "url"):
            return None
        try:
            data: dict[str, Any] = get_json(f"{self.http}/health/websocket")
            return data
        except OSError:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None

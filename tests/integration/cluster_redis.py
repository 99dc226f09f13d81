"""Real redis-server processes for the cluster tests: a free loopback port, a tmp dir, no
persistence unless asked (AOF), nothing read from or written to /etc or /var."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import eventually, free_port


def redis_server_binary() -> str:
    """The redis-server executable; skip (or fail under SCADA_REQUIRE_SYSTEM_TOOLS) if missing."""
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        if os.environ.get("SCADA_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail("redis-server is required (apt-get install redis-server)")
        pytest.skip(
            "redis-server not installed (apt-get install redis-server); "
            "set SCADA_REQUIRE_SYSTEM_TOOLS to fail"
        )
    return found


class RedisServer:
    def __init__(self, directory: Path, *, aof: bool = False) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.aof:
            # fsync on every write: the AOF test kills -9 and expects every entry back.
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        eventually(self._answers, timeout=10)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {self.proc.returncode}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        """kill -9: no shutdown save, no goodbye to the clients."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> RedisServer:
        """kill -9 and start again on the same port and directory."""
        self.kill()
        return self.start()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server without persistence (test modules: `redis_server = redis_server`)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()

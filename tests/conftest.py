"""Shared test helpers: real servers in subprocesses on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import io
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from scada.core.config import deep_merge, default_config_text

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_config_dict() -> dict[str, Any]:
    return tomllib.loads(default_config_text())


def write_config(
    path: Path, overrides: dict[str, Any] | None = None, base: dict[str, Any] | None = None
) -> Path:
    data = deep_merge(base if base is not None else default_config_dict(), overrides or {})
    path.write_text(tomli_w.dumps(data))
    return path


# One knob for every deadline in the tests. The suite runs on busy 2-core machines (CI, a
# laptop compiling beside it), so deadlines are stretched 3x by default: a deadline only costs
# time when a test fails, never when it passes. SCADA_TEST_TIME_SCALE=1 gives the stated ones.
TIME_SCALE = max(1.0, float(os.environ.get("SCADA_TEST_TIME_SCALE", "3")))


def scaled(seconds: float) -> float:
    """A test deadline, stretched by SCADA_TEST_TIME_SCALE."""
    return seconds * TIME_SCALE


def ms(seconds: float) -> float:
    """A scaled deadline in milliseconds, for playwright's `timeout=`."""
    return scaled(seconds) * 1000


def _patient(request: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
    """httpx's one-shot helpers with the suite's deadline (10 s, scaled) unless a test names
    its own: a server answering slowly on a busy machine is not a failure of what a test
    checks. (Heavy reads run in worker processes at a lower priority, so the tick wins the
    CPU: beside two CPU-bound processes a 1,000-event alarm history took over 15 s.)"""

    def call(*args: Any, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", scaled(10.0))
        if not {"verify", "cert", "trust_env"} & kwargs.keys():
            kwargs["verify"] = _default_tls()
        return request(*args, **kwargs)

    return call


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The TLS context httpx's one-shot helpers build by default (its CA bundle, the SSL_CERT_*
    variables), built once per test process and given to every one-shot call that names none:
    each call built its own, loading the CA bundle again (~40 ms of CPU against ~1.5 ms for
    the request itself), and tests that poll /ready every 50 ms spent most of a core on it.
    Each call still has a client of its own (no shared cookies or connections)."""
    return httpx.create_ssl_context()


for _name in ("get", "post", "put", "patch", "delete", "request"):
    setattr(httpx, _name, _patient(getattr(httpx, _name)))


def eventually(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; return its value or fail at the (scaled) deadline.

    The one way tests wait for something: no sleeps as synchronisation."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:
            last_error = err
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {limit:g} s (last error: {last_error})")
        time.sleep(interval)


async def eventually_async(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """`eventually` inside an event loop: yields to the loop between checks. The predicate
    may return an awaitable."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {limit:g} s")
        await asyncio.sleep(interval)


class ServerProcess:
    """`scada serve` in a subprocess: the real CLI, uvicorn, port and SQLite files."""

    # The module run with `python -m`; tests.clockshift runs the same CLI with a wall clock
    # that a signal steps (for clock-step tests, without touching the machine's clock).
    module = "scada"

    def __init__(self, config_path: Path, workdir: Path, extra_args: list[str] | None = None):
        self.config_path = config_path
        self.workdir = workdir
        self.port = free_port()
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"server-{self.port}.log"
        self._tokens: dict[tuple[str, str], str] = {}

    def cli(self, *args: str, stdin: str = "") -> str:
        """`scada ARGS --config <this server's config>` in its working directory; stdout."""
        result = subprocess.run(
            [sys.executable, "-m", "scada", *args, "--config", str(self.config_path)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=scaled(60),
            cwd=self.workdir,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def token(self, role: str, name: str = "t") -> str:
        """An API token of `role`, minted once per server and name by `scada tokens create`,
        run in this process when it can be (see cli_here)."""
        key = (role, name)
        if key not in self._tokens:
            args = ("tokens", "create", "--name", name, "--role", role)
            out = self.cli_here(*args) if self._paths_absolute() else self.cli(*args)
            self._tokens[key] = out.strip().splitlines()[-1]
        return self._tokens[key]

    def cli_here(self, *args: str) -> str:
        """`scada ARGS --config <this server's config>` in the test's own process: the same
        code as `cli` (scada.tools.cli.main) without a new interpreter, which costs ~0.8 s of
        CPU (a test needing a token is not testing the CLI; tests of the CLI use `cli`). Only
        for configs whose data paths are absolute: relative ones name the server's workdir."""
        from scada.tools.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main([*args, "--config", str(self.config_path)])
        assert code == 0, f"scada {' '.join(args)} exited {code}"
        return out.getvalue()

    def _paths_absolute(self) -> bool:
        config = tomllib.loads(self.config_path.read_text())
        paths = [config.get("server", {}).get("data_dir", "data")]
        paths.append(config.get("auth", {}).get("database") or "/")
        return all(Path(p).is_absolute() for p in paths)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, wait_ready: bool = True) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.module != "scada":
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                *self.extra_args,
            ],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait_ready:
            eventually(self._ready, timeout=30)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.http}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(
        overrides: dict[str, Any] | None = None,
        *,
        start: bool = True,
        extra_args: list[str] | None = None,
        name: str = "plant.toml",
        base: dict[str, Any] | None = None,
    ) -> ServerProcess:
        here = {"server": {"data_dir": str(tmp_path / "data")}}
        config = write_config(tmp_path / name, deep_merge(here, overrides or {}), base=base)
        server = ServerProcess(config, tmp_path, extra_args)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory()


# Anonymous clients act as operators and engineers here, as on a bench or a plant network
# without logins; tests/integration/test_security.py covers the logged-in default.
OPEN_PLANT = {"auth": {"anonymous_role": "engineer"}}


@pytest.fixture
def open_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(OPEN_PLANT)

"""A real cluster for the tests: redis-server, `scada serve --role ingest` and `--role gateway`
processes on free loopback ports, and nginx with nginx/cluster.conf in front.

    with running_cluster(tmp_path, ingests=2, gateways=2, aof=True, nginx=True) as cluster:
        active = cluster.active()               # the ingest node whose /ready is 200
        cluster.gateways[0].kill()              # kill -9
        cluster.standby().pause()               # SIGSTOP (resume(): SIGCONT)

Every process has its own config file and data dir under the cluster's directory, logs to
`<node>.log` there, and is named by its node (`ingest-a`, `gateway-1`, ...). Readiness is
polled (docs/cluster.md, /ready): an ingest node is up when /health answers, the active one
answers /ready 200, a standby 503; a gateway is ready when /ready is 200 (its bus is live).
"""

from __future__ import annotations

import os
import signal
import string
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from scada.core.config import deep_merge
from scada.tools.cluster.nginxconf import NGINX_SOURCE
from tests.conftest import ServerProcess, eventually, scaled, write_config
from tests.integration.cluster_redis import RedisServer
from tests.integration.nginx_helpers import NginxProcess

Role = Literal["ingest", "gateway"]
PREFIX = "scada"
# Start-up of one role process on the busy 2-core box (imports, SQLite, first bus read).
START_TIMEOUT = 30.0


def require_roles() -> None:
    """Skip while `scada serve --role ingest|gateway` has no app to run (scada.roles.ingest.app,
    scada.roles.gateway.app), so the suite stays green until both roles are built."""
    missing = [
        m for m in ("scada.roles.ingest.app", "scada.roles.gateway.app") if not _importable(m)
    ]
    if missing:
        pytest.skip(f"cluster roles not built yet: {', '.join(missing)}")


def _importable(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # its package is missing
        return False


def answers_ready(process: RoleProcess) -> bool:
    return process.ready()[0] == 200


def ready_state(base_url: str) -> tuple[int, dict[str, Any]]:
    """GET /ready: (status, JSON body); (0, {}) when nothing answers."""
    try:
        r = httpx.get(f"{base_url}/ready", timeout=2)
    except httpx.HTTPError:
        return 0, {}
    try:
        body = r.json()
    except ValueError:
        body = {}
    return r.status_code, body if isinstance(body, dict) else {}


class RoleProcess(ServerProcess):
    """One `scada serve --role ROLE --node NODE --redis-url URL` process."""

    def __init__(
        self,
        role: Role,
        node: str,
        directory: Path,
        redis_url: str,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.role: Role = role
        self.node = node
        self.redis_url = redis_url
        data = directory / node
        data.mkdir(parents=True, exist_ok=True)
        own: dict[str, Any] = {
            "server": {"data_dir": str(data / "data")},
            "cluster": {"redis_url": redis_url, "node": node, "prefix": PREFIX},
        }
        proxies = (overrides or {}).get("auth", {}).get("trusted_proxies")
        if proxies is not None:
            # The rendered nginx reaches the nodes from its own loopback address (proxy_bind):
            # a test that trusts "its nginx" trusts that address.
            own["auth"] = {"trusted_proxies": [*proxies, NGINX_SOURCE]}
        config = write_config(directory / f"{node}.toml", deep_merge(overrides or {}, own))
        args = ["--role", role, "--node", node, "--redis-url", redis_url]
        super().__init__(config, directory, args)
        self.log_path = directory / f"{node}.log"
        self.data_dir = data / "data"

    def __repr__(self) -> str:
        return f"<{self.role} {self.node} :{self.port}>"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.node} is not running"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> tuple[int, dict[str, Any]]:
        """(status of /ready, its JSON); (0, {}) while nothing answers."""
        return ready_state(self.http)

    def cluster_state(self) -> dict[str, Any]:
        """The `cluster` object of /ready ({} while nothing answers)."""
        state = self.ready()[1].get("cluster")
        return state if isinstance(state, dict) else {}

    def is_active(self) -> bool:
        return self.role == "ingest" and self.ready()[0] == 200

    def _ready(self) -> bool:
        """Started: an ingest node answers /health (a standby's /ready is 503 by design); a
        gateway's /ready is 200 (its bus is live)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.node} exited with {self.proc.returncode}:\n{self.log()}")
        if self.role == "gateway":
            return self.ready()[0] == 200
        try:
            return httpx.get(f"{self.http}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, wait_ready: bool = True) -> RoleProcess:
        super().start(wait_ready=False)
        if wait_ready:
            self.wait_started()
        return self

    def wait_started(self, timeout: float = START_TIMEOUT) -> RoleProcess:
        eventually(self._ready, timeout=timeout)
        return self

    def restart(self, wait_ready: bool = True) -> RoleProcess:
        """Start again on the same port, config and data dir (after kill() or stop())."""
        self.stop()
        return self.start(wait_ready)

    def kill(self) -> None:
        """kill -9 (a stopped process is continued first so it dies at once)."""
        if self.running():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: sockets stay open, nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.running() and sig != signal.SIGKILL:
            os.kill(self.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
        return super().stop(sig, timeout)


def node_names(prefix: str, count: int, labels: str) -> list[str]:
    return [f"{prefix}-{labels[i]}" for i in range(count)]


class Cluster:
    """Redis, ingest nodes (ingest-a, ingest-b, ...), gateways (gateway-1, ...), nginx."""

    def __init__(
        self,
        directory: Path,
        *,
        ingests: int = 2,
        gateways: int = 2,
        aof: bool = False,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.overrides = overrides or {}
        self.redis = RedisServer(directory / "redis", aof=aof)
        self.ingests = [
            self._role("ingest", n) for n in node_names("ingest", ingests, string.ascii_lowercase)
        ]
        self.gateways = [
            self._role("gateway", n) for n in node_names("gateway", gateways, "123456789")
        ]
        self.nginx: NginxProcess | None = None

    def _role(self, role: Role, node: str) -> RoleProcess:
        # Each process with its role's ACL user (a gateway's own), as `scada cluster` does.
        url = self.redis.url_for(role, node, PREFIX)
        return RoleProcess(role, node, self.directory, url, self.overrides)

    @property
    def processes(self) -> list[RoleProcess]:
        return [*self.ingests, *self.gateways]

    def start(self, *, nginx: bool = False) -> Cluster:
        """Redis; the first ingest node until it is active; the other ingest nodes (standby);
        the gateways until their bus is live; nginx last."""
        require_roles()
        self.redis.start()
        first, *others = self.ingests
        first.start()
        eventually(first.is_active, timeout=START_TIMEOUT)
        for proc in [*others, *self.gateways]:
            proc.start(wait_ready=False)
        for proc in [*others, *self.gateways]:
            proc.wait_started()
        if nginx:
            self.start_nginx()
        return self

    def start_nginx(self) -> NginxProcess:
        from scada.tools.cluster.nginxconf import render_cluster_conf

        directory = self.directory / "nginx"
        directory.mkdir(exist_ok=True)
        self.nginx = NginxProcess(directory, upstream_port=0, rendered="")
        assert self.nginx is not None
        self.nginx.conf.write_text(
            render_cluster_conf(
                gateways=[g.port for g in self.gateways],
                ingests=[i.port for i in self.ingests],
                http_port=self.nginx.http_port,
                https_port=self.nginx.https_port,
                cert=self.nginx.cert,
                key=self.nginx.key,
                log_dir=directory / "logs",
            )
        )
        return self.nginx.start()

    def active(self, timeout: float = 10) -> RoleProcess:
        """The ingest node that answers /ready 200 (waits up to `timeout` for one)."""

        def one() -> RoleProcess | None:
            found = [p for p in self.ingests if p.running() and p.is_active()]
            return found[0] if len(found) == 1 else None

        found: RoleProcess = eventually(one, timeout=timeout)
        return found

    def standby(self) -> RoleProcess:
        """A running ingest node that is not the active one."""
        active = self.active()
        return next(p for p in self.ingests if p is not active and p.running())

    def wait_gateways_live(self, timeout: float = 10) -> None:
        for gateway in self.gateways:
            if gateway.running():
                eventually(partial(answers_ready, gateway), timeout=timeout)

    def logs(self) -> str:
        """Every process's log (for an assertion message)."""
        parts = [f"--- {p.node}\n{p.log()}" for p in self.processes]
        if self.nginx is not None:
            parts.append(self.nginx.logs())
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM every role process at once (kill -9 after the timeout), nginx, then Redis."""
        if self.nginx is not None:
            self.nginx.stop()
        running = [p for p in self.processes if p.running()]
        for proc in running:
            os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
            os.kill(proc.pid, signal.SIGTERM)
        for proc in running:
            assert proc.proc is not None
            try:
                proc.proc.wait(scaled(15))
            except subprocess.TimeoutExpired:
                proc.kill()
        self.redis.kill()


@contextmanager
def running_cluster(
    directory: Path,
    *,
    ingests: int = 2,
    gateways: int = 2,
    aof: bool = False,
    nginx: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Iterator[Cluster]:
    """A started cluster, stopped on exit (also when starting it failed half way)."""
    cluster = Cluster(directory, ingests=ingests, gateways=gateways, aof=aof, overrides=overrides)
    try:
        yield cluster.start(nginx=nginx)
    finally:
        cluster.stop()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Start clusters in this test's tmp dir; all stopped at the end of the test."""
    clusters: list[Cluster] = []

    def make(**options: Any) -> Cluster:
        nginx = bool(options.pop("nginx", False))
        cluster = Cluster(tmp_path / f"cluster{len(clusters)}", **options)
        clusters.append(cluster)
        return cluster.start(nginx=nginx)

    yield make
    for cluster in clusters:
        cluster.stop()

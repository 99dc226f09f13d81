"""`scada cluster`: a whole cluster on this machine for trying it (docs/cluster.md).

Redis (AOF, appendfsync everysec, noeviction; ACL users per role, the default user off),
the simulated plant as its own process (`scada simulate modbus` with its fault port, polled
by the ingest nodes through the modbus driver, so a failover does not reset the plant), two
ingest nodes, two gateways and nginx (nginx/cluster.conf rendered for loopback, a
self-signed certificate), all on 127.0.0.1, run in the foreground under this small
supervisor. Each node's Redis URL, with its own user and password, is in its config (0600);
nothing is passed on a command line, where `ps` would show it. Every file a child makes is
private (umask 077: the AOF, SQLite files, logs). Every process logs to `<dir>/logs/<name>.log`
and keeps its data under `<dir>/<name>/`. A process that exits on its own is started again
(after 2 s, doubling up to 30 s while it keeps failing), so a `kill -9` shows a failover and
the node rejoining. Ctrl-C or SIGTERM stops nginx, then the role processes, then Redis.
The children run in their own session (a terminal's Ctrl-C reaches only this supervisor,
which stops them in order) and get SIGTERM from the kernel if the supervisor dies.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from scada.auth.first_admin import PASSWORD_FILE
from scada.core.config import config_from_dict
from scada.core.errors import ConfigError
from scada.tools.cluster.credentials import (
    ClusterUsers,
    cluster_users,
    narrow_tree,
    private_dir,
    write_acl,
    write_private,
)
from scada.tools.cluster.firstlogin import cluster_password_file
from scada.tools.cluster.localconf import (
    base_config,
    dumps_inline,
    node_config,
    over_simulator,
    simulated_lines,
    write_node_config,
)
from scada.tools.cluster.nginxconf import main_conf, render_cluster_conf, render_plain_conf
from scada.tools.cluster.selfsigned import make_certificate
from simulators.control import TOKEN_ENV

PR_SET_PDEATHSIG = 1
START_TIMEOUT = 90.0  # a cold start on a busy 2-core box: imports, SQLite, the first lease
STOP_TIMEOUT = 20.0
RESTART_DELAYS = (2.0, 30.0)  # first delay, cap
# A killed ingest node comes back only after its lease expired ([cluster] lease_ttl 3 s + the
# standby's 0.5 s retry), so the standby takes over first, as it would on another machine.
INGEST_FIRST_DELAY = 5.0
STEADY_AFTER = 60.0  # a process that ran this long starts again after the first delay
INGESTS = ("ingest-a", "ingest-b")
GATEWAYS = ("gateway-1", "gateway-2")
SIMULATOR = "simulator"


class Refused(Exception):
    """The cluster cannot start; the message says why and what to do."""


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived while starting."""


def find_binary(name: str, given: str | None) -> str:
    """`given`, or `name` on PATH or in the sbin directories (Debian puts nginx there)."""
    if given is not None:
        if os.access(given, os.X_OK) and Path(given).is_file():
            return given
        raise Refused(f"{given} is not an executable file")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        package = "redis-server" if name == "redis-server" else name
        raise Refused(
            f"{name} not found: install it (Debian/Ubuntu: sudo apt-get install {package}) "
            f"or give its path with --{'nginx' if name == 'nginx' else 'redis-server'}"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as err:
            raise Refused(
                f"port {port} on 127.0.0.1 is in use ({err.strerror}): use --port"
            ) from err


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (Linux), whatever kills it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def redis_answers(port: int) -> bool:
    """redis-server is up: it answers (NOAUTH, since nobody is the default user)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def http_status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def port_listens(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def nginx_child(
    binary: str,
    directory: Path,
    *,
    gateways: list[int],
    ingests: list[int],
    port: int,
    tls: bool = True,
) -> Child:
    """nginx with nginx/cluster.conf rendered into `directory` (https on `port` with a
    self-signed certificate, or plain http), checked with `nginx -t`; not started."""
    logs = directory / "logs"
    for sub in ("logs/acme", "tmp"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    if tls:
        cert, key = make_certificate(directory / "tls")
        conf = render_cluster_conf(
            gateways=gateways,
            ingests=ingests,
            http_port=free_port(),
            https_port=port,
            cert=cert,
            key=key,
            log_dir=logs,
        )
    else:
        conf = render_plain_conf(gateways=gateways, ingests=ingests, port=port, log_dir=logs)
    (directory / "cluster.conf").write_text(conf)
    (directory / "nginx.conf").write_text(main_conf(directory, "cluster.conf"))
    base = [
        binary,
        "-p", f"{directory}/",
        "-e", str(logs / "nginx.startup.log"),
        "-c", str(directory / "nginx.conf"),
    ]  # fmt: skip
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise Refused(f"nginx -t refused the generated config:\n{check.stderr}")
    return Child("nginx", [*base, "-g", "daemon off;"], logs / "nginx.log", directory)


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    log: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    first_delay: float = RESTART_DELAYS[0]
    # Not started again by the supervisor while set (a tool that stops or wipes it on purpose).
    held: bool = False

    def start(self) -> None:
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,
                umask=0o077,  # the AOF, SQLite and log files: the owner's only
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> None:
        """Wait for it to exit; kill -9 after `timeout`."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop within {timeout:g} s: killed")
            self.proc.kill()
            self.proc.wait(10)


def say(line: str) -> None:
    print(f"scada cluster: {line}", flush=True)


class LocalCluster:
    def __init__(
        self,
        directory: Path,
        *,
        port: int,
        config: Path | None = None,
        redis_server: str | None = None,
        nginx: str | None = None,
        tls: bool = True,
    ) -> None:
        self.dir = directory.resolve()
        self.tls = tls
        self.port = port
        self.config = config
        self.redis_bin = find_binary("redis-server", redis_server)
        self.nginx_bin = find_binary("nginx", nginx)
        check_port_free(port)
        self.stopping = False
        self.logs = self.dir / "logs"
        self.redis_port = free_port()
        self.ports = {name: free_port() for name in (*INGESTS, *GATEWAYS)}
        # The Redis port each process's redis_url names (default: Redis itself); a tool may
        # put a proxy in between (tests/chaos: hang, reset or heal one node's link).
        self.redis_ports: dict[str, int] = {}
        self.sim_port = free_port()
        self.sim_control_port = free_port()
        self.sim_token = secrets.token_urlsafe(24)
        self.simulator: Child | None = None
        self.redis: Child | None = None
        self.users: ClusterUsers | None = None
        self.ingests: list[Child] = []
        self.gateways: list[Child] = []
        self.nginx: Child | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    @property
    def redis_url(self) -> str:
        """Redis without credentials (refused): each node's URL adds its user."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def redis_url_of(self, name: str) -> str:
        return f"redis://127.0.0.1:{self.redis_ports.get(name, self.redis_port)}/0"

    @property
    def children(self) -> list[Child]:
        """In stopping order: nginx first (clients go), the simulator and Redis last."""
        return [
            c for c in (self.nginx, *self.gateways, *self.ingests, self.simulator, self.redis) if c
        ]

    # ------------------------------------------------------------------ plan
    def prepare(self) -> None:
        # The top directory stays enterable: nginx's workers (nobody, under root) use its tmp/.
        self.dir.mkdir(parents=True, exist_ok=True)
        for sub in ("logs", "redis"):
            private_dir(self.dir / sub)
        base = base_config(self.config)
        prefix = str(base.get("cluster", {}).get("prefix", "scada"))
        self.users = users = cluster_users(self.dir, ingests=INGESTS, gateways=GATEWAYS)
        acl = write_acl(self.dir / "redis" / "users.acl", users, prefix)
        tools = dumps_inline({"cluster": {"redis_url": users.tools_url(self.redis_url)}})
        write_private(self.dir / "tools.toml", "# The CLI's Redis user (read only).\n" + tools)
        for sub in ("redis", "logs", *INGESTS, *GATEWAYS):
            if (self.dir / sub).is_dir():
                narrow_tree(self.dir / sub)
        redis = [
            self.redis_bin,
            "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(self.dir / "redis"),
            "--aclfile", str(acl),
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction", "--save", "", "--daemonize", "no",
        ]  # fmt: skip
        self.redis = Child("redis", redis, self.logs / "redis.log", self.dir / "redis")
        base = self._plant_as_device(base)
        env = {"PYTHONUNBUFFERED": "1", TOKEN_ENV: self.sim_token}
        for name in (*INGESTS, *GATEWAYS):
            role = "ingest" if name in INGESTS else "gateway"
            home = self.dir / name
            url = users.url(self.redis_url_of(name), name)
            config = write_node_config(base, directory=home, node=name, redis_url=url)
            argv = [
                sys.executable, "-m", "scada", "serve",
                "--role", role, "--node", name,
                "--config", str(config), "--port", str(self.ports[name]),
            ]  # fmt: skip
            child = Child(name, argv, self.logs / f"{name}.log", home, dict(env))
            if role == "ingest":
                child.first_delay = INGEST_FIRST_DELAY
            (self.ingests if role == "ingest" else self.gateways).append(child)
        self.nginx = self._nginx_child()

    def _plant_as_device(self, base: dict[str, Any]) -> dict[str, Any]:
        """Where the config reads the built-in simulator: a simulator process (`scada simulate
        modbus`, with its fault port) that the ingest nodes poll over Modbus; `base` for the
        nodes. A plant of real devices only is left as it is."""
        try:
            line_ids = [line.id for line in config_from_dict(base).lines]
        except ConfigError as err:
            raise Refused(f"the plant config is not valid: {err}") from err
        if not simulated_lines(base, line_ids):
            return base
        home = self.dir / SIMULATOR
        home.mkdir(parents=True, exist_ok=True)
        conf = node_config(base, directory=home, node=SIMULATOR, redis_url="redis://unused/0")
        conf.pop("cluster", None)
        (home / "plant.toml").write_text(
            "# Written by `scada cluster` for the simulator; rewritten at each start.\n"
            + dumps_inline(conf),
            "utf-8",
        )
        argv = [
            sys.executable, "-m", "scada", "simulate", "modbus",
            "--port", str(self.sim_port), "--control-port", str(self.sim_control_port),
            "--config", str(home / "plant.toml"),
        ]  # fmt: skip
        env = {"PYTHONUNBUFFERED": "1", TOKEN_ENV: self.sim_token}
        self.simulator = Child(SIMULATOR, argv, self.logs / f"{SIMULATOR}.log", home, env)
        return over_simulator(
            base,
            line_ids=line_ids,
            port=self.sim_port,
            control_url=f"http://127.0.0.1:{self.sim_control_port}",
        )

    def _nginx_child(self) -> Child:
        return nginx_child(
            self.nginx_bin,
            self.dir,
            gateways=[self.ports[g] for g in GATEWAYS],
            ingests=[self.ports[i] for i in INGESTS],
            port=self.port,
            tls=self.tls,
        )

    # ------------------------------------------------------------------ run
    def _wait(self, what: str, predicate: Callable[[], bool], children: list[Child]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not predicate():
            if self.stopping:
                raise Stopped
            for child in children:
                if not child.alive():
                    code = child.proc.returncode if child.proc else None
                    raise Refused(f"{child.name} exited ({code}) while starting: see {child.log}")
            if time.monotonic() > deadline:
                raise Refused(f"{what} not within {START_TIMEOUT:g} s: see {self.logs}")
            time.sleep(0.1)

    def _ingest_ready(self) -> bool:
        ready = [http_status(f"http://127.0.0.1:{self.ports[c.name]}/ready") for c in self.ingests]
        health = [
            http_status(f"http://127.0.0.1:{self.ports[c.name]}/health") for c in self.ingests
        ]
        return ready.count(200) == 1 and all(h == 200 for h in health)

    def _gateways_live(self) -> bool:
        return all(
            http_status(f"http://127.0.0.1:{self.ports[c.name]}/ready") == 200
            for c in self.gateways
        )

    def start(self) -> None:
        assert self.redis is not None and self.nginx is not None
        self.redis.start()
        self._wait("Redis answering", lambda: redis_answers(self.redis_port), [self.redis])
        if self.simulator is not None:
            self.simulator.start()
            self._wait(
                "the simulator listening",
                lambda: port_listens(self.sim_port) and port_listens(self.sim_control_port),
                [self.simulator],
            )
        for child in self.ingests:
            child.start()
        self._wait("one ingest node active", self._ingest_ready, [self.redis, *self.ingests])
        for child in self.gateways:
            child.start()
        self._wait(
            "gateways live", self._gateways_live, [self.redis, *self.ingests, *self.gateways]
        )
        self.nginx.start()
        self._wait("nginx listening", lambda: port_listens(self.port), [self.nginx])

    def describe(self) -> str:
        parts = [f"redis-server :{self.redis_port} (AOF, ACL users)"]
        if self.simulator is not None:
            parts.append(f"simulator modbus :{self.sim_port} (faults :{self.sim_control_port})")
        parts += [f"{c.name} :{self.ports[c.name]}" for c in (*self.ingests, *self.gateways)]
        return ", ".join(parts)

    def supervise(self) -> None:
        """Until stopped: start again whatever exited, with a growing delay if it keeps dying."""
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                if child.alive() or child.held:
                    continue
                if child.restart_at is None:
                    ran = now - child.started_at
                    child.failures = 0 if ran >= STEADY_AFTER else child.failures + 1
                    delay = min(
                        child.first_delay * 2 ** max(child.failures - 1, 0), RESTART_DELAYS[1]
                    )
                    code = child.proc.returncode if child.proc else None
                    say(f"{child.name} exited ({code}); starting it again in {delay:g} s")
                    child.restart_at = now + delay
                elif now >= child.restart_at:
                    child.start()
                    say(f"{child.name} started again (pid {child.pid})")
            time.sleep(0.2)

    def stop(self) -> None:
        """nginx, then every role process at once, then Redis; kill -9 what does not stop."""
        groups = [
            [c for c in (self.nginx,) if c],
            [*self.gateways, *self.ingests],
            [c for c in (self.simulator, self.redis) if c],
        ]
        for group in groups:
            for child in group:
                child.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                child.signal(signal.SIGTERM)
            for child in group:
                child.wait(STOP_TIMEOUT)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            say(f"{signal.Signals(signum).name}: stopping")
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            self.prepare()
            say(f"starting in {self.dir}: {self.describe()}; logs in {self.logs}")
            self.start()
            say(
                f"ready at {self.url}  (self-signed certificate: {self.dir / 'tls' / 'fullchain.pem'})"
            )
            self._print_hints()
            self.supervise()
            return 0
        except Stopped:
            return 0
        except Refused as err:
            say(f"error: {err}")
            return 1
        finally:
            self.stop()
            say("stopped")

    def _print_hints(self) -> None:
        # Written by the node that was active when the cluster had no user (maybe a run ago).
        assert self.users is not None
        password = cluster_password_file(
            self.users.url(self.redis_url, INGESTS[0]),  # the hashes are sealed for ingest
            str(base_config(self.config).get("cluster", {}).get("prefix", "scada")),
            [self.dir / c.name / "data" / PASSWORD_FILE for c in self.ingests],
            timeout=15.0,
            stopping=lambda: self.stopping,
        )
        hints: list[str] = [
            f"wss://127.0.0.1:{self.port}/ws  (scada watch needs SSL_CERT_FILE={self.dir / 'tls' / 'fullchain.pem'})",
        ]
        if password is not None:
            hints.append(f"first login: user admin, its password alone in {password}")
        hints.append(
            f"Redis ACL users in {self.dir / 'redis' / 'users.acl'}; "
            f"the CLI's read-only Redis URL in {self.dir / 'tools.toml'}"
        )
        hints.append("Ctrl-C stops everything")
        for hint in hints:
            say(hint)


def run_cluster(args: Any) -> int:
    """The `scada cluster` command."""
    try:
        cluster = LocalCluster(
            Path(args.dir),
            port=args.port,
            config=Path(args.config) if args.config else None,
            redis_server=args.redis_server,
            nginx=args.nginx,
        )
    except Refused as err:
        say(f"error: {err}")
        return 2
    return cluster.run()

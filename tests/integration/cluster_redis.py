"""Real redis-server processes for the cluster tests: a free loopback port, a tmp dir, no
persistence unless asked (AOF), nothing read from or written to /etc or /var.

Every server runs with ACLs as a cluster's does (scada.bus.acl): the `default` user is off,
`url` carries the credentials of an ingest-like user (the ingest rules on every key, since
the tests use several prefixes), and `url_for(role, node, prefix)` makes (ACL SETUSER, saved
to the ACL file so a restart keeps it) and returns a user with exactly a role's rules: the
cluster fixtures give each gateway process its own. `tls=True` serves only a TLS port with a
CA made in the test (`rediss://...?ssl_ca_certs=`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from scada.bus.acl import (
    DEFAULT_USER,
    INGEST_CATEGORIES,
    AclRole,
    BusUser,
    new_password,
    setuser_args,
)
from scada.bus.conn import connect as bus_connect
from tests.conftest import eventually, free_port, scaled
from tests.integration.redis_tls import TlsFiles, make_ca_and_server


def connect(url: str, *, timeout: float = 2.0, name: str | None = None) -> AsyncRedis:
    """A test's own async Redis client: scada.bus.conn.connect with its timeouts stretched like
    every test deadline (a 2 s connect timed out on a box beside two CPU hogs)."""
    return bus_connect(url, timeout=scaled(timeout), name=name)


ADMIN = "test-admin"  # the fixture's own user: ACL SETUSER, and tests' inspections


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
    def __init__(self, directory: Path, *, aof: bool = False, tls: bool = False) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls: TlsFiles | None = make_ca_and_server(directory / "tls") if tls else None
        self.passwords = {ADMIN: new_password(), "ingest": new_password()}
        self.aclfile = directory / "users.acl"
        self.users: list[tuple[BusUser, str]] = []  # (user, prefix) made by url_for
        self._write_aclfile()

    def _write_aclfile(self) -> None:
        lines = [
            DEFAULT_USER,  # off (its rules: the AOF replay's, see scada.bus.acl)
            f"user {ADMIN} on >{self.passwords[ADMIN]} ~* &* +@all",
            f"user ingest on >{self.passwords['ingest']} resetkeys ~* resetchannels -@all "
            f"{INGEST_CATEGORIES}",
            *("user " + " ".join(setuser_args(u, prefix)) for u, prefix in self.users),
        ]
        self.aclfile.write_text("\n".join(lines) + "\n")
        self.aclfile.chmod(0o600)

    def url_as(self, user: str, password: str) -> str:
        if self.tls is not None:
            return f"rediss://{user}:{password}@127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    @property
    def url(self) -> str:
        """An ingest node's rules on every key (any prefix)."""
        return self.url_as("ingest", self.passwords["ingest"])

    def through(self, url: str, port: int) -> str:
        """`url` (one of this server's, with its credentials) through a proxy on `port`."""
        return url.replace(f"@127.0.0.1:{self.port}/", f"@127.0.0.1:{port}/", 1)

    @property
    def admin_url(self) -> str:
        return self.url_as(ADMIN, self.passwords[ADMIN])

    @property
    def anonymous_url(self) -> str:
        """No credentials at all (refused: the default user is off)."""
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        return f"redis://127.0.0.1:{self.port}/0"

    def url_for(self, role: AclRole, node: str = "", prefix: str = "scada") -> str:
        """The URL of a user with exactly `role`'s rules for `prefix` (made if new)."""
        name = f"{role}.{prefix}.{node}" if role == "gateway" else f"{role}.{prefix}"
        password = self.passwords.get(name)
        if password is None:
            password = self.passwords[name] = new_password()
            user = BusUser(name, role, password, node)
            self.users.append((user, prefix))
            if self.proc is None:
                self._write_aclfile()  # read at the start
            else:
                with Redis.from_url(self.admin_url, socket_timeout=5) as admin:
                    admin.execute_command("ACL", "SETUSER", *setuser_args(user, prefix))
                    admin.execute_command("ACL", "SAVE")  # a restart keeps it
        return self.url_as(name, password)

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--aclfile", str(self.aclfile),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.tls is not None:
            args += [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
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
        try:
            with Redis.from_url(self.admin_url, socket_timeout=1) as admin:
                return bool(admin.ping())
        except (RedisError, OSError):
            return False

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

"""The cluster under test: `scada cluster`'s own supervisor (scada.tools.cluster.local), over
plain http, with a LinkProxy between each ingest node and Redis, a steady alarm load from the
simulator's fault port, and a monitor that records which ingest node serves, with what token.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from scada.tools.cluster.local import INGESTS, Child, LocalCluster, free_port
from tests.chaos.proxy import LinkProxy

START_DEADLINE = 180.0  # a cold start on a loaded 2-core box
# The alarm load: each line's diameter is stepped above its hi and hihi limits and back, one
# line after another every LOAD_STEP s (a `step` fault injected, then cleared), so every
# line raises and clears two alarms every cycle: about 10 events a second, and every fault
# lands among commits and publishes. It runs in the simulator, so it goes on through faults.
LOAD_LINES = ("1", "2", "3", "4", "5", "6", "7", "8")
LOAD_OFFSET = 0.6  # mm: above hihi on every line of the default plant
LOAD_STEP = 0.1  # s between two toggles


@dataclass
class Sample:
    """One look at the ingest nodes: who serves (/ready 200) and with which token."""

    at: float
    active: list[str]
    tokens: dict[str, int]


class ChaosCluster:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.local = LocalCluster(directory, port=free_port(), tls=False)
        self.proxies = {name: LinkProxy(name, self.local.redis_port) for name in INGESTS}
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        for name, proxy in self.proxies.items():
            self.local.redis_ports[name] = proxy.start()
        self.local.prepare()
        self.local.start()
        for target in (self.local.supervise, self._monitor, self._load):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.local.stopping = True
        for thread in self._threads:
            thread.join(10)
        self.local.stop()
        for proxy in self.proxies.values():
            proxy.stop()

    # -- where things are -------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.local.port}/ws"

    def child(self, name: str) -> Child:
        for child in self.local.children:
            if child.name == name:
                return child
        raise KeyError(name)

    def journal(self, node: str) -> Path:
        return self.dir / node / "data" / "journal.sqlite"

    def redis(self) -> Any:  # redis.Redis, whose reply types are a union of everything
        """Redis as the CLI's read-only ACL user (the default user is off)."""
        assert self.local.users is not None, "prepare() first"
        url = self.local.users.tools_url(self.local.redis_url)
        return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def http(self, name: str, path: str) -> tuple[int, Any]:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.local.ports[name]}{path}", timeout=1.5)
        except httpx.HTTPError:
            return 0, None
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, None

    def ready_state(self, name: str) -> tuple[bool, int | None]:
        status, body = self.http(name, "/ready")
        cluster = (body or {}).get("cluster", {}) if isinstance(body, dict) else {}
        return status == 200, cluster.get("token")

    def active(self) -> list[str]:
        return [n for n in INGESTS if self.ready_state(n)[0]]

    # -- the load ----------------------------------------------------------------------------
    def control(
        self, method: str, path: str = "", body: Any = None, client: httpx.Client | None = None
    ) -> httpx.Response:
        url = f"http://127.0.0.1:{self.local.sim_control_port}/faults{path}"
        headers = {"authorization": f"Bearer {self.local.sim_token}"}
        if client is not None:
            return client.request(method, url, json=body, headers=headers)
        return httpx.request(method, url, json=body, headers=headers, timeout=5)

    def _load(self) -> None:
        stepped: dict[str, int] = {}  # line -> its step fault's id
        turn = 0
        client = httpx.Client(timeout=5)
        while not self._stop.wait(LOAD_STEP):
            line = LOAD_LINES[turn % len(LOAD_LINES)]
            turn += 1
            try:
                if line in stepped:
                    self.control("DELETE", f"/{stepped.pop(line)}", client=client)
                else:
                    body = {"line": line, "kind": "step", "tag": "diameter", "offset": LOAD_OFFSET}
                    r = self.control("POST", body=body, client=client)
                    if r.status_code == 201:
                        stepped[line] = int(r.json()["id"])
            except httpx.HTTPError:
                continue  # the simulator is restarting: the load resumes with it

    # -- the monitor ---------------------------------------------------------------------------
    def _monitor(self) -> None:
        while not self._stop.is_set():
            looks = {n: self.ready_state(n) for n in INGESTS}
            # stamped when the answers are in: a node stopped (SIGSTOP) answers a request it
            # took before the stop only when it runs again, and that answer is about then
            at = time.monotonic()
            self.samples.append(
                Sample(
                    at,
                    [n for n, (ok, _) in looks.items() if ok],
                    {n: int(t) for n, (ok, t) in looks.items() if ok and t is not None},
                )
            )
            self._stop.wait(0.1)

    # -- the nemesis's hands ------------------------------------------------------------------
    def signal(self, name: str, sig: int) -> None:
        child = self.child(name)
        if child.pid is not None and child.alive():
            os.kill(child.pid, sig)

    def kill(self, name: str) -> None:
        child = self.child(name)
        self.signal(name, signal.SIGKILL)
        if child.proc is not None:
            with contextlib.suppress(Exception):
                child.proc.wait(10)

    def reseed(self, node: str) -> None:
        """What an operator does for an unfit node (docs/cluster.md): stop it, delete its
        journal, start it again; it mirrors the cluster's record from the stream."""
        child = self.child(node)
        child.held = True
        try:
            self.kill(node)
            for path in self.journal(node).parent.glob(self.journal(node).name + "*"):
                path.unlink()
            child.start()
        finally:
            child.held = False

    def redis_restart_empty(self) -> None:
        """kill -9, delete the AOF and everything, start again (held from the supervisor)."""
        child = self.child("redis")
        child.held = True
        try:
            self.kill("redis")
            data = self.dir / "redis"
            for entry in data.iterdir():  # its data: the AOF directory, any RDB; not users.acl
                if entry.is_dir() and entry.name.startswith("appendonly"):
                    shutil.rmtree(entry)
                elif entry.suffix in (".rdb", ".aof"):
                    entry.unlink()
            child.start()
        finally:
            child.held = False

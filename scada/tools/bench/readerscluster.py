"""`scada bench --readers --cluster`: the same readers through a local cluster's nginx.

`scada cluster`'s processes (`LocalCluster`, plain http): Redis with its ACL users, the
simulator, two ingest nodes, two gateways and nginx. Before they start, each ingest node's
data directory gets a copy of the bench's journal and history (one lineage of ids and one
epoch, as a standby that mirrored the active node holds) and an audit log of its own. The
tokens are made by `scada tokens create` on the active node's host (its config), which the
node publishes to every gateway within a second.

The readers and the watcher go through nginx: /api/* reaches the ingest nodes (the active
one answers, the standby 503 and nginx tries the other), /ws a gateway. Meanwhile the bench
polls every ingest node's /ready four times a second (role, state, fencing token; no answer
within a second is noted too), and afterwards reads their log lines about the lease. The
target: the active node never loses the lease (one holder, one token, no lease line) and the
gateway client's largest gap stays under 0.5 s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from scada.core.config import PlantConfig
from scada.tools.bench.readersdata import build_audit, create_tokens, history_tags
from scada.tools.bench.readersload import Read, plan
from scada.tools.bench.servers import free_port
from scada.tools.cluster.local import LocalCluster

Progress = Callable[[str], None] | None
# readers.measure(ws_url, http, reads, tokens, args, progress)
Measure = Callable[[str, str, list[Read], list[str], argparse.Namespace, Progress], dict[str, Any]]
POLL_S = 0.25
POLL_TIMEOUT_S = 1.0
# An ingest node's log lines that mean its lease changed hands (scada.bus.lease, roles.ingest).
LEASE_LINES = re.compile(
    r"lease lost|steps down|standing by|gives the lease up|takeover by .* failed|"
    r"active with fencing token|lease acquired|lease: Redis unreachable"
)


class LeaseWatch:
    """A thread polling each ingest node's /ready: every change of (state, token) with its
    time, and the polls that got no answer within POLL_TIMEOUT_S."""

    def __init__(self, nodes: dict[str, int]) -> None:
        self.nodes = nodes
        self.samples: list[tuple[float, str, str, int | None]] = []
        self.initial: dict[str, dict[str, Any]] = {}  # each node's state at the first poll
        self.changes: list[dict[str, Any]] = []  # every change after it
        self.unanswered: dict[str, int] = dict.fromkeys(nodes, 0)
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-watch", daemon=True)

    def __enter__(self) -> LeaseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        last: dict[str, tuple[str, int | None]] = {}
        with httpx.Client(timeout=POLL_TIMEOUT_S) as client:
            while not self._stop.is_set():
                self.polls += 1
                for name, port in self.nodes.items():
                    state, token = self._state(client, name, port)
                    now = time.monotonic()
                    self.samples.append((now, name, state, token))
                    if name not in last:
                        self.initial[name] = {"state": state, "token": token}
                    elif last[name] != (state, token):
                        self.changes.append(
                            {"at": now, "node": name, "state": state, "token": token}
                        )
                    last[name] = (state, token)
                self._stop.wait(POLL_S)

    def _state(self, client: httpx.Client, name: str, port: int) -> tuple[str, int | None]:
        try:
            body = client.get(f"http://127.0.0.1:{port}/ready").json()
        except (httpx.HTTPError, ValueError):
            self.unanswered[name] += 1
            return "no answer", None
        cluster = body.get("cluster", {})
        token = cluster.get("token")
        return str(cluster.get("state", "?")), token if isinstance(token, int) else None


def lease_figures(
    watch: LeaseWatch, start: float, end: float, log_lines: dict[str, list[str]]
) -> dict[str, Any]:
    """What happened to the lease within [start, end]: the holders seen (node, token), the
    changes of any node's state, and the nodes' lease log lines written meanwhile."""
    active = sorted(
        {(n, t) for at, n, s, t in watch.samples if start <= at <= end and s == "active"},
        key=str,
    )
    changes = [
        {**c, "at": round(c["at"] - start, 2)} for c in watch.changes if start < c["at"] <= end
    ]
    holders = {n for n, _ in active}
    # "no answer" is a node too busy to answer a poll in time, reported apart: not a role.
    left = [
        c for c in changes if c["node"] in holders and c["state"] not in ("active", "no answer")
    ]
    lost = len(active) != 1 or bool(left) or any(log_lines.values())
    return {
        "holders": [{"node": n, "token": t} for n, t in active],
        "initial": watch.initial,
        "changes": changes,
        "unanswered_polls": dict(watch.unanswered),
        "polls": watch.polls,
        "log_lines": log_lines,
        "lost": lost,
    }


def log_sizes(cluster: LocalCluster) -> dict[str, int]:
    return {c.name: c.log.stat().st_size if c.log.exists() else 0 for c in cluster.ingests}


def lease_lines_since(cluster: LocalCluster, sizes: dict[str, int]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for child in cluster.ingests:
        with child.log.open("rb") as f:
            f.seek(sizes.get(child.name, 0))
            text = f.read().decode("utf-8", "replace")
        out[child.name] = [line for line in text.splitlines() if LEASE_LINES.search(line)]
    return out


def seed(cluster: LocalCluster, data: Path, events: int) -> None:
    """Each ingest node's data dir: the bench's journal and history, its own audit log."""
    now = time.time()
    for child in cluster.ingests:
        target = cluster.dir / child.name / "data"
        for name in ("journal.sqlite", "history.sqlite"):
            shutil.copyfile(data / name, target / name)
        build_audit(target / "auth.sqlite", events // 10, now)


def active_node(cluster: LocalCluster) -> str:
    for child in cluster.ingests:
        try:
            port = cluster.ports[child.name]
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return child.name
        except httpx.HTTPError:
            continue
    raise RuntimeError("no ingest node is active")


def wait_tokens(base: str, tokens: list[str], timeout: float = 60.0) -> None:
    """Until every token works through nginx (the active node published it)."""
    deadline = time.monotonic() + timeout
    for token in tokens:
        while True:
            try:
                r = httpx.get(
                    f"{base}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=5
                )
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the tokens did not work through nginx within 60 s")
            time.sleep(0.2)


def run(
    args: argparse.Namespace,
    work: Path,
    data: Path,
    config: PlantConfig,
    progress: Progress,
    measure: Measure,
) -> dict[str, Any]:
    """The readers against a new local cluster through its nginx; `measure` is
    scada.tools.bench.readers.measure (passed in: that module imports this one)."""
    port = free_port()
    # A new cluster each run: a reused one's Redis (AOF) and journals went on past the copy.
    shutil.rmtree(work / "cluster", ignore_errors=True)
    cluster = LocalCluster(work / "cluster", port=port, tls=False)
    try:
        cluster.prepare()
        seed(cluster, data, args.events)
        if progress:
            progress("cluster: starting Redis, the simulator, 2 ingest nodes, 2 gateways, nginx")
        cluster.start()
        active = active_node(cluster)
        tokens = create_tokens(cluster.dir / active / "plant.toml", args.token_readers)
        base = f"http://127.0.0.1:{port}"
        wait_tokens(base, tokens)
        reads = plan(history_tags(config), time.time())
        sizes = log_sizes(cluster)
        nodes = {c.name: cluster.ports[c.name] for c in cluster.ingests}
        with LeaseWatch(nodes) as watch:
            start = time.monotonic()
            doc = measure(f"ws://127.0.0.1:{port}/ws", base, reads, tokens, args, progress)
            end = time.monotonic()
        doc["lease"] = lease_figures(watch, start, end, lease_lines_since(cluster, sizes))
        doc["lease"]["active_at_start"] = active
        doc["target"] = "scada cluster through nginx (2 ingest, 2 gateways)"
        return doc
    finally:
        cluster.stop()


def render_lease(lease: dict[str, Any]) -> list[str]:
    holders = ", ".join(f"{h['node']} (token {h['token']})" for h in lease["holders"]) or "none"
    first = ", ".join(f"{n} {s['state']}" for n, s in lease["initial"].items())
    out = [
        f"ingest nodes at the first poll: {first}",
        f"lease holders seen in {lease['polls']} polls of /ready: {holders}; "
        f"polls unanswered within {POLL_TIMEOUT_S:g} s: {lease['unanswered_polls']}",
    ]
    for c in lease["changes"]:
        out.append(f"  +{c['at']:.2f} s {c['node']}: {c['state']} (token {c['token']})")
    for node, lines in lease["log_lines"].items():
        for line in lines:
            out.append(f"  {node} log: {line[:160]}")
    out.append(f"lease lost under readers: {'YES' if lease['lost'] else 'no'}")
    return out

"""Heavy reads leave the server process (issue #9): on a real `scada serve`, KPIs, alarm
history, export and audit pages are computed in lower-priority worker processes, and a killed
worker is replaced without the routes noticing."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import ServerProcess, eventually

READS = [
    "/api/alarms/kpi?hours=24",
    "/api/alarms/history?limit=10",
    "/api/alarms/export?format=csv",
    "/api/audit?limit=10",
]


def descendants(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        for child in map(int, children):
            out |= {child} | descendants(child)
    return out


def workers(server: ServerProcess) -> set[int]:
    """The server's niced descendants: the heavy-read workers (the fork server is not niced)."""
    assert server.proc is not None
    own = os.getpriority(os.PRIO_PROCESS, server.proc.pid)
    found = set()
    for pid in descendants(server.proc.pid):
        try:
            if os.getpriority(os.PRIO_PROCESS, pid) > own:
                found.add(pid)
        except ProcessLookupError:
            continue
    return found


def test_heavy_reads_run_in_worker_processes_that_are_replaced_when_killed(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    headers = {"Authorization": f"Bearer {server.token('admin')}"}
    assert workers(server) == set()  # started lazily

    def read_all() -> dict[str, httpx.Response]:
        return {p: httpx.get(server.http + p, headers=headers, timeout=30) for p in READS}

    before = read_all()
    assert {p: r.status_code for p, r in before.items()} == dict.fromkeys(READS, 200)
    first = workers(server)
    assert first and server.proc is not None and server.proc.pid not in first

    for pid in first:
        os.kill(pid, signal.SIGKILL)
    after = read_all()
    assert {p: r.status_code for p, r in after.items()} == dict.fromkeys(READS, 200)
    assert after["/api/alarms/kpi?hours=24"].json().keys() == before[READS[0]].json().keys()
    assert after["/api/alarms/export?format=csv"].text.splitlines()[0].startswith("event_id,")
    second = eventually(lambda: workers(server))
    assert second and not second & first

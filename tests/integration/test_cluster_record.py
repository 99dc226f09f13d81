"""The cluster's record across the faults that used to break it (issue 19), with real
redis-server and real `scada serve --role ingest` processes under a steady alarm load:

- the active node's Redis link hangs for 10 s while the process runs (a TCP proxy in front of
  Redis for that node): the other node takes over, no id means two events in the two journals,
  every event the cut-off node recorded reaches the active journal marked late, and after the
  link heals exactly one node is active;
- Redis restarted without its data: the fencing token is strictly higher afterwards, also
  when the node that takes the lease never held one before;
- kill -9 of the active node, then of the standby while it takes over: nothing either
  journal holds is missing from the journal of the node that is active in the end.

Every wait polls until a deadline; the one fixed duration is the fault's own (the 10 s hang).
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.chaos.proxy import LinkProxy
from tests.conftest import OPEN_PLANT, eventually
from tests.integration.cluster_procs import RoleProcess, require_roles
from tests.integration.cluster_redis import RedisServer

# Fields that make an event that event, whatever id it is journaled under.
Key = tuple[str, str, float, int]
LOAD_LINES = ("1", "2", "3", "4", "5", "6", "7", "8")


def rows(proc: RoleProcess) -> dict[int, dict[str, Any]]:
    """id → record of every event in the node's journal (read beside the running server)."""
    path = proc.data_dir / "journal.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = db.execute("SELECT id, body FROM events ORDER BY id").fetchall()
    finally:
        db.close()
    return {i: orjson.loads(body) for i, body in found}


def pending(proc: RoleProcess) -> list[dict[str, Any]]:
    """The events the node recorded that the cluster's record does not hold yet."""
    db = sqlite3.connect(f"file:{proc.data_dir / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        found = db.execute("SELECT body FROM pending_events ORDER BY pid").fetchall()
    finally:
        db.close()
    return [orjson.loads(body) for (body,) in found]


def token_high(proc: RoleProcess) -> int:
    db = sqlite3.connect(f"file:{proc.data_dir / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'token_high'").fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


def key(record: dict[str, Any]) -> Key:
    return (record["alarm"], record["event"], record["at"], record["occurrence_id"])


def same(record: dict[str, Any], other: dict[str, Any]) -> bool:
    """The same event (the id field aside: the journal body does not carry it)."""
    return {k: v for k, v in record.items() if k != "event_id"} == {
        k: v for k, v in other.items() if k != "event_id"
    }


def forks(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]) -> list[int]:
    """Ids under which the two journals hold different events."""
    return [i for i in sorted(a.keys() & b.keys()) if not same(a[i], b[i])]


def state(proc: RoleProcess) -> str:
    return str(proc.cluster_state().get("state", ""))


@contextmanager
def load(proc: RoleProcess) -> Iterator[None]:
    """A steady alarm load on `proc`'s simulator: every 0.4 s a 0.8 s diameter step on the next
    of 8 lines (raised after its 0.5 s on-delay, cleared 1 s after the step ends, 3.2 s before
    the line's next step): about five events a second."""
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=5) as client:
            for line in itertools.cycle(LOAD_LINES):
                if stop.wait(0.4):
                    return
                body = {"line": line, "kind": "step", "tag": "diameter", "offset": 0.35,
                        "duration": 0.8}  # fmt: skip
                # The node gone or standing by: the load goes on without it.
                with contextlib.suppress(httpx.HTTPError):
                    client.post(f"{proc.http}/api/simulator/faults", json=body)

    thread = threading.Thread(target=run, name="alarm-load", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def ingest(tmp_path: Path, name: str, url: str) -> RoleProcess:
    return RoleProcess("ingest", name, tmp_path, url, OPEN_PLANT)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    require_roles()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
def procs() -> Iterator[list[RoleProcess]]:
    started: list[RoleProcess] = []
    yield started
    for proc in started:
        proc.stop()


def pair(
    tmp_path: Path, procs: list[RoleProcess], a_url: str, b_url: str
) -> tuple[RoleProcess, RoleProcess]:
    """ingest-a active, then ingest-b standing by (both stopped by the `procs` fixture)."""
    a = ingest(tmp_path, "ingest-a", a_url).start()
    procs.append(a)
    eventually(a.is_active, timeout=30)
    b = ingest(tmp_path, "ingest-b", b_url).start()
    procs.append(b)
    eventually(lambda: state(b) == "standby", timeout=30)
    return a, b


def test_a_node_whose_redis_link_hangs_10_s_forks_nothing_and_loses_nothing(
    tmp_path: Path, redis: RedisServer, procs: list[RoleProcess]
) -> None:
    proxy = LinkProxy("ingest-a", redis.port)
    proxy.start()
    try:
        a, b = pair(tmp_path, procs, redis.through(redis.url, proxy.port), redis.url)
        with load(a):
            eventually(lambda: len(rows(b)) >= 30, timeout=60)  # mirrored: the load runs
            proxy.hang()
            hung_at = time.monotonic()
            eventually(b.is_active, timeout=30)
            takeover = time.monotonic() - hung_at
            eventually(lambda: state(a) == "standby", timeout=30)  # it stepped down itself
        cut_off = pending(a)  # recorded by A after the bus stopped accepting
        time.sleep(max(0.0, 10.0 - (time.monotonic() - hung_at)))  # the fault lasts 10 s
        a_before_heal, b_before_heal = rows(a), rows(b)
        proxy.heal()

        def settled() -> bool:
            record = {key(r): r for r in rows(b).values()}
            return not pending(a) and all(key(e) in record for e in cut_off)

        eventually(settled, timeout=60)
        journal_b = rows(b)
        record = {key(r): r for r in journal_b.values()}
        for event in cut_off:
            copy = record[key(event)]
            assert copy["late"] is True and copy["node"] == "ingest-a", copy
        eventually(lambda: rows(a).keys() >= {i for i in journal_b if i <= max(journal_b)}, 30)
        journal_a = rows(a)
        assert forks(a_before_heal, b_before_heal) == []
        assert forks(journal_a, journal_b) == []
        eventually(lambda: [p.is_active() for p in (a, b)] == [False, True], timeout=30)
        late = [r for r in journal_b.values() if r.get("late")]
        print(
            f"hang 10 s: takeover {takeover:.1f} s after the hang; {len(cut_off)} event(s) "
            f"recorded by the cut-off node, {len(late)} journaled late by the active node; "
            f"journals A {len(journal_a)} / B {len(journal_b)} events, 0 forked ids"
        )
        assert cut_off, "the load gave the cut-off node nothing to record: the test saw nothing"
    finally:
        proxy.stop()


def test_fencing_tokens_go_up_after_redis_restarted_empty(
    tmp_path: Path, redis: RedisServer, procs: list[RoleProcess]
) -> None:
    a, b = pair(tmp_path, procs, redis.url, redis.url)
    first = int(a.cluster_state()["token"])
    eventually(lambda: token_high(b) >= first, timeout=30)  # B saw A's token, and kept it

    a.kill()
    redis.restart()  # no persistence: the lease, the counter and the streams are gone
    eventually(b.is_active, timeout=30)
    second = int(b.cluster_state()["token"])
    assert second > first  # B never held a lease before: its floor is what it saw

    a.restart(wait_ready=False)
    eventually(lambda: state(a) == "standby", timeout=30)
    eventually(lambda: token_high(a) >= second, timeout=30)  # A saw B's token while waiting
    redis.restart()

    def active_token() -> int:
        """The token of a node serving now (0: none); B may still serve its old one until
        its next renewal finds the lease gone."""
        active = next((p for p in (a, b) if p.is_active()), None)
        return int(active.cluster_state().get("token") or 0) if active else 0

    third = eventually(lambda: (token := active_token()) > second and token, timeout=30)
    assert third > second
    print(f"fencing tokens across two Redis restarts without data: {first} → {second} → {third}")


def test_a_kill_during_activation_loses_nothing(
    tmp_path: Path, redis: RedisServer, procs: list[RoleProcess]
) -> None:
    a, b = pair(tmp_path, procs, redis.url, redis.url)
    with load(a):
        eventually(lambda: len(rows(b)) >= 30, timeout=60)
        a.kill()
    eventually(lambda: "lease acquired by ingest-b" in b.log(), timeout=30, interval=0.01)
    b.kill()  # during its takeover (its log tells whether it was already serving)
    seen = "active" if "ingest-b active with" in b.log() else "activating"
    before = {**rows(a), **rows(b)}
    kept = pending(a) + pending(b)

    a.restart(wait_ready=False)
    eventually(a.is_active, timeout=60)
    b.restart(wait_ready=False)
    eventually(lambda: state(b) == "standby", timeout=30)

    def nothing_lost() -> list[Key]:
        record = {key(r) for r in rows(a).values()}
        return [key(r) for r in [*before.values(), *kept] if key(r) not in record]

    eventually(lambda: not nothing_lost() and not pending(b), timeout=60)
    assert forks(rows(a), rows(b)) == []
    print(
        f"kill -9 of the active node, then of the standby while {seen}: {len(before)} events "
        f"journaled before, {len(kept)} pending, 0 missing from the active journal"
    )

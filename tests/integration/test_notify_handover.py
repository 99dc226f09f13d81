"""Notifications hand over with the lease: two real `scada serve --role ingest` nodes on a real
redis-server, both with a webhook target pointing at one real local HTTP receiver.

Node A raises alarms while the receiver accepts (delivered; A's delivered-through mark in
Redis passes them), then more while the receiver answers 503 (A retries, nothing delivered).
A is killed with SIGKILL, the receiver accepts again: node B, which takes over, sends every
routed event above A's mark (mirrored into its journal under the same ids), with the same
notification ids A would have used, and nothing at or below the mark again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import OPEN_PLANT, ServerProcess, eventually, free_port, write_config
from tests.integration.cluster_redis import RedisServer, connect
from tests.integration.notify_receivers import WebhookReceiver

SECRET = "handover-webhook-secret-0123456789"
LINES = ("6", "7")
MARK_KEY = "scada:notify:through"


class Pair:
    def __init__(self, root: Path) -> None:
        self.redis = RedisServer(root / "redis").start()
        self.receiver = WebhookReceiver(free_port(), SECRET.encode()).start()
        notifications = {
            "retry": {"initial_seconds": 0.2, "max_seconds": 0.5},
            "webhooks": [{"name": "hook", "url": self.receiver.url, "secret": SECRET}],
            "rules": [{"name": "diameter", "lines": list(LINES), "targets": ["hook"]}],
        }
        self.nodes: dict[str, ServerProcess] = {}
        for name in ("a", "b"):
            here = root / name
            here.mkdir()
            overrides = {
                **OPEN_PLANT,
                "server": {"data_dir": str(here / "data")},
                "notifications": notifications,
            }
            config = write_config(here / "plant.toml", overrides)
            args = ["--role", "ingest", "--node", f"ingest-{name}", "--redis-url", self.redis.url]
            self.nodes[name] = ServerProcess(config, here, args)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.receiver.stop()
        self.redis.kill()

    def mark(self) -> tuple[str, int] | None:
        async def read() -> Any:
            redis = connect(self.redis.url)
            try:
                return await redis.get(MARK_KEY)
            finally:
                await redis.aclose()

        raw = asyncio.run(read())
        if raw is None:
            return None
        epoch, _, through = raw.decode().partition(":")
        return epoch, int(through)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(tmp_path)
    try:
        pair.nodes["a"].start()  # /ready 200: active
        pair.nodes["b"].start(wait_ready=False)
        eventually(lambda: state(pair.nodes["b"]) == "standby", 30)
        yield pair
    finally:
        pair.stop()


def state(node: ServerProcess) -> str | None:
    try:
        body = httpx.get(f"{node.http}/ready", timeout=2).json()
    except httpx.HTTPError:
        return None
    return str(body["cluster"]["state"])


def routed(node: ServerProcess, lines: tuple[str, ...] = LINES) -> list[int]:
    """Journal ids of the events the rule routes (raised on lines 6 and 7), of `lines`, read
    beside the running node from its journal file."""
    path = node.workdir / "data" / "journal.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT id, line FROM events WHERE event = 'raised'"
            " AND coalesce(state, '') NOT IN ('shelved', 'suppressed') ORDER BY id",
        ).fetchall()
    finally:
        db.close()
    return [int(r[0]) for r in rows if r[1] in lines]


def inject(node: ServerProcess, line: str) -> None:
    """A diameter step and a sensor dropout: several alarms of the line raised."""
    for fault in (
        {"line": line, "kind": "step", "tag": "diameter", "offset": 0.35},
        {"line": line, "kind": "sensor_dropout", "tag": "*"},
    ):
        r = httpx.post(f"{node.http}/api/simulator/faults", json=fault)
        assert r.status_code == 201, r.text


def target(node: ServerProcess) -> dict[str, Any]:
    (hook,) = httpx.get(f"{node.http}/api/notifications", timeout=5).json()["targets"]
    return dict(hook)


def test_takeover_notifies_what_the_dead_node_had_not_delivered(pair: Pair) -> None:
    a, b, receiver = pair.nodes["a"], pair.nodes["b"], pair.receiver

    def accepted() -> list[dict[str, Any]]:
        return [r for r in list(receiver.requests) if r["status"] == 200]

    # 1. Delivered by A, and A's mark passes them.
    inject(a, "6")
    first = eventually(lambda: routed(a, ("6",)), 30)
    eventually(lambda: {b["body"]["alarm"]["event_id"] for b in accepted()} >= set(first), 30)
    eventually(lambda: (m := pair.mark()) is not None and m[1] >= max(routed(a, ("6",))), 20)

    # 2. Refused: A retries, delivers nothing; B mirrors the events.
    receiver.refuse = True
    inject(a, "7")
    second = eventually(lambda: routed(a, ("7",)), 30)  # raised while refused
    eventually(lambda: set(second) <= set(routed(b)), 20)
    eventually(lambda: target(a)["failed_attempts"] >= 2, 20)
    mark = pair.mark()
    assert mark is not None
    epoch, through = mark
    assert through < min(second), (mark, second)

    # 3. kill -9 of A; the receiver accepts; B takes over and sends what A had not delivered.
    a.kill()
    killed_at = len(receiver.requests)
    receiver.refuse = False
    eventually(lambda: state(b) == "active", 30)

    def all_received() -> list[int] | None:
        want = routed(b)
        got = {r["body"]["alarm"]["event_id"] for r in accepted()}
        return want if set(want) <= got else None

    want = eventually(all_received, 40)
    eventually(lambda: target(b)["queued"] == 0, 20)

    after = receiver.requests[killed_at:]
    counts = Counter(r["body"]["alarm"]["event_id"] for r in accepted())
    duplicates = sum(n - 1 for n in counts.values())
    resent = sorted({r["body"]["alarm"]["event_id"] for r in after} & set(range(through + 1)))
    print(
        f"\nnotify hand-over: {len(want)} routed events (ids {want[0]}..{want[-1]}), mark at "
        f"kill {through}, {len(counts)} received, {duplicates} duplicate(s), "
        f"{len(resent)} at or below the mark sent again, B sent {len(after)} request(s)"
    )
    assert set(second) <= set(want)
    assert resent == [], resent  # nothing A had delivered (up to its mark) comes again
    # Only what A delivered after its last mark may come twice (none, unless a line 6 event
    # was raised and delivered between the wait above and the refusal).
    assert all(i > through for i, n in counts.items() if n > 1), counts
    # The same notification id on both nodes: the journal epoch the cluster shares.
    for r in receiver.requests:
        body = r["body"]
        assert body["id"] == f"{epoch}:{body['alarm']['event_id']}", body["id"]
        assert r["headers"]["Idempotency-Key"] == f"{body['id']}/hook"
        assert r["signed"]
    assert "taking over after id" in b.log()

"""Two real `scada serve --role ingest` processes on a real redis-server with the simulated
plant: one active, one standing by (503, no device connections, mirroring the journal); alarm
events on the stream under their journal ids; commands applied once; `kill -9` of the active
one: the standby takes over with the same events, ids and epoch, and the ids go on. Commands
for a named user are signed with the command key of that user's session, as a gateway signs
them (tests/integration/signing.py).

The tests of this module run in order on one cluster (the last one kills the active node).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from scada.auth.auditlog import audit_query
from scada.auth.commandsig import command_key
from scada.auth.passwords import token_digest
from scada.auth.store import AuthStore
from scada.bus.commandstream import CommandSender
from scada.bus.keys import BusKeys, event_id
from tests.conftest import OPEN_PLANT, ServerProcess, eventually, write_config
from tests.integration.cluster_redis import RedisServer, connect
from tests.integration.signing import signed

KEYS = BusKeys("scada")
ACTOR = {
    "user": "op1",
    "role": "operator",
    "address": "203.0.113.7",
    "anonymous": False,
    "session": None,
}
USERS = {"op1": "operator", "op-off": "operator", "vic": "viewer"}
STEP_6 = {"line": "6", "kind": "step", "tag": "diameter", "offset": 0.35}
STEP_7 = {"line": "7", "kind": "step", "tag": "diameter", "offset": 0.35}


class Cluster:
    def __init__(self, root: Path) -> None:
        self.redis = RedisServer(root / "redis").start()
        self.nodes: dict[str, ServerProcess] = {}
        self.replies: dict[str, dict[str, Any]] = {}  # request id → the result it got
        self.sessions: dict[str, str] = {}  # user → the secret of a session (made on a)
        for name in ("a", "b"):
            here = root / name
            here.mkdir()
            config = write_config(
                here / "plant.toml", {**OPEN_PLANT, "server": {"data_dir": str(here / "data")}}
            )
            # The node's own users decide who may act (the commands' role is not believed).
            (here / "data").mkdir()
            store = AuthStore(here / "data" / "auth.sqlite")
            for user, role in USERS.items():
                store.add_user(user, role, "a long password " + user)
            if name == "a":  # the node that starts active: its rows seed the cluster's
                for user in ("op1", "vic"):
                    self.sessions[user] = store.create_session(user, 8)[0]
            store.set_disabled("op-off")
            store.close()
            args = ["--role", "ingest", "--node", f"ingest-{name}", "--redis-url", self.redis.url]
            self.nodes[name] = ServerProcess(config, here, args)

    def data(self, name: str) -> Path:
        return self.nodes[name].workdir / "data"

    def actor(
        self, user: str = "op1", session: str | None = None, address: str = "203.0.113.7"
    ) -> dict[str, Any]:
        """`user` with the session of `session` (default: their own; none if they have none)."""
        secret = self.sessions.get(session or user)
        digest = token_digest(secret) if secret else None
        return {**ACTOR, "user": user, "session": digest, "address": address}

    def signed(
        self,
        kind: str,
        data: dict[str, Any],
        request_id: str,
        who: dict[str, Any] | None = None,
        key_of: str = "op1",
    ) -> Any:
        """`data` from `who` signed with the key of `key_of`'s session, as a gateway that
        session came through sends it."""
        who, key = who or self.actor(), command_key(self.sessions[key_of])
        return signed(kind, data, who, request_id=request_id, gateway="gateway-test", key=key)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.redis.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("ingest"))
    try:
        cluster.nodes["a"].start()  # waits for /ready 200: active
        cluster.nodes["b"].start(wait_ready=False)
        eventually(lambda: ready(cluster.nodes["b"])[1]["cluster"]["state"] == "standby", 30)
        yield cluster
    finally:
        cluster.stop()


def ready(node: ServerProcess) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"{node.http}/ready", timeout=2)
    return r.status_code, r.json()


def journal(path: Path) -> list[tuple[int, str, str]]:
    """(id, alarm, event) of every journaled event, read beside the running server."""
    db = sqlite3.connect(f"file:{path / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT id, alarm, event FROM events ORDER BY id").fetchall()
    finally:
        db.close()


def journal_epoch(path: Path) -> str:
    db = sqlite3.connect(f"file:{path / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        return f"{value:016x}"
    finally:
        db.close()


def bus_epoch(url: str) -> str:
    async def read() -> str:
        redis = connect(url)
        try:
            epoch: Any = await redis.get(KEYS.epoch)
            return str(epoch.decode())
        finally:
            await redis.aclose()

    return asyncio.run(read())


def stream(url: str) -> list[dict[str, Any]]:
    """The alarm stream's events, each with its entry's id as `entry`."""

    async def read() -> list[dict[str, Any]]:
        redis = connect(url)
        try:
            entries: Any = await redis.xrange(KEYS.alarms)
        finally:
            await redis.aclose()
        return [{**orjson.loads(f[b"e"]), "entry": event_id(e)} for e, f in entries]

    return asyncio.run(read())


def inject(node: ServerProcess, body: dict[str, Any]) -> None:
    r = httpx.post(f"{node.http}/api/simulator/faults", json=body)
    assert r.status_code == 201, r.text


def raised(url: str, prefix: str) -> dict[str, Any] | None:
    """The first `raised` event on the stream of an alarm whose name starts with `prefix`."""
    events = stream(url)
    return next(
        (e for e in events if e["alarm"].startswith(prefix) and e["event"] == "raised"), None
    )


async def command(url: str, kind: str, body: dict[str, Any], request_id: str) -> Any:
    sender = CommandSender(connect(url), KEYS, "gateway-test")
    try:
        return await sender.request(kind, body, request_id=request_id, timeout=10)
    finally:
        await sender.redis.aclose()


def test_one_node_is_active_the_other_stands_by_without_devices(cluster: Cluster) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    status, body = ready(a)
    assert status == 200
    assert body["cluster"] == {"role": "ingest", "node": "ingest-a", "state": "active", "token": 1}
    status, body = ready(b)
    assert status == 503
    assert body["cluster"]["state"] == "standby" and body["cluster"]["token"] is None

    r = httpx.get(f"{b.http}/api/lines")
    assert (r.status_code, r.json()) == (503, {"error": "standby", "active": "ingest-a"})
    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(websockets.connect(b.ws).__aenter__())
    assert refused.value.response.status_code == 503
    assert httpx.get(f"{b.http}/health").status_code == 200
    assert httpx.get(f"{a.http}/api/lines").status_code == 200

    # The standby never polled its device; the active node does.
    (device,) = httpx.get(f"{b.http}/health/websocket").json()["devices"]
    assert device["polls"] == 0 and device["state"] != "connected"
    (device,) = httpx.get(f"{a.http}/health/websocket").json()["devices"]
    assert device["polls"] > 0

    metrics = httpx.get(f"{a.http}/metrics").text
    assert 'scada_cluster_state{state="active"} 1.0' in metrics
    assert "scada_cluster_fencing_token 1.0" in metrics
    metrics = httpx.get(f"{b.http}/metrics").text
    assert 'scada_cluster_state{state="standby"} 1.0' in metrics


def test_every_tick_publishes_a_frame_and_every_tenth_is_full(cluster: Cluster) -> None:
    async def newest(count: int) -> list[dict[str, Any]]:
        redis = connect(cluster.redis.url)
        try:
            entries: Any = await redis.xrevrange(KEYS.frames, count=count)
        finally:
            await redis.aclose()
        return [orjson.loads(fields[b"e"]) for _, fields in reversed(entries)]

    frames = eventually(lambda: (got := asyncio.run(newest(40))) and len(got) == 40 and got)
    line_ids = {
        line["id"] for line in httpx.get(f"{cluster.nodes['a'].http}/api/lines").json()["lines"]
    }
    fulls = [i for i, f in enumerate(frames) if f["full"]]
    assert len(fulls) == 4 and all(b - a == 10 for a, b in itertools.pairwise(fulls))
    for frame in frames:
        assert set(frame) == {"ts", "lines", "full", "flood"}
        assert set(frame["flood"]) == {"active", "count", "started_at", "ended_at"}
        ids = [line["production_line_id"] for line in frame["lines"]]
        assert (set(ids) == line_ids) if frame["full"] else set(ids) <= line_ids
    stamps = [f["ts"] for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # one per tick


def test_alarm_events_reach_the_stream_under_their_journal_ids(cluster: Cluster) -> None:
    inject(cluster.nodes["a"], STEP_6)
    event = eventually(lambda: raised(cluster.redis.url, "line6.diameter.hi"))
    assert event["entry"] == event["event_id"]
    # The bus accepts a batch before the journal writes it: the journal follows at once.
    row = (event["event_id"], "line6.diameter.hi", "raised")
    journaled = eventually(lambda: (rows := journal(cluster.data("a"))) and row in rows and rows)
    entries = stream(cluster.redis.url)
    assert [e["entry"] for e in entries][: len(journaled)] == [r[0] for r in journaled]
    # The standby mirrors every event under the same id.
    eventually(lambda: journal(cluster.data("b")) == journal(cluster.data("a")))


def test_an_ack_command_is_journaled_once_and_its_retry_answers_from_the_ledger(
    cluster: Cluster,
) -> None:
    event = raised(cluster.redis.url, "line6.diameter.hi")
    assert event is not None
    data = {"alarm_id": event["occurrence_id"], "comment": "seen"}
    ack = cluster.signed("ack", data, "req-ack-1")

    async def send() -> tuple[Any, Any, Any]:
        sender = CommandSender(connect(cluster.redis.url), KEYS, "gateway-test")
        try:
            first = await sender.request("ack", ack, request_id="req-ack-1", timeout=10)
            retry = await sender.request("ack", ack, request_id="req-ack-1", timeout=10)
            again = cluster.signed("ack", data, "req-ack-2")
            other = await sender.request("ack", again, request_id="req-ack-2", timeout=10)
        finally:
            await sender.redis.aclose()
        return first, retry, other

    first, retry, other = asyncio.run(send())
    cluster.replies["req-ack-1"] = first.result
    (acked,) = first.result["events"]
    assert acked["event"] == "acknowledged" and acked["acked_by"] == "op1"
    assert not first.duplicate
    assert retry.duplicate and retry.result == first.result
    assert other.result["error"]["code"] == "already_acknowledged"
    acks = [r for r in journal(cluster.data("a")) if r[2] == "acknowledged"]
    assert acks == [(acked["event_id"], "line6.diameter.hi", "acknowledged")]
    eventually(lambda: acked["event_id"] in [e["entry"] for e in stream(cluster.redis.url)])

    db = sqlite3.connect(f"file:{cluster.data('a') / 'auth.sqlite'}?mode=ro", uri=True)
    audit = db.execute(
        "SELECT user, address, action, result FROM audit WHERE action = 'ack' ORDER BY id"
    ).fetchall()
    db.close()
    assert audit == [
        ("op1", "203.0.113.7", "ack", "requested"),
        ("op1", "203.0.113.7", "ack", "ok"),
        ("op1", "203.0.113.7", "ack", "requested"),
        ("op1", "203.0.113.7", "ack", "already_acknowledged"),
    ]


def test_a_command_is_refused_and_audited_unless_the_ingest_node_knows_its_user(
    cluster: Cluster,
) -> None:
    """The role a gateway claims counts for nothing, and so does a name: a command must come
    signed with the key of a live session of its user; then the user must have the role.
    Each refusal is audited (naming the gateway) and acks nothing."""
    inject(cluster.nodes["a"], {"line": "2", "kind": "step", "tag": "diameter", "offset": 0.35})
    event = eventually(lambda: raised(cluster.redis.url, "line2.diameter."))
    data = {"alarm_id": event["occurrence_id"], "comment": "forged"}
    # One address per case (identical refusals from one address are folded).
    who = {name: f"198.51.100.{i}" for i, name in enumerate(
        ("ghost", "unsigned", "viewer", "anon-name", "bad-session", "not-theirs", "bad-mac")
    )}  # fmt: skip
    signed_vic = cluster.signed(
        "ack", data, "req-viewer", cluster.actor("vic", address=who["viewer"]), key_of="vic"
    )
    # vic's session (its MAC good: a gateway vic came through could make it), op1's name.
    not_theirs = cluster.signed(
        "ack", data, "req-not-theirs", cluster.actor("op1", "vic", who["not-theirs"]), "vic"
    )
    bad_mac = cluster.signed("ack", data, "req-bad-mac", cluster.actor(address=who["bad-mac"]))
    bad_mac["data"] = {**data, "alarm_id": 1}  # not what was signed
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "ghost": ("unsigned", {"data": data, "actor": cluster.actor("ghost", None, who["ghost"])}),
        "unsigned": ("unsigned", {"data": data, "actor": cluster.actor(address=who["unsigned"])}),
        "viewer": ("forbidden", signed_vic),
        "anon-name": (
            "unauthenticated",
            {"data": data, "actor": {**ACTOR, "anonymous": True, "address": who["anon-name"]}},
        ),
        "bad-session": (
            "unauthenticated",
            {"data": data, "actor": {**ACTOR, "session": "0" * 64, "address": who["bad-session"]}},
        ),
        "not-theirs": ("unauthenticated", not_theirs),
        "bad-mac": ("bad_signature", bad_mac),
    }
    bodies = {name: body for name, (_, body) in cases.items()}

    async def send() -> dict[str, Any]:
        sender = CommandSender(connect(cluster.redis.url), KEYS, "gateway-test")
        try:
            answers = {
                name: await sender.request("ack", body, request_id=f"req-{name}", timeout=10)
                for name, body in bodies.items()
            }
            # Sent again under its request id: the same refusal, nothing re-checked.
            answers["replay"] = await sender.request(
                "ack", bodies["bad-mac"], request_id="req-bad-mac", timeout=10
            )
            # A gateway cannot write a record of an action, nor date one.
            ok = {"user": "admin", "role": "admin", "address": "203.0.113.66", "action": "login",
                  "target": "admin", "result": "ok", "at": "2001-01-01T00:00:00Z"}  # fmt: skip
            answers["audit-ok"] = await sender.request("audit", {"record": ok}, timeout=10)
            old = {**ok, "result": "forbidden", "action": "ws_connect", "target": "/ws"}
            answers["audit-old"] = await sender.request("audit", {"record": old}, timeout=10)
        finally:
            await sender.redis.aclose()
        return answers

    answers = asyncio.run(send())
    for name, (code, _) in cases.items():
        assert answers[name].result["error"]["code"] == code, (name, answers[name].result)
    assert answers["replay"].result == answers["bad-mac"].result
    assert answers["audit-ok"].result["error"]["code"] == "forbidden"
    assert answers["audit-old"].result == {"ok": True}
    # Nothing acknowledged the occurrence; every refusal is in the active node's audit.
    acked = [r for r in journal(cluster.data("a")) if r[2] == "acknowledged"]
    assert all(row[1] != event["alarm"] for row in acked)
    records = audit_query(cluster.data("a") / "auth.sqlite", limit=100)
    refused = {
        (r.address, r.result)
        for r in records
        if r.action == "ack" and r.address.startswith("198.51.100.")
        and r.detail.endswith("(via gateway-test)")
    }  # fmt: skip
    assert refused == {
        (bodies[name]["actor"]["address"], code) for name, (code, _) in cases.items()
    }
    assert not [r for r in records if r.address == "203.0.113.66" and r.action == "login"]
    (written,) = [r for r in records if r.address == "203.0.113.66"]
    assert written.at is not None and written.at > time.time() - 600  # the node's time
    assert written.detail == "reported by gateway-test"  # a claim, and whose


def test_the_standby_takes_over_a_killed_active_node_and_continues_the_ids(
    cluster: Cluster,
) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    eventually(lambda: journal(cluster.data("b")) == journal(cluster.data("a")))
    before = journal(cluster.data("a"))
    epoch = journal_epoch(cluster.data("a"))
    assert journal_epoch(cluster.data("b")) == epoch
    bus = bus_epoch(cluster.redis.url)
    assert bus.startswith(f"{epoch}/")

    a.kill()
    eventually(lambda: ready(b)[0] == 200, timeout=5)
    assert ready(b)[1]["cluster"]["token"] == 2
    assert journal(cluster.data("b"))[: len(before)] == before
    assert journal_epoch(cluster.data("b")) == epoch
    # A gateway resending across the takeover gets the answer A gave: B's ledger has it.
    (event,) = cluster.replies["req-ack-1"]["events"]
    ack = {"data": {"alarm_id": event["id"], "comment": "seen"}, "actor": ACTOR}
    resent = asyncio.run(command(cluster.redis.url, "ack", ack, "req-ack-1"))
    assert resent.duplicate and resent.result == cluster.replies["req-ack-1"]
    assert bus_epoch(cluster.redis.url) == bus  # the same epoch: clients resume, no snapshot

    inject(b, STEP_7)
    event = eventually(lambda: raised(cluster.redis.url, "line7.diameter."))
    assert event["event_id"] > before[-1][0]
    # op1's session was made on A: B has its command key (sealed on Redis), so op1's signed
    # command is good on B too.
    data = {"alarm_id": event["occurrence_id"], "comment": "after the takeover"}
    body = cluster.signed("ack", data, "req-ack-b")
    answer = asyncio.run(command(cluster.redis.url, "ack", body, "req-ack-b"))
    assert answer.result["events"][0]["acked_by"] == "op1", answer.result
    # Journal and stream agree once the outbox caught up with B's newest commit (the engine
    # may raise a further event between the two reads).
    eventually(
        lambda: (
            [row[0] for row in journal(cluster.data("b"))]
            == [e["entry"] for e in stream(cluster.redis.url)]
        )
    )
    ids = [e["entry"] for e in stream(cluster.redis.url)]
    assert ids == list(range(1, len(ids) + 1))  # no id skipped, none twice
    assert [row[0] for row in journal(cluster.data("b"))][: len(ids)] == ids


def test_a_paused_active_node_that_wakes_up_publishes_nothing(cluster: Cluster) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]  # a was killed: it rejoins as the standby
    a.start(wait_ready=False)
    eventually(lambda: ready(a)[1]["cluster"]["state"] == "standby", 30)
    eventually(lambda: journal(cluster.data("a")) == journal(cluster.data("b")))
    inject(b, {"line": "3", "kind": "step", "tag": "diameter", "offset": 0.35})
    eventually(lambda: raised(cluster.redis.url, "line3.diameter."))
    assert b.proc is not None

    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        eventually(lambda: ready(a)[0] == 200, timeout=5)
        inject(a, {"line": "5", "kind": "step", "tag": "diameter", "offset": 0.35})
        eventually(lambda: raised(cluster.redis.url, "line5.diameter."))
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    eventually(lambda: ready(b)[1]["cluster"]["state"] != "active")
    metrics = httpx.get(f"{b.http}/metrics").text
    assert 'scada_cluster_state{state="active"} 0.0' in metrics

    ids = [e["entry"] for e in stream(cluster.redis.url)]
    assert ids == list(range(1, len(ids) + 1))
    assert [row[0] for row in journal(cluster.data("a"))] == ids
    # The woken node journaled at most the one event it had in flight, and published none.
    extra = [row for row in journal(cluster.data("b")) if row[0] > ids[-1] or row[0] not in ids]
    assert len(extra) <= 1

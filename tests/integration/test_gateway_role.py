"""`scada serve --role gateway` against a real redis-server, fed by an active ingest node run
in the test (IngestNode: lease, outbox, frames, command consumer): snapshot with the bus
epoch, every published frame, contiguous alarm ids, resume on another gateway, commands to
the ingest node (answered, refused, resent across a failover, timed out), and the bus going
stale and live again (SIGSTOP) and a new epoch (Redis lost its data).

Two gateway processes serve the whole module; each test runs its own ingest node on the
module's journal (so the bus epoch stays the same across tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from scada.alarms.journal import Journal
from scada.bus.commandstream import Command
from scada.bus.conn import raise_if_cancelled
from scada.bus.epoch import read_epoch
from scada.bus.keys import BusKeys
from scada.core.timefmt import iso_ms
from scada.roles.ingest.node import IngestNode
from tests.conftest import eventually
from tests.integration.cluster_procs import PREFIX, RoleProcess
from tests.integration.cluster_redis import RedisServer
from tests.integration.cluster_redis import connect as redis_connect
from tests.integration.test_cluster_bus import JOURNAL_EPOCH, make_journal
from tests.integration.test_cluster_node import produce, until
from tests.integration.test_websocket import recv

KEYS = BusKeys(PREFIX)
GATEWAY = {"auth": {"anonymous_role": "operator"}}


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    return make_journal(tmp_path_factory.mktemp("ingest") / "journal.db")


@pytest.fixture(scope="module")
def gateways(
    bus: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[RoleProcess]]:
    directory = tmp_path_factory.mktemp("gateways")
    timeouts = {"gateway-1": 8.0, "gateway-2": 1.5}  # gateway-2 gives up quickly
    procs = [
        RoleProcess(
            "gateway",
            node,
            directory,
            bus.url,
            {**GATEWAY, "cluster": {"command_timeout": timeout}},
        )
        for node, timeout in timeouts.items()
    ]
    for proc in procs:
        proc.start(wait_ready=False)
    for proc in procs:
        eventually(lambda p=proc: p.ready()[0] in (200, 503), timeout=30)  # type: ignore[misc]
    yield procs
    for proc in procs:
        proc.stop()


class Plant:
    async def activate(self) -> None:
        pass

    async def stand_by(self) -> None:
        pass


class Ingest:
    """The active ingest side: a node on the bus, the commands it applied (with a ledger,
    as the journal keeps one), and a frame every 100 ms while `pulse` runs."""

    def __init__(self, url: str, journal: Journal, name: str = "ingest-t") -> None:
        self.journal = journal
        self.applied: list[Command] = []
        self.ledger: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, dict[str, Any]] = {}  # kind → result to give
        self.node = IngestNode(
            url,
            KEYS,
            name,
            journal,
            JOURNAL_EPOCH,
            Plant(),
            apply_command=self.apply,
            lookup_command=self.ledger.get,
        )
        self.frames = 0
        self.flood: dict[str, Any] = {"active": False, "count": 0}
        self.lines: list[str] = []

    async def apply(self, command: Command) -> dict[str, Any]:
        self.applied.append(command)
        result = self.answers.get(command.kind, {"events": []})
        self.ledger[command.request_id] = result
        return result

    def payload(self, n: int) -> bytes:
        full = n % 10 == 0
        lines = self.lines if full else self.lines[:1]
        samples = [{"production_line_id": line, "quality": "good", "n": n} for line in lines]
        body = {"ts": iso_ms(time.time()), "lines": samples, "full": full, "flood": self.flood}
        return orjson.dumps(body)

    async def pulse(self) -> None:
        while True:
            raise_if_cancelled()  # a publish may swallow the cancellation (redis-py)
            if await self.node.publish_frame(self.payload(self.frames)):
                self.frames += 1
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def ingest(url: str, journal: Journal, lines: list[str]) -> AsyncIterator[Ingest]:
    side = Ingest(url, journal)
    side.lines = lines
    tasks = [asyncio.create_task(side.node.run())]
    await until(lambda: side.node.state == "active")
    tasks.append(asyncio.create_task(side.pulse()))
    try:
        yield side
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def opening(ws: ClientConnection) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `connected` and `snapshot` data every connection starts with."""
    connected, snapshot = await recv(ws), await recv(ws)
    assert (connected["type"], snapshot["type"]) == ("connected", "snapshot")
    return connected["data"], snapshot["data"]


async def frames_until(
    ws: ClientConnection, done: Any, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Frames read until `done(frame)`; that frame last."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = await recv(ws)
        got.append(frame)
        if done(frame):
            return got
    raise AssertionError(f"not within {timeout} s: {[f['type'] for f in got[-20:]]}")


def alarm_ids(frames: list[dict[str, Any]]) -> list[int]:
    return [f["data"]["event_id"] for f in frames if f["type"] == "alarm"]


async def request(ws: ClientConnection, type_: str, data: dict[str, Any], rid: int) -> Any:
    await ws.send(json.dumps({"type": type_, "id": rid, "data": data}))
    frames = await frames_until(ws, lambda f: f["type"] == "reply" and f["data"]["id"] == rid)
    return frames[-1]["data"]


def lines_of(gateway: RoleProcess) -> list[str]:
    async def read() -> list[str]:
        async with connect(gateway.ws) as ws:
            connected, _ = await opening(ws)
            return list(connected["lines"])

    return asyncio.run(read())


async def bus_epoch(url: str) -> str:
    redis = redis_connect(url)
    try:
        epoch = await read_epoch(redis, KEYS)
    finally:
        await redis.aclose()
    assert epoch is not None
    return epoch


def test_snapshot_frames_and_alarms_from_the_bus(
    bus: RedisServer, journal: Journal, gateways: list[RoleProcess]
) -> None:
    gateway = gateways[0]
    lines = lines_of(gateway)

    async def main() -> None:
        async with ingest(bus.url, journal, lines) as side:
            await until(lambda: gateway.ready()[0] == 200)
            epoch = await bus_epoch(bus.url)
            async with connect(gateway.ws) as ws:
                _, snapshot = await opening(ws)
                assert snapshot["epoch"] == epoch and snapshot["data_live"] is True
                cursor = snapshot["alarm_cursor"]
                ids = await produce(side.node, journal, 40, "burst")
                assert ids[0] == cursor + 1
                got = await frames_until(
                    ws, lambda f: f["type"] == "alarm" and f["data"]["event_id"] == ids[-1]
                )
                assert alarm_ids(got) == ids  # 0 missing, 0 duplicated, in order
                alarm = next(f["data"] for f in got if f["type"] == "alarm")
                assert alarm["state"] == "unacked_active" and alarm["production_line_id"] == "1"

                # Entries that are not a tick's records are skipped, nothing else changes.
                assert await side.node.publish_frame(b"not json")
                assert await side.node.publish_frame(b'{"ts": "x", "lines": [{"n": 1}]}')

                # Every frame published while connected arrives, once, in order.
                first = side.frames
                got = await frames_until(
                    ws,
                    lambda f: f["type"] == "production_data" and f["data"][0]["n"] >= first + 20,
                )
                numbers = [f["data"][0]["n"] for f in got if f["type"] == "production_data"]
                assert numbers == list(range(numbers[0], first + 21))

                side.flood = {"active": True, "count": 12}
                got = await frames_until(ws, lambda f: f["type"] == "alarm_flood")
                assert got[-1]["data"] == side.flood

            async with connect(gateway.ws) as ws:  # lines merged from the frames
                _, snapshot = await opening(ws)
                assert [s["production_line_id"] for s in snapshot["lines"]] == lines
                assert snapshot["flood"] == side.flood
                assert {a["event_id"] for a in snapshot["alarms"]} >= set(ids)

    asyncio.run(main())


def test_resume_on_another_gateway_gets_exactly_the_missed_events(
    bus: RedisServer, journal: Journal, gateways: list[RoleProcess]
) -> None:
    first, second = gateways
    lines = lines_of(first)

    async def main() -> None:
        async with ingest(bus.url, journal, lines) as side:
            await until(lambda: first.ready()[0] == second.ready()[0] == 200)
            async with connect(first.ws) as ws:
                _, snapshot = await opening(ws)
                epoch = snapshot["epoch"]
                seen = await produce(side.node, journal, 10, "seen")
                await frames_until(
                    ws, lambda f: f["type"] == "alarm" and f["data"]["event_id"] == seen[-1]
                )
            missed = await produce(side.node, journal, 25, "missed")
            await until(lambda: second.cluster_state().get("cursor") == missed[-1])

            async with connect(second.ws) as ws:
                await opening(ws)
                await ws.send(
                    json.dumps(
                        {"type": "resume", "data": {"alarm_cursor": seen[-1], "epoch": epoch}}
                    )
                )
                got = await frames_until(ws, lambda f: f["type"] == "snapshot")
                assert alarm_ids(got) == missed
                assert got[-1]["data"]["recovered"] is True

                other = {"alarm_cursor": seen[-1], "epoch": "0000000000000000/beef"}
                await ws.send(json.dumps({"type": "resume", "data": other}))
                got = await frames_until(ws, lambda f: f["type"] == "snapshot")
                assert alarm_ids(got) == [] and got[-1]["data"]["recovered"] is False
                assert got[-1]["data"]["epoch"] == epoch

    asyncio.run(main())


def test_commands_reach_the_ingest_node_once_and_its_answer_comes_back(
    bus: RedisServer, journal: Journal, gateways: list[RoleProcess]
) -> None:
    patient, hasty = gateways
    lines = lines_of(patient)

    async def main() -> None:
        async with ingest(bus.url, journal, lines) as side, connect(patient.ws) as ws:
            await opening(ws)
            await until(lambda: patient.ready()[0] == 200)
            side.answers["ack"] = {"events": [{"event_id": 77, "event": "acknowledged"}]}
            reply = await request(ws, "ack", {"alarm_id": 7, "comment": "seen"}, 1)
            assert reply == {"id": 1, "ok": True, "result": side.answers["ack"]}
            (command,) = side.applied
            assert command.kind == "ack" and command.reply_to == "gateway-1"
            assert command.body["data"] == {"alarm_id": 7, "comment": "seen"}
            actor = command.body["actor"]
            assert actor["role"] == "operator" and actor["anonymous"] is True
            assert actor["address"] == "127.0.0.1"

            side.answers["shelve"] = {"error": {"code": "unknown_alarm", "message": "no such"}}
            reply = await request(ws, "shelve", {"alarm": "nope", "minutes": 5}, 2)
            assert reply["ok"] is False and reply["error"] == "unknown_alarm"

        # No active ingest node: the gateway resends under the same request id until one
        # takes over, which applies it once.
        redis = redis_connect(bus.url)
        async with connect(patient.ws) as ws:
            await opening(ws)
            await ws.send(json.dumps({"type": "unshelve", "id": 3, "data": {"alarm": "a"}}))

            async def resent() -> bool:
                entries: Any = await redis.xrange(KEYS.commands(patient.node), min="-", max="+")
                ids = [f[b"r"] for _, f in entries if f[b"k"] == b"unshelve"]
                return len(ids) >= 2 and len(set(ids)) == 1

            await until(resent)
            async with ingest(bus.url, journal, lines) as side:
                got = await frames_until(ws, lambda f: f["type"] == "reply")
                assert got[-1]["data"] == {"id": 3, "ok": True, "result": {"events": []}}
                await until(lambda: len(side.ledger) == 1)
                assert [c.kind for c in side.applied] == ["unshelve"]
        await redis.aclose()

        async with connect(hasty.ws) as ws:  # still nobody: `unavailable` after 1.5 s
            await opening(ws)
            reply = await request(ws, "ack", {"alarm_id": 8}, 4)
            assert reply["ok"] is False and reply["error"] == "unavailable"

    asyncio.run(main())


def test_clients_see_the_bus_stale_and_live_again_and_a_new_epoch(
    bus: RedisServer, journal: Journal, gateways: list[RoleProcess]
) -> None:
    gateway = gateways[0]
    lines = lines_of(gateway)

    async def main() -> None:
        async with ingest(bus.url, journal, lines):
            await until(lambda: gateway.ready()[0] == 200)
            async with connect(gateway.ws) as ws:
                _, snapshot = await opening(ws)
                old_epoch = snapshot["epoch"]
                bus.pause()  # hangs: nothing answers, the connections stay open
                try:
                    got = await frames_until(ws, lambda f: f["type"] == "data_status")
                    stale = got[-1]
                    assert stale["data"]["live"] is False and stale["data"]["reason"] == "bus stale"
                    assert stale["data"]["since"] < stale["timestamp"]  # when the data stopped
                    assert httpx.get(f"{gateway.http}/ready").status_code == 503
                finally:
                    bus.resume()
                got = await frames_until(ws, lambda f: f["type"] == "data_status")
                assert got[-1]["data"]["live"] is True
                await until(lambda: gateway.ready()[0] == 200)

                bus.restart()  # kill -9 without persistence: a new epoch
                got = await frames_until(
                    ws,
                    lambda f: f["type"] == "snapshot" and f["data"]["epoch"] != old_epoch,
                    timeout=30,
                )
                assert got[-1]["data"]["recovered"] is False
                assert got[-1]["data"]["epoch"].startswith(JOURNAL_EPOCH + "/")

    asyncio.run(main())


def test_health_and_metrics(gateways: list[RoleProcess]) -> None:
    gateway = gateways[0]
    assert httpx.get(f"{gateway.http}/health").json() == {"status": "alive"}
    state = gateway.cluster_state()
    assert state["role"] == "gateway" and state["node"] == "gateway-1"
    metrics = httpx.get(f"{gateway.http}/metrics").text
    assert "scada_ws_connections_total" in metrics and "scada_bus_commands_total" in metrics
    for path in ("/", "/login", "/diagnostics", "/static/app.js"):
        assert httpx.get(f"{gateway.http}{path}").status_code == 200, path
    assert httpx.get(f"{gateway.http}/api/lines").status_code == 404  # the ingest node's

"""The gateway's hub on the in-memory bus, no Redis: the real gateway app (`scada serve --role
gateway`'s factory, given a MemoryBus) behind the real uvicorn server, in this process, fed by
an active ingest side on the same bus. What a client sees is what it sees from a gateway on
Redis: the bus epoch and cursor in the snapshot, every frame, contiguous alarm ids, a resume
that replays exactly what was missed, commands answered through the bus, a gap on a trimmed
stream → a fresh snapshot (`recovered: false`), the bus stale and live again."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from scada.auth.audit import Auditor
from scada.auth.store import AuthStore
from scada.bus.commandstream import Command
from scada.bus.membus import MemoryBus
from scada.core.config import config_from_dict, default_config_text
from scada.core.timefmt import iso_ms
from scada.roles.gateway.app import create_gateway_app
from scada.server.serve import build_server
from tests.conftest import free_port
from tests.integration.cluster_node import alarm_event
from tests.integration.test_cluster_node import until
from tests.integration.test_gateway_role import alarm_ids, frames_until, opening, request

JOURNAL = "00000000000000aa"
DEFAULT = config_from_dict(tomllib.loads(default_config_text()))


class Ingest:
    """The active ingest side on the bus: alarm entries with journal ids, a frame every
    100 ms while `pulse` runs, and the commands it applied."""

    def __init__(self, bus: MemoryBus, lines: list[str]) -> None:
        self.bus = bus
        self.lines = lines
        self.lease = bus.lease("ingest-m", ttl=3600.0)  # never renewed in the test
        self.epoch = ""
        self.next_id = 1
        self.frames = 0
        self.applied: list[Command] = []
        self.ledger: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        assert await self.lease.try_acquire()
        self.epoch, _ = await self.bus.ensure_epoch(self.lease.fence(), JOURNAL)

    async def alarms(self, count: int, maxlen: int = 0) -> list[int]:
        entries = []
        for _ in range(count):
            event = alarm_event(self.next_id).to_record() | {"event_id": self.next_id}
            entries.append((self.next_id, orjson.dumps(event), event["alarm"]))
            self.next_id += 1
        await self.bus.publish_alarms(self.lease.fence(), self.epoch, entries, maxlen=maxlen)
        return [i for i, _, _ in entries]

    async def apply(self, command: Command) -> dict[str, Any]:
        self.applied.append(command)
        result = {"events": [{"event_id": 999, "event": "acknowledged"}]}
        self.ledger[command.request_id] = result
        return result

    async def pulse(self) -> None:
        while True:
            samples = [{"production_line_id": line, "n": self.frames} for line in self.lines]
            body = {"ts": iso_ms(time.time()), "lines": samples, "full": True, "flood": None}
            await self.bus.publish_frame(self.lease.fence(), orjson.dumps(body))
            self.frames += 1
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, bus: MemoryBus) -> AsyncIterator[str]:
    raw = tomllib.loads(default_config_text())
    raw.setdefault("server", {})["data_dir"] = str(tmp_path / "data")
    raw.setdefault("auth", {})["anonymous_role"] = "operator"
    raw.setdefault("cluster", {}).update({"read_deadline": 1.0, "command_timeout": 5.0})
    store = AuthStore(tmp_path / "auth.sqlite")
    factory = functools.partial(
        create_gateway_app, bus=bus, credentials=store, auditor=Auditor(store)
    )
    port = free_port()
    server = build_server(
        config_from_dict(raw), port=port, log_level="warning", role="gateway", create_app=factory
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), timeout=30)
    assert server.started
    try:
        async with httpx.AsyncClient() as http:  # 200 once the feed reads the bus

            async def ready() -> bool:
                return (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200

            await until(ready, timeout=30)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        store.close()


async def resume(ws: ClientConnection, cursor: int, epoch: str) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"type": "resume", "data": {"alarm_cursor": cursor, "epoch": epoch}}))
    return await frames_until(ws, lambda f: f["type"] == "snapshot")


def test_a_gateway_hub_runs_on_the_memory_bus(tmp_path: Path) -> None:
    async def main() -> None:
        bus = MemoryBus()
        lines = [line.id for line in DEFAULT.lines]
        side = Ingest(bus, lines)
        await side.start()
        before = await side.alarms(5)
        handler = bus.command_handler(side.lease, apply=side.apply, lookup=side.ledger.get)
        tasks = [asyncio.create_task(side.pulse()), asyncio.create_task(handler.run())]
        async with gateway(tmp_path, bus) as url:
            async with connect(url) as ws:
                connected, snapshot = await opening(ws)
                assert connected["lines"] == [line.id for line in DEFAULT.lines]
                assert snapshot["data_live"] is True
                assert snapshot["epoch"] == side.epoch and snapshot["alarm_cursor"] == before[-1]
                assert {a["event_id"] for a in snapshot["alarms"]} == set(before)

                ids = await side.alarms(30)
                got = await frames_until(
                    ws, lambda f: f["type"] == "alarm" and f["data"]["event_id"] == ids[-1]
                )
                assert alarm_ids(got) == ids  # 0 missing, 0 duplicated, in order
                first = side.frames
                got = await frames_until(
                    ws,
                    lambda f: f["type"] == "production_data" and f["data"][0]["n"] >= first + 5,
                )
                numbers = [f["data"][0]["n"] for f in got if f["type"] == "production_data"]
                assert numbers == list(range(numbers[0], first + 6))  # every frame, once

                reply = await request(ws, "ack", {"alarm_id": 3, "comment": "seen"}, 1)
                assert reply["ok"] is True and reply["result"]["events"][0]["event_id"] == 999
                (command,) = side.applied
                assert command.kind == "ack" and command.body["data"]["alarm_id"] == 3

            seen = ids[-1]
            missed = await side.alarms(12)
            async with connect(url) as ws:
                await opening(ws)
                got = await resume(ws, seen, side.epoch)
                assert alarm_ids(got) == missed and got[-1]["data"]["recovered"] is True
                got = await resume(ws, seen, "another/epoch")
                assert alarm_ids(got) == [] and got[-1]["data"]["recovered"] is False

                # The stream trimmed past what the gateway read: it starts over from the
                # state, every client gets a fresh snapshot.
                tasks[0].cancel()  # no frames: the feed sees the alarm entries alone
                await frames_until(ws, lambda f: f["type"] == "data_status")  # stale
                await side.alarms(200, maxlen=20)
                got = await frames_until(
                    ws, lambda f: f["type"] == "snapshot" and f["data"]["alarm_cursor"] > seen
                )
                snap = got[-1]["data"]
                assert snap["recovered"] is False and snap["alarm_cursor"] == side.next_id - 1
                stale = [f["data"] for f in got if f["type"] == "data_status"]
                assert stale == [] or stale[-1]["live"] is True

                tasks[0] = asyncio.create_task(side.pulse())
                got = await frames_until(ws, lambda f: f["type"] == "production_data")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())

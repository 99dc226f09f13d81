"""The all-in-one server's epoch: a snapshot names it (and says the data is live); a resume
with the same epoch replays, one with another epoch gets a fresh snapshot and no replay, and
a resume without an epoch works as before epochs existed."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import ServerProcess
from tests.integration.test_alarms_live import DRIFT, inject, is_raised
from tests.integration.test_websocket import recv, until


async def resumed(ws: ClientConnection, data: dict[str, Any]) -> tuple[list[int], dict[str, Any]]:
    """Send a resume; the event ids replayed and the snapshot that ends it."""
    await ws.send(json.dumps({"type": "resume", "id": 9, "data": data}))
    replayed: list[int] = []
    while True:
        frame = await recv(ws)
        if frame["type"] == "alarm":
            replayed.append(frame["data"]["event_id"])
        elif frame["type"] == "snapshot":
            return replayed, frame["data"]


def test_snapshot_names_the_epoch_and_a_resume_of_another_epoch_is_not_replayed(
    open_server: ServerProcess,
) -> None:
    async def main() -> None:
        async with connect(open_server.ws) as ws:
            snapshot = (await until(ws, lambda f: f["type"] == "snapshot"))["data"]
            epoch = snapshot["epoch"]
            assert re.fullmatch(r"[0-9a-f]{16}", epoch) and snapshot["data_live"] is True
            cursor = snapshot["alarm_cursor"]
            inject(open_server, DRIFT)
            raised = await until(ws, is_raised("line2.diameter.hi"))
            newest = raised["data"]["event_id"]
            assert newest > cursor

        async with connect(open_server.ws) as ws:
            await until(ws, lambda f: f["type"] == "snapshot")
            same, after_same = await resumed(ws, {"alarm_cursor": cursor, "epoch": epoch})
            assert newest in same and after_same["recovered"] is True
            assert after_same["epoch"] == epoch

            other, after_other = await resumed(ws, {"alarm_cursor": cursor, "epoch": "f" * 16})
            assert other == [] and after_other["recovered"] is False
            assert after_other["epoch"] == epoch  # the client learns the epoch to resume in

            legacy, after_legacy = await resumed(ws, {"alarm_cursor": cursor})
            assert legacy == same and after_legacy["recovered"] is True

            await ws.send(json.dumps({"type": "resume", "data": {"alarm_cursor": 0, "epoch": ""}}))
            error = await until(ws, lambda f: f["type"] == "error")
            assert (
                error["data"]["code"] == "invalid_message" and "epoch" in error["data"]["message"]
            )

    asyncio.run(main())

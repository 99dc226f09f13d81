"""scada.tools.client.PlantClient against a real server: frames, subscribe, requests, reconnect."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from scada.tools.client import MAX_DELAY_S, PlantClient, backoff_delay
from scada.tools.watch import render
from tests.conftest import ServerProcess, scaled
from tests.integration.test_alarms_live import DRIFT, inject, is_raised


def test_backoff_grows_by_1_3_from_1_s_to_10_s_with_jitter() -> None:
    rng = random.Random(1)
    for attempt, base in [(0, 1.0), (1, 1.3), (2, 1.69), (20, MAX_DELAY_S)]:
        delays = [backoff_delay(attempt, rng) for _ in range(200)]
        assert min(delays) >= base * 0.8 and max(delays) <= base * 1.2
        assert max(delays) - min(delays) > base * 0.2  # jitter spreads reconnect storms


def test_client_streams_subscribes_and_reconnects_after_a_restart(
    open_server: ServerProcess,
) -> None:
    server = open_server

    async def main() -> None:
        client = PlantClient(server.ws)
        await client.connect()
        kinds: list[str] = []
        async for frame in client:
            kinds.append(frame["type"])
            if kinds.count("production_data") == 3:
                break
        assert kinds[:2] == ["connected", "snapshot"]
        await client.subscribe(lines=["5"])
        seen: set[str] = set()
        async for frame in client:
            if frame["type"] == "production_data":
                seen = {s["production_line_id"] for s in frame["data"]}
                if seen == {"5"}:
                    break
        # A request with a reply, answered while the iteration reads frames.
        reply_task = asyncio.create_task(client.request("heartbeat", {"x": 1}))
        async for _frame in client:
            if reply_task.done():
                break
        assert reply_task.result()["ok"] is True

        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        after: list[dict[str, Any]] = []
        # Frames read before the stop may still be queued, and the new connection's first
        # frames may go out before the server has read the subscription the client sent
        # again (all lines: seen once beside two CPU hogs): read on until that connection's
        # production data has only line 5, which it never would without the subscription.
        async with asyncio.timeout(scaled(30)):
            async for frame in client:
                after.append(frame)
                if frame["type"] != "production_data" or client.connects != 2:
                    continue
                if {s["production_line_id"] for s in frame["data"]} == {"5"}:
                    break
        types = [f["type"] for f in after]
        assert "connected" in types and types.index("connected") < len(types) - 1
        await client.close()

    asyncio.run(main())


def test_client_resume_brings_missed_alarm_events(open_server: ServerProcess) -> None:
    server = open_server

    async def main() -> None:
        async with PlantClient(server.ws) as client:
            async for frame in client:
                if frame["type"] == "snapshot":
                    break
            cursor_before = client.alarm_cursor
            r = httpx.post(
                f"{server.http}/api/simulator/faults",
                json={"line": "1", "kind": "sensor_dropout", "tag": "diameter"},
            )
            assert r.status_code == 201
            async for frame in client:
                if frame["type"] == "alarm" and frame["data"]["alarm"] == "line1.diameter.quality":
                    break
            assert client.alarm_cursor is not None and client.alarm_cursor > (cursor_before or 0)

    asyncio.run(main())


def test_watch_render_shows_lines_quality_and_alarms() -> None:
    lines = {
        "1": {
            "production_line_id": "1",
            "quality": "bad",
            "state": "running",
            "body_temperatures": [180.0, 185.0, None, 195.0],
            "diameter": None,
            "die_temperature": 200.0,
            "line_speed": 25.0,
            "motor_current": 80.0,
            "melt_pressure": 210.0,
        }
    }
    alarms = {
        "line1.diameter.quality": {
            "state": "unacked_active",
            "severity": "high",
            "message": "Line 1: diameter bad",
            "raised_at": "x",
        }
    }
    text = render(lines, alarms, "connected")
    assert "connected" in text and "running" in text and "bad" in text
    assert "—" in text  # missing values are shown as missing, not as numbers
    assert "alarms: 1" in text and "Line 1: diameter bad" in text


async def resumed_frames(client: PlantClient) -> tuple[list[int], dict[str, Any]]:
    """Reconnect (the client sends its resume); the replayed alarm event ids, and the resume's
    snapshot. Replayed: up to the connection's own snapshot's cursor (later ones are live)."""
    await client.connect()
    replayed: list[int] = []
    upto = None
    async for frame in client:
        if frame["type"] == "alarm" and (upto is None or frame["data"]["event_id"] <= upto):
            replayed.append(frame["data"]["event_id"])
        elif frame["type"] == "snapshot" and "recovered" not in frame["data"]:
            upto = frame["data"]["alarm_cursor"]
        elif frame["type"] == "snapshot":
            return replayed, frame["data"]
    raise AssertionError("connection ended")


def test_client_resumes_in_its_epoch_and_takes_a_new_journals_snapshot_as_the_truth(
    open_server: ServerProcess,
) -> None:
    """Away during an alarm: the resume (cursor + epoch) brings exactly that event. Back to a
    server with a new journal (new epoch): recovered false, the new epoch, no replay."""
    server = open_server

    async def main() -> None:
        client = PlantClient(server.ws, reconnect=False)  # reconnects when the test says
        await client.connect()
        async for frame in client:
            if frame["type"] == "snapshot":
                break
        epoch, cursor = client.epoch, client.alarm_cursor
        assert epoch is not None and epoch == frame["data"]["epoch"] and client.data_live
        assert cursor is not None
        await client.close()
        async with PlantClient(server.ws) as observer:  # sees the alarm while we are away
            inject(server, DRIFT)
            async for frame in observer:
                if is_raised("line2.diameter.hi")(frame):
                    break
        missed = frame["data"]["event_id"]
        replayed, snapshot = await resumed_frames(client)
        assert snapshot["recovered"] is True and client.epoch == epoch
        assert missed in replayed and all(cursor < i for i in replayed)
        assert client.alarm_cursor == snapshot["alarm_cursor"]

        # A new journal behind the same address: nothing of it is taken for a missed event.
        await client.close()
        await asyncio.to_thread(server.stop)
        (server.workdir / "data" / "journal.sqlite").unlink()
        await asyncio.to_thread(server.start)
        async with PlantClient(server.ws) as observer:
            # Its ids reach past our cursor, so a resume by cursor alone would replay them.
            line = 0
            async for frame in observer:
                if (observer.alarm_cursor or 0) > (client.alarm_cursor or 0):
                    break
                if frame["type"] in ("snapshot", "alarm"):
                    line += 1
                    inject(server, {"line": str(line), "kind": "sensor_dropout", "tag": "diameter"})
        replayed, snapshot = await resumed_frames(client)
        assert snapshot["recovered"] is False and replayed == []
        assert client.epoch == snapshot["epoch"] != epoch
        await client.close()

    asyncio.run(main())

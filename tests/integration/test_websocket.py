"""The /ws endpoint on a real server: rate, subscriptions, bad input, slow clients, quality."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerProcess, eventually

ALL_LINES = [str(i) for i in range(1, 9)]


def ts(frame: dict[str, Any]) -> float:
    return datetime.fromisoformat(frame["timestamp"].replace("Z", "+00:00")).timestamp()


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


async def until(
    ws: ClientConnection, predicate: Callable[[dict[str, Any]], bool], limit: int = 200
) -> dict[str, Any]:
    """Read frames until one matches; fail after `limit` frames."""
    for _ in range(limit):
        frame = await recv(ws)
        if predicate(frame):
            return frame
    raise AssertionError("no matching frame")


async def close_code(ws: ClientConnection, limit: int = 100_000) -> int:
    """Read on until the server closes the connection; its close code (1006 if none came)."""
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(limit):
            await recv(ws, timeout=15)
    return info.value.rcvd.code if info.value.rcvd is not None else 1006


async def production_frames(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while len(frames) < n:
        frame = await recv(ws)
        if frame["type"] == "production_data":
            frames.append(frame)
    return frames


def assert_every_frame_in_order(frames: list[dict[str, Any]]) -> None:
    """Consecutive production frames: strictly increasing seq and server stamps, one tick's
    frame each. (How many per second is `scada bench`'s figure: a busy machine ticks late,
    not wrong.)"""
    for a, b in itertools.pairwise(frames):
        assert b["seq"] > a["seq"]
        assert ts(b) > ts(a)


def test_three_clients_get_connected_snapshot_then_every_frame_in_order(
    server: ServerProcess,
) -> None:
    async def one() -> list[dict[str, Any]]:
        async with connect(server.ws) as ws:
            first, second = await recv(ws), await recv(ws)
            frames = await production_frames(ws, 25)
            return [first, second, *frames]

    async def main() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(one(), one(), one()))

    results = asyncio.run(main())
    client_ids = set()
    for frames in results:
        connected, snapshot, production = frames[0], frames[1], frames[2:]
        assert connected["type"] == "connected" and connected["seq"] == 1
        assert connected["data"]["protocol"] == 1
        assert connected["data"]["lines"] == ALL_LINES
        assert connected["data"]["batch_interval_ms"] == 100
        client_ids.add(connected["data"]["client_id"])
        assert snapshot["type"] == "snapshot" and snapshot["seq"] == 2
        assert [s["production_line_id"] for s in snapshot["data"]["lines"]] == ALL_LINES
        assert "alarm_cursor" in snapshot["data"]
        seqs = [f["seq"] for f in frames]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        for frame in production:
            assert [s["production_line_id"] for s in frame["data"]] == ALL_LINES
            sample = frame["data"][0]
            assert len(sample["body_temperatures"]) == 4
            assert sample["quality"] == "good"
            assert isinstance(sample["diameter"], float)
            assert frame["timestamp"].endswith("Z")
        assert_every_frame_in_order(production)
    assert len(client_ids) == 3


def test_subscribe_to_lines_two_and_five(server: ServerProcess) -> None:
    async def main() -> list[dict[str, Any]]:
        async with connect(server.ws) as ws:
            await ws.send(
                json.dumps({"type": "subscribe", "id": "s1", "data": {"lines": ["2", "5"]}})
            )
            reply = await until(ws, lambda f: f["type"] == "reply")
            assert reply["data"] == {
                "id": "s1",
                "ok": True,
                "result": {"lines": ["2", "5"], "types": ["alarm", "production_data"]},
            }
            return await production_frames(ws, 10)

    for frame in asyncio.run(main()):
        assert sorted(s["production_line_id"] for s in frame["data"]) == ["2", "5"]


def test_bad_messages_get_error_frames_and_streaming_continues(server: ServerProcess) -> None:
    async def main() -> None:
        async with connect(server.ws) as ws:
            cases = [
                ("not json {", "invalid_json"),
                ("x" * 70_000, "message_too_large"),
                (json.dumps({"type": "launch_missiles"}), "unknown_type"),
                (json.dumps([1, 2]), "invalid_message"),
                (json.dumps({"type": "subscribe", "data": {"lines": ["99"]}}), "invalid_message"),
                (json.dumps({"type": "subscribe", "data": {"types": ["nope"]}}), "invalid_message"),
                (json.dumps({"type": "ack", "data": {"alarm_id": "x"}}), "invalid_message"),
            ]
            for raw, code in cases:
                await ws.send(raw)
                error = await until(ws, lambda f: f["type"] == "error")
                assert error["data"]["code"] == code, error
            # Nothing changed: still every line, still 10 frames per second.
            frames = await production_frames(ws, 12)
            assert all(len(f["data"]) == 8 for f in frames)
            assert_every_frame_in_order(frames)
            await ws.send(json.dumps({"type": "heartbeat", "id": 7, "data": {"n": 1}}))
            beat = await until(ws, lambda f: f["type"] == "heartbeat")
            assert beat["data"] == {"n": 1}

    asyncio.run(main())


def test_client_that_stops_reading_is_dropped_with_1013(server_factory: Any) -> None:
    server = server_factory(
        {
            "server": {
                "max_client_buffer_bytes": 8192,
                "socket_send_buffer": 8192,
                "slow_client_timeout": 1.0,
            }
        }
    )

    async def main() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        slow = await connect(server.ws, sock=sock, max_queue=1)
        async with connect(server.ws) as healthy:
            await until(healthy, lambda f: f["type"] == "snapshot")

            def dropped() -> bool:
                body = httpx.get(f"{server.http}/health/websocket").json()
                return bool(body["slow_clients_dropped"] >= 1)

            frames: list[dict[str, Any]] = []
            while not await asyncio.to_thread(dropped):
                frames.extend(await production_frames(healthy, 5))
            frames.extend(await production_frames(healthy, 10))
            seqs = [f["seq"] for f in frames]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap for the healthy one
            assert_every_frame_in_order(frames)
        # The slow client, reading again, finds the close frame behind its backlog.
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(100_000):
                await asyncio.wait_for(slow.recv(), 15)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013

    asyncio.run(main())


def test_sensor_dropout_turns_line_bad_and_recovers(open_server: ServerProcess) -> None:
    server = open_server

    async def main() -> None:
        async with connect(server.ws) as ws:
            await ws.send(json.dumps({"type": "subscribe", "data": {"lines": ["3"]}}))
            await until(ws, lambda f: f["type"] == "production_data")
            r = httpx.post(
                f"{server.http}/api/simulator/faults",
                json={"line": "3", "kind": "sensor_dropout", "tag": "diameter"},
            )
            assert r.status_code == 201, r.text
            fault_id = r.json()["id"]
            bad = await until(
                ws,
                lambda f: f["type"] == "production_data" and f["data"][0]["quality"] == "bad",
                limit=300,  # frames: a deadline (30 s of ticks), not a latency
            )
            sample = bad["data"][0]
            assert sample["diameter"] is None and sample["bad_tags"] == ["diameter"]
            assert sample["body_temperatures"][0] is not None
            listed = httpx.get(f"{server.http}/api/simulator/faults").json()["faults"]
            assert [f["id"] for f in listed] == [fault_id]
            assert httpx.delete(f"{server.http}/api/simulator/faults/{fault_id}").status_code == 200
            good = await until(
                ws,
                lambda f: f["type"] == "production_data" and f["data"][0]["quality"] == "good",
                limit=300,  # frames: a deadline (30 s of ticks), not a latency
            )
            assert isinstance(good["data"][0]["diameter"], float)
            assert "bad_tags" not in good["data"][0]
            # Fault requests are bounded: a whole-source fault takes no line, a huge body 413.
            r = httpx.post(
                f"{server.http}/api/simulator/faults",
                json={"line": "3", "kind": "server_unresponsive"},
            )
            assert r.status_code == 400 and "give no line" in r.json()["message"]
            r = httpx.post(
                f"{server.http}/api/simulator/faults",
                content=b'{"line": "3", "kind": "line_stop", "pad": "' + b"x" * 8192 + b'"}',
            )
            assert r.status_code == 413

    asyncio.run(main())


def test_stopped_source_makes_line_stale_after_stale_after(open_server: ServerProcess) -> None:
    server = open_server

    async def main() -> None:
        async with connect(server.ws) as ws:
            await ws.send(json.dumps({"type": "subscribe", "data": {"lines": ["4"]}}))
            last_good = await until(ws, lambda f: f["type"] == "production_data")
            assert last_good["data"][0]["quality"] == "good"
            r = httpx.post(
                f"{server.http}/api/simulator/faults", json={"line": "4", "kind": "source_stop"}
            )
            assert r.status_code == 201
            stale = await until(
                ws,
                lambda f: f["type"] == "production_data" and f["data"][0]["quality"] == "stale",
                limit=300,
            )
            # Stale only once stale_after (1 s) passed since the last fresh value, whose source
            # time the stale record still carries.
            sample = stale["data"][0]
            assert ts(stale) - ts(sample) >= 1.0
            assert stale["data"][0]["diameter"] is not None  # last value kept, marked stale
            httpx.delete(f"{server.http}/api/simulator/faults/{r.json()['id']}")
            await until(
                ws,
                lambda f: f["type"] == "production_data" and f["data"][0]["quality"] == "good",
                limit=300,
            )

    asyncio.run(main())


def test_fault_api_rejects_bad_requests(open_server: ServerProcess) -> None:
    server = open_server
    cases = [
        ({"line": "9", "kind": "line_stop"}, "no line with id '9'"),
        ({"line": "1", "kind": "meteor"}, "kind"),
        ({"line": "1", "kind": "line_stop", "zone": 2}, "zone does not apply to line_stop"),
        ({"line": "1", "kind": "stuck_sensor", "tag": "nope"}, "unknown tag"),
    ]
    for body, words in cases:
        r = httpx.post(f"{server.http}/api/simulator/faults", json=body)
        assert r.status_code == 400 and words in r.json()["message"], r.text
    assert httpx.get(f"{server.http}/api/simulator/faults").json()["faults"] == []
    assert httpx.delete(f"{server.http}/api/simulator/faults/12345").status_code == 404


def test_http_endpoints(server: ServerProcess) -> None:
    assert httpx.get(f"{server.http}/health").json() == {"status": "alive"}
    ready = httpx.get(f"{server.http}/ready").json()
    assert ready["ready"] is True and ready["devices"][0]["state"] == "connected"
    lines = httpx.get(f"{server.http}/api/lines").json()["lines"]
    assert [line["id"] for line in lines] == ALL_LINES
    assert lines[4]["tags"]["diameter"]["setpoint"] == 16.0
    assert httpx.get(f"{server.http}/api/lines/42").status_code == 404
    one = httpx.get(f"{server.http}/api/lines/2").json()
    assert one["latest"]["production_line_id"] == "2"
    eventually(
        lambda: (
            httpx.get(f"{server.http}/api/lines/1/history?seconds=60&points=5").json()["samples"]
            >= 10
        )
    )
    hist = httpx.get(f"{server.http}/api/lines/1/history?seconds=60&points=5").json()
    assert len(hist["t"]) == 5 and len(hist["series"]["diameter"]["max"]) == 5
    assert httpx.get(f"{server.http}/api/lines/1/history?points=0").status_code == 400
    html = httpx.get(f"{server.http}/").text
    assert "Plant overview" in html
    assert "Connection diagnostics" in httpx.get(f"{server.http}/diagnostics").text
    health = httpx.get(f"{server.http}/health/websocket").json()
    assert {"connections_active", "frames_sent", "slow_clients_dropped", "tick_ms_p99"} <= set(
        health
    )
    metrics = httpx.get(f"{server.http}/metrics").text
    assert "scada_tick_total" in metrics and 'scada_device_up{device="sim"} 1' in metrics

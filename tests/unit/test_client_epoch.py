"""What the Python client and `scada watch` keep from the frames: the epoch the alarm cursor
counts in, the server's word on its plant data, and the snapshot as the whole truth."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from scada.tools.client import ConnectionState, InvalidTransition, PlantClient
from scada.tools.watch import WatchState, _apply, render


def frame(kind: str, data: Any) -> dict[str, Any]:
    return {"type": kind, "timestamp": "2026-11-30T10:00:00.000Z", "data": data}


def snapshot(cursor: int, alarms: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return frame("snapshot", {"lines": [], "alarms": alarms, "alarm_cursor": cursor, **extra})


def alarm(name: str, event_id: int, state: str = "unacked_active") -> dict[str, Any]:
    return {"alarm": name, "event_id": event_id, "id": event_id, "state": state, "message": name}


def test_resume_carries_the_epoch_of_the_last_snapshot_and_none_for_a_server_without() -> None:
    client = PlantClient("ws://127.0.0.1:1/ws")
    client._track(snapshot(40, [], epoch="5be0c1d27a9f4e83/0c6a11f2"))
    client._track(frame("alarm", alarm("line1.diameter.hi", 41)))
    assert client.resume_data() == {"alarm_cursor": 41, "epoch": "5be0c1d27a9f4e83/0c6a11f2"}
    # A server older than epochs refuses unknown keys: its resume takes the cursor alone.
    client._track(snapshot(7, []))
    assert client.resume_data() == {"alarm_cursor": 7}


def test_data_status_holds_not_live_until_live_or_a_snapshot_says_live() -> None:
    client = PlantClient("ws://127.0.0.1:1/ws")
    client._track(snapshot(1, [], epoch="e", data_live=True))
    assert client.data_live
    stale = {"live": False, "reason": "bus stale", "since": "2026-11-30T10:21:05.000Z"}
    client._track(frame("data_status", stale))
    assert not client.data_live and client.data_status == stale
    client._track(frame("heartbeat", {}))
    client._track(snapshot(1, [], epoch="e"))  # says nothing about the data: no change
    assert not client.data_live
    client._first_snapshot = True  # a new connection's first snapshot: an older server's
    client._track(snapshot(1, []))
    assert client.data_live
    client._track(frame("data_status", stale))
    client._track(frame("data_status", {"live": True, "reason": "", "since": "x"}))
    assert client.data_live
    client._track(snapshot(1, [], epoch="e", data_live=False))
    assert not client.data_live
    client._track(snapshot(1, [], epoch="e", data_live=True))
    assert client.data_live


def test_watch_takes_a_not_recovered_snapshot_as_the_whole_truth() -> None:
    st = WatchState("ws://x/ws")
    _apply(st, snapshot(10, [alarm("a", 9), alarm("b", 10)], epoch="old"), None)
    _apply(st, frame("alarm", alarm("c", 11)), None)
    assert set(st.alarms) == {"a", "b", "c"}
    _apply(st, snapshot(3, [alarm("d", 3)], epoch="new", recovered=False), None)
    assert set(st.alarms) == {"d"}


def test_watch_says_no_live_data_with_the_servers_reason_while_frames_arrive() -> None:
    st = WatchState("ws://x/ws", connected=True)
    now = time.time()
    st.last_frame = now  # a heartbeat just arrived
    st.data_status = {"live": False, "reason": "bus stale", "since": "2026-11-30T10:21:05.000Z"}
    assert not st.live(now)
    since = time.strftime("%H:%M:%S", time.localtime(1796034065.0))
    status = st.status(now)
    assert status == (
        f"NO LIVE DATA since {since} — plant data not reaching the server (bus stale)"
    ), status
    st.last_data = 1796034063.0  # the last data came before the server noticed the quiet bus
    assert time.strftime("%H:%M:%S", time.localtime(st.last_data)) in st.status(now)
    line = {"production_line_id": "1", "state": "running", "quality": "good"}
    screen = render({"1": line}, {}, status, live=st.live(now))
    assert "unknown" in screen and "running" not in screen
    st.data_status = None
    assert st.live(now) and st.status(now).startswith("live ")


def state_of(client: PlantClient) -> ConnectionState:
    """Read afresh (an assert on `client.state` would narrow it for mypy)."""
    return client.state


def test_connection_state_is_checked() -> None:
    client = PlantClient("ws://127.0.0.1:9/ws", reconnect=False)
    assert (
        state_of(client) is ConnectionState.DISCONNECTED and str(state_of(client)) == "disconnected"
    )
    with pytest.raises(InvalidTransition, match="disconnected -> connected"):
        client._move(ConnectionState.CONNECTED)  # never connected without an attempt
    with pytest.raises(OSError):
        asyncio.run(client.connect())  # nothing listens on port 9
    assert state_of(client) is ConnectionState.CONNECTING
    asyncio.run(client.close())
    assert state_of(client) is ConnectionState.DISCONNECTED

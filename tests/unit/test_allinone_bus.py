"""The all-in-one server feeds its hub through its in-memory bus, by the gateway's code
(issue #18): the plant publishes on a MemoryBus, the gateway's BusSource and feed read it and
fan it out; the bus epoch is the journal's, and a resume older than the feed's ring is served
from the journal."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from scada.alarms.service import AlarmService
from scada.core.config import config_from_dict, default_config_text
from scada.roles.gateway.bussource import BusSource
from scada.roles.localbus import LocalSource
from tests.conftest import eventually

Frame = dict[str, Any]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    from scada.roles.allinone import create_app

    raw = tomllib.loads(default_config_text())
    raw["server"]["data_dir"] = str(tmp_path / "data")
    raw["auth"] = {"anonymous_role": "engineer"}
    raw.setdefault("cluster", {})["ring_size"] = 100  # the smallest ring: a resume outgrows it
    with TestClient(create_app(config_from_dict(raw))) as test_client:
        yield test_client


def until(ws: Any, wanted: Callable[[Frame], bool], limit: int = 500) -> Frame:
    for _ in range(limit):
        frame: Frame = ws.receive_json()
        if wanted(frame):
            return frame
    raise AssertionError(f"no wanted frame in {limit}")


def test_the_hub_is_fed_by_the_gateway_feed_over_the_memory_bus(client: TestClient) -> None:
    app: Any = client.app
    source = app.state.hub.source
    alarms: AlarmService = app.state.alarms
    assert isinstance(source, LocalSource) and isinstance(source, BusSource)
    with client.websocket_connect("/ws") as ws:
        snapshot = until(ws, lambda f: f["type"] == "snapshot")["data"]
        assert snapshot["epoch"] == alarms.epoch() == source.feed.ring.epoch  # the journal's
        assert len(snapshot["lines"]) == len(source.line_ids) == 8  # every line, from the start
        assert snapshot["data_live"] is True and snapshot["flood"] == alarms.flood()
        # Frames keep coming through the feed: its count goes up while they arrive. (Frames
        # already queued on the socket were read before `read`: look until one after it.)
        read = source.frames_read
        frame = until(ws, lambda f: f["type"] == "production_data" and source.frames_read > read)
        assert frame["data"]
        assert len(app.state.broadcaster.clients) == 1  # the plant's broadcaster is the hub's


def test_a_resume_older_than_the_ring_is_replayed_from_the_journal(client: TestClient) -> None:
    app: Any = client.app
    alarms: AlarmService = app.state.alarms
    name = alarms.engine.defs[0].name
    with client.websocket_connect("/ws") as ws:
        snapshot = until(ws, lambda f: f["type"] == "snapshot")["data"]
        cursor, epoch = snapshot["alarm_cursor"], snapshot["epoch"]
    for _ in range(70):  # 140 events: more than the ring of 100 holds
        client.portal.call(alarms.shelve, name, 5.0, "op", "test")  # type: ignore[union-attr]
        client.portal.call(alarms.unshelve, name, "op", "test")  # type: ignore[union-attr]
    newest = alarms.cursor()
    assert newest - cursor >= 140
    ring = app.state.hub.source.feed.ring
    eventually(lambda: ring.newest == newest)  # the feed read every event off the bus
    assert ring.oldest is not None and ring.oldest > cursor + 1  # not in the ring any more
    with client.websocket_connect("/ws") as ws:
        live = until(ws, lambda f: f["type"] == "snapshot")["data"]
        assert live["alarm_cursor"] == newest
        ws.send_json({"type": "resume", "id": 1, "data": {"alarm_cursor": cursor, "epoch": epoch}})
        replayed: list[int] = []
        while True:
            frame = until(ws, lambda f: f["type"] in ("alarm", "snapshot"))
            if frame["type"] == "snapshot":
                break
            replayed.append(frame["data"]["event_id"])
        assert replayed == list(range(cursor + 1, newest + 1))
        assert frame["data"]["recovered"] is True

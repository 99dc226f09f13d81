"""PlantClient asks again for a resume the server refused as busy (docs/protocol.md: a resume
is a heavy read, `too_many_requests`), within a bound, and says so once when it gives up.

The real all-in-one server runs in a thread of this process (tests/inprocess.py), so the test
holds the heavy-read limiter's anonymous slots itself. The outage is the client's socket
closed while its reconnects go to a port nothing listens on; alarm events happen meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scada.tools.client import ConnectionState, PlantClient, ResumeRetry
from tests.conftest import eventually, eventually_async, free_port
from tests.inprocess import Served, serve_in_thread


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_in_thread(tmp_path_factory.mktemp("client-resume") / "data") as served:
        yield served


class Recording(PlantClient):
    """The real client, keeping what it sent and what it read for the test."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.sent: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []

    async def _send(self, type_: str, data: Any, request_id: Any = None) -> None:
        self.sent.append({"type": type_, "data": data, "id": request_id})
        await super()._send(type_, data, request_id)

    def resumes(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == "resume"]

    def refused(self) -> list[Any]:
        """Ids of the resumes answered too_many_requests (None: an `error` frame, no id)."""
        ids = {m["id"] for m in self.resumes()}
        out: list[Any] = []
        for f in self.frames:
            d = f["data"]
            if (
                f["type"] == "reply"
                and d.get("id") in ids
                and d.get("error") == "too_many_requests"
            ):
                out.append(d["id"])
            elif f["type"] == "error" and d.get("code") == "too_many_requests":
                out.append(None)
        return out

    def snapshots(self) -> list[dict[str, Any]]:
        return [f["data"] for f in self.frames if f["type"] == "snapshot"]


async def read_all(client: Recording) -> None:
    async for frame in client:
        client.frames.append(frame)


async def stop(reader: asyncio.Task[None], client: Recording) -> None:
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await client.close()


async def outage_with_alarm_events(
    client: Recording, served: Served, fault: dict[str, str]
) -> tuple[int, str | None]:
    """Close the client's socket, keep it from reconnecting and raise alarm events meanwhile;
    returns its alarm cursor and epoch from before the outage (what its resume asks from)."""
    await eventually_async(lambda: client.snapshots(), 30, what="the first snapshot")
    client.url = f"ws://127.0.0.1:{free_port()}/ws"
    assert client._ws is not None
    await client._ws.close()
    # No socket while it reconnects to the dead port: nothing moves the cursor after this.
    await eventually_async(
        lambda: client.state is ConnectionState.RECONNECTING, 30, what="reconnecting"
    )
    cursor, epoch = client.alarm_cursor, client.epoch
    assert isinstance(cursor, int) and epoch is not None
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{served.http}/api/simulator/faults", json=fault)
    assert r.status_code == 201, r.text
    await asyncio.to_thread(eventually, lambda: served.newest_journal_id() > cursor, 30)
    return cursor, epoch


def test_resume_retry_is_the_consoles_six_asks_1_s_doubling_to_8_s() -> None:
    retry, rng = ResumeRetry(), random.Random(3)
    assert retry.tries == 6
    for refused, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)]:
        delays = [retry.delay(refused, rng) for _ in range(200)]
        assert min(delays) >= base * 0.8 and max(delays) <= base * 1.2
        assert max(delays) - min(delays) > base * 0.2  # jitter spreads the asks
    assert sum(ResumeRetry(jitter=0).delay(n) for n in range(1, 6)) == 23.0
    for bad in ({"tries": 0}, {"initial_s": 9.0}, {"factor": 0.5}, {"jitter": 1.0}):
        with pytest.raises(ValueError, match="ResumeRetry"):
            ResumeRetry(**bad)


def test_a_resume_refused_as_busy_is_asked_again_and_replays_the_missed_events(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        client = Recording(served.ws)
        await client.connect()
        reader = asyncio.create_task(read_all(client))
        try:
            cursor, epoch = await outage_with_alarm_events(
                client, served, {"line": "1", "kind": "sensor_dropout", "tag": "diameter"}
            )
            await asyncio.to_thread(served.hold_anonymous_slots)
            client.url = served.ws
            # The new connection's resume is refused while the slots are held ...
            await eventually_async(lambda: client.refused(), 60, what="a refused resume")
            assert not any("recovered" in s for s in client.snapshots())
            await asyncio.to_thread(served.free_slots)
            # ... and asked again: the missed events arrive, then the resume's snapshot.
            await eventually_async(
                lambda: any("recovered" in s for s in client.snapshots()), 60, what="recovered"
            )
        finally:
            await stop(reader, client)
        after = client.frames[[f["type"] for f in client.frames].index("connected", 1) :]
        snapshots = [f["data"] for f in after if f["type"] == "snapshot"]
        first = snapshots[0]  # the new connection's own, before the resume was served
        assert "recovered" not in first and first["alarm_cursor"] > cursor
        assert [s["recovered"] for s in snapshots[1:]] == [True]
        missed = served.journal_ids(cursor, first["alarm_cursor"])
        assert missed, "no alarm event happened during the outage"
        received = [f["data"]["event_id"] for f in after if f["type"] == "alarm"]
        assert [i for i in received if cursor < i <= first["alarm_cursor"]] == missed
        # Every ask was for the same events (the cursor and epoch from before the outage), each
        # with an id; all but the last were refused as busy.
        asked = client.resumes()
        assert len(asked) >= 2 and all(m["id"] is not None for m in asked)
        assert [m["data"] for m in asked] == [{"alarm_cursor": cursor, "epoch": epoch}] * len(asked)
        assert client.refused() == [m["id"] for m in asked[:-1]]
        assert client.resume_refusals == len(asked) - 1 and client.resume_failed is False
        assert client.alarm_cursor is not None and client.alarm_cursor >= first["alarm_cursor"]
        warned = [r for r in caplog.records if r.name == "scada.tools.client"]
        assert not [r for r in warned if r.levelno >= logging.WARNING]

    with caplog.at_level(logging.INFO, logger="scada.tools.client"):
        asyncio.run(main())


def test_a_resume_refused_past_the_bound_gives_up_and_says_so_once(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        # A shorter bound than the default (6 asks over about 23 s): the same code path.
        retry = ResumeRetry(tries=3, initial_s=0.2, max_s=0.4, jitter=0)
        client = Recording(served.ws, resume_retry=retry)
        await client.connect()
        reader = asyncio.create_task(read_all(client))
        try:
            cursor, epoch = await outage_with_alarm_events(
                client, served, {"line": "2", "kind": "sensor_dropout", "tag": "diameter"}
            )
            await asyncio.to_thread(served.hold_anonymous_slots)
            try:
                client.url = served.ws
                await eventually_async(lambda: client.resume_failed, 60, what="resume_failed")
                # Exactly the bound: three asks, each refused, for the same cursor and epoch.
                asked = client.resumes()
                assert [m["data"] for m in asked] == [{"alarm_cursor": cursor, "epoch": epoch}] * 3
                assert client.refused() == [m["id"] for m in asked]
                assert client.resume_refusals == 3
            finally:
                await asyncio.to_thread(served.free_slots)
            # Nothing more is asked once the slots are free: a request's round trip later, still
            # three resumes, none served.
            reply = await client.request("heartbeat", {}, timeout=30)
            assert reply["ok"] is True
            assert len(client.resumes()) == 3 and client.resume_failed is True
            assert not any("recovered" in s for s in client.snapshots())
            assert client.state is ConnectionState.CONNECTED
        finally:
            await stop(reader, client)
        warnings = [
            r
            for r in caplog.records
            if r.name == "scada.tools.client" and r.levelno >= logging.WARNING
        ]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        line = warnings[0].getMessage()
        assert f"after event {cursor} (epoch {epoch})" in line, line
        assert "could not be replayed: the server stayed busy (asked 3 times)" in line, line
        assert f"{served.http}/api/alarms/history" in line, line

    with caplog.at_level(logging.INFO, logger="scada.tools.client"):
        asyncio.run(main())

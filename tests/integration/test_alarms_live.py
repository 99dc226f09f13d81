"""Alarms on the running server: raise, ack everywhere, idempotence, SIGKILL and resume."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import OPEN_PLANT, ServerProcess
from tests.integration.test_websocket import recv, until

# The diameter steps at once to between hi and hihi (line 2: 12.3 mm between 12.2 and 12.4),
# so hi raises after its on-delay, with no drift physics to wait for.
DRIFT = {"line": "2", "kind": "step", "tag": "diameter", "offset": 0.3}


def inject(server: ServerProcess, body: dict[str, Any]) -> int:
    r = httpx.post(f"{server.http}/api/simulator/faults", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def is_raised(name: str) -> Any:
    return lambda f: (
        f["type"] == "alarm" and f["data"]["alarm"] == name and f["data"]["event"] == "raised"
    )


async def request(
    ws: ClientConnection, type_: str, data: dict[str, Any], rid: int
) -> dict[str, Any]:
    await ws.send(json.dumps({"type": type_, "id": rid, "data": data}))
    reply = await until(ws, lambda f: f["type"] == "reply" and f["data"]["id"] == rid)
    return dict(reply["data"])


def test_drift_raises_alarm_for_every_client_and_ack_reaches_all(
    open_server: ServerProcess,
) -> None:
    server = open_server

    async def main() -> None:
        async with connect(server.ws) as a, connect(server.ws) as b, connect(server.ws) as c:
            for ws in (a, b, c):
                await until(ws, lambda f: f["type"] == "snapshot")
            inject(server, DRIFT)
            raised = [await until(ws, is_raised("line2.diameter.hi")) for ws in (a, b, c)]
            ids = {r["data"]["id"] for r in raised}
            assert len(ids) == 1
            alarm = raised[0]["data"]
            assert alarm["state"] == "unacked_active" and alarm["severity"] == "high"
            assert alarm["production_line_id"] == "2" and alarm["value"] > alarm["limit"] == 12.2
            assert {r["data"]["event_id"] for r in raised} == {alarm["event_id"]}
            # Sent in the tick it happened, before that tick's production data.
            after = await recv(a)
            assert after["type"] == "production_data" and after["seq"] == raised[0]["seq"] + 1
            assert after["timestamp"] == raised[0]["timestamp"]

            occurrence = alarm["id"]
            await a.send(
                json.dumps(
                    {
                        "type": "ack",
                        "id": 1,
                        "data": {"alarm_id": occurrence, "comment": "checked die"},
                    }
                )
            )
            for ws in (a, b, c):
                acked = await until(
                    ws, lambda f: f["type"] == "alarm" and f["data"]["event"] == "acknowledged"
                )
                assert acked["data"]["id"] == occurrence
                assert acked["data"]["acked_by"] == "operator"  # the configured default user
                assert acked["data"]["comment"] == "checked die"
                assert acked["data"]["state"] == "acked_active"
            # The acker's reply follows the event it caused.
            reply = await until(a, lambda f: f["type"] == "reply")
            assert reply["data"]["ok"] is True, reply

            again = await request(b, "ack", {"alarm_id": occurrence, "comment": "me too"}, 2)
            assert again == {
                "id": 2,
                "ok": False,
                "error": "already_acknowledged",
                "message": again["message"],
            }
            unknown = await request(c, "ack", {"alarm_id": 999_999, "comment": ""}, 3)
            assert unknown["ok"] is False and unknown["error"] == "unknown_alarm"
        history = httpx.get(
            f"{server.http}/api/alarms/history", params={"alarm": "line2.diameter.hi"}
        ).json()
        acks = [e for e in history["events"] if e["event"] == "acknowledged"]
        assert len(acks) == 1  # the refused second ack wrote nothing

    asyncio.run(main())


def test_concurrent_acks_exactly_one_wins(open_server: ServerProcess) -> None:
    server = open_server

    async def main() -> None:
        async with connect(server.ws) as a, connect(server.ws) as b:
            inject(server, {"line": "6", "kind": "step", "tag": "diameter", "offset": 0.35})
            raised = await until(a, is_raised("line6.diameter.hi"))
            occurrence = raised["data"]["id"]
            await until(b, is_raised("line6.diameter.hi"))
            await a.send(json.dumps({"type": "ack", "id": 1, "data": {"alarm_id": occurrence}}))
            await b.send(json.dumps({"type": "ack", "id": 1, "data": {"alarm_id": occurrence}}))
            ra = await until(a, lambda f: f["type"] == "reply")
            rb = await until(b, lambda f: f["type"] == "reply")
            outcomes = sorted([ra["data"]["ok"], rb["data"]["ok"]])
            assert outcomes == [False, True]
            loser = ra if not ra["data"]["ok"] else rb
            assert loser["data"]["error"] == "already_acknowledged"
        current = httpx.get(f"{server.http}/api/alarms").json()["alarms"]
        states = {x["alarm"]: x["state"] for x in current}
        assert states["line6.diameter.hi"] in ("acked_active", "normal")

    asyncio.run(main())


def test_rest_ack_and_shelve_over_websocket(open_server: ServerProcess) -> None:
    server = open_server

    async def main() -> None:
        async with connect(server.ws) as ws:
            inject(server, DRIFT)
            raised = await until(ws, is_raised("line2.diameter.hi"))
            occ = raised["data"]["id"]
            r = httpx.post(f"{server.http}/api/alarms/{occ}/ack", json={"comment": "via REST"})
            assert r.status_code == 200 and r.json()["ok"] is True
            pushed = await until(
                ws, lambda f: f["type"] == "alarm" and f["data"]["event"] == "acknowledged"
            )
            assert pushed["data"]["comment"] == "via REST"
            r = httpx.post(f"{server.http}/api/alarms/{occ}/ack", json={"comment": "again"})
            assert r.status_code == 409 and r.json()["error"] == "already_acknowledged"
            assert httpx.post(f"{server.http}/api/alarms/424242/ack", json={}).status_code == 404
            await ws.send(
                json.dumps(
                    {
                        "type": "shelve",
                        "id": 9,
                        "data": {
                            "alarm": "line2.diameter.hi",
                            "minutes": 5,
                            "comment": "maintenance",
                        },
                    }
                )
            )
            shelved = await until(
                ws, lambda f: f["type"] == "alarm" and f["data"]["event"] == "shelved"
            )
            assert shelved["data"]["state"] == "shelved"
            reply = await until(ws, lambda f: f["type"] == "reply")
            assert reply["data"]["ok"] is True

    asyncio.run(main())


def test_sigkill_keeps_alarms_and_resume_replays_exactly_the_missed_events(
    server_factory: Any,
) -> None:
    # A long off-delay keeps the alarms active after the restart (the restarted simulator
    # has no faults), so the restored state can be compared without racing the clearing.
    slow_clear = {"line_defaults": {"tags": {"diameter": {"limits": {"off_delay": 120}}}}}
    server = server_factory({**OPEN_PLANT, **slow_clear})

    async def before_kill() -> tuple[int, int, str]:
        async with connect(server.ws) as ws:
            inject(server, DRIFT)
            raised = await until(ws, is_raised("line2.diameter.hi"))
            cursor = raised["data"]["event_id"]
            return raised["data"]["id"], cursor, raised["data"]["raised_at"]

    occurrence, cursor, raised_at = asyncio.run(before_kill())
    # Events the client misses while it is away: a second alarm raised and acknowledged.
    inject(server, {"line": "7", "kind": "step", "tag": "diameter", "offset": 0.2})

    def raised_7() -> Any:
        alarms = httpx.get(f"{server.http}/api/alarms").json()["alarms"]
        return [a for a in alarms if a["alarm"] == "line7.diameter.hi"]

    from tests.conftest import eventually

    occ7 = eventually(raised_7, timeout=20)[0]["id"]
    assert (
        httpx.post(f"{server.http}/api/alarms/{occ7}/ack", json={"comment": "x"}).status_code == 200
    )
    before = {a["alarm"]: a for a in httpx.get(f"{server.http}/api/alarms").json()["alarms"]}
    server.kill()

    server.start()
    after = {a["alarm"]: a for a in httpx.get(f"{server.http}/api/alarms").json()["alarms"]}
    keep = ("id", "state", "raised_at", "acked_by", "acked_at", "severity")
    assert {n: [a[k] for k in keep] for n, a in after.items()} == {
        n: [a[k] for k in keep] for n, a in before.items()
    }
    line2 = [a for n, a in after.items() if n.startswith("line2.diameter.")]
    assert line2 and all(a["state"] == "unacked_active" for a in line2)
    assert any(
        a["id"] == occurrence and a["raised_at"] == raised_at for a in after.values()
    ) or any(n == "line2.diameter.hihi" for n in after)  # hi may have been superseded by hihi
    line7 = [a for n, a in after.items() if n.startswith("line7.diameter.")]
    assert line7 and any(a["acked_by"] == "operator" for a in line7)

    history = httpx.get(f"{server.http}/api/alarms/history", params={"limit": 1000}).json()
    journal_ids = sorted(e["event_id"] for e in history["events"])
    expected = [i for i in journal_ids if i > cursor]

    async def resume() -> list[int]:
        async with connect(server.ws) as ws:
            await until(ws, lambda f: f["type"] == "snapshot")
            await ws.send(json.dumps({"type": "resume", "id": 5, "data": {"alarm_cursor": cursor}}))
            got = []
            while True:
                frame = await recv(ws)
                if frame["type"] == "alarm":
                    got.append(frame["data"]["event_id"])
                elif frame["type"] == "snapshot":
                    assert frame["data"]["recovered"] is True
                    return got

    replayed = asyncio.run(resume())
    assert replayed[: len(expected)] == expected
    # Anything beyond is newer than the history query, still strictly increasing.
    assert replayed == sorted(set(replayed))

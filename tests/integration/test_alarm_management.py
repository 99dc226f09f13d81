"""Issue #14 on real servers: one failure, one alarm; new conditions; a measured flood.

Real `scada serve` processes, the real Modbus simulator process, real SQLite journals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from scada.core.timefmt import iso_ms
from tests.conftest import OPEN_PLANT, ServerProcess, eventually, free_port
from tests.integration.test_comms_e2e import Simulator, all_good, modbus_server, next_matching
from tests.integration.test_websocket import recv, until

COMMS = "device.plc.comms"


def history(server: ServerProcess, **params: Any) -> list[dict[str, Any]]:
    """Every journaled event matching the filters, oldest first."""
    out: list[dict[str, Any]] = []
    before = None
    while True:
        query = {"limit": 1000, **params, **({"before": before} if before else {})}
        body = httpx.get(f"{server.http}/api/alarms/history", params=query).json()
        out += body["events"]
        before = body["next_before"]
        if before is None:
            return out[::-1]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_dead_modbus_device_raises_one_alarm_and_comms_return_raises_the_bad_tag_alone(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    port = free_port()
    sim = Simulator(tmp_path, port)
    sim.start()
    eventually(sim.listening, 30)  # before the server dials, so one outage is one outage
    server = modbus_server(server_factory, tmp_path, port)
    server.start()
    try:

        async def main() -> None:
            async with connect(server.ws) as ws:
                await next_matching(ws, all_good)
                sim.kill()
                # Every tag's quality alarm is journaled as suppressed by the comms alarm.
                tags = 80  # config/modbus.toml: 8 lines of 10 tags, each with a quality alarm
                silent = await asyncio.to_thread(
                    eventually,
                    lambda: (
                        (
                            len(s := [e for e in history(server) if e["event"] == "suppressed"])
                            >= tags
                        )
                        and s
                    ),
                    15,
                )
                assert len(silent) == tags
                assert {(e["suppressed_by"], e["state"], e["id"]) for e in silent} == {
                    (COMMS, "suppressed", 0)
                }
                assert {e["alarm"].rsplit(".", 1)[1] for e in silent} == {"quality"}
                raised = [e for e in history(server) if e["event"] == "raised"]
                assert [(e["alarm"], e["first_out"], e["priority"]) for e in raised] == [
                    (COMMS, True, 2)
                ]
                current = httpx.get(f"{server.http}/api/alarms").json()["alarms"]
                annunciated = [a["alarm"] for a in current if a["state"] != "suppressed"]
                assert annunciated == [COMMS]

                # Comms return, one gauge still dead: its quality alarm alone is raised.
                scenario = tmp_path / "dropout.toml"
                scenario.write_text(
                    '[[events]]\nat = 0\nline = "3"\nkind = "sensor_dropout"\ntag = "diameter"\n'
                )
                cursor = max(e["event_id"] for e in history(server))
                restarted = Simulator(tmp_path, port, scenario)
                restarted.start()
                sim.proc = restarted.proc  # killed in `finally`
                await asyncio.to_thread(
                    eventually,
                    lambda: any(
                        e["alarm"] == "line3.diameter.quality" and e["event"] == "raised"
                        for e in history(server)
                    ),
                    30,
                )
                after = [e for e in history(server) if e["event_id"] > cursor]
                assert [e["alarm"] for e in after if e["event"] == "raised"] == [
                    "line3.diameter.quality"
                ]
                assert {e["alarm"] for e in after if e["event"] == "unsuppressed"} == {
                    e["alarm"] for e in silent
                } - {"line3.diameter.quality"}
                assert any(e["alarm"] == COMMS and e["event"] == "cleared" for e in after)
                # The suppression is visible in history and in the export.
                text = httpx.get(f"{server.http}/api/alarms/export?format=csv").text
                assert text.count(",suppressed,") >= tags

        asyncio.run(main())
    finally:
        sim.kill()


CONDITIONS = {
    **OPEN_PLANT,
    "line_defaults": {
        "tags": {
            "diameter": {"frozen": {"min_change": 0.001, "seconds": 3.0}},
            "line_speed": {"limits": {"lo": 5.0}, "suppress_when": ["stopped"]},
        }
    },
}


def inject(server: ServerProcess, body: dict[str, Any]) -> None:
    r = httpx.post(f"{server.http}/api/simulator/faults", json=body)
    assert r.status_code == 201, r.text


def test_stuck_sensor_line_stop_and_heater_failure(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(CONDITIONS)

    def events_of(alarm: str) -> list[dict[str, Any]]:
        return history(server, alarm=alarm)

    async def main() -> None:
        async with connect(server.ws) as ws:
            await until(ws, lambda f: f["type"] == "snapshot")
            inject(server, {"line": "2", "kind": "stuck_sensor", "tag": "diameter"})
            inject(server, {"line": "4", "kind": "line_stop"})
            inject(server, {"line": "3", "kind": "heater_failure", "zone": 2})
            frozen = await until(
                ws, lambda f: f["type"] == "alarm" and f["data"]["alarm"] == "line2.diameter.frozen"
            )
            assert (frozen["data"]["event"], frozen["data"]["condition"]) == ("raised", "frozen")
            # The stopped line's speed falls below its low limit: suppressed, not raised.
            silent = await asyncio.to_thread(
                eventually, lambda: events_of("line4.line_speed.lo"), 30
            )
            assert [(e["event"], e["suppressed_by"]) for e in silent] == [
                ("suppressed", "line4.state.stopped")
            ]
            # The heater failure cools zone 2 until the line trips to fault (~25 s).
            fault = await until(
                ws,
                lambda f: f["type"] == "alarm" and f["data"]["alarm"] == "line3.state.fault",
                limit=1000,
            )
            assert (fault["data"]["event"], fault["data"]["condition"]) == ("raised", "state")
            assert fault["data"]["severity"] == "high" and fault["data"]["priority"] == 2
        assert [e["event"] for e in events_of("line4.line_speed.lo")] == ["suppressed"]

    asyncio.run(main())


FLOOD = {
    **OPEN_PLANT,
    "alarms": {"flood_window": 5.0, "flood_start_above": 3, "flood_end_below": 1},
    "line_defaults": {"tags": {"state": {"alarm_states": {"stopped": "low", "fault": "high"}}}},
}


def test_a_scripted_flood_is_one_episode_with_its_start_end_and_count(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Four lines stopped at once: four alarms, the 4th starts a flood (more than 3 in 5 s),
    which ends 5 s after the last one, when fewer than 1 remain in the window."""
    server = server_factory(FLOOD)

    async def main() -> None:
        async with connect(server.ws) as ws:
            snapshot = await until(ws, lambda f: f["type"] == "snapshot")
            assert snapshot["data"]["flood"] == {
                "active": False, "count": 0, "started_at": None, "ended_at": None,
            }  # fmt: skip
            for line in ("5", "6", "7", "8"):
                inject(server, {"line": line, "kind": "line_stop"})
            raised: list[dict[str, Any]] = []
            floods: list[dict[str, Any]] = []
            while not floods or floods[-1]["active"]:
                frame = await recv(ws, timeout=15)
                if frame["type"] == "alarm" and frame["data"]["event"] == "raised":
                    raised.append(frame["data"])
                elif frame["type"] == "alarm_flood":
                    # After the alarm that started it: the console shows both at once.
                    assert len(raised) == 4 or floods
                    floods.append(frame["data"])
        assert sorted(r["alarm"] for r in raised) == [f"line{n}.state.stopped" for n in "5678"]
        fourth = sorted(r["at"] for r in raised)[-1]
        assert floods == [
            {"active": True, "count": 4, "started_at": fourth, "ended_at": None},
            {
                "active": False,
                "count": 4,
                "started_at": fourth,
                "ended_at": floods[-1]["ended_at"],
            },
        ]
        # Ended once the last alarm left the 5 s window (the live end is seen at a tick).
        assert 0 <= epoch(floods[-1]["ended_at"]) - (epoch(fourth) + 5.0) < 0.01
        kpi = httpx.get(f"{server.http}/api/alarms/kpi", params={"hours": 1}).json()
        (episode,) = kpi["floods"]["episodes"]
        assert (episode["started_at"], episode["count"]) == (fourth, 4)
        assert episode["ended_at"] == iso_ms(epoch(fourth) + 5.0)  # from the journal: exact

    asyncio.run(main())

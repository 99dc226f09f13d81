"""AlarmService (async glue, single writer) and the REST routes, against a real journal."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from scada.alarms.engine import AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.model import AlarmEvent, AlarmRequestError, iso_ms
from scada.alarms.service import AlarmService
from scada.web.alarms import routes
from tests.unit.conftest_alarms import T0, Rig, diameter_plant, plant

D = "line1.diameter"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_service(rig: Rig, path: Path, clock: Clock) -> AlarmService:
    journal = Journal(path, retention_days=90, retention_events=1000)
    engine = AlarmEngine(rig.config, rig.schema, ["sim"])
    return AlarmService(engine, journal, clock=clock)


async def tick(service: AlarmService, rig: Rig, clock: Clock) -> list[dict[str, Any]]:
    clock.now = rig.now = round(rig.now + 0.1, 6)
    return await service.tick(rig.now, rig.values, rig.quality, rig.devices)


def test_tick_commits_before_returning_and_restart_restores(tmp_path: Path) -> None:
    async def main() -> None:
        rig, clock = Rig(diameter_plant()), Clock()
        service = make_service(rig, tmp_path / "j.sqlite", clock)
        await service.start()
        assert service.cursor() == 0
        rig.set("diameter", 12.3)
        (raised,) = await tick(service, rig, clock)
        assert (raised["alarm"], raised["event"], raised["event_id"]) == (f"{D}.hi", "raised", 1)
        assert service.cursor() == 1
        assert [e.event_id for e in service.journal.since(0) or []] == [1]
        await service.shelve(f"{D}.hi", 5, "ann", "cleaning")
        assert [a["state"] for a in service.current()] == ["shelved"]
        before = service.current()
        await service.close()

        again = make_service(rig, tmp_path / "j.sqlite", clock)  # a restart
        await again.start()
        assert again.current() == before
        assert again.cursor() == 2
        rig.set("diameter", 12.0)
        events = await tick(again, rig, clock)
        assert [(e["event"], e["id"], e["event_id"]) for e in events] == [("cleared", 1, 3)]
        await again.close()

    asyncio.run(main())


def test_clients_never_see_state_that_is_not_committed_yet(tmp_path: Path) -> None:
    async def main() -> None:
        rig, clock = Rig(diameter_plant()), Clock()
        service = make_service(rig, tmp_path / "j.sqlite", clock)
        await service.start()
        entered, release = threading.Event(), threading.Event()
        real_append = service.journal.append

        def slow_append(events: Iterable[AlarmEvent], **kwargs: Any) -> list[AlarmEvent]:
            entered.set()
            release.wait(5)
            return real_append(events, **kwargs)

        service.journal.append = slow_append  # type: ignore[method-assign]
        rig.set("diameter", 12.3)
        task = asyncio.create_task(tick(service, rig, clock))
        await asyncio.to_thread(entered.wait, 5)
        # The engine has raised the alarm, but the journal has not committed it.
        assert service.current() == [] and service.cursor() == 0
        release.set()
        (raised,) = await task
        assert service.current()[0]["id"] == raised["id"] and service.cursor() == 1
        await service.close()

    asyncio.run(main())


def test_concurrent_acks_exactly_one_wins(tmp_path: Path) -> None:
    async def main() -> None:
        rig, clock = Rig(diameter_plant()), Clock()
        service = make_service(rig, tmp_path / "j.sqlite", clock)
        await service.start()
        rig.set("diameter", 12.3)
        (raised,) = await tick(service, rig, clock)
        results = await asyncio.gather(
            *(service.ack(raised["id"], f"user{i}", "seen") for i in range(5)),
            return_exceptions=True,
        )
        ok = [r for r in results if isinstance(r, list)]
        refused = [r for r in results if isinstance(r, AlarmRequestError)]
        assert len(ok) == 1 and len(refused) == 4
        assert {r.code for r in refused} == {"already_acknowledged"}
        acks = [e for e in service.journal.all_events() if e.event == "acknowledged"]
        assert len(acks) == 1 and acks[0].acked_by == ok[0][0]["acked_by"]
        with pytest.raises(AlarmRequestError) as err:
            await service.ack(12345, "ann", "x")
        assert err.value.code == "unknown_alarm"
        await service.close()

    asyncio.run(main())


def test_replay_after_cursor_and_after_prune(tmp_path: Path) -> None:
    async def main() -> None:
        rig, clock = Rig(diameter_plant()), Clock()
        service = make_service(rig, tmp_path / "j.sqlite", clock)
        await service.start()
        wire: list[dict[str, Any]] = []
        for value in (12.3, 12.0, 12.3, 12.0):
            rig.set("diameter", value)
            wire += await tick(service, rig, clock)
        assert await service.replay(2) == wire[2:]
        assert await service.replay(service.cursor()) == []
        assert await service.replay(service.cursor() + 5) is None
        occ = service.current()[0]["id"]
        await service.ack(occ, "ann", "")
        clock.now += 200 * 86400  # everything is past retention
        assert await service.prune() == 5
        assert await service.replay(2) is None
        assert await service.replay(service.cursor()) == []
        await service.close()

    asyncio.run(main())


def test_kpi_through_the_service(tmp_path: Path) -> None:
    async def main() -> None:
        rig, clock = Rig(diameter_plant()), Clock()
        service = make_service(rig, tmp_path / "j.sqlite", clock)
        await service.start()
        for value in (12.3, 12.0) * 3:
            rig.set("diameter", value)
            await tick(service, rig, clock)
        report = await service.kpi(1.0)
        assert report["raised"] == 3
        chattering = report["chattering"]
        assert isinstance(chattering, list)
        (chatter,) = chattering
        assert (chatter["alarm"], chatter["max_per_minute"], chatter["activations"]) == (
            f"{D}.hi",
            3,
            3,
        )
        # Raised 0.2 s apart; the diameter's span is 30 mm, 5 % of it a starting deadband.
        assert (chatter["suggested_off_delay_s"], chatter["suggested_deadband"]) == (1.0, 1.5)
        await service.close()

    asyncio.run(main())


# ------------------------------------------------------------------ REST


class Login:
    """Stands in for the auth middleware: sets request.state.user."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app, self.name = app, name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["user"] = SimpleNamespace(name=self.name)
        await self.app(scope, receive, send)


@pytest.fixture(params=[None])
def api(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, Rig, SimpleNamespace]]:
    rig, clock = Rig(diameter_plant(), devices=("sim",)), Clock()
    config = rig.config.model_copy(
        update={"alarms": rig.config.alarms.model_copy(update={"require_comment": ["critical"]})}
    )
    rig.engine = AlarmEngine(config, rig.schema, ["sim"])
    service = AlarmService(rig.engine, Journal(tmp_path / "j.sqlite", retention_days=90,
                                               retention_events=1000), clock=clock)  # fmt: skip
    login = [Middleware(Login, name=request.param)] if request.param else []
    app = Starlette(routes=routes, middleware=login)
    announced = SimpleNamespace(batches=[])
    app.state.alarms = service
    app.state.config = config
    app.state.announce_alarms = announced.batches.append
    asyncio.run(service.start())

    async def drive(value: float) -> None:
        rig.set("diameter", value)
        await tick(service, rig, clock)

    announced.drive = lambda value: asyncio.run(drive(value))
    with TestClient(app) as client:
        yield client, rig, announced
    asyncio.run(service.close())


def test_rest_current_sorted_and_ack(api: tuple[TestClient, Rig, SimpleNamespace]) -> None:
    client, rig, announced = api
    announced.drive(12.3)  # hi (high)
    announced.drive(11.7)  # hi clears unacked, lo (high) raised later
    rig.devices["sim"] = False
    announced.drive(11.5)  # lolo (critical) supersedes lo; comms (high)
    body = client.get("/api/alarms").json()
    assert [a["alarm"] for a in body["alarms"]] == [
        f"{D}.lolo", "device.sim.comms", f"{D}.hi",
    ]  # fmt: skip
    assert body["alarm_cursor"] >= 1
    by_time = client.get("/api/alarms?sort=time").json()["alarms"]
    # Same tick: the later occurrence id first (a device failure is raised first in a tick).
    assert [a["alarm"] for a in by_time] == [f"{D}.lolo", "device.sim.comms", f"{D}.hi"]
    assert client.get("/api/alarms?sort=name").status_code == 400

    lolo = body["alarms"][0]
    r = client.post(f"/api/alarms/{lolo['id']}/ack", json={"comment": ""})
    assert (r.status_code, r.json()["error"]) == (400, "comment_required")
    r = client.post(f"/api/alarms/{lolo['id']}/ack", json={"comment": "called fitter"})
    assert r.status_code == 200 and r.json()["ok"] is True
    (ev,) = r.json()["events"]
    assert (ev["event"], ev["state"], ev["acked_by"]) == ("acknowledged", "acked_active",
                                                          "operator")  # fmt: skip
    assert announced.batches == [r.json()["events"]]
    r = client.post(f"/api/alarms/{lolo['id']}/ack", json={"comment": "again"})
    assert (r.status_code, r.json()["error"]) == (409, "already_acknowledged")
    r = client.post("/api/alarms/9999/ack", json={"comment": "x"})
    assert (r.status_code, r.json()["error"]) == (404, "unknown_alarm")
    assert client.post("/api/alarms/abc/ack", json={}).status_code == 400
    assert client.post(f"/api/alarms/{lolo['id']}/ack", content=b"[1]").status_code == 400
    assert len(announced.batches) == 1


@pytest.mark.parametrize("api", ["maria"], indirect=True)
def test_rest_ack_records_the_authenticated_user(
    api: tuple[TestClient, Rig, SimpleNamespace],
) -> None:
    client, _, announced = api
    announced.drive(12.3)
    occ = client.get("/api/alarms").json()["alarms"][0]["id"]
    r = client.post(f"/api/alarms/{occ}/ack", json={"comment": "ok"})
    assert r.json()["events"][0]["acked_by"] == "maria"


def test_rest_history_pages_and_validates(api: tuple[TestClient, Rig, SimpleNamespace]) -> None:
    client, _, announced = api
    for value in (12.3, 12.0) * 3:
        announced.drive(value)
    first = client.get("/api/alarms/history?limit=4").json()
    assert [e["event_id"] for e in first["events"]] == [6, 5, 4, 3]
    assert first["next_before"] == 3
    rest = client.get(f"/api/alarms/history?limit=4&before={first['next_before']}").json()
    assert [e["event_id"] for e in rest["events"]] == [2, 1]
    assert rest["next_before"] is None
    since = first["events"][1]["at"]  # ISO form of event 5
    assert [e["event_id"] for e in client.get(f"/api/alarms/history?since={since}").json()[
        "events"]] == [6, 5]  # fmt: skip
    epoch = client.get(f"/api/alarms/history?until={T0 + 0.15}&line=1").json()["events"]
    assert [e["event_id"] for e in epoch] == [1]
    assert client.get("/api/alarms/history?line=2").json()["events"] == []
    for query, name in [("since=yesterday", "since"), ("limit=0", "limit"),
                        ("limit=x", "limit"), ("before=-1", "before")]:  # fmt: skip
        r = client.get(f"/api/alarms/history?{query}")
        assert r.status_code == 400 and name in r.json()["message"]


def test_rest_kpi(api: tuple[TestClient, Rig, SimpleNamespace]) -> None:
    client, _, announced = api
    announced.drive(12.3)
    body = client.get("/api/alarms/kpi?hours=1").json()
    assert body["raised"] == 1 and body["rate"]["bins"] == 6
    assert client.get("/api/alarms/kpi?hours=abc").status_code == 400
    assert client.get("/api/alarms/kpi?hours=0").status_code == 400


def test_an_ack_whose_commit_fails_changes_nothing_and_is_refused(tmp_path: Path) -> None:
    """Issue #9 defect 2: with the disk full the engine kept an ack that was never
    journaled (a phantom ack). Now it is applied only after its commit."""

    async def main() -> None:
        rig, clock = Rig(diameter_plant()), Clock()
        service = make_service(rig, tmp_path / "j.sqlite", clock)
        seen: list[list[AlarmEvent]] = []
        service.on_committed(lambda events: seen.append(list(events)))
        await service.start()
        rig.set("diameter", 12.3)
        (raised,) = await tick(service, rig, clock)
        assert [e.event for batch in seen for e in batch] == ["raised"]
        db = service.journal._db  # a full disk, for SQLite: no page may be added
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(AlarmRequestError) as err:
            for i in range(50):  # until the file has to grow
                await service.ack(raised["id"], "ann", "x" * 2000 + str(i))
        assert err.value.code == "journal_unavailable"
        assert [a["state"] for a in service.current()] == ["unacked_active"]
        assert service.engine.state_of(f"{D}.hi").state == "unacked_active"
        assert len(seen) == 1  # nothing was announced
        db.execute("PRAGMA max_page_count = 1073741823")
        (acked,) = await service.ack(raised["id"], "ann", "seen")  # not already_acknowledged
        assert acked["state"] == "acked_active"
        assert [e.event for e in service.journal.all_events()] == ["raised", "acknowledged"]
        await service.close()

    asyncio.run(main())


class SteppingClock:
    """Wall and monotonic clocks that can drift apart: the wall one may step back."""

    def __init__(self) -> None:
        self.wall, self.mono = T0, 1000.0

    def advance(self, dt: float) -> None:
        self.wall += dt
        self.mono += dt


def test_a_wall_clock_step_back_does_not_stretch_delays_or_shelving(tmp_path: Path) -> None:
    """Issue #9 defect 6: a 120 s backward step delayed an alarm ~115 s and a 6 s shelve
    lasted 66 s. Delays and shelving run on the monotonic clock; wall time only stamps."""

    async def main() -> None:
        config = diameter_plant(on_delay=2.0)
        rig, clock = Rig(config), SteppingClock()
        journal = Journal(tmp_path / "j.sqlite", retention_days=90, retention_events=1000)
        engine = AlarmEngine(config, rig.schema, ["sim"])
        service = AlarmService(engine, journal, clock=lambda: clock.wall, mono=lambda: clock.mono)
        await service.start()

        async def step(seconds: float) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for _ in range(round(seconds / 0.1)):
                clock.advance(0.1)
                out += await service.tick(clock.wall, rig.values, rig.quality, rig.devices)
            return out

        await service.shelve(f"{D}.lo", 0.1, "ann", "6 s shelf")  # ends 6 s from now
        rig.set("diameter", 12.3)
        assert await step(1.0) == []
        clock.wall -= 120.0  # the wall clock steps back mid-delay
        (raised,) = await step(1.2)  # the on-delay still ends 2 s after it began
        assert (raised["alarm"], raised["event"]) == (f"{D}.hi", "raised")
        # 2 s after the first sample beyond the limit (at 0.1 s), stamped on the stepped wall.
        assert raised["at"] == iso_ms(T0 - 120.0 + 2.1)
        (unshelved,) = [e for e in await step(4.0) if e["event"] == "unshelved"]
        assert unshelved["alarm"] == f"{D}.lo"
        await service.close()

    asyncio.run(main())


def test_rest_bulk_ack_answers_each_alarm_on_its_own(
    api: tuple[TestClient, Rig, SimpleNamespace],
) -> None:
    client, rig, announced = api
    announced.drive(12.3)  # hi
    announced.drive(12.0)  # hi cleared, unacked
    rig.devices["sim"] = False
    announced.drive(11.7)  # lo and comms
    ids = {a["alarm"]: a["id"] for a in client.get("/api/alarms").json()["alarms"]}
    hi, lo, comms = ids[f"{D}.hi"], ids[f"{D}.lo"], ids["device.sim.comms"]
    client.post(f"/api/alarms/{lo}/ack", json={"comment": "x"})
    announced.batches.clear()
    body = {"alarm_ids": [hi, lo, 999, comms, hi], "comment": "shift handover"}
    r = client.post("/api/alarms/ack", json=body)
    assert r.status_code == 200
    assert [(x["alarm_id"], x["ok"], x.get("error")) for x in r.json()["results"]] == [
        (hi, True, None),
        (lo, False, "already_acknowledged"),
        (999, False, "unknown_alarm"),
        (comms, True, None),
        (hi, False, "duplicate"),
    ]
    (batch,) = announced.batches
    assert [(e["id"], e["event"], e["note"]) for e in batch] == [
        (hi, "acknowledged", "shift handover"),
        (comms, "acknowledged", "shift handover"),
    ]
    bad: Any
    for bad in ({"alarm_ids": []}, {"alarm_ids": [True]}, {"alarm_ids": "1"}, {"comment": "x"}):
        assert client.post("/api/alarms/ack", json=bad).status_code == 400


def test_rest_export_csv_and_json_lines_over_a_range(
    api: tuple[TestClient, Rig, SimpleNamespace],
) -> None:
    client, _, announced = api
    for value in (12.3, 12.0, 12.3):
        announced.drive(value)
    occ = client.get("/api/alarms").json()["alarms"][0]["id"]
    client.post(f"/api/alarms/{occ}/ack", json={"comment": "=HYPERLINK(1)"})
    lines = client.get(f"/api/alarms/export?format=jsonl&from={T0}&to={T0 + 60}").text
    events = [json.loads(line) for line in lines.splitlines()]
    assert [(e["event_id"], e["event"]) for e in events] == [
        (1, "raised"), (2, "cleared"), (3, "raised"), (4, "acknowledged"),
    ]  # fmt: skip
    r = client.get(f"/api/alarms/export?from={T0}&to={T0 + 0.25}")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["event_id"], row["event"], row["priority"]) for row in rows] == [
        ("1", "raised", "2"), ("2", "cleared", "2"),
    ]  # fmt: skip
    full = list(csv.DictReader(io.StringIO(client.get(f"/api/alarms/export?from={T0}").text)))
    assert full[-1]["note"] == "'=HYPERLINK(1)"  # a spreadsheet shows it, never runs it
    assert client.get("/api/alarms/export?format=xml").status_code == 400
    assert client.get(f"/api/alarms/export?from={T0 + 10}&to={T0}").status_code == 400


def test_live_flood_state_matches_the_kpi_episode(tmp_path: Path) -> None:
    """More than 3 annunciated alarms in 5 s start a flood; fewer than 1 left ends it."""

    async def main() -> None:
        config = plant(
            {f"t{i}": {"setpoint": 1.0, "limits": {"hi": 2.0}} for i in range(5)},
            flood_window=5.0,
            flood_start_above=3,
            flood_end_below=1,
        )
        rig, clock = Rig(config), SteppingClock()
        journal = Journal(tmp_path / "j.sqlite", retention_days=90, retention_events=1000)
        service = AlarmService(AlarmEngine(config, rig.schema, ["sim"]), journal,
                               clock=lambda: clock.wall, mono=lambda: clock.mono)  # fmt: skip
        frames: list[dict[str, Any]] = []
        service.on_flood(frames.append)
        await service.start()

        async def step() -> None:
            clock.advance(0.5)
            await service.tick(clock.wall, rig.values, rig.quality, rig.devices)
            await asyncio.sleep(0)  # flood listeners are called after the tick's frames

        start = clock.wall
        for i in range(5):  # one alarm every 0.5 s: the 4th (at +2.0 s) starts the flood
            rig.set(f"t{i}", 3.0)
            await step()
        assert [(f["active"], f["count"]) for f in frames] == [(True, 4), (True, 5)]
        assert frames[0]["started_at"] == iso_ms(start + 2.0)
        assert service.flood()["active"] is True
        for _ in range(12):
            await step()  # the last alarm (at +2.5 s) leaves the window at +7.5 s
        assert frames[-1] == {"active": False, "count": 5, "started_at": iso_ms(start + 2.0),
                              "ended_at": iso_ms(start + 7.5)}  # fmt: skip
        report = await service.kpi(1.0)
        (episode,) = report["floods"]["episodes"]  # type: ignore[index]
        assert (episode["started_at"], episode["ended_at"], episode["count"]) == (
            iso_ms(start + 2.0),
            iso_ms(start + 7.5),
            5,
        )
        await service.close()

    asyncio.run(main())


def test_heavy_reads_never_wait_for_the_journal_writer(tmp_path: Path) -> None:
    """Issue #9 defect 1: the KPI read held the lock the tick's commit uses. Reads now run
    on connections of their own: with the writer's lock held (a commit in progress) KPIs,
    history, replay and export still answer; with a read snapshot open, commits go on."""

    async def main() -> None:
        rig, clock = Rig(diameter_plant()), Clock()
        service = make_service(rig, tmp_path / "j.sqlite", clock)
        await service.start()
        for value in (12.3, 12.0):
            rig.set("diameter", value)
            await tick(service, rig, clock)
        with service.journal._lock:  # the writer is busy for as long as this block lasts
            report = await asyncio.wait_for(service.kpi(1.0), 30)
            assert report["raised"] == 1
            assert len(await asyncio.wait_for(service.history(), 30)) == 2
            assert len(await asyncio.wait_for(service.replay(0) or [], 30)) == 2  # type: ignore[arg-type]
        with service.journal.reader() as db:  # a long read keeps its snapshot open ...
            assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 2
            rig.set("diameter", 12.3)
            (raised,) = await asyncio.wait_for(tick(service, rig, clock), 30)  # ... commits go on
            assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 2
        assert raised["event_id"] == 3
        await service.close()

    asyncio.run(main())

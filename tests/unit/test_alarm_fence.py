"""The journal's writer fence (a cluster node that lost its lease) and the command ledger,
against a real journal: a refused fence commits nothing; a request id is journaled with its
events in one commit and a second command with that id stores nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from scada.alarms.model import AlarmRequestError
from scada.alarms.service import AlarmService
from scada.core.errors import WriteFenced
from tests.unit.conftest_alarms import Rig, diameter_plant
from tests.unit.test_alarm_service import Clock, make_service, tick

D = "line1.diameter"


class Fence:
    def __init__(self) -> None:
        self.open = True
        self.asked = 0

    def __call__(self) -> None:
        self.asked += 1
        if not self.open:
            raise RuntimeError("lease lost")


async def one_alarm_raised(tmp_path: Path) -> tuple[AlarmService, Clock, dict[str, Any]]:
    """A started service on a fresh journal whose first tick raised the diameter alarm."""
    rig, clock = Rig(diameter_plant()), Clock()
    service = make_service(rig, tmp_path / "j.sqlite", clock)
    await service.start()
    rig.set("diameter", 12.3)
    (raised,) = await tick(service, rig, clock)
    return service, clock, raised


def test_a_refused_fence_commits_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        rig, clock = Rig(diameter_plant()), Clock()
        service = make_service(rig, tmp_path / "j.sqlite", clock)
        fence = Fence()
        service.set_fence(fence)
        await service.start()
        rig.set("diameter", 12.3)
        (raised,) = await tick(service, rig, clock)
        assert fence.asked >= 2  # before evaluating and right before the commit

        fence.open = False
        with pytest.raises(AlarmRequestError) as refused:
            await service.ack(raised["id"], "ann", "seen")
        assert refused.value.code == "not_active"
        rig.set("diameter", 12.0)
        with pytest.raises(WriteFenced):
            await tick(service, rig, clock)
        assert [e.event for e in service.journal.all_events()] == ["raised"]
        assert [a["state"] for a in service.current()] == ["unacked_active"]  # unchanged

        fence.open = True
        await service.start()  # what a node that is active again does: restore
        (acked,) = await service.ack(raised["id"], "ann", "seen")
        assert acked["event"] == "acknowledged"
        await service.close()

    asyncio.run(main())


def test_a_request_id_is_journaled_with_its_events_once(tmp_path: Path) -> None:
    async def main() -> None:
        service, _clock, raised = await one_alarm_raised(tmp_path)
        assert service.journal.command_result("r-1") is None
        events = await service.shelve(f"{D}.hi", 5, "ann", "cleaning", request_id="r-1")
        assert service.journal.command_result("r-1") == {"events": events}
        await service.unshelve(f"{D}.hi", "ann", request_id="r-2")
        with pytest.raises(AlarmRequestError) as again:  # the same id: nothing stored
            await service.shelve(f"{D}.hi", 5, "ann", "again", request_id="r-1")
        assert again.value.code == "journal_unavailable"
        results, _ = await service.ack_many([raised["id"], 999], "ann", "x", request_id="r-3")
        assert service.journal.command_result("r-3") == {"results": results}
        kinds = [e.event for e in service.journal.all_events()]
        assert kinds == ["raised", "shelved", "unshelved", "acknowledged"]
        await service.close()
        db = sqlite3.connect(tmp_path / "j.sqlite")
        assert db.execute("SELECT count(*) FROM applied_commands").fetchone() == (3,)
        db.close()

    asyncio.run(main())


def test_a_tail_moved_to_pending_leaves_the_journal_as_it_was_before_it(tmp_path: Path) -> None:
    async def main() -> None:
        service, clock, raised = await one_alarm_raised(tmp_path)
        await service.ack(raised["id"], "ann", "seen", request_id="r-1")  # event 2, unpublished
        assert service.journal.move_to_pending_after(1, clock()) == 1

        assert [e.event for e in service.journal.all_events()] == ["raised"]
        assert service.journal.newest_id() == 1
        assert service.journal.command_result("r-1") is None  # a retry applies it again
        await service.start()  # restore: the alarm is unacknowledged again
        assert [a["state"] for a in service.current()] == ["unacked_active"]
        (acked,) = await service.ack(raised["id"], "bob", "seen", request_id="r-1")
        assert (acked["event_id"], acked["acked_by"]) == (2, "bob")  # the ids go on from 1
        await service.close()
        db = sqlite3.connect(tmp_path / "j.sqlite")
        assert db.execute("SELECT offered_id FROM pending_events").fetchall() == [(2,)]
        db.close()

    asyncio.run(main())

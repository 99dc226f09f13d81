"""The SQLite alarm journal: durable, ordered, resumable, prunable, queryable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from scada.alarms.engine import AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.model import AlarmEvent
from scada.core.tags import Quality
from tests.unit.conftest_alarms import T0, Rig, diameter_plant


def event(alarm: str = "line1.diameter.hi", at: float = T0, occurrence: int = 1,
          state: str = "unacked_active", line: str | None = "1",
          kind: str = "raised") -> AlarmEvent:  # fmt: skip
    return AlarmEvent(
        event_id=None, occurrence_id=occurrence, alarm=alarm, production_line_id=line,
        tag="diameter", condition="hi", severity="high", event=kind, state=state,
        message="m", value=12.3, limit=12.2, at=at, raised_at=at,
        alarm_state=state if state != "shelved" else "unacked_active",
    )  # fmt: skip


def open_journal(path: Path, days: float = 90.0, count: int = 1000) -> Journal:
    return Journal(path, retention_days=days, retention_events=count)


def test_ids_strictly_increase_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "journal.sqlite"  # parents are created
    j = open_journal(path)
    first = j.append([event(at=T0), event(at=T0 + 1, kind="cleared", state="unacked_cleared")])
    second = j.append([event(at=T0 + 2, occurrence=2)])
    assert [e.event_id for e in first + second] == [1, 2, 3]
    assert j.newest_id() == 3
    assert j.append([]) == []
    j.close()
    j = open_journal(path)
    stored = list(j.all_events())
    assert [e.event_id for e in stored] == [1, 2, 3]
    assert stored == first + second  # every field round-trips
    (more,) = j.append([event(at=T0 + 3, occurrence=3)])
    assert more.event_id == 4
    j.close()


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.sqlite")
    assert j.pragma("journal_mode") == "wal"
    assert j.pragma("synchronous") == 2  # FULL
    j.close()


def test_append_is_committed_for_other_connections(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = open_journal(path)
    j.append([event()])
    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    other.close()
    j.close()


def test_since_returns_the_events_after_a_cursor(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.sqlite")
    j.append([event(at=T0 + i, occurrence=i + 1) for i in range(5)])
    assert [e.event_id for e in j.since(2) or []] == [3, 4, 5]
    assert [e.event_id for e in j.since(0, limit=2) or []] == [1, 2]
    assert j.since(5) == []
    assert j.since(6) is None  # a cursor from some other journal
    j.close()


def test_prune_by_count_and_since_reports_the_gap(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.sqlite", count=3)
    for i in range(6):  # each alarm raised then cleared-and-acked: all normal afterwards
        name = f"line1.t{i}.hi"
        j.append([event(alarm=name, at=T0 + i, occurrence=i + 1),
                  event(alarm=name, at=T0 + i, occurrence=i + 1, state="normal",
                        kind="acknowledged")])  # fmt: skip
    assert j.prune(T0 + 10) == 9
    assert [e.event_id for e in j.all_events()] == [10, 11, 12]
    assert j.since(3) is None
    assert j.since(8) is None
    assert [e.event_id for e in j.since(9) or []] == [10, 11, 12]
    assert j.newest_id() == 12
    (nxt,) = j.append([event(at=T0 + 20, occurrence=7)])
    assert nxt.event_id == 13  # ids are never reused
    assert j.max_occurrence_id() == 7
    j.close()


def test_prune_by_age_keeps_the_newest_event_of_alarms_not_normal(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.sqlite", days=1.0)
    day = 86_400.0
    j.append([event(alarm="a.hi", at=T0, occurrence=1)])  # still active: kept
    j.append([event(alarm="b.hi", at=T0 + 1, occurrence=2)])
    j.append([event(alarm="b.hi", at=T0 + 2, occurrence=2, state="normal", kind="cleared")])
    j.append([event(alarm="c.hi", at=T0 + 2 * day, occurrence=3)])  # young: kept
    assert j.prune(T0 + 2 * day) == 2
    assert [(e.alarm, e.event_id) for e in j.all_events()] == [("a.hi", 1), ("c.hi", 4)]
    assert j.since(0) is None
    assert j.max_occurrence_id() == 3
    j.close()


def test_history_filters_and_pages_newest_first(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.sqlite")
    j.append([event(alarm=f"line{i % 2 + 1}.d.hi", line=str(i % 2 + 1), at=T0 + i,
                    occurrence=i + 1) for i in range(10)])  # fmt: skip
    page1 = j.history(limit=4)
    assert [e.event_id for e in page1] == [10, 9, 8, 7]
    page2 = j.history(limit=4, before_id=page1[-1].event_id)
    assert [e.event_id for e in page2] == [6, 5, 4, 3]
    assert [e.event_id for e in j.history(line="2")] == [10, 8, 6, 4, 2]
    assert [e.event_id for e in j.history(alarm="line1.d.hi", limit=2)] == [9, 7]
    assert [e.event_id for e in j.history(since=T0 + 3, until=T0 + 5)] == [6, 5, 4]
    j.close()


def test_state_restored_after_prune_equals_live_state(tmp_path: Path) -> None:
    rig = Rig(diameter_plant())
    j = open_journal(tmp_path / "j.sqlite", days=0.001)  # ~86 s
    rig.set("diameter", 12.3)
    j.append(rig.tick())  # hi raised: stays active across the prune
    for _ in range(5):  # quality alarm comes and goes, acked: all of it prunable
        rig.set("diameter", 12.3, quality=Quality.BAD)
        j.append(rig.run(2.5))
        occ = rig.engine.state_of("line1.diameter.quality").occurrence_id
        j.append(rig.ack(occ))
        rig.set("diameter", 12.3, quality=Quality.GOOD)
        j.append(rig.tick())
    j.append(rig.run(200.0))
    assert j.prune(rig.now) > 0
    fresh = AlarmEngine(rig.config, rig.schema, ["sim"])
    fresh.restore(j.all_events(), next_occurrence_id=j.max_occurrence_id() + 1)
    assert fresh.current() == rig.engine.current() != []
    assert fresh.next_occurrence_id == rig.engine.next_occurrence_id
    j.close()


def test_restore_events_is_enough_to_rebuild(tmp_path: Path) -> None:
    rig = Rig(diameter_plant())
    j = open_journal(tmp_path / "j.sqlite")
    for value in (12.3, 12.0, 12.5, 12.3, 11.5, 12.0, 12.3):
        rig.set("diameter", value)
        j.append(rig.run(1.0))
    occ = rig.engine.state_of("line1.diameter.hi").occurrence_id
    j.append(rig.ack(occ))
    j.append(rig.shelve("line1.diameter.lo", 5, "ann", "why", rig.now))
    events = j.restore_events(recent=2)
    newest = {e.alarm: e.event_id for e in j.all_events()}
    assert {e.event_id for e in events} == set(newest.values()) | {j.newest_id() - 1,
                                                                  j.newest_id()}  # fmt: skip
    assert len(events) < len(list(j.all_events()))
    fresh = AlarmEngine(rig.config, rig.schema, ["sim"])
    fresh.restore(events, next_occurrence_id=j.max_occurrence_id() + 1)
    assert fresh.current() == rig.engine.current() != []
    assert fresh.next_occurrence_id == rig.engine.next_occurrence_id
    j.close()


def test_occurrence_ids_are_never_reused_after_a_restart(tmp_path: Path) -> None:
    """Issue #9 defect 3: shelving a normal alarm once wrote occurrence 0 over the alarm's
    newest occurrence in `alarm_last`, and restore read only the newest events, so ids
    were handed out again. The durable counter makes the restart independent of both."""
    rig = Rig(diameter_plant(), devices=())
    j = open_journal(tmp_path / "j.sqlite")
    rig.set("diameter", 12.3)
    j.append(rig.run(0.5))  # hi: occurrence 1
    rig.set("diameter", 12.0)
    j.append(rig.run(0.5))
    j.append(rig.ack(1))  # hi back to normal
    j.append(rig.shelve("line1.diameter.hi", 5, "ann", "cleaning", rig.now))  # occurrence 0
    j.close()
    j = open_journal(tmp_path / "j.sqlite")  # restart, reading no recent events at all
    fresh = AlarmEngine(rig.config, rig.schema, [])
    fresh.restore(j.restore_events(recent=0), next_occurrence_id=j.max_occurrence_id() + 1)
    assert fresh.next_occurrence_id == 2
    j.close()


def test_an_old_journal_gets_its_counter_from_every_id_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = open_journal(path)
    j.append([event(occurrence=7), event(occurrence=0, kind="shelved", state="shelved")])
    j.close()
    with sqlite3.connect(path) as db:  # as written before the counter existed
        db.execute("DELETE FROM meta WHERE key = 'occurrence_high'")
    j = open_journal(path)
    assert j.max_occurrence_id() == 7
    j.close()


def test_epoch_is_minted_once_kept_across_reopen_and_can_be_adopted(tmp_path: Path) -> None:
    first = Journal(tmp_path / "a.sqlite", retention_days=90, retention_events=1000)
    other = Journal(tmp_path / "b.sqlite", retention_days=90, retention_events=1000)
    epoch = first.epoch
    assert len(epoch) == 16 and int(epoch, 16) >= 0
    assert other.epoch != epoch  # each journal its own lineage of ids
    first.close()
    reopened = Journal(tmp_path / "a.sqlite", retention_days=90, retention_events=1000)
    assert reopened.epoch == epoch
    other.adopt_epoch(epoch)  # a standby mirroring `first`
    other.close()
    assert Journal(tmp_path / "b.sqlite", retention_days=90, retention_events=1000).epoch == epoch
    for bad in ("xyz", "ffffffffffffffff", "12"):
        try:
            reopened.adopt_epoch(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was adopted")
    assert reopened.epoch == epoch

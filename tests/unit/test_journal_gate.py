"""The journal's cluster side: a gate numbers and accepts a batch before anything is written;
what it refuses is kept pending (a tick's batch) or dropped (an operator request); late
events are history, never an alarm's state; the token and occurrence floors only go up."""

from __future__ import annotations

from pathlib import Path

import pytest

from scada.alarms.journal import Journal, NotAccepted
from scada.alarms.model import AlarmEvent


def event(n: int, kind: str = "raised", *, late: bool = False) -> AlarmEvent:
    return AlarmEvent(
        event_id=None,
        occurrence_id=n,
        alarm=f"line1.t{n}.hi",
        production_line_id="line1",
        tag=f"t{n}",
        condition="hi",
        severity="high",
        event=kind,
        state="unacked_active" if kind == "raised" else "normal",
        message="high",
        value=1.0,
        limit=0.5,
        at=1000.0 + n,
        late=late,
    )


def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.sqlite", retention_days=30, retention_events=10_000)


def test_the_gate_sees_the_ids_the_batch_is_written_under(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.append([event(1)])
    offered: list[list[int | None]] = []
    j.gate = lambda batch: offered.append([ev.event_id for ev in batch])
    stored = j.append([event(2), event(3)])
    assert offered == [[2, 3]]
    assert [ev.event_id for ev in stored] == [2, 3]
    assert [ev.event_id for ev in j.since(0) or []] == [1, 2, 3]


def test_a_refused_tick_batch_is_kept_pending_and_a_refused_request_is_not(
    tmp_path: Path,
) -> None:
    j = journal(tmp_path)

    def refuse(batch: list[AlarmEvent]) -> None:
        raise NotAccepted("cut off")

    j.gate = refuse
    batch = [event(1), event(2)]
    with pytest.raises(NotAccepted):
        j.append(batch)
    assert [ev.event_id for ev in batch] == [None, None]
    with pytest.raises(NotAccepted):
        j.append([event(3, "acknowledged")], request_id="r-1")
    assert j.newest_id() == 0 and j.since(0) == []
    kept = j.pending()
    assert [ev.occurrence_id for _, ev in kept] == [1, 2]
    assert j.max_occurrence_id() == 2  # a kept occurrence id is never handed out again
    j.gate = None
    j.append([event(1)])
    assert j.contains(kept[0][1]) and not j.contains(kept[1][1])
    assert j.drop_pending([kept[0][0]]) == 1
    assert [ev.occurrence_id for _, ev in j.pending()] == [2]


def test_numbered_appends_continue_the_ids_exactly(tmp_path: Path) -> None:
    j = journal(tmp_path)
    first = event(1)
    first.event_id = 1
    j.append_numbered([first])
    skipped = event(2)
    skipped.event_id = 3
    with pytest.raises(ValueError, match="do not continue"):
        j.append_numbered([skipped])
    assert j.newest_id() == 1


def test_a_late_event_is_history_not_the_alarms_state(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.append([event(1, "raised")])
    cleared = event(1, "cleared")
    j.append([cleared])
    late_raise = event(1, "raised", late=True)
    late_raise.at = 999.0
    j.append([late_raise])
    restored = j.restore_events()
    assert [(ev.event, ev.late) for ev in restored] == [("raised", False), ("cleared", False)]
    assert [ev.late for ev in j.since(0) or []] == [False, False, True]
    assert j.contains(late_raise)


def test_moving_a_tail_to_pending_keeps_every_event(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.append([event(n) for n in range(1, 6)])
    assert j.move_to_pending_after(3, 2000.0) == 2
    assert j.newest_id() == 3
    assert [ev.occurrence_id for _, ev in j.pending()] == [4, 5]
    j.append([event(9)])
    assert j.newest_id() == 4  # the record goes on from 3


def test_the_token_and_occurrence_floors_only_go_up(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.raise_token_high(7)
    j.raise_token_high(3)
    assert j.token_high() == 7
    j.raise_occurrence_floor(7_000_000)
    j.raise_occurrence_floor(5)
    assert j.max_occurrence_id() == 7_000_000
    j.close()
    assert journal(tmp_path).token_high() == 7

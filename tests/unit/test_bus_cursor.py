"""The bus follower's decisions without a bus: which entries follow the cursor, where the
stream has a gap, when the epoch is gone (CursorCheck), and when the bus is stale or live
again (ReadDeadline). The Redis reader and the in-memory bus both act on these."""

from __future__ import annotations

import pytest

from scada.bus.cursor import CursorCheck
from scada.bus.deadline import ReadDeadline
from scada.bus.events import AlarmEntries, EpochChanged, Gap, Status


def entries(*ids: int) -> list[tuple[int, bytes]]:
    return [(i, b"e%d" % i) for i in ids]


def test_entries_right_after_the_cursor_are_one_run_and_move_it() -> None:
    check = CursorCheck(cursor=10, epoch="E")
    assert check.entries(entries(11, 12, 13)) == [AlarmEntries(entries(11, 12, 13))]
    assert check.cursor == 13 and check.read_from == 13
    assert check.entries(entries(14)) == [AlarmEntries(entries(14))]


def test_a_trimmed_stream_starting_past_the_cursor_is_a_gap_before_the_entries() -> None:
    # XREAD from a cursor older than the trimmed stream starts at the first kept entry.
    check = CursorCheck(cursor=10, epoch="E")
    assert check.entries(entries(40, 41)) == [Gap(10, 40), AlarmEntries(entries(40, 41))]
    assert check.cursor == 41


def test_a_hole_inside_a_batch_splits_it_around_the_gap() -> None:
    check = CursorCheck(cursor=0, epoch="E")
    assert check.entries(entries(1, 2, 5, 6)) == [
        AlarmEntries(entries(1, 2)),
        Gap(2, 5),
        AlarmEntries(entries(5, 6)),
    ]


def test_without_a_cursor_the_first_entry_starts_the_run() -> None:
    check = CursorCheck()
    assert check.read_from == 0
    assert check.entries(entries(7, 8)) == [AlarmEntries(entries(7, 8))]
    assert check.entries([]) == []
    assert check.cursor == 8


def test_connecting_to_the_same_epoch_changes_nothing() -> None:
    check = CursorCheck(cursor=5, epoch="E")
    assert check.connected("E") is None
    assert (check.cursor, check.epoch) == (5, "E")


def test_no_epoch_given_takes_the_bus_one_as_it_is() -> None:
    check = CursorCheck(cursor=5)
    assert check.connected("E") is None
    assert (check.cursor, check.epoch) == (5, "E")


def test_another_epoch_at_connect_restarts_the_cursor() -> None:
    check = CursorCheck(cursor=5, epoch="E1")
    assert check.connected("E2") == EpochChanged("E1", "E2")
    assert (check.cursor, check.epoch) == (None, "E2")
    assert check.entries(entries(1)) == [AlarmEntries(entries(1))]


def test_a_bus_without_epoch_is_told_once_and_its_next_epoch_is_a_change_even_if_equal() -> None:
    check = CursorCheck(cursor=5, epoch="E")
    assert check.connected(None) == EpochChanged("E", None)
    assert (check.cursor, check.epoch) == (None, None)
    assert check.connected(None) is None  # told once
    # The same journal minting the same epoch again is still another history.
    assert check.connected("E") == EpochChanged(None, "E")
    assert check.connected("E") is None


def test_an_entry_of_another_epoch_is_a_change_and_restarts_the_cursor() -> None:
    check = CursorCheck(cursor=5, epoch="E1")
    assert check.entry_epoch(None) is None  # an entry without its epoch: nothing to check
    assert check.entry_epoch("E1") is None
    assert check.entry_epoch("E2") == EpochChanged("E1", "E2")
    assert (check.cursor, check.epoch) == (None, "E2")


def test_stale_once_after_the_deadline_and_live_again_with_the_next_read() -> None:
    deadline = ReadDeadline(2.0, now=100.0)
    assert deadline.silent(101.9, "no entries") is None
    assert deadline.silent(102.0, "no entries") == Status("stale", "no entries")
    assert deadline.silent(105.0, "no entries") is None  # once per spell
    assert deadline.silent_for(105.0) == 5.0
    assert deadline.read(105.5) == Status("live", "reading again")
    assert deadline.read(105.6) is None
    assert deadline.silent(107.5, "read failed") is None
    assert deadline.silent(107.6, "read failed") == Status("stale", "read failed")


def test_a_read_keeps_the_bus_live() -> None:
    deadline = ReadDeadline(2.0, now=0.0)
    for now in (1.5, 3.0, 4.5, 6.0):
        assert deadline.read(now) is None
        assert deadline.silent(now + 1.9, "no entries") is None


@pytest.mark.parametrize(("deadline", "block"), [(0.0, None), (2.0, 2.0), (2.0, 3.0)])
def test_a_deadline_that_could_not_work_is_refused(deadline: float, block: float | None) -> None:
    with pytest.raises(ValueError):
        ReadDeadline(deadline, now=0.0, block=block)

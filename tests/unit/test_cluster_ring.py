"""The gateway's alarm ring: exactly the missed entries, or None (recovered: false)."""

from __future__ import annotations

import asyncio

import pytest

from scada.bus.ring import AlarmRing


def entries(first: int, last: int) -> list[tuple[int, bytes]]:
    return [(i, f"event {i}".encode()) for i in range(first, last + 1)]


def test_resume_serves_exactly_the_entries_after_the_cursor() -> None:
    ring = AlarmRing(size=100)
    ring.reset("e1")
    ring.add(entries(16, 40))  # a new epoch's stream starts wherever its backfill starts
    assert ring.since("e1", 30) == entries(31, 40)
    assert ring.since("e1", 15) == entries(16, 40)  # the ring reaches back to cursor + 1
    assert ring.since("e1", 40) == []
    assert ring.since(None, 35) == entries(36, 40)  # a single-node client sends no epoch


def test_resume_is_refused_across_epochs_gaps_and_beyond_the_ring() -> None:
    ring = AlarmRing(size=10)
    ring.reset("e1")
    ring.add(entries(1, 30))
    assert ring.oldest == 21
    assert ring.since("e1", 19) is None  # trimmed out of the ring
    assert ring.since("e1", 20) == entries(21, 30)
    assert ring.since("e0", 25) is None  # another epoch's cursor
    ring.reset("e1", newest=40)  # the reader reported Gap(after=30, first=41)
    assert ring.since("e1", 30) is None
    assert ring.since("e1", 40) == []
    with pytest.raises(ValueError):
        ring.add(entries(42, 42))  # never across a hole
    ring.add(entries(41, 45))
    assert ring.since("e1", 40) == entries(41, 45)


def test_a_client_ahead_of_this_gateway_waits_for_it_to_catch_up() -> None:
    async def main() -> None:
        ring = AlarmRing()
        ring.reset("e1")
        ring.add(entries(1, 5))
        waiting = asyncio.create_task(ring.reach(8, timeout=10))
        await asyncio.sleep(0)
        ring.add(entries(6, 7))
        await asyncio.sleep(0)
        assert not waiting.done()
        ring.add(entries(8, 9))
        assert await waiting
        assert ring.since("e1", 8) == entries(9, 9)
        assert not await ring.reach(50, timeout=0.05)

    asyncio.run(main())

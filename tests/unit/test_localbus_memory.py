"""The all-in-one server keeps `[cluster] ring_size` alarm entries in memory (its bus and the
hub's resume ring, docs/operations.md "Memory"): each entry must hold its own bytes, not
orjson's working buffer (4 to 16 KB for a 600-byte event, which made 11,000 typical events
take 89 MiB instead of 9)."""

from __future__ import annotations

import gc
import sys
import tracemalloc

import orjson

from scada.core.alarmevent import AlarmEvent
from scada.roles.localbus import encode


def event(n: int) -> AlarmEvent:
    return AlarmEvent(
        event_id=n,
        occurrence_id=n,
        alarm="line12.diameter.hi",
        production_line_id="12",
        tag="diameter",
        condition="hi",
        severity="high",
        event="acknowledged",
        state="acked_active",
        message="Line 12 diameter high",
        value=12.3123,
        limit=12.2,
        at=1_765_000_000.0 + n,
        acked_by="operator1",
        comment="die heater reset",
        user="operator1",
    )


def test_an_alarm_entry_holds_only_its_own_bytes() -> None:
    events = [event(n) for n in range(1, 1001)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode(e) for e in events]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert [orjson.loads(p) for p in kept] == [e.to_record() for e in events]
    own = sum(sys.getsizeof(p) for p in kept) + sys.getsizeof(kept)
    assert held < 1.5 * own, (held, own)  # orjson's own buffers: 16 KB an event here

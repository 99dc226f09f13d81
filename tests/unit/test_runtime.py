"""The runtime is built complete and stops itself cleanly, with the real cause, when the
alarm journal cannot be written."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from scada.core.config import config_from_dict, deep_merge
from scada.plant.runtime import Runtime
from scada.roles.allinone import build_alarm_service
from tests.conftest import default_config_dict, eventually_async


def plant_with_an_alarm(data_dir: Path) -> dict[str, object]:
    # A tag the simulator does not produce reads bad at once: a quality alarm to commit.
    return deep_merge(
        default_config_dict(),
        {
            "server": {"data_dir": str(data_dir)},
            "line_defaults": {"tags": {"mystery": {"span": [0.0, 1.0], "quality_delay": 0.0}}},
        },
    )


def test_a_full_journal_stops_the_runtime_with_the_real_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_from_dict(plant_with_an_alarm(tmp_path))
    reasons: list[str] = []
    alarms = build_alarm_service(config)
    rt = Runtime(config, alarms=alarms, on_fatal=reasons.append)
    # A real SQLite limit: the journal may not grow past its current pages (as on a full disk).
    db = alarms.journal._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")

    async def main() -> None:
        await alarms.start()
        await rt.start()
        try:
            await eventually_async(lambda: reasons, timeout=10.0)
        finally:
            await rt.stop()
            await alarms.close()  # closing after the failure does not raise a second error

    with caplog.at_level(logging.CRITICAL, logger="scada.plant.runtime"):
        asyncio.run(main())
    assert reasons == ["alarm journal write failed: database or disk is full"]
    assert rt.fatal == reasons[0]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL] == [
        "alarm journal write failed: database or disk is full; stopping the server"
    ]


class SteppedTime:
    """A clock that moves only when told: by the work a test says it did, or by a sleep."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def test_fixed_rate_keeps_its_grid_and_skips_missed_slots() -> None:
    from scada.core.fixedrate import FixedRate

    async def main() -> None:
        time = SteppedTime()
        rate = FixedRate(0.05, phase=-0.025, clock=time.clock, sleep=time.sleep)
        start = rate.deadline
        for slot, work in zip((0.05, 0.1, 0.15), (0.01, 0.03, 0.0), strict=True):
            time.now += work
            assert not await rate.sleep()
            # The work's duration never shifts the grid: each wake-up is on a slot.
            assert round(rate.deadline - start, 9) == round(time.now - start, 9) == slot
        time.now += 0.2  # work that overran several slots
        assert await rate.sleep()  # overran: the missed slots are skipped, the next is now
        assert rate.deadline == time.now
        time.now += 0.01
        assert not await rate.sleep()  # on time again, one period after
        assert round(time.now - start, 9) == round(0.15 + 0.2 + 0.05, 9)

    asyncio.run(main())

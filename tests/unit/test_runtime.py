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


def test_fixed_rate_keeps_its_grid_and_skips_missed_slots() -> None:
    from scada.core.fixedrate import FixedRate

    async def main() -> tuple[list[float], bool, bool]:
        loop = asyncio.get_running_loop()
        rate = FixedRate(0.05, phase=-0.025)
        start = rate.deadline
        slots = []
        for _ in range(3):
            await rate.sleep()
            slots.append(round(rate.deadline - start, 6))
        await asyncio.sleep(0.2)  # work that overran several slots
        overran = await rate.sleep()
        on_time = await rate.sleep()
        assert rate.deadline <= loop.time() + 0.05
        return slots, overran, on_time

    slots, overran, on_time = asyncio.run(main())
    assert slots == [0.05, 0.1, 0.15]  # the work's duration never shifts the grid
    assert overran and not on_time

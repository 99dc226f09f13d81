"""An in-process plant for the notification tests: the real AlarmService, engine and SQLite
journal, driven tick by tick, and a Notifier over its own outbox file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from scada.alarms.engine import AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.service import AlarmService
from scada.core.config import PlantConfig
from scada.notify.service import Notifier
from scada.notify.settings import NotificationsConfig
from tests.unit.conftest_alarms import Rig


class Clock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


class Plant:
    def __init__(self, config: PlantConfig, directory: Path, clock: Clock) -> None:
        self.rig = Rig(config)
        self.rig.now = clock.now
        self.clock = clock
        self.directory = directory
        journal = Journal(directory / "journal.sqlite", retention_days=90, retention_events=1000)
        engine = AlarmEngine(config, self.rig.schema, ["sim"])
        self.service = AlarmService(engine, journal, clock=clock)

    async def tick(self, dt: float = 0.1) -> list[dict[str, Any]]:
        self.clock.now = self.rig.now = round(self.rig.now + dt, 6)
        return await self.service.tick(
            self.rig.now, self.rig.values, self.rig.quality, {"sim": True}
        )

    def notifier(self, section: dict[str, Any]) -> Notifier:
        config = NotificationsConfig.model_validate(section)
        return Notifier(config, self.directory / "notify.sqlite", self.service, clock=self.clock)

    async def started(self, section: dict[str, Any]) -> Notifier:
        notifier = self.notifier(section)
        await notifier.start()
        return notifier

    def journal(self) -> list[dict[str, Any]]:
        return [e.to_wire() for e in self.service.journal.all_events()]


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll (without blocking the loop) until predicate() is truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


async def until_async(
    read: Callable[[], Awaitable[Any]], predicate: Callable[[Any], Any], timeout: float = 15.0
) -> Any:
    """Poll an async read (e.g. Notifier.snapshot) until predicate(its value) holds; return
    the value."""
    state: Any = None

    async def ok() -> bool:
        nonlocal state
        state = await read()
        return bool(predicate(state))

    deadline = asyncio.get_running_loop().time() + timeout
    while not await ok():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {state}")
        await asyncio.sleep(0.02)
    return state

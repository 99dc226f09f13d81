"""One poll loop per device: read at a fixed rate, write the tag store, never die.

A failure marks the device's tags bad, is logged once (repeats go to debug until the device
recovers), and the loop reconnects with exponential backoff capped by the driver settings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from drivers.base import Driver
from scada.core.fixedrate import FixedRate
from scada.core.stats import percentile_rounded
from scada.plant.tagstore import TagStore

log = logging.getLogger(__name__)


class DeviceState(StrEnum):
    """A device as its poll loop sees it (the values are what /ready and /metrics show)."""

    CONNECTING = "connecting"  # no good read yet since the start
    CONNECTED = "connected"  # the last read was good
    FAILED = "failed"  # the last connect or read failed; retrying
    STOPPED = "stopped"  # the loop has ended


# The moves a poll loop makes; any other is a bug (InvalidTransition), as in websockets'
# State. FAILED -> FAILED: each further failed attempt of one outage.
TRANSITIONS: dict[DeviceState, frozenset[DeviceState]] = {
    DeviceState.CONNECTING: frozenset(
        {DeviceState.CONNECTED, DeviceState.FAILED, DeviceState.STOPPED}
    ),
    DeviceState.CONNECTED: frozenset({DeviceState.FAILED, DeviceState.STOPPED}),
    DeviceState.FAILED: frozenset({DeviceState.CONNECTED, DeviceState.FAILED, DeviceState.STOPPED}),
    # A stopped loop started again (an ingest node that stood by and is active again).
    DeviceState.STOPPED: frozenset({DeviceState.STOPPED, DeviceState.CONNECTING}),
}


class InvalidTransition(RuntimeError):
    """A device state change that its poll loop never makes."""


@dataclass
class DeviceStatus:
    name: str
    driver: str
    state: DeviceState = DeviceState.CONNECTING
    last_error: str | None = None
    errors: int = 0
    reconnects: int = 0
    polls: int = 0
    connected_since: float | None = None
    state_since: float | None = None  # epoch seconds of the last change of `state`
    last_ok: float | None = None  # epoch seconds of the last good read
    poll_ms: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    poll_seconds_sum: float = 0.0  # every good read's duration, for the metrics summary's _sum

    @property
    def healthy(self) -> bool:
        """The last read was good (/ready, scada_device_up)."""
        return self.state is DeviceState.CONNECTED

    def move(self, to: DeviceState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"device {self.name}: {self.state} -> {to}")
        self.state = to

    def as_dict(self) -> dict[str, Any]:
        lat = list(self.poll_ms)
        return {
            "name": self.name,
            "driver": self.driver,
            "state": self.state.value,
            "last_error": self.last_error,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "polls": self.polls,
            "last_ok": self.last_ok,
            "connected_since": self.connected_since,
            "state_since": self.state_since,
            "poll_ms_p50": percentile_rounded(lat, 0.5),
            "poll_ms_p99": percentile_rounded(lat, 0.99),
        }


class Poller:
    def __init__(
        self,
        driver: Driver,
        store: TagStore,
        *,
        interval: float,
        read_timeout: float = 1.0,
        backoff_initial: float = 0.25,
        backoff_max: float = 2.0,
    ) -> None:
        self.driver = driver
        self.store = store
        self.interval = interval
        self.read_timeout = read_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.status = DeviceStatus(driver.device.name, driver.name)
        self.indices = driver.indices
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._failures = 0

    def retry_delay(self) -> float:
        """How long to wait before reconnecting: the driver's schedule if it has one, else
        ours (backoff_initial doubling to backoff_max). This loop is the only one waiting."""
        own = self.driver.retry_delay(self._failures)
        if own is not None:
            return own
        return min(self.backoff_initial * 2.0 ** (self._failures - 1), self.backoff_max)

    def report(self) -> dict[str, Any]:
        """Status for /ready and /health/websocket, with the driver's own `describe()`."""
        return {**self.status.as_dict(), "details": self.driver.describe()}

    def start(self) -> None:
        if self.status.state is DeviceState.STOPPED:
            self.status.move(DeviceState.CONNECTING)
            self.status.state_since = time.time()
        self._task = asyncio.create_task(self.run(), name=f"poll-{self.status.name}")

    async def stop(self) -> None:
        task = self._task
        if task is not None:
            # Python 3.11's wait_for can swallow a cancel that lands in the same loop pass as
            # the read's result; cancel until the task has really finished.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            self._task = None
        await self._close()
        self.status.move(DeviceState.STOPPED)

    async def run(self) -> None:
        rate = FixedRate(self.interval)
        while True:
            if await self.poll_once():
                await rate.sleep()  # a slow device starts a fresh schedule rather than burst
            else:
                await rate.restart_after(self.retry_delay())

    async def poll_once(self) -> bool:
        started = time.perf_counter()
        try:
            if not self._connected:
                await asyncio.wait_for(self.driver.connect(), self.read_timeout * 2)
                self._connected = True
                if self.status.polls or self._failures:
                    self.status.reconnects += 1
            reading = await asyncio.wait_for(self.driver.read(), self.read_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            await self._failed(err)
            return False
        self.store.write(reading, time.monotonic())
        elapsed = time.perf_counter() - started
        self.status.poll_ms.append(elapsed * 1000)
        self.status.poll_seconds_sum += elapsed
        self.status.polls += 1
        self.status.last_ok = time.time()
        if not self.status.healthy:
            if self._failures:
                log.info(
                    "device %s recovered after %d failed attempt(s)",
                    self.status.name,
                    self._failures,
                )
            self.status.move(DeviceState.CONNECTED)
            self.status.connected_since = self.status.state_since = time.time()
            self.status.last_error = None
        self._failures = 0
        return True

    async def _failed(self, err: BaseException) -> None:
        reason = _describe(err, self.read_timeout)
        self._failures += 1
        self.status.errors += 1
        self.status.last_error = reason
        self.store.mark_bad(self.indices, f"device {self.status.name}: {reason}")
        if self.status.healthy or self._failures == 1:
            self.status.state_since = time.time()
            # Loud once per outage; the rest of the outage stays at debug level.
            log.warning(
                "device %s failed: %s; lines %s marked bad, retrying",
                self.status.name,
                reason,
                ",".join(self.driver.line_ids),
            )
        else:
            log.debug("device %s still failing: %s", self.status.name, reason)
        self.status.move(DeviceState.FAILED)
        await self._close()

    async def _close(self) -> None:
        if not self._connected:
            return
        self._connected = False
        try:
            await asyncio.wait_for(self.driver.close(), 1.0)
        except Exception as err:
            log.debug("device %s close failed: %s", self.status.name, err)


def _describe(err: BaseException, timeout: float) -> str:
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(err) or type(err).__name__
    return text if len(text) < 300 else text[:297] + "..."

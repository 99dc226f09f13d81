"""The poll loop never dies: failures mark tags bad, log once, back off, then recover."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from drivers.base import Driver, DriverContext, DriverSettings, Reading
from scada.core.config import DeviceConfig, load_config
from scada.core.errors import DriverError
from scada.core.tags import Quality, TagSchema
from scada.plant.poller import DeviceState, DeviceStatus, InvalidTransition, Poller
from scada.plant.tagstore import TagStore

CONFIG = load_config()
SCHEMA = TagSchema(CONFIG.lines)


class FlakyDriver(Driver):
    name = "flaky"

    def __init__(self) -> None:
        device = DeviceConfig(name="plc1", driver="flaky", lines=["1", "2"])
        super().__init__(device, DriverSettings(), DriverContext(CONFIG, SCHEMA))
        self.fail = False
        self.connects = 0
        self.closes = 0

    async def connect(self) -> None:
        self.connects += 1

    async def read(self) -> Reading:
        if self.fail:
            raise DriverError("device plc1: connection refused")
        return Reading.build(self.indices, np.ones(len(self.indices)), 1.0)

    async def close(self) -> None:
        self.closes += 1


def test_failure_marks_only_its_lines_bad_logs_once_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        driver = FlakyDriver()
        store = TagStore(SCHEMA)
        poller = Poller(driver, store, interval=0.01, backoff_initial=0.001, backoff_max=0.002)
        assert await poller.poll_once()
        assert store.line_quality()[:2].tolist() == [Quality.GOOD, Quality.GOOD]
        driver.fail = True
        for _ in range(5):
            assert not await poller.poll_once()
        assert store.line_quality()[:2].tolist() == [Quality.BAD, Quality.BAD]
        assert store.line_quality()[2] == Quality.BAD  # never read: no value yet
        assert poller.status.state == "failed" and poller.status.errors == 5
        assert "connection refused" in (poller.status.last_error or "")
        driver.fail = False
        assert await poller.poll_once()
        assert store.line_quality()[:2].tolist() == [Quality.GOOD, Quality.GOOD]
        assert poller.status.reconnects == 5 and poller.status.healthy

    with caplog.at_level(logging.DEBUG, logger="scada.plant.poller"):
        asyncio.run(main())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "plc1" in warnings[0].getMessage()
    assert sum("recovered" in r.getMessage() for r in caplog.records) == 1


def test_hanging_read_times_out_and_loop_keeps_running() -> None:
    class Hanging(FlakyDriver):
        async def read(self) -> Reading:
            await asyncio.sleep(3600)
            raise AssertionError

    async def main() -> None:
        driver = Hanging()
        store = TagStore(SCHEMA)
        poller = Poller(driver, store, interval=0.01, read_timeout=0.05, backoff_initial=0.01)
        poller.start()
        deadline = asyncio.get_running_loop().time() + 5
        while poller.status.errors < 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert "no answer within 0.05 s" in (poller.status.last_error or "")
        await poller.stop()
        assert driver.closes >= 3  # each failure closed the connection before retrying

    asyncio.run(main())


def test_one_backoff_owner_the_poll_loop_waits_the_drivers_schedule() -> None:
    """A Modbus device that refuses connections: the driver dials at once every time (it
    never sleeps itself) and the poll loop's wait follows reconnect_delay doubling to max."""
    from drivers.registry import create_driver
    from scada.core.config import config_from_dict
    from tests.conftest import default_config_dict, free_port

    raw = default_config_dict()
    raw["devices"] = [
        {
            "name": "plc",
            "driver": "modbus",
            "lines": ["1"],
            "settings": {
                "port": free_port(),  # nothing listens: refused at once
                "reconnect_delay": 0.5,
                "reconnect_delay_max": 2.0,
                "map": {name: {"table": "holding", "address": i}
                        for i, name in enumerate(raw["line_defaults"]["tags"])},
            },
        }
    ]  # fmt: skip
    config = config_from_dict(raw)
    schema = TagSchema(config.lines)
    driver = create_driver(config.devices[0], DriverContext(config, schema))
    poller = Poller(driver, TagStore(schema), interval=0.1)

    async def main() -> list[float]:
        delays = []
        for _ in range(4):
            assert not await poller.poll_once()  # no sleep inside: the loop owns the wait
            delays.append(poller.retry_delay())
        return delays

    assert asyncio.run(main()) == [0.5, 1.0, 2.0, 2.0]
    # Drivers without a schedule get the poll loop's own backoff.
    flaky = Poller(FlakyDriver(), TagStore(SCHEMA), interval=0.1, backoff_initial=0.25)
    flaky._failures = 3
    assert flaky.retry_delay() == 1.0


def state_of(status: DeviceStatus) -> DeviceState:
    """Read afresh (an assert on `status.state` would narrow it for mypy)."""
    return status.state


def test_device_state_moves_only_as_the_poll_loop_does() -> None:
    async def main() -> None:
        poller = Poller(FlakyDriver(), TagStore(SCHEMA), interval=0.01)
        status = poller.status
        assert state_of(status) is DeviceState.CONNECTING and not status.healthy
        assert await poller.poll_once()
        assert state_of(status) is DeviceState.CONNECTED and status.healthy
        assert status.as_dict()["state"] == "connected"  # the wire value, a plain string
        await poller.stop()
        assert state_of(status) is DeviceState.STOPPED and not status.healthy
        with pytest.raises(InvalidTransition, match="plc1: stopped -> connected"):
            status.move(DeviceState.CONNECTED)  # a stopped loop never reads again
        assert state_of(status) is DeviceState.STOPPED
        # Started again (a standby ingest node taking over): connecting, then a read.
        poller.start()
        assert state_of(status) is DeviceState.CONNECTING
        assert await poller.poll_once()
        assert state_of(status) is DeviceState.CONNECTED and status.healthy
        await poller.stop()
        assert state_of(status) is DeviceState.STOPPED

    asyncio.run(main())
    fresh = DeviceStatus("plc2", "flaky")
    with pytest.raises(InvalidTransition):
        fresh.move(DeviceState.CONNECTING)  # only a stopped loop starts connecting again
    assert [s.value for s in DeviceState] == ["connecting", "connected", "failed", "stopped"]

"""What the hub needs from the plant: the seam between `/ws` and where the data comes from.

A gateway feeds it from the bus (`scada.roles.gateway.bussource`: Redis), and so does the
all-in-one server, from its in-memory bus (`scada.roles.localbus`); an ingest node feeds its own
hub straight from its `Runtime` (`RuntimeSource` below). The
hub itself never imports the runtime, the alarm engine or the drivers, so a gateway process
does not load them (tests/unit/test_gateway_layers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from scada.core.config import PlantConfig
from scada.fanout.broadcaster import Broadcaster, Client
from scada.fanout.messages import AckData, ShelveData, UnshelveData

if TYPE_CHECKING:
    from scada.plant.runtime import Runtime


class AlarmView(Protocol):
    """The alarm state a snapshot shows and a resume replays (AlarmService implements it)."""

    def current(self) -> list[dict[str, Any]]:
        """Wire dicts of every alarm not in state normal, as of `cursor()`."""
        ...

    def cursor(self) -> int: ...

    def flood(self) -> dict[str, Any] | None: ...

    def epoch(self) -> str | None:
        """What a cursor is relative to (None: not known yet, e.g. a gateway off the bus)."""
        ...

    async def replay(self, cursor: int, upto: int | None = None) -> list[dict[str, Any]] | None:
        """Events with cursor < event_id <= upto in order; None when they cannot all be had."""
        ...


class PlantSource(Protocol):
    """Config, line data, alarm state and a tick for the hub."""

    @property
    def config(self) -> PlantConfig: ...

    @property
    def broadcaster(self) -> Broadcaster: ...

    @property
    def line_ids(self) -> list[str]: ...

    @property
    def alarms(self) -> AlarmView | None: ...

    def line_samples(self, line_ids: list[str] | None = None) -> list[dict[str, Any]]: ...

    def data_live(self) -> bool:
        """Whether the data behind the snapshot is current (a gateway's bus may be stale)."""
        ...

    def on_tick(self, listener: Callable[[], None]) -> None:
        """Call `listener` on every housekeeping tick (session expiry, re-checks)."""
        ...


class CommandPort(Protocol):
    """Where the operator commands of `/ws` go: the local alarm service, or the bus."""

    async def ack(self, client: Client, data: AckData) -> dict[str, Any]: ...

    async def shelve(self, client: Client, data: ShelveData) -> dict[str, Any]: ...

    async def unshelve(self, client: Client, data: UnshelveData) -> dict[str, Any]: ...

    async def audit_refusal(self, client: Client, action: str, target: str) -> None: ...

    def announce(self, events: list[dict[str, Any]]) -> None: ...

    def announce_flood(self, data: dict[str, Any]) -> None: ...


class RuntimeSource:
    """The hub's plant source of an ingest node: its own runtime."""

    def __init__(self, runtime: Runtime, broadcaster: Broadcaster) -> None:
        self.runtime = runtime
        self._broadcaster = broadcaster

    @property
    def config(self) -> PlantConfig:
        return self.runtime.config  # follows a config reload

    @property
    def broadcaster(self) -> Broadcaster:
        return self._broadcaster

    @property
    def line_ids(self) -> list[str]:
        return self.runtime.schema.line_ids

    @property
    def alarms(self) -> AlarmView | None:
        return self.runtime.alarms

    def line_samples(self, line_ids: list[str] | None = None) -> list[dict[str, Any]]:
        return self.runtime.line_samples(line_ids)

    def data_live(self) -> bool:
        return True  # the plant's own tick: stale values are marked per tag, not per bus

    def on_tick(self, listener: Callable[[], None]) -> None:
        self.runtime.on_tick(listener)

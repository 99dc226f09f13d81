"""The driver interface and the registry of drivers by name.

A driver turns a device into `Reading`s: columnar arrays of tag positions (from the TagSchema),
values, qualities and source times. It never touches the tag store or the clock of the
service; the poll loop (scada.plant.poller) does that, so a driver is testable on its own.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from scada.core.config import DeviceConfig, PlantConfig
from scada.core.tags import Quality, TagSchema


@dataclass
class Reading:
    """One read of a device: parallel arrays, one entry per tag read."""

    indices: np.ndarray  # positions in the TagSchema (intp)
    values: np.ndarray  # float64; NaN where there is no value
    quality: np.ndarray  # uint8 Quality codes
    source_time: np.ndarray  # float64 epoch seconds, when the device sampled each value
    # Why a tag is bad (exception code, status code), by schema position; only bad ones.
    reasons: dict[int, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        indices: np.ndarray,
        values: np.ndarray,
        source_time: float | np.ndarray,
        quality: np.ndarray | None = None,
        reasons: dict[int, str] | None = None,
    ) -> Reading:
        n = len(indices)
        if quality is None:
            quality = np.where(np.isnan(values), Quality.BAD, Quality.GOOD).astype(np.uint8)
        times = np.broadcast_to(np.asarray(source_time, dtype=np.float64), (n,))
        return cls(np.asarray(indices, dtype=np.intp), values, quality, times, reasons or {})


class DriverSettings(BaseModel):
    """Base of each driver's settings model: unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass
class DriverContext:
    """What the service hands a driver besides its own config."""

    config: PlantConfig
    schema: TagSchema
    # The in-process simulated plant, built by the first `sim` driver and shared by every
    # other (None when no device needs it), and the fault scenario it runs.
    plant: Any = None
    scenario: str | Path | None = None


class Driver(abc.ABC):
    """A device. `connect` and `read` raise DriverError (or any error) when the device fails."""

    name: ClassVar[str]
    settings_model: ClassVar[type[DriverSettings]] = DriverSettings

    def __init__(self, device: DeviceConfig, settings: DriverSettings, context: DriverContext):
        self.device = device
        self.settings = settings
        self.context = context
        self.line_ids = context.config.device_lines(device)
        self.indices = context.schema.line_indices(self.line_ids)

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def read(self) -> Reading: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @classmethod
    def check(cls, device: DeviceConfig, config: PlantConfig, path: str) -> list[tuple[str, str]]:
        """Problems a driver finds in the plant config beyond its settings model (tag maps)."""
        return []

    def retry_delay(self, failures: int) -> float | None:
        """Seconds the poll loop waits before reconnecting after `failures` failures in a
        row; None: the poll loop's default backoff. The poll loop is the only one that waits
        (one backoff per connection), the driver only says how long."""
        return None

    def describe(self) -> dict[str, Any]:
        """Extra status for /ready and /health/websocket (endpoint, session details)."""
        return {}


# Drivers registered so far, by name (drivers.registry imports the built-in ones on demand).
REGISTERED: dict[str, type[Driver]] = {}


def register(name: str) -> Callable[[type[Driver]], type[Driver]]:
    def add(cls: type[Driver]) -> type[Driver]:
        cls.name = name
        REGISTERED[name] = cls
        return cls

    return add

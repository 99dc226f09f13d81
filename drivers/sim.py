"""The `sim` driver: reads the in-process simulated plant (simulators.simulation)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from drivers.base import Driver, DriverContext, DriverSettings, Reading, register
from scada.core.config import DeviceConfig
from scada.core.errors import DriverError
from simulators.plant import COL
from simulators.scenario import load_scenario
from simulators.simulation import SimulatedPlant


class SimSettings(DriverSettings):
    pass


def shared_plant(context: DriverContext) -> SimulatedPlant:
    """The one simulated plant of this process: made by the first sim driver, with the
    configured seed and scenario, and kept on the context for every other."""
    if context.plant is None:
        config = context.config
        path = context.scenario or config.simulator.scenario
        schedule = load_scenario(path, context.schema.line_ids) if path else []
        context.plant = SimulatedPlant(config.lines, seed=config.simulator.seed, scenario=schedule)
    plant: SimulatedPlant = context.plant
    return plant


@register("sim")
class SimDriver(Driver):
    settings_model = SimSettings

    def __init__(self, device: DeviceConfig, settings: DriverSettings, context: DriverContext):
        super().__init__(device, settings, context)
        schema = context.schema
        plant = shared_plant(context)
        self.plant = plant
        # Map each of our tags to (plant row, simulator column); tags the model does not
        # produce read as bad rather than silently absent.
        rows, cols, idx, missing = [], [], [], []
        for line_id in self.line_ids:
            row = plant.line_ids.index(line_id)
            for ref in schema.refs[schema.line_slices[line_id]]:
                if ref.name in COL:
                    rows.append(row)
                    cols.append(COL[ref.name])
                    idx.append(ref.index)
                else:
                    missing.append(ref.index)
        self._rows = np.array(rows, dtype=np.intp)
        self._cols = np.array(cols, dtype=np.intp)
        self._idx = np.array(idx, dtype=np.intp)
        self._missing = np.array(missing, dtype=np.intp)

    async def connect(self) -> None:
        return None

    async def read(self) -> Reading:
        self.plant.advance_to(time.monotonic())
        faults = self.plant.faults
        if faults.source_fault("connection_drop"):
            raise DriverError(f"device {self.device.name!r}: connection dropped by the source")
        if faults.source_fault("server_unresponsive"):
            # Like a PLC that stopped answering: the poll loop's timeout catches it.
            await asyncio.sleep(3600)
        values, valid = self.plant.sample()
        # A silenced line (source_stop fault) sends nothing at all, so it goes stale.
        live = ~self.plant.model.overrides.silent[self._rows]
        rows, cols, idx = self._rows[live], self._cols[live], self._idx[live]
        ok = valid[rows, cols]
        v = np.where(ok, values[rows, cols], np.nan)
        reasons = {int(i): "sensor dropout" for i in idx[~ok]}
        for i in self._missing:
            reasons[int(i)] = "not produced by the simulator"
        all_idx = np.concatenate([idx, self._missing])
        vals = np.concatenate([v, np.full(len(self._missing), np.nan)])
        return Reading.build(all_idx, vals, time.time(), reasons=reasons)

    async def close(self) -> None:
        return None

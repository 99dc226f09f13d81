"""The simulated plant as a running thing: model + faults + scenario, advanced by a clock.

Shared by the in-process `sim` driver and the Modbus / OPC UA protocol simulators, so all
three show the same plant and run the same faults.
"""

from __future__ import annotations

import logging

import numpy as np

from scada.core.config import LineConfig
from simulators.faults import ActiveFault, FaultRequest, FaultSet
from simulators.plant import PlantModel
from simulators.scenario import ScheduledFault

log = logging.getLogger(__name__)

MAX_STEP_S = 0.1  # larger gaps are integrated in steps of this size


class SimulatedPlant:
    def __init__(
        self,
        lines: list[LineConfig],
        *,
        seed: int = 42,
        scenario: list[ScheduledFault] | None = None,
    ) -> None:
        self.line_ids = [line.id for line in lines]
        self.model = PlantModel.from_lines(lines, seed=seed)
        self.faults = FaultSet(self.line_ids)
        self._pending = list(scenario or [])
        self._clock: float | None = None

    @property
    def time(self) -> float:
        return self.model.time

    def advance_to(self, clock: float) -> None:
        """Step the model to the caller's clock (monotonic seconds); the first call anchors."""
        if self._clock is None:
            self._clock = clock
            self._run_scenario()
            return
        # A long pause (suspended laptop) is not replayed: at most 10 s of catch-up.
        elapsed = min(clock - self._clock, 10.0)
        self._clock = clock
        self.advance(elapsed)

    def advance(self, elapsed: float) -> None:
        """Advance simulated time by `elapsed` seconds, in steps of at most MAX_STEP_S."""
        while elapsed > 1e-9:
            dt = min(elapsed, MAX_STEP_S)
            self._run_scenario()
            for fault in self.faults.expire(self.model.time):
                log.info(
                    "simulator fault %d (%s on line %s) ended",
                    fault.id,
                    fault.request.kind,
                    fault.request.line,
                )
            self.faults.apply(self.model)
            self.model.step(dt)
            elapsed -= dt

    def _run_scenario(self) -> None:
        while self._pending and self._pending[0].at <= self.model.time:
            item = self._pending.pop(0)
            fault = self.inject(item.request)
            log.info(
                "scenario injected fault %d: %s on line %s",
                fault.id,
                item.request.kind,
                item.request.line,
            )

    def inject(self, request: FaultRequest) -> ActiveFault:
        fault = self.faults.inject(request, self.model.time)
        self.faults.apply(self.model)
        return fault

    def clear(self, fault_id: int) -> ActiveFault:
        fault = self.faults.clear(fault_id)
        self.faults.apply(self.model)
        return fault

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Readings [lines, SIM_TAGS] and their validity; a dropout shows at once."""
        return self.model.sample()

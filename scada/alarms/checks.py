"""Alarm checks, vectorised: this tick's samples in, the alarm conditions that flipped out.

Each kind of check (limits, rate of change, deviation, frozen value, discrete state, quality,
comms) keeps a `Bank` of numpy arrays with one slot per alarm definition. A bank turns this
tick's raw condition into a debounced condition (on/off delays) and reports only the slots
that flipped. With nothing changing a tick is a handful of array operations over all tags.

Time here is monotonic (`mono`): delays, windows and the frozen-value clock never follow a
wall-clock step.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from scada.alarms.definitions import Definitions
from scada.core.tags import Quality

# Float sums of tick intervals (0.1 + 0.1 + ...) land a hair short of the delay.
EPS = 1e-9
# (definition id, condition now active?, the value to report)
Flip = tuple[int, bool, float | None]


class Bank:
    """Debounced conditions of one kind of check; slot i belongs to alarm def `def_ids[i]`."""

    def __init__(self, def_ids: list[int], on_delay: list[float], off_delay: list[float]) -> None:
        n = len(def_ids)
        self.def_ids = np.asarray(def_ids, dtype=np.intp)
        self.on_delay = np.asarray(on_delay, dtype=np.float64).reshape(n)
        self.off_delay = np.asarray(off_delay, dtype=np.float64).reshape(n)
        self.active = np.zeros(n, dtype=bool)
        self.pending = np.full(n, np.nan)  # since when raw has differed from active
        self._any_pending = False

    def step(self, now: float, raw: np.ndarray, trusted: np.ndarray | None) -> np.ndarray:
        """Apply this tick's raw condition; return the slots whose debounced state flipped.

        Untrusted slots (bad or stale input) keep their state and lose any running delay:
        garbage must neither raise nor clear an alarm.
        """
        differ = raw != self.active
        if trusted is not None:
            differ &= trusted
        if not differ.any():
            if self._any_pending:
                self.pending.fill(np.nan)
                self._any_pending = False
            return np.empty(0, dtype=np.intp)
        pending = self.pending
        pending[~differ] = np.nan
        pending[differ & np.isnan(pending)] = now
        delay = np.where(self.active, self.off_delay, self.on_delay)
        flip = differ & (now - pending + EPS >= delay)
        self.active ^= flip
        pending[flip] = np.nan
        self._any_pending = bool((differ & ~flip).any())
        return np.flatnonzero(flip)

    def reset(self) -> None:
        self.active[:] = False
        self.pending[:] = np.nan
        self._any_pending = False


def _zeros(n: int) -> list[float]:
    return [0.0] * n


class _Delayed(Protocol):
    @property
    def def_id(self) -> int: ...
    @property
    def on_delay(self) -> float: ...
    @property
    def off_delay(self) -> float: ...


def _delayed_bank(specs: Sequence[_Delayed]) -> Bank:
    return Bank(
        [s.def_id for s in specs], [s.on_delay for s in specs], [s.off_delay for s in specs]
    )


def _column(specs: Sequence[object], attr: str, dtype: type = np.float64) -> np.ndarray:
    return np.asarray([getattr(s, attr) for s in specs], dtype=dtype)


class RateGroup:
    """Rate-of-change checks sharing one window length: |v(now) - v(now - window)| / dt."""

    def __init__(self, window: float, bank: Bank, tag_idx: list[int], limit: list[float]):
        self.window = window
        self.bank = bank
        self.tag_idx = np.asarray(tag_idx, dtype=np.intp)
        self.limit = np.asarray(limit, dtype=np.float64)
        self.samples: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
        self.rate = np.full(len(tag_idx), np.nan)

    def step(self, now: float, values: np.ndarray, trusted_tag: np.ndarray) -> np.ndarray:
        v = values[self.tag_idx]
        ok = trusted_tag[self.tag_idx]
        self.samples.append((now, v, ok))
        cutoff = now - self.window
        while len(self.samples) >= 2 and self.samples[1][0] <= cutoff + EPS:
            self.samples.popleft()
        t0, v0, ok0 = self.samples[0]
        if t0 > cutoff + EPS or now <= t0:
            # Less than one window of history (start, restart): no judgement yet.
            return self.bank.step(now, self.bank.active, None)
        with np.errstate(invalid="ignore"):
            self.rate = np.abs(v - v0) / (now - t0)
            raw = self.rate > self.limit
        return self.bank.step(now, raw, ok & ok0)


class FrozenCheck:
    """A tag that moved less than `min_change` from its reference value for `seconds`
    while its line runs. Not judged (and the clock restarts) while the value is untrusted
    or the line is not running."""

    def __init__(self, defs: Definitions) -> None:
        specs = defs.frozen
        self.bank = Bank([s.def_id for s in specs], _zeros(len(specs)), _zeros(len(specs)))
        self.tag_idx = np.asarray([s.tag_index for s in specs], dtype=np.intp)
        self.min_change = np.asarray([s.min_change for s in specs], dtype=np.float64)
        self.seconds = np.asarray([s.seconds for s in specs], dtype=np.float64)
        self.run_idx = np.asarray([max(s.running_index, 0) for s in specs], dtype=np.intp)
        self.has_state = np.asarray([s.running_index >= 0 for s in specs], dtype=bool)
        self.run_value = np.asarray([s.running_value for s in specs], dtype=np.float64)
        self.ref = np.full(len(specs), np.nan)
        self.since = np.full(len(specs), np.nan)

    def step(self, now: float, values: np.ndarray, trusted_tag: np.ndarray) -> np.ndarray:
        if not len(self.tag_idx):
            return np.empty(0, dtype=np.intp)
        v = values[self.tag_idx]
        running = ~self.has_state | (values[self.run_idx] == self.run_value)
        judged = trusted_tag[self.tag_idx] & running
        with np.errstate(invalid="ignore"):
            moved = ~(np.abs(v - self.ref) < self.min_change)  # NaN reference: moved
        restart = ~judged | moved
        self.ref[restart] = v[restart]
        self.since[restart] = now
        raw = judged & (now - self.since + EPS >= self.seconds)
        # A line that stops or a value that goes bad holds the alarm as it is.
        return self.bank.step(now, raw, judged)

    def reset(self) -> None:
        self.bank.reset()
        self.ref[:] = np.nan
        self.since[:] = np.nan


class Checks:
    """Every check of a set of definitions; `step` returns this tick's flips, comms first
    (a device failure is reported before anything it causes)."""

    def __init__(self, defs: Definitions, device_names: list[str]) -> None:
        self.device_names = list(device_names)
        lim = defs.limits
        self.limits = _delayed_bank(lim)
        self.limit_tag = _column(lim, "tag_index", np.intp)
        self.limit_value = _column(lim, "value")
        self.deadband = _column(lim, "deadband")
        self.sign = _column(lim, "sign")
        self.rates = []
        for w in sorted({s.window for s in defs.rates}):
            group = [s for s in defs.rates if s.window == w]
            tags = [s.tag_index for s in group]
            self.rates.append(
                RateGroup(w, _delayed_bank(group), tags, [s.max_per_second for s in group])
            )
        dev = defs.deviations
        self.deviation = _delayed_bank(dev)
        self.dev_tag = _column(dev, "tag_index", np.intp)
        self.dev_setpoint = _column(dev, "setpoint")
        self.dev_threshold = _column(dev, "threshold")
        self.frozen = FrozenCheck(defs)
        st = defs.states
        self.states = Bank([s.def_id for s in st], _zeros(len(st)), _zeros(len(st)))
        self.state_tag = np.asarray([s.tag_index for s in st], dtype=np.intp)
        self.state_value = np.asarray([s.value for s in st], dtype=np.float64)
        q = defs.quality
        self.quality = Bank([s.def_id for s in q], [s.delay for s in q], _zeros(len(q)))
        self.quality_tag = np.asarray([s.tag_index for s in q], dtype=np.intp)
        self.comms = Bank(defs.comms, _zeros(len(defs.comms)), _zeros(len(defs.comms)))
        lq = defs.line_quality
        self.line_quality = Bank([s.def_id for s in lq], [s.delay for s in lq], _zeros(len(lq)))
        self.line_tags = [np.asarray(s.tag_indices, dtype=np.intp) for s in lq]
        self._banks = [self.comms, self.line_quality, self.states, self.limits]
        self._banks += [self.deviation, self.quality]
        self._banks += [self.frozen.bank, *(g.bank for g in self.rates)]
        # Where each def's debounced condition lives, for supersession and restore.
        self._slot: dict[int, tuple[Bank, int]] = {}
        for bank in self._banks:
            for slot, def_id in enumerate(bank.def_ids.tolist()):
                self._slot[def_id] = (bank, slot)

    def active(self, def_id: int) -> bool:
        bank, slot = self._slot[def_id]
        return bool(bank.active[slot])

    def set_active(self, def_id: int, active: bool) -> None:
        bank, slot = self._slot[def_id]
        bank.active[slot] = active

    def reset(self) -> None:
        for bank in self._banks:
            bank.reset()
        self.frozen.reset()

    def comms_active(self) -> list[str]:
        """Devices whose comms condition is active now."""
        return [
            n for n, on in zip(self.device_names, self.comms.active.tolist(), strict=True) if on
        ]

    def line_quality_active(self) -> list[int]:
        """Definition ids of the line quality alarms whose condition is active now."""
        active: list[int] = self.line_quality.def_ids[self.line_quality.active].tolist()
        return active

    def step(
        self, now: float, values: np.ndarray, quality: np.ndarray, device_ok: dict[str, bool]
    ) -> list[Flip]:
        with np.errstate(invalid="ignore"):
            trusted = (quality <= Quality.UNCERTAIN) & np.isfinite(values)
        flips: list[Flip] = []
        if self.device_names:
            raw = np.array([not device_ok.get(n, True) for n in self.device_names], dtype=bool)
            known = np.array([n in device_ok for n in self.device_names], dtype=bool)
            self._collect(self.comms, self.comms.step(now, raw, known), None, flips)
        if self.line_tags:
            raw = np.array([bool((quality[t] >= Quality.STALE).all()) for t in self.line_tags])
            slots = self.line_quality.step(now, raw, None)
            self._collect(self.line_quality, slots, None, flips)
        s_tag = self.state_tag
        slots = self.states.step(now, values[s_tag] == self.state_value, trusted[s_tag])
        self._collect(self.states, slots, None, flips)
        v = values[self.limit_tag]
        with np.errstate(invalid="ignore"):
            beyond = self.sign * (v - self.limit_value)
            # Raise beyond the limit; clear only once back inside by the deadband.
            raw = np.where(self.limits.active, beyond > -self.deadband, beyond > 0.0)
        slots = self.limits.step(now, raw, trusted[self.limit_tag])
        self._collect(self.limits, slots, values[self.limit_tag], flips)
        for group in self.rates:
            for slot in group.step(now, values, trusted).tolist():
                rate = float(group.rate[slot])
                flips.append(
                    (
                        int(group.bank.def_ids[slot]),
                        bool(group.bank.active[slot]),
                        rate if math.isfinite(rate) else None,
                    )
                )
        dv = values[self.dev_tag]
        with np.errstate(invalid="ignore"):
            raw = np.abs(dv - self.dev_setpoint) > self.dev_threshold
        slots = self.deviation.step(now, raw, trusted[self.dev_tag])
        self._collect(self.deviation, slots, dv, flips)
        slots = self.frozen.step(now, values, trusted)
        self._collect(self.frozen.bank, slots, values[self.frozen.tag_idx], flips)
        bad = quality[self.quality_tag] >= Quality.STALE
        slots = self.quality.step(now, bad, None)
        self._collect(self.quality, slots, values[self.quality_tag], flips)
        return flips

    @staticmethod
    def _collect(
        bank: Bank, slots: np.ndarray, shown: np.ndarray | None, flips: list[Flip]
    ) -> None:
        for slot in slots.tolist():
            value: float | None = None
            if shown is not None:
                value = float(shown[slot])
                value = value if math.isfinite(value) else None
            flips.append((int(bank.def_ids[slot]), bool(bank.active[slot]), value))

"""The plant as Sparkplug metrics: which metrics each line's device has (for its birth), and
the samples of what changed in a tick. Pure: arrays and alarm records in, samples out.

Per line device `line<id>`:
- each tag as a metric of its name: analog tags Double, rounded to the tag's decimals as
  /api/lines shows them; state tags String (the state's name). Properties in the birth:
  engUnit, engLow/engHigh (span), description, setpoint, limitHiHi/limitHi/limitLo/limitLoLo.
- with alarms on, per alarm of the line `Alarms/<tag>.<condition>/{Active,Acknowledged,
  Priority,State}` and the summary `Alarms/Active Count`, `Alarms/Unacknowledged Count`,
  `Alarms/Highest Priority` (1 most urgent, 0 none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.edge import MetricDef, Sample
from drivers.sparkplug.hostmap import device_id
from scada.core.alarmevent import ACTIVE_STATES, PRIORITY
from scada.core.config import LineConfig, TagConfig
from scada.core.tags import Quality, TagSchema

# Indexed by the store's Quality code (GOOD, UNCERTAIN, STALE, BAD).
_SP_QUALITY: list[tuple[sp.SpQuality, str | None]] = [
    (sp.SpQuality.GOOD, None),
    (sp.SpQuality.GOOD, "uncertain"),
    (sp.SpQuality.STALE, "stale"),
    (sp.SpQuality.BAD, "bad"),
]
assert [int(q) for q in Quality] == [0, 1, 2, 3]
_LIMIT_PROPS = {"hihi": "limitHiHi", "hi": "limitHi", "lo": "limitLo", "lolo": "limitLoLo"}
UNACKED = ("unacked_active", "unacked_cleared")
_ALARM_PARTS = ("Active", "Acknowledged", "Priority", "State")
SUMMARY = ("Alarms/Active Count", "Alarms/Unacknowledged Count", "Alarms/Highest Priority")


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    """A configured alarm of a line, as the birth needs it."""

    name: str  # line1.diameter.hi
    line_id: str
    severity: str


def tag_properties(tag: TagConfig) -> dict[str, sp.Prop]:
    props: dict[str, sp.Prop] = {}
    if tag.unit:
        props["engUnit"] = sp.Prop(sp.DataType.STRING, tag.unit)
    if tag.span is not None:
        props["engLow"] = sp.Prop(sp.DataType.DOUBLE, float(tag.span[0]))
        props["engHigh"] = sp.Prop(sp.DataType.DOUBLE, float(tag.span[1]))
    if tag.description:
        props["description"] = sp.Prop(sp.DataType.STRING, tag.description)
    if tag.setpoint is not None:
        props["setpoint"] = sp.Prop(sp.DataType.DOUBLE, float(tag.setpoint))
    if tag.limits is not None:
        for name, limit in tag.limits.items():
            props[_LIMIT_PROPS[name]] = sp.Prop(sp.DataType.DOUBLE, float(limit.value))
    return props


def alarm_metric_prefix(alarm: AlarmInfo) -> str:
    short = alarm.name.removeprefix(f"line{alarm.line_id}.")
    return f"Alarms/{short}"


class PlantMetrics:
    def __init__(
        self,
        schema: TagSchema,
        lines: list[LineConfig],
        alarms: Iterable[AlarmInfo] = (),
        deadband: Mapping[str, float] | None = None,
    ) -> None:
        self.lines = lines
        deadband = deadband or {}
        refs = [r for line in lines for r in schema.refs[schema.line_slices[line.id]]]
        self.positions = np.array([r.index for r in refs], dtype=np.intp)
        self.device = [device_id(r.line_id) for r in refs]
        self.names = [r.name for r in refs]
        self.states = [r.config.states if r.config.kind == "state" else None for r in refs]
        self.decimals = np.array([r.config.decimals for r in refs])
        self._defs: dict[str, list[MetricDef]] = {device_id(line.id): [] for line in lines}
        for r in refs:
            kind = sp.DataType.STRING if r.config.kind == "state" else sp.DataType.DOUBLE
            band = deadband.get(r.path, deadband.get(r.name, 0.0))
            self._defs[device_id(r.line_id)].append(
                MetricDef(r.name, kind, tag_properties(r.config), band)
            )
        self.alarms = [a for a in alarms if device_id(a.line_id) in self._defs]
        # Per alarm: its device and its metrics' names, worked out once.
        self._alarm_metrics = [
            (a, device_id(a.line_id), [f"{alarm_metric_prefix(a)}/{s}" for s in _ALARM_PARTS])
            for a in self.alarms
        ]
        self._alarm_version: object = None
        for a in self.alarms:
            prefix = alarm_metric_prefix(a)
            self._defs[device_id(a.line_id)] += [
                MetricDef(f"{prefix}/Active", sp.DataType.BOOLEAN),
                MetricDef(f"{prefix}/Acknowledged", sp.DataType.BOOLEAN),
                MetricDef(f"{prefix}/Priority", sp.DataType.INT32),
                MetricDef(f"{prefix}/State", sp.DataType.STRING),
            ]
        if self.alarms:
            for line in lines:
                self._defs[device_id(line.id)] += [
                    MetricDef(name, sp.DataType.INT32) for name in SUMMARY
                ]
        n = len(refs)
        self._last_v = np.full(n, np.nan)
        self._last_q = np.full(n, 255, dtype=np.uint8)
        self._last_alarms: dict[str, tuple[bool, bool, int, str]] = {}
        self._last_summary: dict[str, tuple[int, ...]] = {}

    def defs(self) -> dict[str, list[MetricDef]]:
        return self._defs

    def tag_samples(
        self,
        values: np.ndarray,
        quality: np.ndarray,
        source_time: np.ndarray,
        *,
        full: bool = False,
    ) -> dict[str, dict[str, Sample]]:
        """Samples of the tags whose rounded value or quality changed since the last call
        (every tag with full=True)."""
        pos = self.positions
        v = self._rounded(values[pos])
        q = quality[pos]
        same_v = (v == self._last_v) | (np.isnan(v) & np.isnan(self._last_v))
        changed = np.flatnonzero(full | ~same_v | (q != self._last_q))
        self._last_v[changed] = v[changed]
        self._last_q[changed] = q[changed]
        out: dict[str, dict[str, Sample]] = {}
        if not len(changed):
            return out
        vals: list[float] = v[changed].tolist()
        quals: list[int] = q[changed].tolist()
        times: list[float] = source_time[pos[changed]].tolist()
        for i, value, qual, t in zip(changed.tolist(), vals, quals, times, strict=True):
            code, detail = _SP_QUALITY[qual]
            states = self.states[i]
            item: sp.Value | None
            if value != value or code is sp.SpQuality.BAD:
                item = None
            elif states is not None:
                k = int(value)
                item = states[k] if 0 <= k < len(states) else None
            else:
                item = value
            sample = Sample(item, int(t * 1000), code, detail)
            out.setdefault(self.device[i], {})[self.names[i]] = sample
        return out

    def alarm_samples(
        self,
        current: list[dict[str, Any]],
        now_ms: int,
        *,
        full: bool = False,
        version: object = None,
    ) -> dict[str, dict[str, Sample]]:
        """Samples of the alarm metrics that changed, from the alarm service's current alarms
        (wire records of every alarm not normal). `version`: a value that changes whenever
        the alarms do (the journal cursor); while it stays the same nothing is looked at."""
        if not self.alarms:
            return {}
        if version is not None and version == self._alarm_version and not full:
            return {}
        self._alarm_version = version
        by_name = {rec["alarm"]: rec for rec in current}
        out: dict[str, dict[str, Sample]] = {}
        summary: dict[str, list[int]] = {}
        last = self._last_alarms
        normal = (False, True)
        for a, dev, names in self._alarm_metrics:
            rec = by_name.get(a.name)
            s = summary.setdefault(dev, [0, 0, 0])
            if rec is None:
                active, acked, state = *normal, "normal"
            else:
                state = rec["state"]
                isa = rec.get("alarm_state", state)
                active, acked = isa in ACTIVE_STATES, isa not in UNACKED
            priority = PRIORITY.get(a.severity, 4)
            if active:
                s[0] += 1
                s[2] = priority if s[2] == 0 else min(s[2], priority)
            if not acked:
                s[1] += 1
            now: tuple[bool, bool, int, str] = (active, acked, priority, state)
            if not full and last.get(a.name) == now:
                continue
            last[a.name] = now
            samples = out.setdefault(dev, {})
            values: tuple[sp.Value, ...] = now
            for name, value in zip(names, values, strict=True):
                samples[name] = Sample(value, now_ms)
        for dev, counts in summary.items():
            if full or self._last_summary.get(dev) != tuple(counts):
                self._last_summary[dev] = tuple(counts)
                samples = out.setdefault(dev, {})
                for name, value in zip(SUMMARY, counts, strict=True):
                    samples[name] = Sample(value, now_ms)
        return out

    def _rounded(self, values: np.ndarray) -> np.ndarray:
        out = np.empty_like(values)
        for d in np.unique(self.decimals):
            mask = self.decimals == d
            out[mask] = np.round(values[mask], int(d))
        return out

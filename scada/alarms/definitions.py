"""Alarm definitions: every configured alarm, its static part, and what its check needs.

Built once from the plant configuration (and again on reload). Names are stable while the
configuration does not change: `line1.diameter.hi`, `line1.diameter.frozen`,
`line1.state.fault`, `device.plc.comms`.

Designed suppression is part of a definition: `suppressors` names, in order, the conditions
under which the alarm is suppressed (`device.<name>.comms` for the quality alarms of every tag
that device feeds, `line<id>.quality` for those of a line with `quality_alarm`,
`line<id>.state.<state>` for a tag's `suppress_when`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from scada.alarms.model import SEVERITY_RANK, Condition
from scada.core.config import (
    DEFAULT_SEVERITY,
    LimitsConfig,
    LineConfig,
    PlantConfig,
    Severity,
    TagConfig,
)
from scada.core.tags import TagRef, TagSchema

LIMIT_LABELS: Final = {"hihi": "high-high", "hi": "high", "lo": "low", "lolo": "low-low"}
SUPERSEDED_BY: Final = {"hi": "hihi", "lo": "lolo"}
# What a line-state `suppress_when` silences: the low side and the "process running"
# conditions. High limits stay armed: a hot barrel on a stopped line still matters.
STATE_SUPPRESSIBLE: Final = frozenset({"lo", "lolo", "rate", "deviation", "frozen"})
RUNNING: Final = "running"
COMMS_SEVERITY: Final[Severity] = "high"


@dataclass(frozen=True, slots=True)
class AlarmDef:
    """One configured alarm: the static part of every event it emits."""

    id: int
    name: str
    line_id: str | None
    tag: str | None
    tag_index: int  # position in the TagSchema, -1 for device alarms
    condition: Condition
    severity: Severity
    message: str
    limit: float | None
    suppressed: bool  # out of service in the configuration
    superseded_by: str | None = None  # hi -> its tag's hihi alarm name
    supersedes: str | None = None  # hihi -> its tag's hi alarm name
    suppressors: tuple[str, ...] = ()  # designed suppression conditions, first wins


@dataclass(frozen=True, slots=True)
class LimitSpec:
    def_id: int
    tag_index: int
    value: float
    deadband: float
    sign: float  # +1 for hi/hihi, -1 for lo/lolo
    on_delay: float
    off_delay: float


@dataclass(frozen=True, slots=True)
class RateSpec:
    def_id: int
    tag_index: int
    max_per_second: float
    window: float
    on_delay: float
    off_delay: float


@dataclass(frozen=True, slots=True)
class QualitySpec:
    def_id: int
    tag_index: int
    delay: float


@dataclass(frozen=True, slots=True)
class LineQualitySpec:
    def_id: int
    tag_indices: tuple[int, ...]
    delay: float


@dataclass(frozen=True, slots=True)
class FrozenSpec:
    def_id: int
    tag_index: int
    min_change: float
    seconds: float
    running_index: int  # the line's state tag (-1: no state tag, always running)
    running_value: float


@dataclass(frozen=True, slots=True)
class StateSpec:
    def_id: int
    tag_index: int
    value: float  # the state's index in the tag's state list


@dataclass(frozen=True, slots=True)
class DeviationSpec:
    def_id: int
    tag_index: int
    setpoint: float
    threshold: float
    on_delay: float
    off_delay: float


@dataclass(slots=True)
class Definitions:
    defs: list[AlarmDef] = field(default_factory=list)
    limits: list[LimitSpec] = field(default_factory=list)
    rates: list[RateSpec] = field(default_factory=list)
    quality: list[QualitySpec] = field(default_factory=list)
    line_quality: list[LineQualitySpec] = field(default_factory=list)
    comms: list[int] = field(default_factory=list)  # def ids, in device order
    frozen: list[FrozenSpec] = field(default_factory=list)
    states: list[StateSpec] = field(default_factory=list)
    deviations: list[DeviationSpec] = field(default_factory=list)
    # line id -> (index of its `state` tag, its state names), for state-based suppression
    line_states: dict[str, tuple[int, list[str]]] = field(default_factory=dict)


def build(config: PlantConfig, schema: TagSchema, device_names: list[str]) -> Definitions:
    out = Definitions()
    feeds = _device_of_line(config, device_names)
    for line in config.lines:
        state = line.tags.get("state")
        if state is not None and state.kind == "state" and state.states:
            out.line_states[line.id] = (schema.index(line.id, "state"), list(state.states))
    for line in config.lines:
        if line.quality_alarm:
            _add_line_quality(out, line, schema, feeds.get(line.id))
    for ref in schema.refs:
        _add_tag(out, config, ref, feeds.get(ref.line_id))
    for name in device_names:
        d = AlarmDef(
            id=len(out.defs),
            name=f"device.{name}.comms",
            line_id=None,
            tag=None,
            tag_index=-1,
            condition="comms",
            severity=COMMS_SEVERITY,
            message=f"Device {name}: communication lost",
            limit=None,
            suppressed=False,
        )
        out.defs.append(d)
        out.comms.append(d.id)
    return out


def _device_of_line(config: PlantConfig, device_names: list[str]) -> dict[str, str]:
    """The device feeding each line (the first one listed, if several do)."""
    out: dict[str, str] = {}
    for device in config.devices:
        if device.name in device_names:
            for line_id in config.device_lines(device):
                out.setdefault(line_id, device.name)
    return out


class _TagAlarms:
    """Adds one tag's alarms to the definitions, with the tag's common fields."""

    def __init__(self, out: Definitions, config: PlantConfig, ref: TagRef) -> None:
        self.out, self.ref, self.tag = out, ref, ref.config
        self.title = f"{config.line(ref.line_id).title}: {self.tag.description or ref.name}"
        self.by_state = tuple(f"line{ref.line_id}.state.{s}" for s in self.tag.suppress_when)

    def add(
        self,
        suffix: str,
        condition: Condition,
        severity: Severity,
        message: str,
        limit: float | None,
        *,
        superseded_by: str | None = None,
        supersedes: str | None = None,
        suppressors: tuple[str, ...] | None = None,
    ) -> AlarmDef:
        if suppressors is None:
            suppressors = self.by_state if condition in STATE_SUPPRESSIBLE else ()
        d = AlarmDef(
            id=len(self.out.defs),
            name=f"{self.ref.path}.{suffix}",
            line_id=self.ref.line_id,
            tag=self.ref.name,
            tag_index=self.ref.index,
            condition=condition,
            severity=severity,
            message=message,
            limit=limit,
            suppressed=self.tag.suppressed,
            superseded_by=superseded_by,
            supersedes=supersedes,
            suppressors=suppressors,
        )
        self.out.defs.append(d)
        return d


def _add_tag(out: Definitions, config: PlantConfig, ref: TagRef, device: str | None) -> None:
    tag, i = ref.config, ref.index
    alarms = _TagAlarms(out, config, ref)
    title = alarms.title
    if tag.kind == "analog" and tag.limits is not None:
        _add_limits(out, alarms, tag.limits)
    if tag.rate is not None:
        r = tag.rate
        d = alarms.add("rate", "rate", r.severity, f"{title} changing too fast", r.max_per_second)
        out.rates.append(RateSpec(d.id, i, r.max_per_second, r.window, r.on_delay, r.off_delay))
    if tag.deviation is not None and tag.setpoint is not None:
        dv = tag.deviation
        pct = dv.percent or 0.0
        threshold = dv.absolute if dv.absolute is not None else abs(tag.setpoint) * pct / 100.0
        message = f"{title} off setpoint by more than {threshold:g} {tag.unit}".rstrip()
        d = alarms.add("deviation", "deviation", dv.severity, message, threshold)
        out.deviations.append(
            DeviationSpec(d.id, i, tag.setpoint, threshold, dv.on_delay, dv.off_delay)
        )
    if tag.frozen is not None:
        fz = tag.frozen
        d = alarms.add("frozen", "frozen", fz.severity, f"{title} value frozen", fz.min_change)
        running_index, running_value = -1, 0.0
        line_state = out.line_states.get(ref.line_id)
        if line_state is not None and RUNNING in line_state[1]:
            running_index, running_value = line_state[0], float(line_state[1].index(RUNNING))
        out.frozen.append(
            FrozenSpec(d.id, i, fz.min_change, fz.seconds, running_index, running_value)
        )
    for state, severity in tag.alarm_states.items():
        d = alarms.add(state, "state", severity, f"{title}: {state}", None)
        out.states.append(StateSpec(d.id, i, float((tag.states or []).index(state))))
    if tag.quality_delay is not None:
        by: tuple[str, ...] = (f"device.{device}.comms",) if device is not None else ()
        if config.line(ref.line_id).quality_alarm:
            by += (f"line{ref.line_id}.quality",)
        message = f"{title} value bad or stale"
        d = alarms.add("quality", "quality", tag.quality_severity, message, None, suppressors=by)
        out.quality.append(QualitySpec(d.id, i, tag.quality_delay))


def _add_line_quality(
    out: Definitions, line: LineConfig, schema: TagSchema, device: str | None
) -> None:
    delays = [t.quality_delay for t in line.tags.values() if t.quality_delay is not None]
    d = AlarmDef(
        id=len(out.defs),
        name=f"line{line.id}.quality",
        line_id=line.id,
        tag=None,
        tag_index=-1,
        condition="quality",
        severity=max(
            (t.quality_severity for t in line.tags.values()), key=SEVERITY_RANK.__getitem__
        ),
        message=f"{line.title}: no good value from any tag",
        limit=None,
        suppressed=False,
        suppressors=(f"device.{device}.comms",) if device is not None else (),
    )
    out.defs.append(d)
    indices = range(schema.line_slices[line.id].start, schema.line_slices[line.id].stop)
    out.line_quality.append(LineQualitySpec(d.id, tuple(indices), min(delays, default=2.0)))


def _add_limits(out: Definitions, alarms: _TagAlarms, limits: LimitsConfig) -> None:
    present = {name for name, _ in limits.items()}
    path = alarms.ref.path
    for name, lim in limits.items():
        sup = SUPERSEDED_BY.get(name)
        sub = next((k for k, v in SUPERSEDED_BY.items() if v == name), None)
        d = alarms.add(
            name,
            name,  # type: ignore[arg-type]
            lim.severity or DEFAULT_SEVERITY[name],
            lim.message or f"{alarms.title} {LIMIT_LABELS[name]}",
            lim.value,
            superseded_by=f"{path}.{sup}" if sup in present else None,
            supersedes=f"{path}.{sub}" if sub in present else None,
        )
        out.limits.append(
            LimitSpec(
                d.id,
                alarms.ref.index,
                lim.value,
                _deadband(alarms.tag, limits, lim.deadband),
                1.0 if name in ("hi", "hihi") else -1.0,
                lim.on_delay if lim.on_delay is not None else limits.on_delay,
                lim.off_delay if lim.off_delay is not None else limits.off_delay,
            )
        )


def _deadband(tag: TagConfig, limits: LimitsConfig, own: float | None) -> float:
    if own is not None:
        return own
    if limits.deadband_percent is not None and tag.span is not None:
        return (tag.span[1] - tag.span[0]) * limits.deadband_percent / 100.0
    return limits.deadband

"""Faults an engineer injects into the simulated plant, and the overrides they impose."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scada.core.config import format_path
from scada.core.errors import FaultError
from simulators.plant import COL, SIM_TAGS, ZONES, Overrides, PlantModel

FaultKind = Literal[
    "heater_failure",
    "diameter_drift",
    "stuck_sensor",
    "noise_burst",
    "line_stop",
    "sensor_dropout",
    "source_stop",
    "step",
    "server_unresponsive",
    "connection_drop",
    "seq_gap",
]

# Which optional parameters each kind takes; anything else in a request is an error.
_PARAMS: dict[str, set[str]] = {
    "heater_failure": {"zone"},
    "diameter_drift": {"rate"},
    "stuck_sensor": {"tag"},
    "noise_burst": {"tag", "gain"},
    "line_stop": set(),
    "sensor_dropout": {"tag"},
    "source_stop": set(),
    # The tag's value jumps by `offset` at once (no process dynamics): for tests and demos
    # that need an alarm now, not after minutes of drift.
    "step": {"tag", "offset"},
    # Whole-source faults: the device (simulator, Modbus or OPC UA server) stops answering
    # requests, or drops every connection and refuses new ones, until cleared.
    "server_unresponsive": set(),
    "connection_drop": set(),
    # Sparkplug simulator only: one seq number left out of the edge node's messages, once.
    "seq_gap": set(),
}
SOURCE_KINDS = frozenset({"server_unresponsive", "connection_drop", "seq_gap"})
_OPTIONAL = {"zone", "rate", "tag", "gain", "offset"}
# Parameters a kind cannot do without (a default would hide a forgotten one).
_REQUIRED: dict[str, set[str]] = {"heater_failure": {"zone"}, "step": {"tag", "offset"}}
MAX_DURATION_S = 7 * 86_400.0


class FaultRequest(BaseModel):
    """A fault to inject: `{"line": "3", "kind": "diameter_drift", "rate": 0.01}`."""

    # Every number is finite and bounded: an engineer's typo must not push the model to
    # overflow (an infinite value) or schedule a fault for centuries.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    line: str | None = Field(default=None, max_length=64)  # all but whole-source kinds need it
    kind: FaultKind
    zone: int = Field(default=1, ge=1, le=ZONES)
    rate: float = Field(default=0.005, ge=-1.0, le=1.0, description="mm/s, diameter_drift")
    tag: str = Field(default="diameter", max_length=64, description="sensor tag, or '*'")
    gain: float = Field(default=10.0, gt=0, le=1000.0, description="noise multiplier")
    offset: float = Field(default=0.0, ge=-1000.0, le=1000.0, description="step: added at once")
    duration: float | None = Field(
        default=None, gt=0, le=MAX_DURATION_S, description="seconds; ends by itself"
    )

    @model_validator(mode="after")
    def _params_fit_kind(self) -> FaultRequest:
        extra = (self.model_fields_set & _OPTIONAL) - _PARAMS[self.kind]
        if extra:
            raise ValueError(f"{', '.join(sorted(extra))} does not apply to {self.kind}")
        if self.line is None and self.kind not in SOURCE_KINDS:
            raise ValueError(f"{self.kind} needs the line it applies to")
        missing = _REQUIRED.get(self.kind, set()) - self.model_fields_set
        if missing:
            raise ValueError(f"{self.kind} needs {', '.join(sorted(missing))}")
        if self.line is not None and self.kind in SOURCE_KINDS:
            raise ValueError(f"{self.kind} applies to the whole source: give no line")
        if self.kind == "step" and self.tag in ("*", "state"):
            raise ValueError("step needs one analog tag, not '*' or 'state'")
        if self.tag != "*" and self.tag not in SIM_TAGS:
            raise ValueError(f"unknown tag {self.tag!r}; one of {', '.join(SIM_TAGS)} or '*'")
        return self

    def params(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in sorted(_PARAMS[self.kind])}


def parse_fault(data: object) -> FaultRequest:
    """Validate a fault request, raising FaultError naming every bad field."""
    try:
        return FaultRequest.model_validate(data)
    except ValidationError as err:
        reasons = "; ".join(
            f"{format_path(tuple(e['loc']))}: {e['msg']}" if e["loc"] else e["msg"]
            for e in err.errors()
        )
        raise FaultError(reasons) from err


@dataclass
class ActiveFault:
    id: int
    request: FaultRequest
    line_index: int
    started_at: float  # simulated seconds
    ends_at: float | None

    def describe(self, now: float) -> dict[str, object]:
        return {
            "id": self.id,
            "line": self.request.line,
            "kind": self.request.kind,
            **self.request.params(),
            "duration": self.request.duration,
            "active_for": round(now - self.started_at, 3),
            "remaining": None if self.ends_at is None else round(max(self.ends_at - now, 0), 3),
        }


class FaultSet:
    """Active faults of one plant model; rebuilds the model's overrides every step."""

    def __init__(self, line_ids: list[str]) -> None:
        self._line_index = {lid: i for i, lid in enumerate(line_ids)}
        self._faults: dict[int, ActiveFault] = {}
        self._ids = itertools.count(1)

    def inject(self, request: FaultRequest, now: float) -> ActiveFault:
        index = -1 if request.line is None else self._line_index.get(request.line)
        if index is None:
            raise FaultError(f"line: no line with id {request.line!r}")
        ends = now + request.duration if request.duration is not None else None
        fault = ActiveFault(next(self._ids), request, index, now, ends)
        self._faults[fault.id] = fault
        return fault

    def clear(self, fault_id: int) -> ActiveFault:
        try:
            return self._faults.pop(fault_id)
        except KeyError:
            raise FaultError(f"no active fault with id {fault_id}") from None

    def active(self) -> list[ActiveFault]:
        return list(self._faults.values())

    def expire(self, now: float) -> list[ActiveFault]:
        done = [f for f in self._faults.values() if f.ends_at is not None and f.ends_at <= now]
        for fault in done:
            del self._faults[fault.id]
        return done

    def source_fault(self, kind: str) -> bool:
        """Is a whole-source fault of this kind active (server_unresponsive, connection_drop)?"""
        return any(f.request.kind == kind for f in self._faults.values())

    def apply(self, model: PlantModel) -> None:
        ov = Overrides.none(model.n_lines)
        for fault in self._faults.values():
            _apply_one(ov, fault, model.time)
        model.overrides = ov


def _apply_one(ov: Overrides, fault: ActiveFault, now: float) -> None:
    req, i = fault.request, fault.line_index
    if req.kind in SOURCE_KINDS:
        return  # acted on by the source itself (driver or protocol server), not the model
    cols = slice(None) if req.tag == "*" else COL.get(req.tag, COL["diameter"])
    if req.kind == "heater_failure":
        ov.heater_off[i, req.zone - 1] = True
    elif req.kind == "diameter_drift":
        ov.diameter_offset[i] += req.rate * (now - fault.started_at)
    elif req.kind == "stuck_sensor":
        ov.stuck[i, cols] = True
    elif req.kind == "noise_burst":
        ov.noise_gain[i, cols] *= req.gain
    elif req.kind == "line_stop":
        ov.stopped[i] = True
    elif req.kind == "sensor_dropout":
        ov.dropout[i, cols] = True
    elif req.kind == "source_stop":
        ov.silent[i] = True
    elif req.kind == "step":
        ov.offset[i, COL[req.tag]] += req.offset

"""A Sparkplug B edge node session, sans-I/O (docs/sparkplug.md, "Edge node").

The caller owns the MQTT connection; this object owns what goes over it: the bdSeq of each
connect and its NDEATH will, the birth sequence (NBIRTH then every DBIRTH), the `seq` of every
message after it, aliases, report by exception with a deadband, rebirth on request, and the
primary host's STATE. Methods take inputs and a time and return the messages to publish.
The service's edge node (scada.sparkplug) and the simulator (simulators.sparkplug_edge) both
drive one.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.topics import device_topic, node_topic, parse_state

log = logging.getLogger(__name__)


class EdgeState(enum.Enum):
    DISCONNECTED = "disconnected"
    WAITING_HOST = "waiting for primary host"  # connected, no birth until STATE online
    ONLINE = "online"  # births sent, data flowing


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric of a device: the name, its data type, properties sent in the birth, and the
    deadband under which a numeric change is not reported (0: any change)."""

    name: str
    datatype: sp.DataType
    properties: Mapping[str, sp.Prop] = field(default_factory=dict)
    deadband: float = 0.0
    writable: bool = False


@dataclass(frozen=True, slots=True)
class Sample:
    """A metric's current value: None for no value (is_null); quality as a spec code."""

    value: sp.Value | None
    timestamp: int  # ms since the epoch, from the source
    quality: sp.SpQuality = sp.SpQuality.GOOD
    detail: str | None = None  # finer quality than the spec's three codes ("uncertain")


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0  # every edge node message is QoS 0, not retained ([tck-id-topics-ddata-mqtt] ...)
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Write:
    """A DCMD/NCMD write of a metric other than Node Control: for the caller to refuse or apply."""

    device: str | None
    metric: str
    value: sp.Value | None


@dataclass
class Outcome:
    """What one input produced: messages to publish, writes asked for, and whether the caller
    must publish `publish` and then drop the connection (the primary host went offline)."""

    publish: list[Publish] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    disconnect: bool = False


QUALITY_DETAIL = "scadaQuality"  # our own property: the service's quality label when not good


class EdgeNode:
    def __init__(
        self,
        group: str,
        node_id: str,
        devices: Mapping[str, list[MetricDef]],
        *,
        primary_host: str | None = None,
        first_bdseq: int = 0,
    ) -> None:
        self.group = group
        self.node_id = node_id
        self.devices = {d: list(defs) for d, defs in devices.items()}
        self.primary_host = primary_host
        self.state = EdgeState.DISCONNECTED
        self.bdseq = (first_bdseq - 1) % 256  # the first connect uses first_bdseq
        self.seq = 0
        self.births = 0
        self.host_online_ts: int | None = None  # timestamp of the last STATE acted on
        self.host_online = False
        # Aliases: unique across the node's whole metric set ([tck-id-payloads-alias-uniqueness]);
        # 0 is never used, so a data metric always carries one.
        self.alias: dict[tuple[str, str], int] = {}
        self.by_alias: dict[int, tuple[str, str]] = {}
        for device, defs in self.devices.items():
            for d in defs:
                a = len(self.alias) + 1
                self.alias[(device, d.name)] = a
                self.by_alias[a] = (device, d.name)
        self._defs = {(dev, d.name): d for dev, defs in self.devices.items() for d in defs}
        self.current: dict[tuple[str, str], Sample] = {}
        self._dirty: dict[str, set[str]] = {}  # device -> metrics set since the last changes()
        self.sent: dict[tuple[str, str], Sample] = {}
        self.dead_devices: set[str] = set()
        self.values_sent = 0  # metrics published in DATA messages (bench: CPU per value)
        self.skip_seq = 0  # a test fault: leave out this many seq numbers (simulator)

    # -- topics ----------------------------------------------------------------------------

    @property
    def ncmd_topic(self) -> str:
        return node_topic(self.group, "NCMD", self.node_id)

    @property
    def dcmd_topic(self) -> str:
        return device_topic(self.group, "DCMD", self.node_id, "+")

    def will(self) -> Publish:
        """The NDEATH registered in this connect: QoS 1, not retained
        ([tck-id-message-flow-edge-node-birth-publish-will-message-qos], -will-retained)."""
        return Publish(node_topic(self.group, "NDEATH", self.node_id), sp.ndeath(self.bdseq), 1)

    # -- connection ------------------------------------------------------------------------

    def connecting(self, bdseq: int | None = None) -> Publish:
        """A new MQTT CONNECT: the next bdSeq (0..255, wrapping) and the will that carries it
        ([tck-id-topics-nbirth-bdseq-increment]). `bdseq`: a counter kept elsewhere (a
        cluster's, so the edge node's next holder goes on counting), taken modulo 256."""
        self.bdseq = (self.bdseq + 1) % 256 if bdseq is None else bdseq % 256
        self.state = EdgeState.DISCONNECTED
        return self.will()

    def connected(self, now_ms: int) -> Outcome:
        """The session is up and subscribed: birth now, or wait for the primary host
        ([tck-id-message-flow-edge-node-birth-publish-phid-wait])."""
        if self.primary_host is not None and not self.host_online:
            self.state = EdgeState.WAITING_HOST
            return Outcome()
        return Outcome(self._birth(now_ms))

    def disconnected(self) -> None:
        self.state = EdgeState.DISCONNECTED

    def death(self) -> Publish:
        """The NDEATH to publish before a deliberate disconnect
        ([tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath])."""
        self.state = EdgeState.DISCONNECTED
        return self.will()

    # -- inputs ----------------------------------------------------------------------------

    def on_state(self, host_id: str, data: bytes, now_ms: int) -> Outcome:
        """A STATE message of a host application."""
        if (
            host_id != self.primary_host
        ):  # [tck-id-message-flow-edge-node-birth-publish-phid-wait-id]
            return Outcome()
        try:
            online, ts = parse_state(data)
        except sp.PayloadError as err:
            log.warning("sparkplug edge %s: ignored STATE of %s: %s", self.node_id, host_id, err)
            return Outcome()
        # [tck-id-message-flow-edge-node-birth-publish-phid-wait-timestamp]: only a STATE at
        # least as new as the last one acted on counts.
        if self.host_online_ts is not None and ts < self.host_online_ts:
            return Outcome()
        self.host_online_ts = ts
        self.host_online = online
        if online and self.state is EdgeState.WAITING_HOST:
            log.info("sparkplug edge %s: primary host %s online, birth", self.node_id, host_id)
            return Outcome(self._birth(now_ms))
        if not online and self.state is EdgeState.ONLINE:
            # [tck-id-message-flow-edge-node-birth-publish-phid-offline]; while still waiting
            # for the host there is no session to end (the retained offline STATE would
            # otherwise make every reconnect end at once)
            log.info("sparkplug edge %s: primary host %s offline, NDEATH", self.node_id, host_id)
            return Outcome([self.death()], disconnect=True)
        return Outcome()

    def on_command(self, device: str | None, data: bytes, now_ms: int) -> Outcome:
        """An NCMD (device None) or DCMD."""
        try:
            payload = sp.decode(data)
        except sp.PayloadError as err:
            log.warning("sparkplug edge %s: ignored command: %s", self.node_id, err)
            return Outcome()
        out = Outcome()
        for m in payload.metrics:
            name = m.name or self._name_of_alias(m.alias, device)
            if device is None and name == sp.REBIRTH:
                if sp.get_value(m, sp.DataType.BOOLEAN) is True and self.state is EdgeState.ONLINE:
                    # [tck-id-operational-behavior-data-commands-rebirth-action-1..3]
                    log.info("sparkplug edge %s: rebirth requested", self.node_id)
                    out.publish.extend(self._birth(now_ms))
                continue
            if name is None or (device is not None and (device, name) not in self._defs):
                log.warning("sparkplug edge %s: command for unknown metric %r", self.node_id, name)
                continue
            dt = self._defs[(device, name)].datatype if device is not None else m.datatype
            out.writes.append(Write(device, name, sp.get_value(m, dt)))
        return out

    def set_values(self, device: str, values: Mapping[str, Sample]) -> None:
        """The metrics' current values; only the ones set since the last DATA are looked at
        by changes() (callers pass what changed)."""
        current = self.current
        for name, sample in values.items():
            current[(device, name)] = sample
        self._dirty.setdefault(device, set()).update(values)

    def changes(self, now_ms: int) -> list[Publish]:
        """DDATA of each device with the metrics that changed since they were last sent
        ([tck-id-topics-ddata-payload]), by alias only ([tck-id-payloads-alias-data-cmd-requirement])."""
        if self.state is not EdgeState.ONLINE:
            return []
        out = []
        dirty, self._dirty = self._dirty, {}
        defs = self._defs
        for device, names in dirty.items():
            if device in self.dead_devices:
                continue
            payload = None
            for name in names:
                key = (device, name)
                d = defs.get(key)
                sample = self.current.get(key)
                if d is None:
                    continue
                if sample is None or not _changed(self.sent.get(key), sample, d.deadband):
                    continue
                if payload is None:
                    payload = sp.new_payload(now_ms, self._next_seq())
                self._add(payload, key, d, sample, birth=False)
                self.sent[key] = sample
                self.values_sent += 1
            if payload is not None:
                out.append(self._device_msg("DDATA", device, payload))
        return out

    def device_death(self, device: str, now_ms: int) -> list[Publish]:
        """DDEATH of a device whose source was lost ([tck-id-operational-behavior-device-ddeath])."""
        if device in self.dead_devices:
            return []
        self.dead_devices.add(device)
        if self.state is not EdgeState.ONLINE:
            return []
        return [self._device_msg("DDEATH", device, sp.new_payload(now_ms, self._next_seq()))]

    def device_alive(self, device: str, now_ms: int) -> list[Publish]:
        """The device is back: a DBIRTH with all its metrics."""
        if device not in self.dead_devices:
            return []
        self.dead_devices.discard(device)
        if self.state is not EdgeState.ONLINE:
            return []
        return [self._dbirth(device, now_ms)]

    # -- births ----------------------------------------------------------------------------

    def _birth(self, now_ms: int) -> list[Publish]:
        """NBIRTH (seq 0, bdSeq, Node Control/Rebirth false without alias) then every DBIRTH
        ([tck-id-topics-nbirth-seq-num] [tck-id-topics-nbirth-bdseq-matching]
        [tck-id-operational-behavior-data-commands-rebirth-name-aliases] [tck-id-payloads-dbirth-order])."""
        self.seq = 0
        self.births += 1
        nbirth = sp.new_payload(now_ms, 0)
        sp.add_metric(
            nbirth, name=sp.BDSEQ, datatype=sp.DataType.INT64, value=self.bdseq, timestamp=now_ms
        )
        sp.add_metric(
            nbirth, name=sp.REBIRTH, datatype=sp.DataType.BOOLEAN, value=False, timestamp=now_ms
        )
        out = [Publish(node_topic(self.group, "NBIRTH", self.node_id), sp.encode(nbirth))]
        self.state = EdgeState.ONLINE
        self.sent.clear()
        self._dirty.clear()
        out.extend(self._dbirth(d, now_ms) for d in self.devices if d not in self.dead_devices)
        return out

    def _dbirth(self, device: str, now_ms: int) -> Publish:
        """Every metric the device will report: name, alias, datatype, current value, timestamp,
        properties ([tck-id-topics-dbirth-metric-reqs] [tck-id-payloads-alias-birth-requirement])."""
        payload = sp.new_payload(now_ms, self._next_seq())
        for d in self.devices[device]:
            key = (device, d.name)
            sample = self.current.get(key) or Sample(None, now_ms, sp.SpQuality.BAD)
            self._add(payload, key, d, sample, birth=True)
            self.sent[key] = sample
        return self._device_msg("DBIRTH", device, payload)

    def _add(
        self, payload: sp.Payload, key: tuple[str, str], d: MetricDef, s: Sample, *, birth: bool
    ) -> None:
        previous = self.sent.get(key)
        same_quality = (
            previous is not None and previous.quality is s.quality and previous.detail == s.detail
        )
        if not birth and same_quality and s.value is not None:
            fast = _FAST_FIELD.get(d.datatype)
            if fast is not None:  # the common DATA metric: alias, timestamp, value
                payload.metrics.add(alias=self.alias[key], timestamp=s.timestamp, **{fast: s.value})
                return
        props: dict[str, sp.Prop] = dict(d.properties) if birth else {}
        if birth or not same_quality:
            props[sp.QUALITY] = sp.quality_property(s.quality)
            props[QUALITY_DETAIL] = sp.Prop(sp.DataType.STRING, s.detail or s.quality.name.lower())
        value = None if s.quality is sp.SpQuality.BAD else s.value
        sp.add_metric(
            payload,
            name=d.name if birth else None,
            alias=self.alias[key],
            datatype=d.datatype,
            with_datatype=birth,  # [tck-id-payloads-metric-datatype-not-req]
            value=value,
            timestamp=s.timestamp,
            properties=props,
        )

    def _device_msg(self, kind: str, device: str, payload: sp.Payload) -> Publish:
        return Publish(device_topic(self.group, kind, self.node_id, device), sp.encode(payload))  # type: ignore[arg-type]

    def _next_seq(self) -> int:
        """[tck-id-payloads-sequence-num-incrementing]: +1 per message, 255 wraps to 0."""
        self.seq = (self.seq + 1 + self.skip_seq) % 256
        self.skip_seq = 0
        return self.seq

    def _name_of_alias(self, alias: int, device: str | None) -> str | None:
        found = self.by_alias.get(alias)
        return found[1] if found is not None and found[0] == device else None


# Data types whose value goes into one protobuf field as is (no range check, no conversion).
_FAST_FIELD = {
    sp.DataType.DOUBLE: "double_value",
    sp.DataType.BOOLEAN: "boolean_value",
    sp.DataType.STRING: "string_value",
}


def _changed(sent: Sample | None, now: Sample, deadband: float) -> bool:
    if sent is None:
        return True
    if deadband == 0 and sent.value != now.value and now.value == now.value:
        return True  # the usual case: a new value (not NaN), no deadband
    if (sent.quality, sent.detail) != (now.quality, now.detail):
        return True
    a, b = sent.value, now.value
    if a is None or b is None:
        return a is not b
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a != b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) != math.isnan(b)
    return abs(float(b) - float(a)) > deadband if deadband > 0 else a != b

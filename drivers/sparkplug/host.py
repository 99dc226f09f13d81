"""A Sparkplug B host application's view of edge nodes, sans-I/O (docs/sparkplug.md, "Host").

Fed every message of the watched edge nodes, it keeps each node's session (bdSeq, seq, aliases)
and each metric's latest value and quality, and says when to send a rebirth request: after a
`seq` gap not filled within the reorder timeout, for DATA before BIRTH, and for an alias no
birth defined. NDEATH (with the NBIRTH's bdSeq) and DDEATH make metrics stale at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.edge import QUALITY_DETAIL
from drivers.sparkplug.topics import Topic

log = logging.getLogger(__name__)

NODE = ""  # the device key of a node's own metrics


@dataclass(slots=True)
class MetricValue:
    value: sp.Value | None
    timestamp: int  # ms since the epoch
    quality: str  # good, uncertain, stale, bad (the service's labels)


@dataclass
class DeviceSession:
    alive: bool = False
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    datatypes: dict[str, int] = field(default_factory=dict)
    reason: str = "no birth yet"


@dataclass
class NodeSession:
    name: str
    born: bool = False
    bdseq: int | None = None
    expected: int = 0  # next seq
    missing: set[int] = field(default_factory=set)
    gap_since: float | None = None
    rebirth_at: float | None = None  # when the last rebirth request went out
    devices: dict[str, DeviceSession] = field(default_factory=dict)
    aliases: dict[int, tuple[str, str]] = field(default_factory=dict)
    # counters for the device table
    births: int = 0
    deaths: int = 0
    gaps: int = 0
    rebirth_requests: int = 0

    def device(self, name: str) -> DeviceSession:
        return self.devices.setdefault(name, DeviceSession())


_QUALITY_OF_CODE = {sp.SpQuality.GOOD: "good", sp.SpQuality.STALE: "stale", sp.SpQuality.BAD: "bad"}


class HostSession:
    def __init__(
        self, group: str, nodes: list[str], *, reorder_timeout: float, rebirth_retry: float
    ) -> None:
        self.group = group
        self.nodes = {n: NodeSession(n) for n in nodes}
        self.reorder_timeout = reorder_timeout
        self.rebirth_retry = rebirth_retry

    def value(self, node: str, device: str, metric: str) -> tuple[MetricValue | None, str]:
        """The metric's latest value (stale after a death), or None and why there is none."""
        dev = self.nodes[node].devices.get(device)
        if dev is None:
            return None, f"{node}/{device}: no birth yet"
        m = dev.metrics.get(metric)
        if m is None:
            return None, f"{node}/{device}: no metric {metric!r} in its birth"
        return m, dev.reason

    def receive(self, topic: Topic, data: bytes, now: float) -> list[str]:
        """One message; returns the edge nodes to send a rebirth request to now."""
        session = self.nodes.get(topic.edge_node)
        if session is None or topic.group != self.group:
            return []
        try:
            payload = sp.decode(data)
        except sp.PayloadError as err:
            log.warning("sparkplug: %s from %s: %s", topic.message_type, topic.edge_node, err)
            return []
        kind = topic.message_type
        if kind == "NDEATH":
            self._ndeath(session, payload)
            return []
        if kind == "NBIRTH":
            self._nbirth(session, payload)
            return []
        if kind in ("NCMD", "DCMD"):
            return []
        if not session.born:
            # [tck-id-operational-behavior-host-reordering-rebirth]'s sibling: DATA before BIRTH
            return self._rebirth(session, now, f"{kind} before NBIRTH")
        self._check_seq(session, payload, now)
        device = topic.device or NODE
        if kind == "DBIRTH":
            self._dbirth(session, device, payload)
            return []
        if kind == "DDEATH":
            dead = session.device(device)
            dead.alive = False
            dead.reason = f"device {device} offline (DDEATH)"
            _mark(dead, "stale", payload.timestamp)
            return []
        dev = session.devices.get(device)
        if dev is None or not dev.alive:
            return self._rebirth(session, now, f"{kind} of {device} before its DBIRTH")
        for m in payload.metrics:
            name: str | None = m.name
            if not name and m.HasField("alias"):
                owner, name = session.aliases.get(m.alias, (None, None))
                if owner != device:
                    name = None
            if not name or name not in dev.datatypes:
                return self._rebirth(session, now, f"unknown metric (alias {m.alias}) in {kind}")
            dev.metrics[name] = _metric_value(m, dev.datatypes[name], dev.metrics.get(name))
        return []

    def poll(self, now: float) -> list[str]:
        """Reorder timeouts that ran out ([tck-id-operational-behavior-host-reordering-rebirth])."""
        out: list[str] = []
        for session in self.nodes.values():
            if session.gap_since is not None and now - session.gap_since >= self.reorder_timeout:
                missing = sorted(session.missing)
                session.gap_since = None
                session.missing.clear()
                out += self._rebirth(
                    session, now, f"seq {missing} missing after the reorder timeout"
                )
        return out

    # -- message kinds ---------------------------------------------------------------------

    def _nbirth(self, session: NodeSession, payload: sp.Payload) -> None:
        session.born = True
        session.bdseq = sp.bdseq_of(payload)
        session.expected = (payload.seq + 1) % 256
        session.missing.clear()
        session.gap_since = None
        session.rebirth_at = None
        session.births += 1
        session.aliases.clear()
        for dev in session.devices.values():  # every device is born again after an NBIRTH
            dev.alive = False
            dev.reason = "waiting for DBIRTH after NBIRTH"
        self._dbirth(session, NODE, payload)
        log.info("sparkplug: edge node %s born (bdSeq %s)", session.name, session.bdseq)

    def _dbirth(self, session: NodeSession, device: str, payload: sp.Payload) -> None:
        dev = session.device(device)
        dev.alive = True
        dev.reason = ""
        dev.metrics.clear()
        dev.datatypes.clear()
        for m in payload.metrics:
            if not m.name:
                continue
            dev.datatypes[m.name] = m.datatype
            dev.metrics[m.name] = _metric_value(m, m.datatype, None)
            if m.HasField("alias"):
                session.aliases[m.alias] = (device, m.name)

    def _ndeath(self, session: NodeSession, payload: sp.Payload) -> None:
        bdseq = sp.bdseq_of(payload)
        if session.born and session.bdseq is not None and bdseq != session.bdseq:
            # A will of an earlier connection, arriving after the new NBIRTH: ignore it.
            log.info("sparkplug: ignored NDEATH of %s with old bdSeq %s", session.name, bdseq)
            return
        # [tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-tags-stale]
        # [...-ndeath-devices-tags-stale]
        session.born = False
        session.deaths += 1
        session.gap_since = None
        session.missing.clear()
        for dev in session.devices.values():
            dev.alive = False
            dev.reason = f"edge node {session.name} offline (NDEATH)"
            _mark(dev, "stale", None)
        log.info("sparkplug: edge node %s dead (NDEATH, bdSeq %s)", session.name, bdseq)

    def _check_seq(self, session: NodeSession, payload: sp.Payload, now: float) -> None:
        """[tck-id-operational-behavior-host-reordering-start] / -success"""
        if not payload.HasField("seq"):
            return
        seq = payload.seq % 256
        if seq == session.expected:
            session.expected = (seq + 1) % 256
        elif seq in session.missing:
            session.missing.discard(seq)  # a late one: the gap may be filled
        elif (seq - session.expected) % 256 < 128:
            gap = (seq - session.expected) % 256
            session.missing.update((session.expected + i) % 256 for i in range(gap))
            session.expected = (seq + 1) % 256
            session.gaps += 1
            if session.gap_since is None:
                session.gap_since = now
            log.info("sparkplug: %s: seq %d, expected %d", session.name, seq, (seq - gap) % 256)
        if not session.missing:
            session.gap_since = None

    def _rebirth(self, session: NodeSession, now: float, why: str) -> list[str]:
        if session.rebirth_at is not None and now - session.rebirth_at < self.rebirth_retry:
            return []
        session.rebirth_at = now
        session.rebirth_requests += 1
        log.info("sparkplug: rebirth request to %s: %s", session.name, why)
        return [session.name]


def _metric_value(m: sp.Metric, datatype: int, previous: MetricValue | None) -> MetricValue:
    """A metric's value with its quality: is_null is bad; the Quality property (and our finer
    scadaQuality) when given, else that of the previous value (DATA sends it on change)."""
    quality = previous.quality if previous is not None else "good"
    if m.HasField("properties"):
        props = sp.read_properties(m.properties)
        code = props.get(sp.QUALITY)
        detail = props.get(QUALITY_DETAIL)
        if isinstance(detail, str) and detail in ("good", "uncertain", "stale", "bad"):
            quality = detail
        elif isinstance(code, int) and not isinstance(code, bool):
            quality = _QUALITY_OF_CODE.get(code, "bad")  # type: ignore[call-overload]
    value = sp.get_value(m, datatype)
    if value is None:
        quality = "bad"
    return MetricValue(value, m.timestamp, quality)


def _mark(dev: DeviceSession, quality: str, timestamp: int | None) -> None:
    for name, m in dev.metrics.items():
        dev.metrics[name] = MetricValue(m.value, timestamp or m.timestamp, quality)

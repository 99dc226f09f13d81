"""Client registry and fan-out: encode each frame once, write the same bytes to every client.

A frame is JSON `{"type", "timestamp", "data", "seq"}`; everything up to `"seq":` is built
once per tick and per distinct subscription, and each client only appends its own seq digits
and `}`. Slow clients (too much unsent data, or a socket blocked too long) are closed with 1013
and counted; one slow client never makes the loop wait.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from scada.core.config import ServerConfig
from scada.core.stats import TickStats
from scada.core.timefmt import iso_ms
from scada.fanout.wsframes import (
    PLAIN,
    SHARED_DEFLATE,
    TEXT_DEFLATED,
    FrameSink,
    deflate_prefix,
    frame_header,
    stored_tail,
)

log = logging.getLogger(__name__)

ALL_TYPES = frozenset({"production_data", "alarm"})
CLOSE_TRY_AGAIN = 1013
HOUSEKEEPING_S = 1.0  # idle and slow clients are looked at this often
PROBE_SLICES = 10  # drop_slow looks at 1/PROBE_SLICES of the clients per tick

GroupKey = tuple[frozenset[str] | None, frozenset[str]]  # (lines or None for all, types)


def frame_prefix(type_: str, data: Any, timestamp: str | None = None) -> bytes:
    """Encoded frame without its seq: `{...,"seq":` — the caller appends `<seq>}`."""
    stamp = timestamp or iso_ms(time.time())
    return orjson.dumps({"type": type_, "timestamp": stamp, "data": data})[:-1] + b',"seq":'


@dataclass(eq=False, slots=True)
class Client:
    id: str
    sink: FrameSink
    role: str = "viewer"
    user: str = "anonymous"
    address: str = ""
    lines: frozenset[str] | None = None  # None: every line
    types: frozenset[str] = ALL_TYPES
    seq: int = 0
    last_write: float = field(default_factory=time.monotonic)  # not counting group fan-outs
    closed: bool = False
    snapshot_cursor: int = 0  # alarm cursor of the last snapshot sent (live events follow it)
    resuming: bool = False
    anonymous: bool = False
    session: str | None = None  # digest of the login session or token, to close it at logout
    expires: float | None = None  # monotonic deadline when the credentials run out

    @property
    def key(self) -> GroupKey:
        return (self.lines, self.types)

    def deliver(self, prefix: bytes) -> bool:
        """Append this client's seq to a shared prefix and write it."""
        self.seq += 1
        if not self.sink.write(prefix + b"%d}" % self.seq):
            return False
        self.last_write = time.monotonic()
        return True

    def send(self, type_: str, data: Any) -> bool:
        return self.deliver(frame_prefix(type_, data))

    def wants_line(self, line_id: str | None) -> bool:
        return line_id is None or self.lines is None or line_id in self.lines


@dataclass
class BroadcastStats(TickStats):
    """The delivery's counters, beside those of the tick that feeds it (shared with it)."""

    connections_total: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    slow_clients_dropped: int = 0


class Broadcaster:
    @classmethod
    def from_settings(cls, srv: ServerConfig) -> Broadcaster:
        return cls(
            max_buffer_bytes=srv.max_client_buffer_bytes,
            slow_client_timeout=srv.slow_client_timeout,
            heartbeat_interval=srv.heartbeat_interval_ms / 1000.0,
        )

    def __init__(
        self,
        *,
        max_buffer_bytes: int,
        slow_client_timeout: float,
        heartbeat_interval: float,
    ) -> None:
        self.max_buffer_bytes = max_buffer_bytes
        self.slow_client_timeout = slow_client_timeout
        self.heartbeat_interval = heartbeat_interval
        self.clients: dict[str, Client] = {}
        self.stats = BroadcastStats()
        self._ids = itertools.count(1)
        self._groups: dict[GroupKey, list[Client]] | None = None
        self._group_writes: dict[GroupKey, float] = {}  # last fan-out per subscription
        self._next_heartbeat_scan = 0.0
        self._probe_turn = 0

    def new_client_id(self) -> str:
        return f"c{next(self._ids)}"

    def add(self, client: Client) -> None:
        self.clients[client.id] = client
        self.stats.connections_total += 1
        self._groups = None

    def remove(self, client: Client) -> None:
        client.closed = True
        if self.clients.pop(client.id, None) is not None:
            self._groups = None

    def resubscribe(
        self, client: Client, lines: frozenset[str] | None, types: frozenset[str]
    ) -> None:
        client.lines, client.types = lines, types
        self._groups = None

    def groups(self) -> dict[GroupKey, list[Client]]:
        if self._groups is None:
            groups: dict[GroupKey, list[Client]] = {}
            for client in self.clients.values():
                groups.setdefault(client.key, []).append(client)
            self._groups = groups
        return self._groups

    # -- fan-out -------------------------------------------------------------------------

    def publish_alarms(self, events: list[dict[str, Any]], timestamp: str) -> None:
        """One `alarm` frame per event, in order, to every client that wants its line."""
        for event in events:
            line = event.get("production_line_id")
            prefix = frame_prefix("alarm", event, timestamp)
            for key, members in list(self.groups().items()):
                lines, types = key
                if "alarm" in types and (lines is None or line is None or line in lines):
                    self._fan_out(prefix, key, members)

    def publish_to_alarm_clients(self, type_: str, data: Any, timestamp: str) -> None:
        """One frame to every client subscribed to alarms, whatever its lines."""
        prefix = frame_prefix(type_, data, timestamp)
        for key, members in list(self.groups().items()):
            if "alarm" in key[1]:
                self._fan_out(prefix, key, members)

    def publish_production(self, records: list[dict[str, Any]], timestamp: str) -> None:
        if not records:
            return
        for key, members in list(self.groups().items()):
            lines, types = key
            if "production_data" not in types:
                continue
            subset = (
                records
                if lines is None
                else [r for r in records if r["production_line_id"] in lines]
            )
            if subset:
                self._fan_out(frame_prefix("production_data", subset, timestamp), key, members)

    def _fan_out(self, prefix: bytes, key: GroupKey, members: list[Client]) -> None:
        """The hot path: per client only the seq digits and one transport write.

        Frames (header + prefix) are cached per length of the seq tail, and the deflated
        prefix is made at most once per call, for every client that shares it. When each
        client last heard from us is kept per group (`_group_writes`), not per client.
        """
        heads: dict[int, bytes] = {}
        deflated: bytes | None = None
        deflated_heads: dict[int, bytes] = {}
        sent = nbytes = 0
        for client in members:
            sink = client.sink
            if client.closed or sink.dead:
                continue
            client.seq = seq = client.seq + 1
            tail = b"%d}" % seq
            if sink.framing == PLAIN:
                head = heads.get(len(tail))
                if head is None:
                    head = heads[len(tail)] = frame_header(len(prefix) + len(tail)) + prefix
                frame = head + tail
                sink.send(frame)  # the hot path: two attribute checks, one transport write
            elif sink.framing == SHARED_DEFLATE:
                if deflated is None:
                    deflated = deflate_prefix(prefix)
                body = stored_tail(tail)
                head = deflated_heads.get(len(body))
                if head is None:
                    size = len(deflated) + len(body)
                    head = deflated_heads[len(body)] = frame_header(size, TEXT_DEFLATED) + deflated
                frame = head + body
                if not sink.write_frame(frame):
                    continue
            else:
                frame = prefix + tail
                if not sink.write(frame):
                    continue
            sent += 1
            nbytes += len(frame)
        self._group_writes[key] = time.monotonic()
        self.stats.frames_sent += sent
        self.stats.bytes_sent += nbytes

    def after_tick(self, now: float) -> None:
        """The tick's housekeeping: drop clients too slow to keep up, heartbeat idle ones."""
        self.drop_slow(now)
        self.heartbeat_idle(now)

    def heartbeat_idle(self, now: float) -> None:
        """Idle connections (subscribed to nothing busy) still hear from us, for proxies."""
        if now < self._next_heartbeat_scan:
            return
        self._next_heartbeat_scan = now + HOUSEKEEPING_S
        groups = self.groups()
        writes = self._group_writes = {k: t for k, t in self._group_writes.items() if k in groups}
        for key, members in list(groups.items()):
            fanned = writes.get(key, 0.0)
            for client in members:
                if now - max(client.last_write, fanned) >= self.heartbeat_interval:
                    client.send("heartbeat", {})

    def drop_slow(self, now: float) -> list[Client]:
        """Close clients that hold too much unsent data or have taken nothing for too long.

        Each call samples one slice of the clients (every client once per HOUSEKEEPING_S at
        10 ticks a second), so the cost per tick stays flat however many are connected.
        """
        clients = list(self.clients.values())
        if not clients:
            return []
        self._probe_turn = (self._probe_turn + 1) % PROBE_SLICES
        dropped = []
        for client in clients[self._probe_turn :: PROBE_SLICES]:
            sink = client.sink
            sink.probe(now)
            buffered = sink.buffered()
            blocked = sink.blocked_for(now)
            if buffered > self.max_buffer_bytes or blocked > self.slow_client_timeout:
                reason = (
                    f"{buffered} bytes unsent"
                    if buffered > self.max_buffer_bytes
                    else f"socket blocked {blocked:.1f} s"
                )
                log.warning(
                    "client %s (%s) too slow: %s; closing with 1013",
                    client.id,
                    client.address,
                    reason,
                )
                sink.close(CLOSE_TRY_AGAIN, "slow client")
                self.remove(client)
                self.stats.slow_clients_dropped += 1
                dropped.append(client)
        return dropped

    def close_all(self, code: int, reason: str) -> None:
        for client in list(self.clients.values()):
            client.sink.close(code, reason)
            self.remove(client)

    def active(self) -> Iterable[Client]:
        return self.clients.values()

    def sink_kinds(self) -> dict[str, int]:
        """Clients per sink kind: `raw` (the fast path) or `asgi` (the fallback)."""
        return dict(Counter(client.sink.kind for client in self.clients.values()))

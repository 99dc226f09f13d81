"""The independent checker: after each fault it reads both ingest nodes' journals (SQLite,
read-only), the `alarms` stream and what every screen received, and counts what went wrong.

- **forked**: an id that names two different events: in the two journals (same journal
  epoch), in the stream against the active journal, or at a screen against the active journal.
- **lost**: an event committed in any journal (its `events`, set aside in `diverged_events`,
  or kept in `pending_events` for the record) that the active node's journal does not hold,
  under any id, once the cluster settled. An event is its (alarm, event, time, occurrence): a
  late event forwarded under a new id counts as kept.
- **missing / duplicated / out of order**: per screen, within each segment (screens.py).
- **takeover s**: the longest stretch with no ingest node serving (`/ready` 200).
- **two active s**: how long both ingest nodes answered `/ready` 200 at once.
- **no live data s**: the longest NO LIVE DATA spell any screen was shown.
- **token down**: an activation whose fencing token is not above every earlier one.

Counts are cumulative over a run; `Checker.check` returns what is new since the last check.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.chaos.harness import ChaosCluster, Sample
from tests.chaos.screens import Screens

EventKey = tuple[str, str, float, int]  # alarm, event, at (µs), occurrence


def event_key(record: dict[str, Any]) -> EventKey:
    return (
        str(record["alarm"]),
        str(record["event"]),
        round(float(record["at"]), 6),
        int(record["occurrence_id"]),
    )


@dataclass
class JournalView:
    epoch: str
    events: dict[int, EventKey]
    diverged: list[EventKey]

    @property
    def top(self) -> int:
        return max(self.events, default=0)


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        yield db


def read_journal(path: Path) -> JournalView | None:
    if not path.exists():
        return None
    with _read_only(path) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        epoch = f"{int(row[0]):016x}" if row else ""
        events = {
            int(i): event_key({**orjson.loads(body), "event_id": i})
            for i, body in db.execute("SELECT id, body FROM events")
        }
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        diverged = []
        for table in ("diverged_events", "pending_events"):  # before / after issue #19
            if table in tables:
                diverged += [
                    event_key(orjson.loads(body))
                    for (body,) in db.execute(f"SELECT body FROM {table}")
                ]
    return JournalView(epoch, events, diverged)


def read_stream(cluster: ChaosCluster) -> dict[int, tuple[str, EventKey]]:
    """id -> (epoch the entry was published in, event) of every `alarms` entry."""
    out: dict[int, tuple[str, EventKey]] = {}
    client = cluster.redis()
    try:
        last = "-"
        while True:
            entries = client.xrange("scada:alarms", min=last, max="+", count=5000)
            if last != "-":
                entries = entries[1:]
            if not entries:
                break
            for entry_id, fields in entries:
                number = int(entry_id.split(b"-")[0])
                record = orjson.loads(fields[b"e"])
                out[number] = (fields.get(b"h", b"").decode(), event_key(record))
            last = entries[-1][0].decode()
    finally:
        client.close()
    return out


@dataclass
class Row:
    fault: str
    forked: int = 0
    lost: int = 0
    missing: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    takeover_s: float = 0.0
    two_active_s: float = 0.0
    no_live_s: float = 0.0
    token_down: int = 0
    finished: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.forked == 0 and self.lost == 0 and self.finished


def both_active(samples: list[Sample], start: float, end: float) -> float:
    """Seconds in [start, end] during which both ingest nodes answered /ready 200."""
    total, prev = 0.0, None
    for s in samples:
        if s.at < start or s.at > end:
            continue
        if prev is not None and len(prev.active) > 1:
            total += s.at - prev.at
        prev = s
    return total


def longest_gap(samples: list[Sample], start: float, end: float) -> float:
    """The longest stretch in [start, end] during which no ingest node answered /ready 200."""
    longest, since = 0.0, None
    for s in samples:
        if s.at < start or s.at > end:
            continue
        if not s.active:
            since = s.at if since is None else since
        elif since is not None:
            longest, since = max(longest, s.at - since), None
    if since is not None:
        longest = max(longest, end - since)
    return longest


class Checker:
    def __init__(self, cluster: ChaosCluster, screens: Screens) -> None:
        self.cluster = cluster
        self.screens = screens
        self.forked: set[int] = set()
        self.lost: set[EventKey] = set()
        self.client_counts: dict[str, tuple[int, int, int]] = {}
        self.tokens_seen: list[int] = []
        self.samples_read = 0
        self.broken: str | None = None  # set when a fault left a cluster nothing repairs

    def journals(self, last: str) -> dict[str, JournalView]:
        """Every journal, `last` read last: the active node publishes before it commits, so
        the standby can hold an event the active journal commits a moment later; read after
        the others, the active journal holds everything up to their tops but that moment."""
        views = {}
        for node in sorted(("ingest-a", "ingest-b"), key=lambda n: n == last):
            view = read_journal(self.cluster.journal(node))
            if view is not None:
                views[node] = view
        return views

    def check(self, fault: str, started: float, ended: float, active: str) -> Row:
        row = Row(fault)
        views = self.journals(last=active)
        main = views[active]
        forks: set[tuple[str, int]] = set()
        for node, view in views.items():
            if node == active or view.epoch != main.epoch:
                if node != active:
                    row.notes.append(f"{node} journal epoch {view.epoch} != {main.epoch}")
                continue
            for i, key in view.events.items():
                if i in main.events and main.events[i] != key:
                    forks.add(("journal", i))
        for i, (epoch, key) in read_stream(self.cluster).items():
            if epoch.split("/")[0] == main.epoch and i in main.events and main.events[i] != key:
                forks.add(("stream", i))
        # the screens' thread goes on adding events: every look at theirs is through a copy
        for screen in self.screens.screens:
            for seg in list(screen.segments):
                if seg.epoch.split("/")[0] != main.epoch:
                    continue
                for i, (alarm, event) in list(seg.names.items()):
                    if i in main.events and main.events[i][:2] != (alarm, event):
                        forks.add(("screen", i))
        new_forks = {i for _, i in forks} - self.forked
        self.forked |= new_forks
        row.forked = len(new_forks)
        if new_forks:
            where = sorted({kind for kind, i in forks if i in new_forks})
            row.notes.append(f"forked ids {sorted(new_forks)[:10]} ({', '.join(where)})")

        kept = set(main.events.values())
        committed: set[EventKey] = set(main.diverged)
        for node, view in views.items():
            if node != active:
                # ids above the active journal's top: published, its commit still on the way
                committed |= {k for i, k in view.events.items() if i <= main.top}
                committed |= set(view.diverged)
        lost = committed - kept - self.lost
        self.lost |= lost
        row.lost = len(lost)
        if lost:
            row.notes.append(f"lost e.g. {sorted(lost)[:3]}")

        # per screen, against the active journal: ids above each segment's base up to its top
        missing = duplicated = out_of_order = 0
        for screen in self.screens.screens:
            m = d = o = 0
            for seg in list(screen.segments):
                d += seg.duplicated
                o += seg.out_of_order
                if seg.epoch.split("/")[0] == main.epoch:
                    seen, top = set(seg.seen), seg.top
                    m += sum(1 for i in main.events if seg.base < i <= top and i not in seen)
            before = self.client_counts.get(screen.name, (0, 0, 0))
            self.client_counts[screen.name] = (m, d, o)
            missing += max(m - before[0], 0)
            duplicated += d - before[1]
            out_of_order += o - before[2]
        row.missing, row.duplicated, row.out_of_order = missing, duplicated, out_of_order

        samples = self.cluster.samples
        row.takeover_s = round(longest_gap(samples, started, ended), 1)
        row.two_active_s = round(both_active(samples, started, ended), 1)
        spells = [
            b - a
            for s in self.screens.screens
            for a, b in list(s.stale_spells)
            if b >= started and a <= ended
        ]
        row.no_live_s = round(max(spells, default=0.0), 1)
        # fencing tokens: each activation's token (one not seen before) above all before it;
        # an old holder still showing its own token is counted in two_active_s, not here
        for s in samples[self.samples_read :]:
            for token in s.tokens.values():
                if token in self.tokens_seen:
                    continue
                if self.tokens_seen and token <= max(self.tokens_seen):
                    row.token_down += 1
                    row.notes.append(f"token {token} after {max(self.tokens_seen)}")
                self.tokens_seen.append(token)
        self.samples_read = len(samples)
        return row

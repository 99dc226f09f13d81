"""Run the chaos faults against one local cluster and print the table.

    python -m tests.chaos.run --rounds 3 [--fault NAME ...] [--dir DIR] [--screens 6]

Each round runs every fault once, in order; after each the cluster is left to recover (the
supervisor restarts what died) until it has settled: one ingest node serving, the other a
standby whose journal reached the active one's top, the stream at that top, both gateways
ready, every screen live with every event up to it. Then the checker counts. A fault whose
cluster does not settle within the deadline counts as a takeover that did not finish.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path

from tests.chaos.checker import Checker, Row
from tests.chaos.harness import ChaosCluster
from tests.chaos.nemesis import FAULTS, NemesisError
from tests.chaos.screens import Screens

SETTLE_DEADLINE = 150.0


def _top(path: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
    except sqlite3.Error:
        return -1


def _pending(path: Path) -> int:
    """Events a journal keeps for the record (issue #19: forwarded late), 0 without the table."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return int(db.execute("SELECT COUNT(*) FROM pending_events").fetchone()[0])
    except sqlite3.Error:
        return 0


def _epoch(path: Path) -> str:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    return f"{int(row[0]):016x}" if row else ""


def _stream_top(c: ChaosCluster) -> int:
    client = c.redis()
    try:
        last = client.xrevrange("scada:alarms", count=1)
        return int(last[0][0].split(b"-")[0]) if last else 0
    except Exception:
        return -1
    finally:
        client.close()


def settle(c: ChaosCluster, screens: Screens, notes: list[str]) -> str | None:
    """The active node once the cluster settled, or None at the deadline (with what was
    still not so added to `notes`)."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    why = ""
    while time.monotonic() < deadline:
        time.sleep(0.2)
        why = _unsettled(c, screens)
        if why.startswith("active:"):
            return why.split(":", 1)[1]
    notes.append(f"not settled: {why}")
    return None


def _unsettled(c: ChaosCluster, screens: Screens) -> str:
    """What is not settled yet, or `active:<node>` when everything is."""
    dead = [n for n in (*c.proxies, "gateway-1", "gateway-2", "redis") if not c.child(n).alive()]
    if dead:
        return f"not running: {', '.join(dead)}"
    active = c.active()
    if len(active) != 1:
        return f"serving: {active or 'none'}"
    node = active[0]
    other = next(n for n in c.proxies if n != node)
    health, body = c.http(other, "/ready")
    state = ((body or {}).get("cluster") or {}).get("state") if isinstance(body, dict) else None
    if state != "standby":
        return f"{other} state {state} (/ready {health}, /health {c.http(other, '/health')[0]})"
    if not all(c.http(g, "/ready")[0] == 200 for g in ("gateway-1", "gateway-2")):
        return "a gateway not ready"
    top = _top(c.journal(node))
    stream, behind = _stream_top(c), _top(c.journal(other))
    if top < 0 or stream < top or behind < top:
        return f"{node} journal at {top}, stream at {stream}, {other} journal at {behind}"
    pending = {n: _pending(c.journal(n)) for n in c.proxies}
    if any(pending.values()):
        return f"events pending for the record: {pending}"
    if not screens.settled(top, _epoch(c.journal(node))):
        return f"screens not all live and at {top}"
    return f"active:{node}"


def run(
    rounds: int,
    faults: Iterable[str],
    directory: Path,
    screens_count: int = 6,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    cluster = ChaosCluster(directory)
    rows: list[Row] = []
    cluster.start()
    screens = Screens(cluster.ws_url, screens_count)
    screens.start()
    try:
        checker = Checker(cluster, screens)
        notes: list[str] = []
        if settle(cluster, screens, notes) is None:
            raise RuntimeError(f"the cluster did not settle after its start: {notes}")
        for _ in range(rounds):
            for name in faults:
                rows.append(one(cluster, screens, checker, name))
                if on_row is not None:
                    on_row(rows[-1])
    finally:
        screens.stop()
        cluster.stop()
    return rows


def one(cluster: ChaosCluster, screens: Screens, checker: Checker, name: str) -> Row:
    if checker.broken:
        return Row(name, finished=False, notes=[f"not run: {checker.broken}"])
    notes: list[str] = []
    started = time.monotonic()
    try:
        what = FAULTS[name](cluster)
    except NemesisError as err:
        what = f"not run: {err}"
    active = settle(cluster, screens, notes)
    ended = time.monotonic()
    if active is None:
        row = Row(name, finished=False, notes=[what, *notes])
        now = cluster.active()
        if len(now) == 1:  # count what can be counted
            counted = checker.check(name, started, ended, now[0])
            counted.finished, counted.notes = False, row.notes + counted.notes
            row = counted
        if not _repair(cluster, screens, row):
            checker.broken = f"the cluster did not settle after {name}, nor after a repair"
        return row
    row = checker.check(name, started, ended, active)
    row.notes = [what, *notes, *row.notes]
    return row


def _repair(cluster: ChaosCluster, screens: Screens, row: Row) -> bool:
    """After a fault the cluster did not settle from: reseed a node that declared itself
    unfit (the operator's remedy), so the next fault meets a whole cluster again."""
    for node in cluster.proxies:
        _, body = cluster.http(node, "/ready")
        state = ((body or {}).get("cluster") or {}).get("state") if isinstance(body, dict) else None
        if state == "unfit":
            cluster.reseed(node)
            row.notes.append(f"{node} reseeded")
    notes: list[str] = []
    if settle(cluster, screens, notes) is None:
        row.notes.append(f"still not settled after the repair: {notes}")
        return False
    return True


HEADER = (
    "| fault | runs | forked ids | lost | missing | duplicated | out of order "
    "| takeover s (max) | two active s (max) | no live data s (max) | token down | finished |"
)


def table(rows: list[Row]) -> str:
    lines = [HEADER, "|" + "---|" * 12]
    order = list(dict.fromkeys(r.fault for r in rows))
    for fault in order:
        rs = [r for r in rows if r.fault == fault]
        lines.append(
            f"| {fault} | {len(rs)} | {sum(r.forked for r in rs)} | {sum(r.lost for r in rs)} "
            f"| {sum(r.missing for r in rs)} | {sum(r.duplicated for r in rs)} "
            f"| {sum(r.out_of_order for r in rs)} | {max(r.takeover_s for r in rs):.1f} "
            f"| {max(r.two_active_s for r in rs):.1f} "
            f"| {max(r.no_live_s for r in rs):.1f} | {sum(r.token_down for r in rs)} "
            f"| {sum(r.finished for r in rs)}/{len(rs)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--fault", action="append", choices=sorted(FAULTS), help="default: all")
    p.add_argument("--dir", help="cluster directory (default: a new temporary one)")
    p.add_argument("--screens", type=int, default=6)
    args = p.parse_args(argv)
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="scada-chaos-"))

    def show(row: Row) -> None:
        print(
            f"{row.fault}: forked {row.forked} lost {row.lost} missing {row.missing} "
            f"dup {row.duplicated} ooo {row.out_of_order} takeover {row.takeover_s} s "
            f"two-active {row.two_active_s} s "
            f"no-live {row.no_live_s} s token-down {row.token_down} "
            f"finished {row.finished} | {'; '.join(row.notes)}",
            flush=True,
        )

    print(f"chaos: cluster in {directory}", flush=True)
    rows = run(args.rounds, args.fault or list(FAULTS), directory, args.screens, show)
    print(table(rows))
    return 0 if all(r.clean for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

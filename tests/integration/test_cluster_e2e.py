"""The cluster end to end (issue #12 "done when"): real redis-server (AOF), two ingest nodes,
three gateways, and asyncio dashboard clients in this process. Alarm bursts come from the
simulator's fault API on the active ingest node (noise on the diameter gauge with tight
limits and no delays: raise/clear events every few ticks on each faulted line).

One cluster for the module; the tests run in file order and each leaves it usable for the
next: a killed gateway stays dead (the rest do not need it), a killed ingest node is started
again as the standby before the next takeover, Redis loses its data in the last test.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from scada.roles.ingest.alarmoutbox import decode_event
from tests.conftest import eventually, scaled
from tests.integration.cluster_clients import (
    FrameKey,
    Screen,
    Screens,
    frame_key,
    what_screens_showed,
)
from tests.integration.cluster_procs import PREFIX, Cluster, RoleProcess, running_cluster

TIGHT = {"hihi": 12.3, "hi": 12.05, "lo": 11.95, "lolo": 11.7, "deadband": 0.0}
OVERRIDES: dict[str, Any] = {
    "auth": {"anonymous_role": "engineer"},
    "alarms": {"require_comment": []},
    "line_defaults": {
        "tags": {"diameter": {"limits": {**TIGHT, "on_delay": 0.0, "off_delay": 0.0}}}
    },
}
BURST_LINES = ("1", "2", "3", "4")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    with running_cluster(directory, gateways=3, aof=True, overrides=OVERRIDES) as c:
        yield c


def bus(cluster: Cluster) -> redis.Redis:
    """The test's own look at Redis (its admin user: TIME is no role's command)."""
    return redis.Redis.from_url(cluster.redis.admin_url, socket_timeout=5)


def stream_ids(cluster: Cluster, after: int) -> list[int]:
    """Ids of the alarm events on the bus after `after`, in stream order."""
    entries: Any = bus(cluster).xrange(f"{PREFIX}:alarms", min=f"{after + 1}", max="+")
    return [int(entry.split(b"-")[0]) for entry, _ in entries]


def stream_top(cluster: Cluster) -> int:
    last: Any = bus(cluster).xrevrange(f"{PREFIX}:alarms", count=1)
    return int(last[0][0].split(b"-")[0]) if last else 0


def redis_ms(cluster: Cluster) -> int:
    seconds, micros = bus(cluster).time()
    return int(seconds) * 1000 + int(micros) // 1000


def published_frames(cluster: Cluster, start_ms: int, end_ms: int) -> list[FrameKey]:
    """The production frames the active node published between two Redis times."""
    entries: Any = bus(cluster).xrange(f"{PREFIX}:frames", min=str(start_ms), max=str(end_ms))
    keys = [frame_key(orjson.loads(fields[b"e"])["lines"]) for _, fields in entries]
    return [k for k in keys if k]


def inject(node: RoleProcess, body: dict[str, Any]) -> int:
    r = httpx.post(f"{node.http}/api/simulator/faults", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def burst(node: RoleProcess, seconds: float, lines: tuple[str, ...] = BURST_LINES) -> set[int]:
    """Gauge noise on `lines` for `seconds` (ends by itself): a stream of raise/clear events.
    Returns the faults' ids."""
    body = {"kind": "noise_burst", "tag": "diameter", "gain": 50.0, "duration": seconds}
    return {inject(node, {**body, "line": line}) for line in lines}


def faults_over(node: RoleProcess, ids: set[int]) -> bool:
    """None of the faults `ids` is active on `node` any more."""
    r = httpx.get(f"{node.http}/api/simulator/faults", timeout=5)
    return r.status_code == 200 and not ids & {f["id"] for f in r.json()["faults"]}


def screens_on(gateways: list[RoleProcess], per_gateway: int, tag: str) -> list[Screen]:
    """`per_gateway` clients on each gateway; each falls back to the others in turn."""
    urls = [g.ws for g in gateways]
    return [
        Screen(f"{tag}{g}-{i}", urls[g:] + urls[:g])
        for g in range(len(gateways))
        for i in range(per_gateway)
    ]


def live_gateways(cluster: Cluster) -> list[RoleProcess]:
    return [g for g in cluster.gateways if g.running()]


def check_every_event_once(screens: list[Screen], since: int, top: int) -> list[int]:
    """Every client got each event after `since` up to `top` exactly once, in order."""
    expected = list(range(since + 1, top + 1))
    for screen in screens:
        got = [e for e in screen.counted(since) if e <= top]
        missing = len(set(expected) - set(got))
        duplicated = len(got) - len(set(got))
        assert (missing, duplicated) == (0, 0), (
            f"{screen.name}: {missing} missing, {duplicated} duplicated"
        )
        assert got == expected, f"{screen.name}: out of order"
    return expected


def journal_count(node: RoleProcess, sql: str, *args: Any) -> int:
    path = node.data_dir / "journal.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return int(db.execute(sql, args).fetchone()[0])


def test_three_gateways_hundred_clients_each_same_alarms_every_frame(cluster: Cluster) -> None:
    active = cluster.active()
    gateways = live_gateways(cluster)
    assert len(gateways) == 3

    async def main() -> None:
        screens = screens_on(gateways, 100, "fan")
        async with Screens(screens) as group:
            await group.connected(timeout=scaled(60))
            start_ms, since = redis_ms(cluster), stream_top(cluster)
            faults = burst(active, 2.0)
            await group.until(lambda: faults_over(active, faults), scaled(30), "burst over")
            top = stream_top(cluster)
            end_ms = redis_ms(cluster)
            window = published_frames(cluster, start_ms, end_ms)
            last = window[-1]
            await group.until(
                lambda: all(s.cursor >= top and last in s.frames[-30:] for s in screens),
                scaled(20),
                "every client at the stream's top and the window's last frame",
            )
        events = check_every_event_once(screens, since, top)
        rate = len(window) / ((end_ms - start_ms) / 1000)
        for screen in screens:
            got = set(screen.frames)
            missing = [k for k in window if k not in got]
            assert not missing, f"{screen.name}: {len(missing)} of {len(window)} frames missing"
            in_window = [k for k in screen.frames if k in set(window)]
            assert len(in_window) == len(window), f"{screen.name}: a frame twice"
        print(
            f"\n3 gateways x 100 clients: {len(events)} alarm events ({since + 1}..{top}), "
            f"each client all of them in order; {len(window)} frames published in "
            f"{(end_ms - start_ms) / 1000:.1f} s ({rate:.1f}/s), each client got all of them once"
        )
        assert events, "the burst raised no alarm events"

    asyncio.run(main())


def test_gateway_killed_mid_burst_its_clients_resume_on_another(cluster: Cluster) -> None:
    active = cluster.active()
    victim, *others = live_gateways(cluster)

    async def main() -> None:
        moving = screens_on([victim, *others], 20, "move")[:20]  # all on the victim first
        staying = [Screen(f"stay-{i}", [others[0].ws]) for i in range(10)]
        screens = [*moving, *staying]
        async with Screens(screens) as group:
            await group.connected()
            since = stream_top(cluster)
            faults = burst(active, 3.0)
            await group.got(since, 20)
            victim.kill()
            killed_at = stream_top(cluster)
            await group.until(lambda: faults_over(active, faults), scaled(30), "burst over")
            top = stream_top(cluster)
            await group.reached(top)
        events = check_every_event_once(screens, since, top)
        for screen in moving:
            assert len(screen.connections) >= 2 and screen.connections[0] == victim.ws
            # Each new connection starts with a snapshot; the resume's own carries `recovered`.
            resumed = [s.get("recovered") for s in screen.snapshots if "recovered" in s]
            assert resumed == [True] * (len(screen.connections) - 1), resumed
        print(
            f"\ngateway {victim.node} killed at event {killed_at}: {len(moving)} clients resumed "
            f"on {others[0].node}/{others[1].node}; {len(events)} events, "
            "0 missing, 0 duplicated for each of the 30 clients"
        )

    asyncio.run(main())


def test_ack_through_gateway_b_during_failover_is_journaled_once(cluster: Cluster) -> None:
    active = cluster.active()
    standby = cluster.standby()
    gateway_b = live_gateways(cluster)[-1]

    async def main() -> tuple[int, dict[str, Any], dict[str, Any], float]:
        screen = Screen("operator", [gateway_b.ws])
        async with Screens([screen]) as group:
            await group.connected()
            fault = {"line": "2", "kind": "step", "tag": "diameter", "offset": 0.15}
            inject(active, fault)
            await group.until(
                lambda: any(
                    a["alarm"] == "line2.diameter.hi" and a["event"] == "raised"
                    for a in screen.alarms
                ),
                scaled(20),
                "line2.diameter.hi raised",
            )
            occurrence = next(a["id"] for a in screen.alarms if a["alarm"] == "line2.diameter.hi")
            active.kill()
            t0 = time.monotonic()
            ack = {"alarm_id": occurrence, "comment": "during failover"}
            first = await screen.request("ack", ack, "ack-1", timeout=scaled(30))
            took = time.monotonic() - t0
            retry = await screen.request("ack", ack, "ack-2", timeout=scaled(30))
            return occurrence, first, retry, took

    occurrence, first, retry, took = asyncio.run(main())
    assert first["ok"] is True, first
    error = retry.get("error")
    code = error.get("code") if isinstance(error, dict) else error
    assert retry["ok"] is False and code == "already_acknowledged", retry
    assert cluster.active() is standby
    sql = "SELECT count(*) FROM events WHERE occurrence_id = ? AND event = 'acknowledged'"
    in_journal = journal_count(standby, sql, occurrence)
    entries: Any = bus(cluster).xrange(f"{PREFIX}:alarms")
    on_bus = [
        e
        for _, fields in entries
        if (e := decode_event(fields[b"e"])).occurrence_id == occurrence
        and e.event == "acknowledged"
    ]
    print(
        f"\nack of occurrence {occurrence} sent through {gateway_b.node} right after kill -9 "
        f"of {active.node}: answered ok after {took:.1f} s by {standby.node}; "
        f"journaled {in_journal}x, on the bus {len(on_bus)}x; retry: {code}"
    )
    assert in_journal == 1 and len(on_bus) == 1
    active.restart()  # back as the standby for the next takeover
    eventually(lambda: cluster.standby() is active, timeout=30)


def test_active_ingest_killed_mid_burst_standby_continues_the_ids(cluster: Cluster) -> None:
    active = cluster.active()
    standby = cluster.standby()
    r = bus(cluster)

    async def main() -> tuple[int, int, int, float, str]:
        screens = screens_on(live_gateways(cluster), 15, "fail")
        async with Screens(screens) as group:
            await group.connected()
            since = stream_top(cluster)
            burst(active, 10.0)
            await group.got(since, 20)
            lease = r.get(f"{PREFIX}:lease")
            active.kill()
            t0 = time.monotonic()
            await group.until(
                lambda: r.get(f"{PREFIX}:lease") not in (None, lease), scaled(10), "takeover"
            )
            takeover = time.monotonic() - t0
            at_takeover = stream_top(cluster)
            eventually(standby.is_active, timeout=10)
            inject(standby, {"line": "3", "kind": "step", "tag": "diameter", "offset": 0.15})
            await group.until(
                lambda: stream_top(cluster) > at_takeover, scaled(20), "events after takeover"
            )
            top = stream_top(cluster)
            await group.reached(top)
            await group.live()
        check_every_event_once(screens, since, top)
        return since, at_takeover, top, takeover, what_screens_showed(screens)

    since, at_takeover, top, takeover, shown = asyncio.run(main())
    assert [i for i in stream_ids(cluster, since) if i <= top] == list(range(since + 1, top + 1))
    # What the killed node had committed: published before it died (an event journaled in
    # the instant between its commit and its publish would be set aside when it rejoins).
    killed_journal = journal_count(active, "SELECT max(id) FROM events")
    print(
        f"\nactive {active.node} killed mid-burst (its journal ends at {killed_journal}, the bus "
        f"at {at_takeover}): {standby.node} held the lease "
        f"{takeover:.1f} s later; events {since + 1}..{at_takeover} before, "
        f"{at_takeover + 1}..{top} after (ids continue), every client got each once; {shown}"
    )
    assert takeover <= 5.0


def test_redis_with_aof_killed_and_restarted_no_gap(cluster: Cluster) -> None:
    active = cluster.active()

    async def main() -> None:
        screens = screens_on(live_gateways(cluster), 10, "aof")
        async with Screens(screens) as group:
            await group.connected()
            since = stream_top(cluster)
            epoch = screens[0].epoch
            faults = burst(active, 4.0)
            await group.got(since, 10)
            cluster.redis.restart()  # kill -9, start on the same port and AOF
            await group.until(lambda: faults_over(active, faults), scaled(30), "burst over")
            cluster.wait_gateways_live(timeout=20)
            top = stream_top(cluster)
            await group.reached(top)
            await group.live()
        events = check_every_event_once(screens, since, top)
        assert all(s.epoch == epoch for s in screens)
        assert not [s for s in screens if any(x.get("recovered") is False for x in s.snapshots)]
        print(
            f"\nRedis (AOF) kill -9 and restart mid-burst: {len(events)} events, 0 gaps, "
            f"same epoch; {what_screens_showed(screens)}"
        )

    asyncio.run(main())


def test_redis_restarted_without_persistence_new_epoch_fresh_snapshot(cluster: Cluster) -> None:
    async def main() -> None:
        screens = screens_on(live_gateways(cluster), 10, "lost")
        async with Screens(screens) as group:
            await group.connected()
            old_epoch, old_top = screens[0].epoch, stream_top(cluster)
            cluster.redis.kill()
            for path in cluster.redis.directory.glob("appendonly*"):
                _remove(path)
            cluster.redis.aof = False
            cluster.redis.start()
            await group.until(
                lambda: all(s.epoch not in (None, old_epoch) for s in screens),
                scaled(30),
                "a snapshot of the new epoch",
            )
            # The lease went with the data: whichever node holds it now makes the next events.
            inject(
                cluster.active(), {"line": "4", "kind": "step", "tag": "diameter", "offset": 0.15}
            )
            await group.until(lambda: stream_top(cluster) > old_top, scaled(20), "new events")
            top = stream_top(cluster)
            await group.reached(top)
            await group.live()
        for screen in screens:
            fresh = [s for s in screen.snapshots if s.get("epoch") != old_epoch]
            assert fresh and fresh[0].get("recovered") is False, fresh[:1]
            cut = screen.log.index(("snapshot", int(fresh[0]["alarm_cursor"])))
            before = [i for kind, i in screen.log[:cut] if kind == "alarm"]
            after = [i for kind, i in screen.log[cut:] if kind == "alarm"]
            assert all(i <= old_top for i in before)
            assert after == list(range(int(fresh[0]["alarm_cursor"]) + 1, top + 1))
        print(
            f"\nRedis restarted without its data: {len(screens)} clients got recovered:false and "
            f"a snapshot of the new epoch; no event of the old epoch after it; "
            f"{what_screens_showed(screens)}"
        )

    asyncio.run(main())


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    else:
        path.unlink()

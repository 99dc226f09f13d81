"""The standby's historian records the active node's frames: after `kill -9` of the active
node the new one's /api/history covers the old one's active spell with what it published.

Real redis-server, two real `scada serve --role ingest` processes (simulated plant).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from scada.bus.conn import stream_entries
from scada.bus.publish import PAYLOAD
from scada.core.timefmt import iso_ms, parse_time
from tests.conftest import OPEN_PLANT, eventually
from tests.integration.cluster_procs import PREFIX, RoleProcess, running_cluster

LINE, TAG = "1", "diameter"
RES_MS = 100  # [server] batch_interval_ms: the historian's grid
FOLLOWING = "historian: recording the active node's frames"


def published(redis_url: str) -> list[tuple[int, float | None]]:
    """(ts ms, line1.diameter as the frame left it) of every frame the stream holds."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        reply: Any = client.xread({f"{PREFIX}:frames": "0"}, count=100_000)
    finally:
        client.close()
    out: list[tuple[int, float | None]] = []
    latest: float | None = None
    for _, entries in stream_entries(reply):
        for _, fields in entries:
            frame = orjson.loads(fields[PAYLOAD])
            for record in frame["lines"]:
                if record["production_line_id"] == LINE:
                    latest = record[TAG]
            out.append((round(parse_time(frame["ts"]) * 1000), latest))
    return out


def history(node: RoleProcess, from_ms: int) -> tuple[list[int], list[float | None]]:
    r = httpx.get(
        f"{node.http}/api/history",
        params={"tags": f"line{LINE}.{TAG}", "from": iso_ms(from_ms / 1000), "points": 10_000},
        timeout=10,
    )
    r.raise_for_status()
    doc = r.json()
    assert doc["tier"] == "raw", doc
    series = doc["series"][0]
    return [int(t) for t in series["t"]], series["last"]


def own_rows(node: RoleProcess, from_ms: int, after_ms: int) -> int:
    t, values = history(node, from_ms)
    return sum(tt > after_ms and v is not None for tt, v in zip(t, values, strict=True))


def history_metrics(node: RoleProcess) -> dict[str, float]:
    text = httpx.get(f"{node.http}/metrics", timeout=10).text
    pairs = (ln.split() for ln in text.splitlines() if ln.startswith("scada_cluster_history_"))
    return {name: float(value) for name, value in pairs}


def grid(t_ms: int) -> int:
    return (t_ms + RES_MS // 2) // RES_MS * RES_MS


def test_the_new_active_node_has_the_history_of_the_old_ones_active_spell(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path, ingests=2, gateways=0, overrides=OPEN_PLANT) as cluster:
        a, b = cluster.active(), cluster.standby()
        eventually(lambda: FOLLOWING in b.log(), timeout=30)
        following_ms = round(time.time() * 1000)
        # A's active spell, as B records it: 4 s of frames after B was following.
        eventually(
            lambda: sum(t > following_ms for t, _ in published(cluster.redis.url)) >= 40,
            timeout=30,
        )
        a.kill()  # kill -9
        frames = [(t, v) for t, v in published(cluster.redis.url) if t > following_ms]
        assert cluster.active(timeout=30) is b
        last_a = frames[-1][0]
        # B's own ticks go on after the takeover (its first ones bad: devices connecting).
        eventually(lambda: own_rows(b, following_ms, last_a) >= 10, timeout=30)
        t, values = history(b, following_ms)
        recorded = history_metrics(b)
        # A deposed node follows again: A rejoins, B is paused past its lease, A takes over,
        # B wakes, stands by and records A's frames.
        a.start()
        b.pause()
        eventually(a.is_active, timeout=30)
        b.resume()
        eventually(lambda: history_metrics(b)["scada_cluster_history_following"] == 1, 30)
        before = history_metrics(b)["scada_cluster_history_frames_recorded_total"]
        eventually(
            lambda: history_metrics(b)["scada_cluster_history_frames_recorded_total"] > before,
            timeout=30,
        )

    assert recorded["scada_cluster_history_following"] == 0  # B records its own ticks
    assert recorded["scada_cluster_history_frames_recorded_total"] >= len(frames), recorded
    expected = [v for _, v in frames]
    assert None not in expected, "the simulated diameter is always good"
    # Every frame A published is in B's history, in order, as published (float32 storage):
    # found as one run of rows near the first frame's grid slot (a tick late under load puts
    # a frame one slot off the rounding of its timestamp).
    want = np.array(expected, dtype=np.float32)
    near = t.index(min(t, key=lambda tt: abs(tt - grid(frames[0][0]))))
    starts = [
        s
        for s in range(max(near - 3, 0), near + 4)
        if len(values[s : s + len(frames)]) == len(frames)
        and None not in values[s : s + len(frames)]
        and np.array_equal(np.array(values[s : s + len(frames)], dtype=np.float32), want)
    ]
    assert starts, (values[max(near - 3, 0) : near + len(frames) + 3], expected)
    start = starts[0]
    spell_t = t[start : start + len(frames)]
    assert spell_t[-1] >= grid(last_a)
    # The only hole is the takeover: from A's last frame to B's first good own row.
    after = list(zip(t[start + len(frames) :], values[start + len(frames) :], strict=True))
    holes = [(tt, v) for tt, v in after if v is None]
    own = [(tt, v) for tt, v in after if v is not None]
    assert all(tt <= own[0][0] for tt, _ in holes), holes
    assert all(np.diff([tt for tt, _ in own]) <= 3 * RES_MS), "no hole after B's first row"

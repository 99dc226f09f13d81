"""`scada bench` on a real server with a few clients: the report matches what was received."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from websockets.asyncio.client import connect

from scada.tools.bench.fanoutbench import measure
from scada.tools.bench.servers import ServerUnderTest


def test_small_run_reports_what_the_clients_received() -> None:
    r = measure(ServerUnderTest("scada"), clients=6, seconds=3.0, workers=2)
    assert r.connected == 6
    # every client received frames over the window, and the summary adds up to what they got
    # (how many per second is the bench's figure to print, not a test's to assert)
    assert 0 < r.rate_min <= r.rate_mean <= r.rate_max
    assert r.frames == round(r.rate_mean * r.seconds * r.connected)
    assert r.latency_ms_p50 is not None and r.latency_ms_p99 is not None
    assert 0 <= r.latency_ms_p50 <= r.latency_ms_p99 <= (r.latency_ms_max or 0)
    assert r.seq_gaps == 0 and r.closed_by_server == 0
    assert r.cpu_us_per_frame is not None and r.cpu_us_per_frame > 0
    assert r.bytes_per_frame is not None and r.bytes_per_frame > 500
    assert r.rss_mb > 10
    assert r.tick_ms_p50 is not None


def test_cli_json_schema() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "scada",
            "bench",
            "--clients",
            "4",
            "--seconds",
            "2",
            "--targets",
            "bare",
            "--json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["clients"] == 4
    assert doc["bare_reference"].startswith("picows ")  # the floor is the fastest we know
    bare = doc["results"]["bare"]
    for key in (
        "rate_min",
        "rate_mean",
        "latency_ms_p50",
        "latency_ms_p99",
        "cpu_us_per_frame",
        "rss_kb_per_connection",
        "frames",
        "bytes_per_frame",
    ):
        assert key in bare
    assert bare["frames"] > 0


def test_shared_deflate_frames_decode_in_a_standard_client() -> None:
    server = ServerUnderTest("scada", compression="shared")
    server.start()
    try:

        async def read() -> list[dict[str, object]]:
            async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
                ext = ws.response.headers.get("Sec-WebSocket-Extensions", "") if ws.response else ""
                assert "server_no_context_takeover" in ext
                return [json.loads(await ws.recv()) for _ in range(8)]

        frames = asyncio.run(read())
        assert [f["seq"] for f in frames] == list(range(1, 9))
        assert any(f["type"] == "production_data" for f in frames)
    finally:
        server.stop()
    time.sleep(0.1)


def test_churn_rounds_report_memory_and_growth_sites() -> None:
    from scada.tools.bench.churn import render, run_churn

    doc = run_churn(clients=4, rounds=3).as_dict()
    assert [r["failed"] for r in doc["rounds"]] == [0, 0, 0]
    assert all(r["rss_mb"] > 10 and r["traced_mb"] > 0 for r in doc["rounds"])
    assert doc["top_growth"]  # round 2 against the last, by allocation site
    assert "round" in render(doc)


def test_idle_memory_names_what_a_connection_holds() -> None:
    import argparse

    from scada.tools.bench import idle

    args = argparse.Namespace(clients=20, targets="bare", config=None)
    doc = idle.run(args, None)
    assert doc["rss"]["bare"]["connected"] == 20
    assert doc["rss"]["bare"]["rss_mb"] > 10
    traced = doc["traced"]
    assert traced["connected"] == 20
    assert traced["bytes_per_connection"] > 0 and traced["top_sites"]
    objects = dict(traced["objects_per_connection"])
    assert objects.get("ScadaWebSocketProtocol") == 1.0 and objects.get("Client") == 1.0
    # Detached after the handshake: no asyncio task or ASGI scope per idle connection.
    assert "Task" not in objects and "Context" not in objects
    assert "Python memory per connection" in idle.render(doc)

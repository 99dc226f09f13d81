"""The bench's own measurement: frame parsing, stall-free deflate splicing, and the summary."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from scada.fanout.broadcaster import frame_prefix
from scada.fanout.wsframes import deflate_prefix, frame_header, frame_payload, stored_tail
from scada.tools.bench.fanoutbench import summarize
from scada.tools.bench.load import frame_seq, frame_stamp, stamp_epoch


def test_stamp_and_seq_found_without_parsing() -> None:
    payload = frame_prefix("production_data", [{"a": 1}], "2026-11-22T10:00:00.100Z") + b"42}"
    assert frame_stamp(payload) == b"2026-11-22T10:00:00.100Z"
    assert frame_seq(payload) == 42
    assert stamp_epoch(b"2026-11-22T10:00:00.100Z") == pytest.approx(1795341600.1)
    # json.dumps spacing (the naive reference) parses the same way
    spaced = b'{"type": "production_data", "timestamp": "2026-11-22T10:00:00.100Z", "seq": 7}'
    assert frame_stamp(spaced) == b"2026-11-22T10:00:00.100Z"
    assert frame_seq(spaced) == 7


def test_frame_header_round_trip() -> None:
    for n in (5, 125, 126, 65535, 65536):
        body = b"x" * n
        assert frame_payload(frame_header(n) + body) == body


def test_shared_deflate_prefix_with_per_client_tails_inflates() -> None:
    prefix = frame_prefix("production_data", [{"line": i, "v": i * 1.5} for i in range(50)])
    shared = deflate_prefix(prefix)
    inflater = zlib.decompressobj(wbits=-15)  # a client keeps one across messages
    for seq in (1, 2, 10, 12345):
        message = shared + stored_tail(b"%d}" % seq)
        assert inflater.decompress(message + b"\x00\x00\xff\xff") == prefix + b"%d}" % seq
    assert len(shared) < len(prefix) / 2


def test_summary_is_consistent_with_what_was_received() -> None:
    frames = [100, 100, 98, 100]
    lat = np.array([0.002, 0.004, 0.010, 0.050])
    r = summarize("scada", 4, 10.0, frames, lat, wire_bytes=398 * 2000, cpu_s=1.99)
    assert r.frames == 398
    assert r.rate_min == pytest.approx(9.8)
    assert r.rate_mean == pytest.approx(9.95)
    assert r.clients_below_9_9 == 1
    assert r.latency_ms_p50 is not None and r.latency_ms_p99 is not None
    assert r.latency_ms_p50 <= r.latency_ms_p99 <= (r.latency_ms_max or 0)
    assert r.latency_ms_max == pytest.approx(50.0)
    assert r.cpu_us_per_frame == pytest.approx(1.99 / 398 * 1e6)
    assert r.bytes_per_frame == pytest.approx(2000)

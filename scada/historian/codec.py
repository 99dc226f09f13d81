"""One chunk of one tag as bytes: sample slots, qualities and float32 values, compressed.

Layout of a chunk blob (all little-endian):
    header  u8 version, u16 resolution_ms, u16 count
    zlib(   u16 slot deltas (slot = ms since the chunk start // resolution)
            u8  quality codes (0 good .. 3 bad; bit 7 set: samples were missing before this one)
            4 byte planes of the zigzagged int32 deltas of the float32 bit patterns )
Slowly changing float32 signals have long runs of equal high bytes once their bit patterns are
delta-coded and split into byte planes; zlib then stores the simulator's signals in about
2 bytes per value (docs/historian.md has the measurements).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

VERSION = 1
_HEADER = struct.Struct("<BHH")
GAP_FLAG = 0x80  # on a quality code: samples were missing right before this one
QUALITY_MASK = 0x7F
GOOD = 0
ZLIB_LEVEL = 1


@dataclass(frozen=True, slots=True)
class Samples:
    """Samples of one tag, oldest first."""

    t: np.ndarray  # int64 epoch ms
    v: np.ndarray  # float32
    q: np.ndarray  # uint8 codes, GAP_FLAG may be set

    def __len__(self) -> int:
        return len(self.t)


def encode(start_ms: int, resolution_ms: int, s: Samples) -> bytes:
    slots = (s.t - start_ms) // resolution_ms
    deltas = np.diff(slots, prepend=0).astype(np.uint16)
    bits = s.v.astype(np.float32).view(np.int32).astype(np.int64)
    d = np.diff(bits, prepend=0).astype(np.int32)  # wraps: decoding wraps back
    zig = ((d << 1) ^ (d >> 31)).view(np.uint32)
    planes = zig.view(np.uint8).reshape(-1, 4).T
    body = deltas.tobytes() + s.q.astype(np.uint8).tobytes() + planes.tobytes()
    return _HEADER.pack(VERSION, resolution_ms, len(s)) + zlib.compress(body, ZLIB_LEVEL)


def decode(start_ms: int, blob: bytes) -> Samples:
    version, resolution, n = _HEADER.unpack_from(blob)
    if version != VERSION:
        raise ValueError(f"unknown chunk version {version}")
    body = zlib.decompress(blob[_HEADER.size :])
    deltas = np.frombuffer(body, np.uint16, n)
    q = np.frombuffer(body, np.uint8, n, offset=2 * n)
    planes = np.frombuffer(body, np.uint8, 4 * n, offset=3 * n).reshape(4, n)
    zig = np.ascontiguousarray(planes.T).view(np.uint32).reshape(n)
    d = (zig >> 1).astype(np.int64) ^ -(zig & 1).astype(np.int64)
    bits = np.cumsum(d).astype(np.int64).astype(np.uint32).view(np.int32)
    t = start_ms + np.cumsum(deltas.astype(np.int64)) * resolution
    return Samples(t, bits.view(np.float32).copy(), q.copy())


def concat(parts: list[Samples]) -> Samples:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return Samples(np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.uint8))
    return Samples(
        np.concatenate([p.t for p in parts]),
        np.concatenate([p.v for p in parts]),
        np.concatenate([p.q for p in parts]),
    )


@dataclass(frozen=True, slots=True)
class Aggregates:
    """Per-tag aggregates of one period over the good samples (arrays over tags)."""

    n: np.ndarray  # samples
    ngood: np.ndarray
    vmin: np.ndarray  # NaN where ngood == 0
    vmax: np.ndarray
    vsum: np.ndarray
    vfirst: np.ndarray
    vlast: np.ndarray
    q: np.ndarray  # worst quality code seen (without the gap flag)


def aggregate(values: np.ndarray, quality: np.ndarray) -> Aggregates:
    """Aggregates of a [samples, tags] block (all samples present)."""
    q = quality & QUALITY_MASK
    good = (q == GOOD) & np.isfinite(values)
    v = values.astype(np.float64)
    n = np.full(values.shape[1], values.shape[0], dtype=np.int64)
    ngood = good.sum(axis=0)
    with np.errstate(invalid="ignore"):
        vmin = np.where(good, v, np.inf).min(axis=0)
        vmax = np.where(good, v, -np.inf).max(axis=0)
    vsum = np.where(good, v, 0.0).sum(axis=0)
    rows = np.arange(values.shape[0])[:, None]
    first_i = np.where(good, rows, values.shape[0]).min(axis=0)
    last_i = np.where(good, rows, -1).max(axis=0)
    cols = np.arange(values.shape[1])
    none = ngood == 0
    vfirst = np.where(none, np.nan, v[np.minimum(first_i, values.shape[0] - 1), cols])
    vlast = np.where(none, np.nan, v[np.maximum(last_i, 0), cols])
    vmin[none] = np.nan
    vmax[none] = np.nan
    worst = q.max(axis=0).astype(np.int64) if values.shape[0] else np.zeros_like(n)
    return Aggregates(n, ngood, vmin, vmax, vsum, vfirst, vlast, worst)


def encode_block(
    start_ms: int, resolution_ms: int, t: np.ndarray, values: np.ndarray, quality: np.ndarray
) -> list[bytes]:
    """`encode` for every column of a [samples, tags] block, sharing the vectorised work."""
    n = len(t)
    slots = (t - start_ms) // resolution_ms
    deltas = np.diff(slots, prepend=0).astype(np.uint16).tobytes()
    bits = values.astype(np.float32).view(np.int32).astype(np.int64)
    d = np.diff(bits, axis=0, prepend=0).astype(np.int32)
    zig = np.ascontiguousarray(((d << 1) ^ (d >> 31)).view(np.uint32).T)  # [tags, samples]
    planes = np.ascontiguousarray(zig.view(np.uint8).reshape(zig.shape[0], n, 4).transpose(0, 2, 1))
    qt = np.ascontiguousarray(quality.astype(np.uint8).T)
    header = _HEADER.pack(VERSION, resolution_ms, n)
    return [
        header + zlib.compress(deltas + qt[j].tobytes() + planes[j].tobytes(), ZLIB_LEVEL)
        for j in range(values.shape[1])
    ]

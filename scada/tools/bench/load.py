"""Load generator: many WebSocket clients per worker process, on raw asyncio protocols.

A client is an `asyncio.Protocol` with a hand-written HTTP upgrade and a minimal frame
parser: thousands of them cost far less CPU than the websockets library would. Each
`production_data` frame is counted and its latency taken from the frame's own `timestamp`
(server clock) to its receipt (same box, same clock). Only frames received inside the
measurement window [start, end) count, so every client is judged over the same seconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import os
import resource
import socket
import struct
import time
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, cast

DEFLATE_TAIL = b"\x00\x00\xff\xff"
TYPE_PRODUCTION = b"production_data"
HANDSHAKE_TIMEOUT_S = 30.0
CONNECT_PHASE_S = 90.0  # clients not connected by then are left out (and reported)


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted`; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


_STAMPS: dict[bytes, float] = {}


def stamp_epoch(stamp: bytes) -> float:
    """`2026-11-22T10:00:00.100Z` → epoch seconds; cached, every client sees the same stamps."""
    value = _STAMPS.get(stamp)
    if value is None:
        if len(_STAMPS) > 10_000:
            _STAMPS.clear()
        text = stamp.decode().replace("Z", "+00:00")
        value = _STAMPS[stamp] = datetime.fromisoformat(text).timestamp()
    return value


def frame_stamp(payload: bytes) -> bytes | None:
    """The envelope's `timestamp` value, found without parsing the JSON."""
    i = payload.find(b'"timestamp"', 0, 96)
    if i < 0:
        return None
    j = payload.find(b'"', i + 12)
    return payload[j + 1 : j + 25] if j > 0 else None


def frame_seq(payload: bytes) -> int | None:
    """`seq` is the last key of every server frame: `...,"seq":42}`."""
    i = payload.rfind(b":", len(payload) - 24)
    try:
        return int(payload[i + 1 : -1])
    except ValueError:
        return None


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask); only used for small control frames and requests."""
    mask = os.urandom(4)
    n = len(payload)
    head = (
        bytes((0x80 | opcode, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 254, n)
    )
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


@dataclass
class Window:
    """The measurement window, in wall-clock seconds, shared by every client of a worker."""

    start: float = float("inf")
    end: float = float("inf")
    latencies: array[float] = field(default_factory=lambda: array("d"))


class BenchClient(asyncio.Protocol):
    def __init__(self, host: str, path: str, window: Window, *, deflate: bool = False) -> None:
        self.host, self.path, self.window, self.offer_deflate = host, path, window, deflate
        self.transport: asyncio.Transport | None = None
        self.upgraded = asyncio.get_running_loop().create_future()
        # The opener may stop waiting (timeout); mark a late failure as seen, not as lost.
        self.upgraded.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.closed = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.handshaken = False
        self.inflate: Any = None  # zlib decompressobj when permessage-deflate is on
        self.frames = 0  # production_data frames inside the window
        self.total = 0  # every frame received
        self.wire_bytes = 0  # bytes of production_data frames (header + payload) in the window
        self.gaps = 0  # seq jumps of more than 1
        self.last_seq: int | None = None
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        ext = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            if self.offer_deflate
            else ""
        )
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{ext}\r\n"
        )
        self.transport.write(request.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed before upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.handshaken:
            self._handshake(data)
            return
        buf = self.buf + data if self.buf else data
        now = time.time()
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if size - pos < head + n:
                break
            self._frame(b0, buf[pos + head : pos + head + n], head + n, now)
            pos += head + n
        self.buf = buf[pos:] if pos < size else b""

    def _handshake(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head, rest = self.buf[:end].decode("latin-1"), self.buf[end + 4 :]
        self.buf = b""
        if not head.startswith("HTTP/1.1 101"):
            if not self.upgraded.done():
                self.upgraded.set_exception(ConnectionError(head.splitlines()[0]))
            assert self.transport is not None
            self.transport.close()
            return
        self.handshaken = True
        if "permessage-deflate" in head.lower():
            self.inflate = zlib.decompressobj(wbits=-15)
        if not self.upgraded.done():  # done: the opener gave up waiting
            self.upgraded.set_result(None)
        if rest:
            self.data_received(rest)

    def _frame(self, b0: int, payload: bytes, wire: int, now: float) -> None:
        self.total += 1
        opcode = b0 & 0x0F
        if opcode == 1:
            if b0 & 0x40 and self.inflate is not None:
                payload = self.inflate.decompress(payload + DEFLATE_TAIL)
            seq = frame_seq(payload)
            if seq is not None:
                if self.last_seq is not None and seq > self.last_seq + 1:
                    self.gaps += 1
                self.last_seq = seq
            window = self.window
            if window.start <= now < window.end and TYPE_PRODUCTION in payload[:40]:
                stamp = frame_stamp(payload)
                if stamp is not None:
                    self.frames += 1
                    self.wire_bytes += wire
                    window.latencies.append(now - stamp_epoch(stamp))
        elif opcode == 9 and self.transport is not None:  # ping → pong
            self.transport.write(masked_frame(0xA, payload))
        elif opcode == 8:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if self.transport is not None:
                self.transport.close()

    def send_text(self, text: str) -> None:
        if self.transport is not None:
            self.transport.write(masked_frame(0x1, text.encode()))


async def open_client(
    host: str,
    port: int,
    path: str,
    window: Window,
    *,
    deflate: bool = False,
    rcvbuf: int | None = None,
) -> BenchClient:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    _, client = await loop.create_connection(
        lambda: BenchClient(f"{host}:{port}", path, window, deflate=deflate), sock=sock
    )
    try:
        await asyncio.wait_for(asyncio.shield(client.upgraded), HANDSHAKE_TIMEOUT_S)
    except BaseException:
        if client.transport is not None:
            client.transport.abort()
        raise
    return client


@dataclass
class WorkerSpec:
    host: str
    port: int
    path: str
    clients: int
    deflate: bool = False
    slow_client: bool = False  # this worker also runs the client that stops reading


async def connect_all(spec: WorkerSpec, window: Window, concurrency: int = 50) -> list[BenchClient]:
    """Open up to `spec.clients` connections, `concurrency` handshakes at a time.

    A server that cannot keep up with handshakes gets fewer clients, not a crashed bench:
    the report shows how many connected.
    """
    gate = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + CONNECT_PHASE_S

    async def one() -> BenchClient | None:
        async with gate:
            for attempt in range(3):
                if time.monotonic() > deadline:
                    return None
                try:
                    return await open_client(
                        spec.host, spec.port, spec.path, window, deflate=spec.deflate
                    )
                except (ConnectionError, OSError, TimeoutError):
                    await asyncio.sleep(0.2 * (attempt + 1))
            return None

    results = await asyncio.gather(*(one() for _ in range(spec.clients)))
    return [c for c in results if c is not None]


async def run_worker_async(spec: WorkerSpec, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    window = Window()
    clients = await connect_all(spec, window)
    slow: BenchClient | None = None
    if spec.slow_client:
        # A tiny receive buffer, so the stall reaches the server within a frame or two.
        slow = await open_client(spec.host, spec.port, spec.path, Window(), rcvbuf=4096)
    conn.send(("connected", len(clients)))
    # The parent answers with the window and when the slow client must stop reading.
    start, end, stall_at = await loop.run_in_executor(None, conn.recv)
    window.start, window.end = start, end
    if slow is not None and slow.transport is not None:
        await asyncio.sleep(max(0.0, stall_at - time.time()))
        slow.transport.pause_reading()
        conn.send(("stalled", time.time()))
    await asyncio.sleep(max(0.0, end - time.time()) + 0.3)
    conn.send(
        (
            "result",
            {
                "frames": [c.frames for c in clients],
                "wire_bytes": sum(c.wire_bytes for c in clients),
                "gaps": sum(c.gaps for c in clients),
                "closed": sum(1 for c in clients if c.closed.done()),
                "latencies": window.latencies.tobytes(),
            },
        )
    )
    for c in clients:
        if c.transport is not None:
            c.transport.abort()
    if slow is not None and slow.transport is not None:
        slow.transport.abort()


def run_worker(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of a worker process."""
    raise_fd_limit(spec.clients + 256)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        asyncio.run(run_worker_async(spec, conn))
    except Exception as err:
        conn.send(("error", f"{type(err).__name__}: {err}"))


Workers = list[tuple[Any, Connection]]  # (process, the parent's end of its pipe)


def shares(clients: int, workers: int) -> list[int]:
    """`clients` split over `workers` as evenly as whole numbers allow."""
    return [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]


def start_workers(specs: list[WorkerSpec], into: Workers) -> None:
    """One spawned load worker per spec, appended to `into` as it starts (so the caller's
    cleanup sees every one even if a later start fails)."""
    ctx = multiprocessing.get_context("spawn")
    for spec in specs:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=run_worker, args=(spec, child), daemon=True)
        proc.start()
        into.append((proc, parent))


def await_connected(procs: Workers, each: Callable[[int], None] | None = None) -> int:
    """Wait for every worker's connected count; their sum (`each` is told the running sum)."""
    connected = 0
    for _, pipe in procs:
        kind, value = pipe.recv()
        if kind == "error":
            raise RuntimeError(f"load worker failed: {value}")
        connected += value
        if each is not None:
            each(connected)
    return connected

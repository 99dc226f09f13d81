"""A TCP proxy in front of Redis for one ingest node: the nemesis's link to hang, reset and heal.

Runs its own event loop in a thread, so the harness can drive it from anywhere.

- `hang()`: a partition. Nothing is forwarded either way and new connections are accepted but
  not connected upstream; the node's sockets stay open (no FIN, no RST), as when a switch
  between it and Redis dies. Data already sent waits, like TCP retransmitting.
- `heal()`: forwarding resumes where it stopped (what waited is delivered, as TCP would once
  the path is back within its retransmission timeout).
- `reset()`: every current connection is aborted with an RST on both sides; new ones work.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any

CHUNK = 65536


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class LinkProxy:
    def __init__(self, name: str, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.upstream_port = upstream_port
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{name}")
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()

    # -- control, from any thread ------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def start(self) -> int:
        self._thread.start()
        self.port = self._call(self._start())
        return self.port

    def hang(self) -> None:
        self._call(self._set(False))

    def heal(self) -> None:
        self._call(self._set(True))

    def reset(self) -> int:
        """Abort every connection (RST both ways); returns how many."""
        return int(self._call(self._reset()))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- the loop ----------------------------------------------------------------------------

    async def _start(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _set(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _reset(self) -> int:
        pairs, self._pairs = list(self._pairs), set()
        for down, up in pairs:
            _abort(down)
            if up is not None:
                _abort(up)
        return len(pairs)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.connections += 1
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
        self._pairs.add(pair)
        try:
            await self._flowing.wait()  # a partitioned link does not reach Redis
            try:
                up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
            except OSError:
                _abort(writer)
                return
            if pair not in self._pairs:  # reset while connecting
                _abort(up_writer)
                return
            self._pairs.discard(pair)
            pair = (writer, up_writer)
            self._pairs.add(pair)
            await asyncio.gather(
                self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
            )
        finally:
            self._pairs.discard(pair)
            for w in pair:
                if w is not None:
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # read before the hang: held until healed
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

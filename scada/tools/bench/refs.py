"""Reference broadcasters, run under the same load as the real server.

- `naive`: the tutorial design. A starlette app under uvicorn; every client's handler waits
  for the next frame and does `await websocket.send_text(json.dumps(frame))`.
- `bare`: the floor. A picows broadcaster (the fastest Python WebSocket server we know:
  handshake, framing and reads in C) that sends one pre-built payload to every client every
  100 ms; nothing else. Without picows installed (`pip install 'scada-stream[bench]'`), a
  minimal asyncio server that writes one pre-built frame to every transport.

Both serve the same plant data as the real server (the simulator and the sample encoder),
built once per 100 ms tick on a fixed-rate schedule.

    python -m scada.tools.bench.refs naive|bare|bare-asyncio --port PORT
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from scada.core.config import PlantConfig, load_config
from scada.core.timefmt import iso_ms
from scada.fanout.broadcaster import frame_prefix
from scada.fanout.wsframes import frame_header
from scada.plant.runtime import Runtime
from scada.tools.bench.servers import bare_reference

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B3A"
INTERVAL = 0.1


class FrameSource:
    """The real plant pipeline without the server: simulator → tag store → LineSamples."""

    def __init__(self, config: PlantConfig) -> None:
        self.runtime = Runtime(config)
        self.driver = self.runtime.pollers[0].driver

    async def next_records(self) -> tuple[str, list[dict[str, Any]]]:
        rt = self.runtime
        rt.store.write(await self.driver.read(), time.monotonic())
        dirty = rt.store.take_dirty()
        return iso_ms(time.time()), rt.encoder.encode(rt.store, dirty)


async def fixed_rate(tick: Callable[[], Awaitable[None]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    while True:
        deadline += INTERVAL
        await tick()
        deadline = max(deadline, loop.time())
        await asyncio.sleep(deadline - loop.time())


# -- naive -----------------------------------------------------------------------------


def naive_app(config: PlantConfig) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    source = FrameSource(config)
    state: dict[str, Any] = {"frame": None, "changed": asyncio.Condition()}

    async def tick() -> None:
        stamp, records = await source.next_records()
        async with state["changed"]:
            state["frame"] = {"type": "production_data", "timestamp": stamp, "data": records}
            state["changed"].notify_all()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        seq = 0
        try:
            while True:
                async with state["changed"]:
                    await state["changed"].wait()
                    frame = state["frame"]
                seq += 1
                await websocket.send_text(json.dumps({**frame, "seq": seq}))
        except (WebSocketDisconnect, RuntimeError):
            pass

    async def health(request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        task = asyncio.create_task(fixed_rate(tick))
        yield
        task.cancel()

    return Starlette(
        routes=[WebSocketRoute("/ws", endpoint), Route("/ready", health)], lifespan=lifespan
    )


def run_naive(config: PlantConfig, port: int) -> None:
    import uvicorn

    uvicorn.run(naive_app(config), host="127.0.0.1", port=port, log_level="warning")


# -- bare ------------------------------------------------------------------------------


class BareProtocol(asyncio.Protocol):
    def __init__(self, clients: set[asyncio.Transport]) -> None:
        self.clients = clients
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.transport in self.clients:
            return  # client frames (pongs, requests) are ignored
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1")
        if head.startswith("GET /ready"):
            self._reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            return
        key = next(
            (
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            ),
            "",
        )
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
        )
        self.clients.add(self.transport)

    def _reply(self, response: bytes) -> None:
        assert self.transport is not None
        self.transport.write(response)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.clients.discard(self.transport)


async def run_bare_async(config: PlantConfig, port: int) -> None:
    loop = asyncio.get_running_loop()
    clients: set[asyncio.Transport] = set()
    server = await loop.create_server(
        lambda: BareProtocol(clients), "127.0.0.1", port, backlog=4096
    )

    def deliver(payload: bytes) -> None:
        frame = frame_header(len(payload)) + payload
        for transport in list(clients):
            transport.write(frame)

    async with server:
        await broadcast(config, deliver)


async def broadcast(config: PlantConfig, deliver: Callable[[bytes], None]) -> None:
    """Every 100 ms, one production_data payload built once and handed to `deliver`."""
    source = FrameSource(config)
    seq = 0

    async def tick() -> None:
        nonlocal seq
        seq += 1
        stamp, records = await source.next_records()
        deliver(frame_prefix("production_data", records, stamp) + b"%d}" % seq)

    await fixed_rate(tick)


async def run_picows_async(config: PlantConfig, port: int) -> None:
    from picows import (
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        WSUpgradeResponse,
        WSUpgradeResponseWithListener,
        ws_create_server,
    )

    clients: set[WSTransport] = set()

    class Listener(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            clients.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            clients.discard(transport)

    def route(request: WSUpgradeRequest) -> Any:
        if request.path == b"/ready":
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_ok_response(b"ok"), None)
        return Listener()  # client frames (pongs, requests) are ignored; pings answered

    server = await ws_create_server(route, "127.0.0.1", port, backlog=4096)

    def deliver(payload: bytes) -> None:
        for transport in list(clients):
            transport.send(WSMsgType.TEXT, payload)

    async with server:
        await broadcast(config, deliver)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scada.tools.bench.refs")
    parser.add_argument("kind", choices=["naive", "bare", "bare-asyncio"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config")
    args = parser.parse_args()
    config = load_config(args.config)
    if args.kind == "naive":
        run_naive(config, args.port)
        return
    if args.kind == "bare" and bare_reference() != "asyncio":
        serve: Callable[[PlantConfig, int], Coroutine[Any, Any, None]] = run_picows_async
    else:
        serve = run_bare_async
    try:
        import uvloop

        uvloop.run(serve(config, args.port))
    except ImportError:
        asyncio.run(serve(config, args.port))


if __name__ == "__main__":
    main()

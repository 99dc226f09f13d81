"""A connection past its handshake is served from protocol callbacks, not an app task.

The real server (uvicorn and the adapter's protocols) runs in a thread of this process, so
the test can look at uvicorn's own bookkeeping: an idle WebSocket keeps no asyncio task and
no ASGI scope, while messages are still answered in order and a close still ends the client.
"""

from __future__ import annotations

import asyncio
import json
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from scada.core.config import config_from_dict, default_config_text
from scada.roles.allinone import create_app
from scada.server.serve import build_server
from scada.server.wsprotocol import ScadaWebSocketProtocol
from tests.conftest import eventually, eventually_async, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[uvicorn.Server, str]]:
    raw = tomllib.loads(default_config_text())
    data = tmp_path_factory.mktemp("detached") / "data"
    raw.setdefault("server", {}).update({"data_dir": str(Path(data))})
    port = free_port()
    server = build_server(
        config_from_dict(raw), port=port, log_level="warning", create_app=create_app
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, 30)
    yield server, f"ws://127.0.0.1:{port}/ws"
    server.should_exit = True
    thread.join(15)


def _clients(server: uvicorn.Server) -> int:
    return len(server.config.loaded_app.app.state.broadcaster.clients)


def _protocols(server: uvicorn.Server) -> list[ScadaWebSocketProtocol]:
    return [p for p in server.server_state.connections if isinstance(p, ScadaWebSocketProtocol)]


async def _until(ws: ClientConnection, wanted: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await ws.recv())
        if frame["type"] == wanted:
            return frame


def test_idle_connections_keep_no_task_and_messages_still_flow(
    served: tuple[uvicorn.Server, str],
) -> None:
    server, url = served

    async def main() -> None:
        async with connect(url, compression=None) as one, connect(url, compression=None) as two:
            for ws in (one, two):
                await _until(ws, "snapshot")
            await eventually_async(lambda: _clients(server) == 2, what="both registered")
            # The handlers returned: no app task, no scope or upgrade request kept.
            await eventually_async(lambda: not server.server_state.tasks, what="no tasks")
            protocols = _protocols(server)
            assert len(protocols) == 2
            assert all(p.inbox is not None for p in protocols)
            assert not any(hasattr(p, "scope") or hasattr(p, "request") for p in protocols)
            # Several messages at once: each answered, in the order sent.
            for n in range(5):
                await one.send(json.dumps({"type": "heartbeat", "id": n}))
            replies = [(await _until(one, "reply"))["data"]["id"] for _ in range(5)]
            assert replies == [0, 1, 2, 3, 4]
            await one.send(json.dumps({"type": "nonsense"}))
            error = await _until(one, "error")
            assert error["data"]["code"] == "unknown_type"
            # Production frames keep coming to the detached connections.
            await _until(two, "production_data")
            await one.close()
            await eventually_async(lambda: _clients(server) == 1, what="closed client removed")
            await eventually_async(lambda: len(_protocols(server)) == 1, what="protocol gone")
        await eventually_async(lambda: _clients(server) == 0, what="all removed")

    asyncio.run(main())


def test_a_flood_on_a_detached_connection_is_closed_with_1008(
    served: tuple[uvicorn.Server, str],
) -> None:
    server, url = served

    async def main() -> None:
        async with connect(url, compression=None) as ws:
            await _until(ws, "snapshot")
            for n in range(400):
                await ws.send(json.dumps({"type": "heartbeat", "id": n}))
            with pytest.raises(Exception):  # noqa: B017 - any ConnectionClosed
                while True:
                    await ws.recv()
            assert ws.close_code == 1008
        await eventually_async(lambda: _clients(server) == 0, what="flooder removed")

    asyncio.run(main())

"""Under an ASGI server without the raw sink, the hub streams through `AsgiSink`.

uvicorn's stock protocols (no scada adapter) stand in for "another ASGI server": the same
frames arrive, in order, and the health endpoint says which sink serves the client.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect

from scada.core.config import load_config
from scada.roles.allinone import create_app
from tests.conftest import eventually, free_port, write_config


@pytest.fixture
def stock_uvicorn(tmp_path: Path) -> Iterator[str]:
    config = load_config(
        write_config(tmp_path / "plant.toml", {"server": {"data_dir": str(tmp_path / "data")}})
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=port,
            ws="websockets-sansio",
            http="httptools",
            lifespan="on",
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, timeout=30)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


def test_fallback_sink_streams_in_order(stock_uvicorn: str) -> None:
    async def main() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with connect(f"ws://{stock_uvicorn}/ws") as ws:
            frames = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
            await ws.send(json.dumps({"type": "subscribe", "id": 1, "data": {"lines": ["2"]}}))
            while len(frames) < 12:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            async with httpx.AsyncClient() as http:
                health = (await http.get(f"http://{stock_uvicorn}/health/websocket")).json()
            return frames, health

    frames, health = asyncio.run(main())
    assert [f["type"] for f in frames[:2]] == ["connected", "snapshot"]
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    replied = next(i for i, f in enumerate(frames) if f["type"] == "reply")
    later = [f for f in frames[replied:] if f["type"] == "production_data"]
    assert later and all(r["production_line_id"] == "2" for f in later for r in f["data"])
    assert health["sinks"] == {"asgi": 1}

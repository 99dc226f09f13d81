"""JSON and CSV answers are gzip-compressed for a client that accepts it, off the event loop."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scada.core.config import deep_merge
from scada.core.timefmt import iso_ms
from scada.web import httpgzip
from tests.conftest import ServerProcess, default_config_dict, scaled, write_config

TAGS = ",".join(f"line{n}.diameter" for n in range(1, 9))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("gzip")
    config = write_config(
        tmp / "plant.toml",
        deep_merge(default_config_dict(), {"server": {"data_dir": str(tmp / "data")}}),
    )
    proc = ServerProcess(config, tmp).start()
    yield proc
    proc.stop()


def raw_get(
    server: ServerProcess, path: str, params: dict[str, Any], encoding: str
) -> httpx.Response:
    """The bytes as sent (httpx would decode them), with this Accept-Encoding."""
    with (
        httpx.Client(timeout=scaled(30)) as client,
        client.stream(
            "GET", f"{server.http}{path}", params=params, headers={"Accept-Encoding": encoding}
        ) as r,
    ):
        r._content = b"".join(r.iter_raw())
    return r


def test_eight_tags_of_24_hours_come_gzipped_and_decode_to_the_same_json(
    server: ServerProcess,
) -> None:
    # A fixed range (before the server started: every bucket is answered, the same each time).
    end = (time.time() - 600) // 120 * 120
    params = {"tags": TAGS, "from": iso_ms(end - 86400), "to": iso_ms(end), "points": 1000}
    plain = raw_get(server, "/api/history", params, "identity")
    packed = raw_get(server, "/api/history", params, "gzip, deflate")
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) == len(packed.content) < len(plain.content) // 4
    assert "accept-encoding" in packed.headers["vary"].lower()
    doc = orjson.loads(gzip.decompress(packed.content))
    assert doc == orjson.loads(plain.content)
    # 24 h at 1,000 points from the 1-minute tier: 720 two-minute buckets (an aligned range)
    assert len(doc["series"]) == 8 and len(doc["series"][0]["t"]) == 720
    csv = raw_get(server, "/api/history", {**params, "format": "csv"}, "gzip")
    assert csv.headers["content-encoding"] == "gzip"
    assert gzip.decompress(csv.content).decode().startswith("time,epoch_ms,")


def test_small_answers_and_clients_without_gzip_are_not_compressed(server: ServerProcess) -> None:
    assert "content-encoding" not in raw_get(server, "/health", {}, "gzip").headers
    refuse = raw_get(server, "/api/alarms", {}, "gzip;q=0, identity")
    assert "content-encoding" not in refuse.headers


def test_compression_runs_in_a_worker_thread_and_streams_stay_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[str] = []
    real = httpgzip.gzip_bytes

    def recording(body: bytes) -> bytes:
        threads.append(threading.current_thread().name)
        return real(body)

    monkeypatch.setattr(httpgzip, "gzip_bytes", recording)
    loop_thread: list[str] = []

    async def big(request: Request) -> Response:
        loop_thread.append(threading.current_thread().name)
        return JSONResponse({"values": list(range(5000))})

    async def chunks() -> Any:
        for i in range(50):
            yield f"{i},{'x' * 100}\n".encode()

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks(), media_type="text/csv")

    app = Starlette(routes=[Route("/big", big), Route("/stream", stream)])

    async def main() -> None:
        transport = httpx.ASGITransport(app=httpgzip.GzipOffLoop(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/big", headers={"Accept-Encoding": "gzip"})
            assert r.headers["content-encoding"] == "gzip" and r.json()["values"][-1] == 4999
            s = await client.get("/stream", headers={"Accept-Encoding": "gzip"})
            assert s.headers["content-encoding"] == "gzip" and "content-length" not in s.headers
            assert s.text.splitlines()[49].startswith("49,")

    asyncio.run(main())
    assert threads and loop_thread and threads[0] != loop_thread[0]

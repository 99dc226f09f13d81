"""The one seam to uvicorn: pure frame code apart, internals checked at start, probes safe."""

from __future__ import annotations

import ast
import asyncio
import gc
import subprocess
import sys

import pytest
import uvloop
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from scada.core.errors import UnsupportedLibrary
from scada.server.tcpinfo import borrow, tcp_progress
from scada.server.uvicorn_adapter import uvicorn_options
from scada.server.uvicorn_check import missing_internals, require_uvicorn
from scada.server.wiresettings import WireSettings
from scada.server.wsprotocol import ScadaWebSocketProtocol
from tests.conftest import ROOT


def test_frame_code_imports_no_server() -> None:
    code = (
        "import sys, scada.fanout.wsframes, scada.fanout.asgisink, scada.server.tcpinfo, scada.fanout.broadcaster;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert not loaded & {"uvicorn", "starlette", "httptools"}, loaded


def test_the_pinned_uvicorn_has_everything_the_adapter_uses() -> None:
    assert missing_internals() == []
    require_uvicorn()


@pytest.mark.parametrize("name", ["send_receive_event_to_app", "handle_connect"])
def test_a_uvicorn_without_them_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.delattr(WebSocketsSansIOProtocol, name)
    with pytest.raises(UnsupportedLibrary, match=f"WebSocketsSansIOProtocol.{name}"):
        require_uvicorn()


def test_a_moved_instance_attribute_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    original = WebSocketsSansIOProtocol.__init__

    def without_read_paused(self: WebSocketsSansIOProtocol, *args: object, **kw: object) -> None:
        original(self, *args, **kw)  # type: ignore[arg-type]
        del self.read_paused

    monkeypatch.setattr(WebSocketsSansIOProtocol, "__init__", without_read_paused)
    with pytest.raises(UnsupportedLibrary, match="read_paused"):
        require_uvicorn()


def test_settings_travel_with_the_protocol_factory_not_the_class() -> None:
    one = uvicorn_options(WireSettings(compression="off"))["ws"]
    two = uvicorn_options(WireSettings(compression="shared"))["ws"]
    assert one.keywords["wire"].compression == "off"
    assert two.keywords["wire"].compression == "shared"
    assert not hasattr(ScadaWebSocketProtocol, "compression")


def test_tcp_probe_of_a_just_closed_socket_under_uvloop() -> None:
    """uvloop's socket outlives its descriptor: getsockopt raised ValueError into the tick."""

    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        sock = transport.get_extra_info("socket")
        assert tcp_progress(sock) is not None
        transport.abort()
        await asyncio.sleep(0)  # the transport closes its descriptor on the next turn
        assert tcp_progress(sock) is None
        server.close()

    uvloop.run(main())
    asyncio.run(main())


def test_a_borrowed_socket_probes_but_never_closes_the_transport_descriptor() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        borrowed = borrow(transport.get_extra_info("socket"))
        assert borrowed is not None
        assert tcp_progress(borrowed) is not None
        del borrowed
        gc.collect()  # garbage collected without detach(): still no close
        assert tcp_progress(transport.get_extra_info("socket")) is not None
        assert not transport.is_closing()
        transport.write(b"still open")
        transport.abort()
        server.close()

    uvloop.run(main())
    asyncio.run(main())


def test_only_the_adapters_parts_import_uvicorns_protocols() -> None:
    """What require_uvicorn checks is all that uses uvicorn's internals: the parts listed in
    scada.server.uvicorn_adapter (the check itself, the two protocols)."""
    importers = set()
    for path in (ROOT / "scada").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                ("uvicorn.protocols", "uvicorn.server")
            ):
                importers.add(str(path.relative_to(ROOT)))
    assert importers == {
        "scada/server/uvicorn_check.py",
        "scada/server/wsprotocol.py",
        "scada/server/httpprotocol.py",
    }

"""The asyncua adapter: its start-up check passes on the installed asyncua, names whatever a
changed one lacks, and the OPC UA simulator refuses to start without it."""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import types

import pytest
from asyncua import Server
from asyncua.server.binary_server_asyncio import BinaryServer
from asyncua.server.monitored_item_service import MonitoredItemService

from scada.core.config import load_config
from scada.core.errors import UnsupportedLibrary
from simulators.asyncua_adapter import ADAPTER, missing_internals, require_asyncua
from simulators.opcua_server import OpcUaSimulator
from tests.conftest import ROOT

VERSION = importlib.metadata.version("asyncua")


def test_the_installed_asyncua_has_everything_the_adapter_uses() -> None:
    server = Server()
    assert missing_internals(server) == []
    require_asyncua(server)


def test_a_stand_in_server_lacking_the_private_names_is_named() -> None:
    missing = missing_internals(types.SimpleNamespace(iserver=None, bserver=None, limits=None))
    assert "Server._setup_server_nodes" in missing
    assert "Server._policies" in missing
    assert "Server.iserver" not in missing


def test_a_server_without_its_external_sessions_is_refused_by_name() -> None:
    server = Server()
    del server.iserver._external_sessions
    with pytest.raises(UnsupportedLibrary) as refused:
        require_asyncua(server)
    message = str(refused.value)
    assert f"asyncua {VERSION} " in message and ADAPTER in message
    assert "InternalServer._external_sessions" in message


def test_a_listener_without_make_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(BinaryServer, "_make_protocol")
    with pytest.raises(UnsupportedLibrary, match=r"BinaryServer\._make_protocol"):
        require_asyncua(Server())


def test_moved_monitored_items_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    original = MonitoredItemService.__init__

    def without_items(self: MonitoredItemService, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        del self._monitored_items

    monkeypatch.setattr(MonitoredItemService, "__init__", without_items)
    with pytest.raises(UnsupportedLibrary, match=r"monitored_item_srv\._monitored_items"):
        require_asyncua(Server())


def test_the_simulator_refuses_to_start_on_an_asyncua_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(Server, "_setup_server_nodes")
    sim = OpcUaSimulator(load_config(), port=0, security=("None",))

    async def main() -> None:
        with pytest.raises(UnsupportedLibrary, match=r"Server\._setup_server_nodes"):
            await sim.start()

    asyncio.run(main())
    assert not sim.running


def test_only_the_adapter_imports_asyncuas_server_modules() -> None:
    importers = set()
    for package in ("scada", "drivers", "simulators"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "asyncua.server"
                ):
                    importers.add(str(path.relative_to(ROOT)))
    assert importers == {ADAPTER}

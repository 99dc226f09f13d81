"""The pymodbus adapter: the installed pymodbus calls a DirectContext as it is, and a server
that wraps or refuses it, or keeps no listener, is refused by name with the version."""

from __future__ import annotations

import asyncio
import importlib.metadata
import types

import pytest
from pymodbus.exceptions import ParameterException
from pymodbus.server.base import ModbusBaseServer

from scada.core.config import load_config
from scada.core.errors import UnsupportedLibrary
from simulators import pymodbus_adapter
from simulators.modbus_server import ModbusSimulator
from simulators.pymodbus_adapter import (
    ADAPTER,
    DirectContext,
    bound_port,
    missing_internals,
    tcp_server,
)

VERSION = importlib.metadata.version("pymodbus")


def _no_trace(sending: bool, data: bytes) -> bytes:
    return data


def test_the_installed_pymodbus_calls_the_context_as_it_is() -> None:
    async def main() -> None:
        context = DirectContext()
        server = tcp_server(context, "127.0.0.1", 0, _no_trace)
        assert server.context is context
        assert missing_internals(server, context) == []
        await server.serve_forever(background=True)
        try:
            assert bound_port(server) > 0
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]

    asyncio.run(main())


def test_a_server_that_wraps_the_context_is_named() -> None:
    stand_in = types.SimpleNamespace(context=object(), transport=None)
    assert missing_internals(stand_in, DirectContext()) == [
        "ModbusServerContext.old_simulator (the server wrapped the context instead of "
        "calling it as it is)"
    ]
    assert missing_internals(types.SimpleNamespace(), DirectContext()) == [
        "ModbusTcpServer.context",
        "ModbusTcpServer.transport",
    ]


def test_a_pymodbus_that_refuses_the_context_is_refused_with_its_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pymodbus 3.16 refuses a ModbusServerContext without `old_simulator` (ParameterException
    "context= contains unknown object."); earlier 3.x (the floor, 3.12) call any as it is. A
    server class that refuses it, whatever the installed version does, is named."""

    def refusing(*args: object, **kwargs: object) -> ModbusBaseServer:
        raise ParameterException("context= contains unknown object.")

    monkeypatch.setattr(pymodbus_adapter, "ModbusTcpServer", refusing)

    async def main() -> None:
        with pytest.raises(UnsupportedLibrary) as refused:
            tcp_server(DirectContext(), "127.0.0.1", 0, _no_trace)
        message = str(refused.value)
        assert f"pymodbus {VERSION} " in message and ADAPTER in message
        assert "ModbusServerContext.old_simulator" in message

    asyncio.run(main())


def test_a_listener_without_sockets_is_refused() -> None:
    with pytest.raises(UnsupportedLibrary, match=r"ModbusTcpServer\.transport\.sockets"):
        bound_port(types.SimpleNamespace(transport=None))  # type: ignore[arg-type]


def test_the_simulator_refuses_to_start_on_a_pymodbus_that_wraps_its_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = ModbusBaseServer.__init__

    def wrapping(self: ModbusBaseServer, *args: object, **kw: object) -> None:
        original(self, *args, **kw)  # type: ignore[arg-type]
        self.context = types.SimpleNamespace()  # type: ignore[assignment]

    monkeypatch.setattr(ModbusBaseServer, "__init__", wrapping)
    sim = ModbusSimulator(load_config(), port=0, update_interval=None)

    async def main() -> None:
        with pytest.raises(UnsupportedLibrary, match="old_simulator"):
            await sim.start()
        assert not sim.listening

    asyncio.run(main())

"""The one module that reaches into pymodbus' server, for the Modbus simulator.

Written against pymodbus 3.16.1. The simulator (simulators/modbus_server.py) answers every
read from register blocks it computes each tick; pymodbus' datastores would need each block
copied into them every tick. The one context pymodbus' server calls as it is (its
`async_getValues`, `async_setValues`, `device_ids`) is a `ModbusServerContext` whose
undocumented `old_simulator` is True, which pymodbus sets only for its own
ModbusSimulatorContext: `DirectContext` sets it (and an empty `simdevices`, read first)
without running ModbusServerContext.__init__, which wants datastores. `bound_port` reads the
port a listener asked for port 0 got, from `server.transport` (the asyncio Server pymodbus
keeps there).

`tcp_server` builds the server and checks it at once (`missing_internals`): a pymodbus that
wraps or refuses the context, or keeps no transport, is refused (scada.core.internals) with
its version. pymodbus 4 drops ModbusServerContext, as its 3.x deprecation says; this is where
a port to its SimDevice starts.
"""

from __future__ import annotations

from collections.abc import Callable

from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import ParameterException
from pymodbus.server import ModbusTcpServer

from scada.core.internals import missing_attributes, refuse_missing

ADAPTER = "simulators/pymodbus_adapter.py"

TracePacket = Callable[[bool, bytes], bytes]


class DirectContext(ModbusServerContext):
    """A server context pymodbus calls directly; the subclass answers `async_getValues`,
    `async_setValues` and `device_ids`."""

    def __init__(self) -> None:  # no super(): its datastores are not used
        self.old_simulator = True  # pymodbus: call this context's async_getValues as is
        self.simdevices = []  # pymodbus checks these first: none


def missing_internals(server: object, context: object) -> list[str]:
    """What `server` (built on `context`, not yet listening) shows pymodbus no longer does."""
    missing = missing_attributes(server, "ModbusTcpServer", ("context", "transport"))
    if getattr(server, "context", context) is not context:
        missing.append(
            "ModbusServerContext.old_simulator (the server wrapped the context instead of "
            "calling it as it is)"
        )
    return missing


def tcp_server(
    context: DirectContext, host: str, port: int, trace_packet: TracePacket
) -> ModbusTcpServer:
    """A Modbus TCP server on `context`, checked; call `serve_forever` to listen."""
    try:
        server = ModbusTcpServer(context, address=(host, port), trace_packet=trace_packet)
    except ParameterException as err:  # "context= contains unknown object."
        refuse_missing(ADAPTER, [f"ModbusServerContext.old_simulator ({err})"], "pymodbus")
        raise
    refuse_missing(ADAPTER, missing_internals(server, context), "pymodbus")
    return server


def bound_port(server: ModbusTcpServer) -> int:
    """The port a listening server got (the one asked for, or the kernel's pick for 0)."""
    sockets = getattr(server.transport, "sockets", None) or []
    if not sockets:
        refuse_missing(ADAPTER, ["ModbusTcpServer.transport.sockets (the listener)"], "pymodbus")
    return int(sockets[0].getsockname()[1])

"""The one module that reaches into asyncua's server, for the OPC UA simulator.

Written against asyncua 2.1.0. The simulator (simulators/opcua_server.py) acts like a device
that stops answering or drops every connection, and reports what its clients hold; asyncua's
public `Server` offers none of that, so this module uses its insides:

- `start_internals` + `listen`: what `Server.start()` does, with our own `BinaryServer` (its
  protocols stay silent while the device is frozen: `BinaryServer._make_protocol` overridden,
  `Server._setup_server_nodes` and `Server._policies` used as start() uses them), so the
  listener can be closed and reopened without restarting the server;
- `set_reading`: pauses every connection's transport (`InternalServer.asyncio_transports`);
- `close_sessions`: asyncua keeps a session with subscriptions alive after its connection is
  lost, so a client may reactivate it; a dropped or restarted device forgets them at once
  (`InternalServer._external_sessions`, `InternalSession.close_session`);
- `session_count`, `subscription_count`, `monitored_item_count`: what clients hold
  (`_external_sessions`, `subscription_service.subscriptions`,
  `MonitoredItemService._monitored_items`).

`require_asyncua` runs on the server the simulator builds, before it starts: a missing name is
refused (scada.core.internals) with asyncua's version, never found by a fault that silently
does nothing. If `Server.start()` gains a step, `start_internals` must follow it by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from typing import Any

from asyncua import Server, ua

from scada.core.internals import missing_attributes, missing_methods, refuse_missing

ADAPTER = "simulators/asyncua_adapter.py"

try:
    from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
    from asyncua.server.internal_server import InternalServer
    from asyncua.server.internal_session import InternalSession
    from asyncua.server.internal_subscription import InternalSubscription
except ImportError as err:  # a moved module: refused by name with the version
    refuse_missing(ADAPTER, [str(err)], "asyncua")
    raise

__all__ = [
    "InternalServer",
    "QuietBinaryServer",
    "close_sessions",
    "listen",
    "missing_internals",
    "monitored_item_count",
    "require_asyncua",
    "session_count",
    "set_reading",
    "start_internals",
    "subscription_count",
]

SERVER_METHODS = ("_setup_server_nodes",)
SERVER_STATE = ("_policies", "bserver", "limits", "iserver")
ISERVER_METHODS = ("start", "stop")
ISERVER_STATE = ("_external_sessions", "asyncio_transports", "subscription_service", "aspace")
BINARY_METHODS = ("_make_protocol", "set_policies", "start", "stop")
BINARY_STATE = ("_policies", "clients", "closing_tasks", "limits", "iserver", "port")
PROTOCOL_PARAMS = ("iserver", "policies", "clients", "closing_tasks", "limits")


class _QuietProtocol(OPCUAProtocol):
    """A connection that reads nothing while `quiet()` (a frozen device)."""

    quiet: Callable[[], bool]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.quiet() and self.transport is not None:
            self.transport.pause_reading()


class QuietBinaryServer(BinaryServer):
    """asyncua's listener, whose new connections stay silent while `quiet()`."""

    def __init__(self, quiet: Callable[[], bool], *args: Any) -> None:
        super().__init__(*args)
        self.quiet = quiet

    def _make_protocol(self) -> OPCUAProtocol:
        protocol = _QuietProtocol(
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )
        protocol.quiet = self.quiet
        return protocol


async def start_internals(server: Server) -> None:
    """`Server.start()` up to the listener: server nodes, security policies, the internal
    server (its address space stays as built)."""
    await server._setup_server_nodes()
    await server.iserver.start()


async def listen(
    server: Server, host: str, port: int, quiet: Callable[[], bool]
) -> QuietBinaryServer:
    """Open the listener `Server.start()` would, with quiet-capable connections."""
    bserver = QuietBinaryServer(quiet, server.iserver, host, port, server.limits)
    bserver.set_policies(server._policies)
    await bserver.start()
    server.bserver = bserver
    return bserver


def set_reading(server: Server, reading: bool) -> None:
    """Resume or pause reading on every open connection."""
    for transport in list(server.iserver.asyncio_transports):
        with contextlib.suppress(Exception):
            if reading:
                transport.resume_reading()
            else:
                transport.pause_reading()


async def close_sessions(server: Server) -> None:
    """Close every client session now, subscriptions included."""
    for session in list(server.iserver._external_sessions.values()):
        with contextlib.suppress(Exception):
            await session.close_session(True)


def session_count(server: Server) -> int:
    return len(server.iserver._external_sessions)


def subscription_count(server: Server) -> int:
    return len(server.iserver.subscription_service.subscriptions)


def monitored_item_count(server: Server) -> int:
    subs = server.iserver.subscription_service.subscriptions.values()
    return sum(len(s.monitored_item_srv._monitored_items) for s in subs)


def missing_internals(server: object) -> list[str]:
    """The asyncua names this module relies on that `server` (an asyncua Server, not yet
    started) or the installed asyncua lack."""
    missing = missing_methods(server, "Server", SERVER_METHODS)
    missing += missing_attributes(server, "Server", SERVER_STATE)
    iserver = getattr(server, "iserver", None)
    if iserver is not None:
        missing += missing_methods(iserver, "InternalServer", ISERVER_METHODS)
        missing += missing_attributes(iserver, "InternalServer", ISERVER_STATE)
        service = getattr(iserver, "subscription_service", None)
        if service is not None:
            missing += missing_attributes(service, "SubscriptionService", ("subscriptions",))
    missing += missing_methods(BinaryServer, "BinaryServer", BINARY_METHODS)
    missing += missing_methods(OPCUAProtocol, "OPCUAProtocol", ("connection_made",))
    missing += missing_methods(InternalSession, "InternalSession", ("close_session",))
    params = inspect.signature(OPCUAProtocol.__init__).parameters
    missing += [f"OPCUAProtocol(..., {p}=)" for p in PROTOCOL_PARAMS if p not in params]
    limits = getattr(server, "limits", None)
    if iserver is not None and limits is not None:
        missing += _missing_in_instances(iserver, limits)
    return missing


def require_asyncua(server: Server) -> None:
    """Refuse to go on when asyncua's server internals moved (the simulator's faults and
    counts would silently stop working)."""
    refuse_missing(ADAPTER, missing_internals(server), "asyncua")


def _missing_in_instances(iserver: Any, limits: Any) -> list[str]:
    """What only instances show: a listener's and a subscription's own state."""
    missing: list[str] = []
    try:
        bserver = BinaryServer(iserver, "127.0.0.1", 0, limits)  # never started
    except TypeError as err:
        missing.append(f"BinaryServer(iserver, host, port, limits): {err}")
    else:
        missing += missing_attributes(bserver, "BinaryServer", BINARY_STATE)
    try:
        sub = InternalSubscription(
            ua.CreateSubscriptionResult(), iserver.aspace, _drop, ua.NodeId()
        )
    except (TypeError, AttributeError) as err:
        missing.append(f"InternalSubscription(data, aspace, callback, session_id): {err}")
        return missing
    items = getattr(getattr(sub, "monitored_item_srv", None), "_monitored_items", None)
    if not isinstance(items, dict):
        missing.append("InternalSubscription.monitored_item_srv._monitored_items")
    return missing


async def _drop(_result: ua.PublishResult) -> None:
    """The probe subscription's publish callback (never called: it is never started)."""

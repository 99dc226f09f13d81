"""The one module that reaches into aiomqtt: its paho client, `aiomqtt.Client._client`.

Written against aiomqtt 2.5.1 over paho-mqtt 2.2.0. aiomqtt gives no public handle on the paho
client, and the edge client (drivers.sparkplug.edgeclient) needs two things only paho gives:

- `raw_socket`: the TCP socket, to drop the connection without an MQTT DISCONNECT, like a
  pulled cable, so the broker publishes the NDEATH will (a simulator's connection_drop);
- `publish_now`: a QoS 0 publish straight onto paho's outgoing queue. aiomqtt's `publish`
  waits for each message's on_publish through a future of its own, ~0.2 ms of CPU a message,
  which at 500 devices a tick is more than the tick.

And one thing aiomqtt leaves undone: why a connection ended is kept in the future
`Client._disconnected`, which only its message iteration and `publish` read; its `__aexit__`
returns early, without reading it, when the connection has already ended. A session that ended
any other way after the broker went (cancelled, or a publish refused on the dead connection)
left it unread, and asyncio logged "Future exception was never retrieved: MqttCodeError" when
it was collected, in whatever ran then. `session` reads it on every way out and turns a lost
connection into one `BrokerGone` that says so.

`require_aiomqtt` runs when an EdgeClient starts: it refuses (scada.core.internals), naming
aiomqtt's and paho's versions, if the private name or what it must hold has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import AsyncIterator

import aiomqtt

from scada.core.internals import missing_methods, refuse_missing

ADAPTER = "drivers/sparkplug/aiomqtt_adapter.py"
# What the adapter calls on the paho client (public paho API, reached through the private name).
PAHO_NEEDS = ("socket", "publish")


def missing_internals(client: object) -> list[str]:
    """The names this module relies on that `client` (an aiomqtt.Client) lacks."""
    inner = getattr(client, "_client", None)
    if inner is None:
        return ["Client._client (its paho-mqtt client)"]
    missing = missing_methods(inner, "Client._client", PAHO_NEEDS)
    if not isinstance(getattr(client, "_disconnected", None), asyncio.Future):
        missing.append("Client._disconnected (why the connection ended, an asyncio.Future)")
    return missing


@functools.cache
def require_aiomqtt() -> None:
    """Refuse to go on with an aiomqtt whose paho client moved. Call it inside the event loop
    (aiomqtt.Client wants a running loop); a pass is remembered for the process."""
    probe = aiomqtt.Client("127.0.0.1")  # never connects: only its attributes are read
    refuse_missing(ADAPTER, missing_internals(probe), "aiomqtt", "paho-mqtt")


def raw_socket(client: aiomqtt.Client) -> socket.socket | None:
    """The client's TCP socket (TLS included), or None while it has none."""
    sock = client._client.socket()
    return sock if isinstance(sock, socket.socket) else None


def publish_now(client: aiomqtt.Client, topic: str, payload: bytes, *, retain: bool) -> None:
    """Queue one QoS 0 message on paho without waiting for it to be written."""
    info = client._client.publish(topic, payload, qos=0, retain=retain)
    if info.rc != 0:
        raise aiomqtt.MqttCodeError(info.rc, "could not publish")


class BrokerGone(aiomqtt.MqttError):
    """The connection to the broker ended without a DISCONNECT of ours: the broker stopped or
    dropped us, or the network broke. `__cause__` is aiomqtt's reason."""


def connection_ended(client: aiomqtt.Client) -> bool:
    """Whether aiomqtt has seen the client's connection end (why is not read here)."""
    return client._disconnected.done()


def _ended_by(client: aiomqtt.Client) -> BaseException | None:
    """Why the connection ended, if it ended with an error; reading it is what asyncio calls
    retrieving it."""
    ended = client._disconnected
    if not ended.done() or ended.cancelled():
        return None
    return ended.exception()


@contextlib.asynccontextmanager
async def session(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Client]:
    """`async with client`, which also reads why the connection ended on every way out: a
    connection lost under the block leaves it as one BrokerGone (instead of aiomqtt's
    "Disconnected during message iteration" or a refused publish); a cancellation stays a
    cancellation, and any other error stays itself."""
    try:
        async with client:
            yield client
    except aiomqtt.MqttError as err:
        cause = _ended_by(client)
        if cause is None or isinstance(err, BrokerGone):
            raise
        raise _gone(cause) from cause
    except BaseException:
        _ended_by(client)  # read: a stop or a failure of ours is the news, not the broker
        raise
    cause = _ended_by(client)
    if cause is not None:
        raise _gone(cause) from cause


def _gone(cause: BaseException) -> BrokerGone:
    return BrokerGone(f"broker gone: the connection ended without a DISCONNECT ({cause})")

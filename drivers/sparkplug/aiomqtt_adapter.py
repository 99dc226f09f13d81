"""The one module that reaches into aiomqtt: its paho client, `aiomqtt.Client._client`.

Written against aiomqtt 2.5.1 over paho-mqtt 2.2.0. aiomqtt gives no public handle on the paho
client, and the edge client (drivers.sparkplug.edgeclient) needs two things only paho gives:

- `raw_socket`: the TCP socket, to drop the connection without an MQTT DISCONNECT, like a
  pulled cable, so the broker publishes the NDEATH will (a simulator's connection_drop);
- `publish_now`: a QoS 0 publish straight onto paho's outgoing queue. aiomqtt's `publish`
  waits for each message's on_publish through a future of its own, ~0.2 ms of CPU a message,
  which at 500 devices a tick is more than the tick.

`require_aiomqtt` runs when an EdgeClient starts: it refuses (scada.core.internals), naming
aiomqtt's and paho's versions, if the private name or what it must hold has gone.
"""

from __future__ import annotations

import functools
import socket

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
    return missing_methods(inner, "Client._client", PAHO_NEEDS)


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

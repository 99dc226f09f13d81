"""The mosquitto fixture: a real broker that refuses clients without credentials, and the
edge node's will (NDEATH) delivered by it when a connection dies without DISCONNECT."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiomqtt
import pytest

from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.edge import EdgeNode, MetricDef
from tests.conftest import scaled
from tests.mosquitto import Mosquitto, mosquitto  # noqa: F401  (fixture)


def _settings(broker: Mosquitto, user: str = "probe") -> BrokerSettings:
    return BrokerSettings(url=broker.url, **broker.credentials(user))


def test_anonymous_and_wrong_password_are_refused(mosquitto: Mosquitto) -> None:  # noqa: F811
    asyncio.run(asyncio.wait_for(_refused(mosquitto), scaled(60)))


async def _refused(mosquitto: Mosquitto) -> None:  # noqa: F811
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, timeout=5):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            "127.0.0.1", mosquitto.port, username="probe", password="wrong", timeout=5
        ):
            pass
    async with aiomqtt.Client(**_settings(mosquitto).client_kwargs()) as client:
        await client.publish("x/y", b"ok", qos=1)


def test_a_dropped_connection_brings_the_ndeath_will(mosquitto: Mosquitto) -> None:  # noqa: F811
    """[tck-id-payloads-ndeath-will-message] [tck-id-payloads-ndeath-will-message-qos]
    [tck-id-payloads-ndeath-will-message-retain] [tck-id-payloads-ndeath-bdseq]"""
    asyncio.run(asyncio.wait_for(_will(mosquitto), scaled(60)))


async def _will(mosquitto: Mosquitto) -> None:  # noqa: F811
    node = EdgeNode("plant", "edge", {"d": [MetricDef("m", sp.DataType.DOUBLE)]}, first_bdseq=41)
    will = node.connecting()
    async with aiomqtt.Client(**_settings(mosquitto).client_kwargs()) as probe:
        await probe.subscribe("spBv1.0/plant/#", qos=1)
        edge = aiomqtt.Client(
            **_settings(mosquitto, "edge").client_kwargs(),
            identifier="edge",
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=False),
        )
        await edge.__aenter__()
        sock = edge._client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # the network goes: no DISCONNECT packet
        message = await asyncio.wait_for(anext(aiter(probe.messages)), scaled(15))
        assert str(message.topic) == "spBv1.0/plant/NDEATH/edge"
        assert message.qos == 1 and not message.retain
        payload = sp.decode(bytes(message.payload))
        assert sp.bdseq_of(payload) == 41 and not payload.HasField("seq")
        with contextlib.suppress(aiomqtt.MqttError):
            await edge.__aexit__(None, None, None)

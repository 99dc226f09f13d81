"""The mosquitto fixture: a real broker that refuses clients without credentials, and the
edge node's will (NDEATH) delivered by it when a connection dies without DISCONNECT; a broker
that goes is one error that says so, never asyncio's "Future exception was never retrieved"
(drivers/sparkplug/aiomqtt_adapter.py, `session`)."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading
from typing import Any

import aiomqtt
import pytest

from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.aiomqtt_adapter import BrokerGone, connection_ended, raw_socket, session
from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.edge import EdgeNode, MetricDef
from drivers.sparkplug.edgeclient import EdgeClient
from tests.conftest import eventually_async, scaled
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
        with pytest.raises(BrokerGone):
            async with session(edge):
                sock = raw_socket(edge)
                assert sock is not None
                sock.shutdown(socket.SHUT_RDWR)  # the network goes: no DISCONNECT packet
                message = await asyncio.wait_for(anext(aiter(probe.messages)), scaled(15))
                await eventually_async(lambda: connection_ended(edge), what="the edge sees it")
        assert str(message.topic) == "spBv1.0/plant/NDEATH/edge"
        assert message.qos == 1 and not message.retain
        payload = sp.decode(bytes(message.payload))
        assert sp.bdseq_of(payload) == 41 and not payload.HasField("seq")


def never_retrieved(handled: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> list[str]:
    """What asyncio said about futures whose exception nobody read."""
    gc.collect()  # a future says it when it is collected
    said = [str(c.get("message")) for c in handled]
    said += [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    return [m for m in said if "never retrieved" in m]


def test_a_broker_gone_is_one_error_not_an_unretrieved_future(
    mosquitto: Mosquitto,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker stops under a session that is not reading messages (a session cancelled, or
    one whose publish was refused, leaves the same way): aiomqtt's own __aexit__ leaves why the
    connection ended unread; the adapter's `session` reads it and raises it as BrokerGone."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    handled: list[dict[str, Any]] = []

    async def main() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda _, c: handled.append(c))
        client = aiomqtt.Client(**_settings(mosquitto).client_kwargs())
        try:
            async with session(client):
                await client.subscribe("x/#", qos=1)
                mosquitto.stop()  # SIGTERM: the broker closes every connection and exits
                await eventually_async(lambda: connection_ended(client), what="disconnect seen")
        except BrokerGone as err:
            assert isinstance(err.__cause__, aiomqtt.MqttCodeError)
            return str(err)
        return "the session ended without an error"

    said = asyncio.run(asyncio.wait_for(main(), scaled(60)))
    assert never_retrieved(handled, caplog) == []
    assert said.startswith("broker gone: the connection ended without a DISCONNECT ("), said


def test_an_edge_client_says_once_that_the_broker_went(
    mosquitto: Mosquitto,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One line when the broker goes, one when reconnecting fails (however many retries), and
    no unretrieved future: the broker stops, then a listener on its port that closes every
    connection at once takes its place for three reconnects."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    caplog.set_level(logging.INFO, logger="drivers.sparkplug.edgeclient")  # (the handler's too)
    handled: list[dict[str, Any]] = []
    accepted = threading.Semaphore(0)

    def refuse(listener: socket.socket) -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            conn.close()
            accepted.release()

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, c: handled.append(c))
        node = EdgeNode("plant", "edge", {"d": [MetricDef("m", sp.DataType.DOUBLE)]})
        edge = EdgeClient(node, _settings(mosquitto, "edge"), identifier="edge", label="edge")
        edge.start()
        try:
            await asyncio.wait_for(edge.connected.wait(), scaled(15))
            mosquitto.stop()
            listener = socket.create_server(("127.0.0.1", mosquitto.port), reuse_port=False)
            with listener:
                thread = threading.Thread(target=refuse, args=(listener,), daemon=True)
                thread.start()
                for _ in range(3):
                    assert await asyncio.to_thread(accepted.acquire, timeout=scaled(30))
                await asyncio.to_thread(thread.join, scaled(30))
                assert not thread.is_alive()
        finally:
            await edge.stop()

    asyncio.run(asyncio.wait_for(main(), scaled(90)))
    lines = [r.getMessage() for r in caplog.records if r.name == "drivers.sparkplug.edgeclient"]
    lost = [m for m in lines if " lost: " in m]
    assert len(lost) == 1, lines
    gone = f"edge: connection to {mosquitto.url} lost: broker gone: the connection ended without"
    assert lost[0].startswith(gone), lost
    assert len([m for m in lines if "cannot connect" in m]) == 1, lines
    assert never_retrieved(handled, caplog) == []

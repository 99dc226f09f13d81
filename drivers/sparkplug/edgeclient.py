"""The asyncio MQTT shell around an EdgeNode session: connect with the NDEATH will, subscribe
to NCMD/DCMD (and the primary host's STATE), birth, answer commands, reconnect. Shared by the
service's edge node (scada.sparkplug) and the simulator.

Every change of the session and every publish happen under one lock, in the order the
session produced them, so the `seq` on the wire is the session's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable

import aiomqtt

from drivers.sparkplug.aiomqtt_adapter import publish_now, raw_socket, require_aiomqtt, session
from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.edge import EdgeNode, Outcome, Publish, Write
from drivers.sparkplug.topics import StateTopic, parse_topic, state_topic

log = logging.getLogger(__name__)

RECONNECT_S = 0.5


def now_ms() -> int:
    return int(time.time() * 1000)


class EdgeClient:
    """Runs `node` on the broker until `stop()`.

    refresh(): called under the lock before a birth or a command, to load current values.
    on_writes(writes): DCMD/NCMD writes the session could not handle itself.
    offline(): while true, stay disconnected (a simulator's connection_drop).
    deaf(): while true, ignore incoming messages (a simulator's server_unresponsive).
    next_bdseq(): the bdSeq of the next connect from a shared counter (a cluster's), instead
    of this process's own.
    """

    def __init__(
        self,
        node: EdgeNode,
        broker: BrokerSettings,
        *,
        identifier: str,
        refresh: Callable[[], None] = lambda: None,
        on_writes: Callable[[list[Write]], None] | None = None,
        offline: Callable[[], bool] = lambda: False,
        deaf: Callable[[], bool] = lambda: False,
        next_bdseq: Callable[[], Awaitable[int]] | None = None,
        label: str = "sparkplug edge node",
    ) -> None:
        self.node = node
        self.broker = broker
        self.identifier = identifier
        self.refresh = refresh
        self.on_writes = on_writes
        self.offline = offline
        self.deaf = deaf
        self.next_bdseq = next_bdseq
        self.label = label
        self.lock = asyncio.Lock()
        self.connected = asyncio.Event()  # set while a session is up
        self.sent = 0  # messages published (for bench and status)
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def session_up(self) -> bool:
        return self._client is not None

    def start(self) -> None:
        """Start the session task; refuses at once (UnsupportedLibrary) on an aiomqtt whose
        internals the fast publish path and `cut` rely on have moved."""
        require_aiomqtt()
        self._task = asyncio.create_task(self._run(), name=self.label)

    async def stop(self) -> None:
        """A deliberate disconnect: NDEATH, then DISCONNECT
        ([tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath])."""
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                async with self.lock:
                    await asyncio.wait_for(self._send(client, [self.node.death()]), 2.0)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def step(self, produce: Callable[[], list[Publish]]) -> bool:
        """Run `produce` on the session under the lock and publish what it returns; False
        (and nothing produced) while there is no session."""
        client = self._client
        if client is None:
            return False
        async with self.lock:
            await self._send(client, produce())
        return True

    def cut(self) -> None:
        """Drop the TCP connection without an MQTT DISCONNECT, like a pulled cable: the
        broker then publishes the will (NDEATH)."""
        client = self._client
        sock = raw_socket(client) if client is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- the connection --------------------------------------------------------------------

    async def _run(self) -> None:
        said = ""  # the failure logged last: a broker that stays away is one line, not one a retry
        while True:
            while self.offline():
                await asyncio.sleep(0.1)
            try:
                await self._session()
            except Exception as err:
                up = self._client is not None  # the session had started
                mqtt = isinstance(err, aiomqtt.MqttError)
                if not mqtt:  # e.g. the shared bdSeq counter is unreachable
                    what = f"session failed: {err}"
                elif up:
                    what = f"connection to {self.broker.endpoint} lost: {err}"
                else:
                    what = f"cannot connect to {self.broker.endpoint}: {err}"
                if up or what != said:
                    log.log(logging.INFO if mqtt else logging.WARNING, "%s: %s", self.label, what)
                said = what
            else:
                said = ""
            finally:
                self._client = None
                self.connected.clear()
                self.node.disconnected()
            await asyncio.sleep(RECONNECT_S)

    async def _session(self) -> None:
        counted = await self.next_bdseq() if self.next_bdseq is not None else None
        async with self.lock:
            will = self.node.connecting(counted)
        async with session(
            aiomqtt.Client(
                **self.broker.client_kwargs(),
                identifier=self.identifier,
                will=aiomqtt.Will(will.topic, will.payload, qos=will.qos, retain=will.retain),
            )
        ) as client:
            # [tck-id-message-flow-edge-node-ncmd-subscribe] [tck-id-message-flow-device-dcmd-subscribe]
            await client.subscribe(self.node.ncmd_topic, qos=1)
            await client.subscribe(self.node.dcmd_topic, qos=1)
            if self.node.primary_host is not None:
                await client.subscribe(state_topic(self.node.primary_host), qos=1)
            async with self.lock:
                self.refresh()
                await self._send(client, self.node.connected(now_ms()).publish)
                self._client = client
            self.connected.set()
            log.info(
                "%s %s/%s connected to %s (bdSeq %d)%s",
                self.label,
                self.node.group,
                self.node.node_id,
                self.broker.endpoint,
                self.node.bdseq,
                f", waiting for primary host {self.node.primary_host}"
                if self.node.state.name == "WAITING_HOST"
                else "",
            )
            async for message in client.messages:
                if await self._handle(client, message):
                    return

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> bool:
        """One incoming message; True when the session must end (primary host offline)."""
        if self.deaf():
            return False
        topic = parse_topic(str(message.topic))
        if topic is None:
            return False
        data = message.payload if isinstance(message.payload, bytes) else b""
        async with self.lock:
            self.refresh()
            if isinstance(topic, StateTopic):
                out: Outcome = self.node.on_state(topic.host_id, data, now_ms())
            else:
                out = self.node.on_command(topic.device, data, now_ms())
            await self._send(client, out.publish)
        if out.writes:
            if self.on_writes is not None:
                self.on_writes(out.writes)
            else:
                names = ", ".join(w.metric for w in out.writes)
                log.warning("%s: refused write of %s (read-only)", self.label, names)
        if out.disconnect:
            log.info("%s: primary host offline: NDEATH sent, disconnecting", self.label)
        return out.disconnect

    async def _send(self, client: aiomqtt.Client, messages: list[Publish]) -> None:
        await send(client, messages)
        self.sent += len(messages)


async def send(client: aiomqtt.Client, messages: list[Publish]) -> None:
    """Publish in order. QoS 0 messages (every DATA and BIRTH) go straight to paho's outgoing
    queue (drivers.sparkplug.aiomqtt_adapter says why); QoS 1 (the NDEATH before a deliberate
    disconnect) waits for its PUBACK."""
    for m in messages:
        if m.qos == 0:
            publish_now(client, m.topic, m.payload, retain=m.retain)
        else:
            await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)

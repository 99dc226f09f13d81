"""An independent Sparkplug subscriber for the tests: every message under spBv1.0/ decoded with
the generated protobuf module alone (not the project's codec), in arrival order."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiomqtt

from drivers.sparkplug.sparkplug_b_pb2 import Payload
from tests.mosquitto import Mosquitto


@dataclass
class Received:
    topic: str
    kind: str  # NBIRTH, DDATA, STATE ...
    device: str | None
    payload: Any  # Payload, or the STATE JSON dict
    qos: int
    retain: bool


def value_of(metric: Payload.Metric, datatype: int) -> Any:
    """A metric's value (datatype from its birth: DATA leaves it out); None when is_null.
    Signed integers travel as two's complement in the unsigned fields."""
    if metric.is_null:
        return None
    which = metric.WhichOneof("value")
    raw = getattr(metric, which) if which else None
    if datatype in (1, 2, 3) and raw is not None:
        return raw - 2**32 if raw >= 2**31 else raw
    if datatype == 4 and raw is not None:
        return raw - 2**64 if raw >= 2**63 else raw
    return raw


class Probe:
    def __init__(self, broker: Mosquitto, user: str = "probe") -> None:
        self.broker = broker
        self.user = user
        self.messages: list[Received] = []
        self.ready = asyncio.Event()
        self.client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Probe:
        self._task = asyncio.create_task(self._run())
        await self.ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        creds = self.broker.credentials(self.user)
        async with aiomqtt.Client(
            "127.0.0.1", self.broker.port, identifier=f"probe-{id(self)}", **creds
        ) as client:
            self.client = client
            await client.subscribe("spBv1.0/#", qos=1)
            self.ready.set()
            async for m in client.messages:
                topic = str(m.topic)
                parts = topic.split("/")
                data = m.payload if isinstance(m.payload, bytes) else b""
                if parts[1] == "STATE":
                    self.messages.append(
                        Received(topic, "STATE", None, json.loads(data), m.qos, m.retain)
                    )
                    continue
                p = Payload()
                p.ParseFromString(data)
                device = parts[4] if len(parts) > 4 else None
                self.messages.append(Received(topic, parts[2], device, p, m.qos, m.retain))

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=qos, retain=retain)

    def of(self, kind: str, start: int = 0) -> list[Received]:
        return [m for m in self.messages[start:] if m.kind == kind]

"""Fuzz the WebSocket message handler: every input gets an error or a valid reply, never a raise."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scada.fanout.broadcaster import Client
from scada.fanout.messages import (
    AckData,
    MessageHandler,
    RequestError,
    ShelveData,
    UnshelveData,
)
from scada.fanout.wsframes import OTHER

LINES = [str(i) for i in range(1, 9)]


class Sink:
    """A FrameSink that keeps each message it is given (per-client framing: `write`)."""

    framing = OTHER
    kind = "asgi"

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    @property
    def dead(self) -> bool:
        return False

    def send(self, frame: bytes) -> object:
        raise AssertionError("an OTHER-framed sink gets messages, not finished frames")

    def write(self, payload: bytes) -> bool:
        self.frames.append(orjson.loads(payload))
        return True

    def write_frame(self, frame: bytes) -> bool:
        raise AssertionError("an OTHER-framed sink gets messages, not finished frames")

    def probe(self, now: float) -> None:
        return None

    def buffered(self) -> int:
        return 0

    def blocked_for(self, now: float) -> float:
        return 0.0

    def close(self, code: int, reason: str) -> None:
        raise AssertionError("the handler must not close connections")

    def detach(
        self,
        on_message: Callable[[Mapping[str, Any]], Awaitable[bool]],
        on_gone: Callable[[], None],
    ) -> bool:
        return False


class Services:
    line_ids = LINES

    def __init__(self) -> None:
        self.subscriptions: list[tuple[Any, Any]] = []

    def resubscribe(self, client: Client, lines: Any, types: Any) -> None:
        client.lines, client.types = lines, types
        self.subscriptions.append((lines, types))

    async def ack(self, client: Client, data: AckData) -> Any:
        raise RequestError("unknown_alarm", "no such alarm")

    async def shelve(self, client: Client, data: ShelveData) -> Any:
        raise RequestError("unknown_alarm", "no such alarm")

    async def unshelve(self, client: Client, data: UnshelveData) -> Any:
        raise RequestError("unknown_alarm", "no such alarm")

    async def resume(self, client: Client, cursor: int, epoch: str | None = None) -> None:
        client.send("snapshot", {"lines": [], "alarms": [], "alarm_cursor": cursor})

    async def audit_refusal(self, client: Client, action: str, target: str) -> None:
        return None


def run(raw: str | bytes, role: str = "operator") -> tuple[list[dict[str, Any]], Client]:
    sink = Sink()
    client = Client(id="c1", sink=sink, role=role)
    handler = MessageHandler(Services(), max_bytes=4096)
    asyncio.run(handler.handle(client, raw))
    return sink.frames, client


def check(frames: list[dict[str, Any]], raw: Any) -> None:
    assert frames, f"no answer to {raw!r}"
    for frame in frames:
        assert frame["type"] in ("error", "reply", "heartbeat", "snapshot")
        assert isinstance(frame["seq"], int) and frame["timestamp"].endswith("Z")
        if frame["type"] == "error":
            assert frame["data"]["code"] in (
                "invalid_json",
                "message_too_large",
                "unknown_type",
                "invalid_message",
                "forbidden",
                "unknown_alarm",
            )
        if frame["type"] == "reply":
            assert isinstance(frame["data"]["ok"], bool)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["subscribe", "ack", "shelve", "unshelve", "resume", "heartbeat", "bogus", ""]
        )
    },
    optional={"id": json_values, "data": json_values, "extra": json_values},
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(run(raw)[0], raw)


@FUZZ
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    raw = json.dumps(value)
    frames, _ = run(raw)
    check(frames, raw)


@FUZZ
@given(messages, st.sampled_from(["viewer", "operator"]))
def test_arbitrary_requests(message: dict[str, Any], role: str) -> None:
    raw = json.dumps(message)
    frames, client = run(raw, role)
    if not frames:
        # A valid request without an id is carried out silently; with an id it gets a reply.
        assert message.get("id") is None
        frames, client = run(json.dumps({**message, "id": 1}), role)
        assert frames[-1]["type"] == "reply" and frames[-1]["data"]["id"] == 1
    check(frames, raw)
    # An invalid subscribe never changes the subscription.
    if not any(f["type"] == "reply" and f["data"]["ok"] for f in frames):
        assert client.lines is None


def test_oversize_and_known_shapes() -> None:
    frames, _ = run("x" * 5000)
    assert frames[0]["data"]["code"] == "message_too_large"
    frames, client = run(json.dumps({"type": "subscribe", "id": 1, "data": {"lines": ["3"]}}))
    assert frames[-1]["data"] == {
        "id": 1,
        "ok": True,
        "result": {"lines": ["3"], "types": ["alarm", "production_data"]},
    }
    assert client.lines == frozenset({"3"})
    frames, _ = run(json.dumps({"type": "ack", "id": 2, "data": {"alarm_id": 5}}), role="viewer")
    assert frames[-1]["data"]["error"] == "forbidden"

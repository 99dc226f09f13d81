"""Python client for the dashboard protocol: an async iterator of frames that never gives up.

```python
async with PlantClient("ws://127.0.0.1:8000/ws") as client:
    await client.subscribe(lines=["2", "5"])
    async for frame in client:
        print(frame["type"], frame["seq"])
```

Same reconnect policy as the dashboard (1 s growing ×1.3 to 10 s, with jitter; no reconnect
after close 1008), and after a reconnect it sends `resume` with the newest alarm `event_id`
it saw and the epoch that id counts in, so no alarm event is missed across a dropped
connection, and none of another journal is taken for a missed one (a server with another epoch
answers with a fresh snapshot, `recovered: false`). `data_live` tells whether the server says
its plant data are live (`data_status` frames, `snapshot.data_live`; True where it says nothing).

A resume is a heavy read: a busy server refuses it `too_many_requests` (docs/protocol.md). The
client sends it as a request with an id and, while it is refused as busy, asks again from the
same cursor and epoch after a growing wait (`ResumeRetry`, as the console: 1 s doubling to 8 s,
6 asks in about 23 s); a connection that drops first leaves that cursor to the next one. Past
the bound, or refused for another reason, it gives up: one warning line says which events
could not be replayed and where to read them (`/api/alarms/history`), and `resume_failed` is
True until a later resume is served. The connection's snapshot still shows the current alarm
state; only the events missed while away are not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger(__name__)

INITIAL_DELAY_S = 1.0
GROWTH = 1.3
MAX_DELAY_S = 10.0
JITTER = 0.2
CLOSE_POLICY = 1008


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    base = min(INITIAL_DELAY_S * GROWTH**attempt, MAX_DELAY_S)
    r = (rng or random).uniform(-JITTER, JITTER)
    return base * (1 + r)


@dataclass(frozen=True)
class ResumeRetry:
    """How often a resume refused as busy is asked for (the console's RESUME_RETRY, ws.js):
    `tries` asks in all on a connection, waiting `initial_s` doubling up to `max_s` between."""

    tries: int = 6
    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 8.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError(f"ResumeRetry.tries must be at least 1 (one ask), not {self.tries}")
        if not 0 <= self.initial_s <= self.max_s or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(
                "ResumeRetry needs 0 <= initial_s <= max_s, factor >= 1 and 0 <= jitter < 1: "
                f"{self}"
            )

    def delay(self, refused: int, rng: random.Random | None = None) -> float:
        """The wait after the `refused`-th refusal (1 for the first)."""
        base = min(self.initial_s * self.factor ** (refused - 1), self.max_s)
        return base * (1 + (rng or random).uniform(-self.jitter, self.jitter))


class PolicyClose(Exception):
    """The server closed with 1008 (credentials refused or expired): reconnecting won't help."""


class ConnectionState(StrEnum):
    """The client's connection, as `PlantClient.state` shows it."""

    DISCONNECTED = "disconnected"  # not yet connected, closed, or dropped (before a retry)
    CONNECTING = "connecting"  # the first attempt of a connect()
    RECONNECTING = "reconnecting"  # a later attempt, after a backoff
    CONNECTED = "connected"


# The moves the client makes; any other is a bug (InvalidTransition), as in websockets' State.
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.DISCONNECTED: frozenset(
        {ConnectionState.DISCONNECTED, ConnectionState.CONNECTING}
    ),
    ConnectionState.CONNECTING: frozenset(
        {
            ConnectionState.CONNECTING,  # a connect() that raised, called again
            ConnectionState.RECONNECTING,
            ConnectionState.CONNECTED,
            ConnectionState.DISCONNECTED,
        }
    ),
    ConnectionState.RECONNECTING: frozenset(
        {
            ConnectionState.CONNECTING,
            ConnectionState.RECONNECTING,
            ConnectionState.CONNECTED,
            ConnectionState.DISCONNECTED,
        }
    ),
    # RECONNECTING: the connection dropped while the resume was being sent.
    ConnectionState.CONNECTED: frozenset(
        {ConnectionState.DISCONNECTED, ConnectionState.RECONNECTING}
    ),
}


class InvalidTransition(RuntimeError):
    """A connection state change the client never makes."""


class PlantClient:
    def __init__(
        self,
        url: str = "ws://127.0.0.1:8000/ws",
        *,
        token: str | None = None,
        reconnect: bool = True,
        extra_headers: dict[str, str] | None = None,
        open_timeout: float = 5.0,
        resume_retry: ResumeRetry | None = None,
    ) -> None:
        self.url = url
        self.token = token or os.environ.get("SCADA_TOKEN")
        self.reconnect = reconnect
        self.extra_headers = dict(extra_headers or {})
        self.open_timeout = open_timeout
        self.alarm_cursor: int | None = None
        self.epoch: str | None = None  # what alarm_cursor counts in; None: the server has none
        self.data_status: dict[str, Any] | None = None  # the server's last word while not live
        self.last_seq = 0
        self.gaps = 0
        self.connects = 0
        self.resume_retry = resume_retry or ResumeRetry()
        self.resume_refusals = 0  # asks refused as busy, over the client's life
        self.resume_failed = False  # the last resume gave up: the missed events were not replayed
        self.state = ConnectionState.DISCONNECTED
        self._unreplayed: dict[str, Any] | None = None  # a resume not served yet
        self._resume_id: int | None = None  # its request on this connection, awaiting the reply
        self._resume_asks = 0  # on this connection
        self._resume_task: asyncio.Task[None] | None = None  # the wait before asking again
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._subscription: dict[str, Any] | None = None
        self._first_snapshot = True
        self._closed = False

    async def __aenter__(self) -> PlantClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, retrying with backoff when `reconnect` is on (again after `close` too: the
        cursor and epoch are kept, so the new connection resumes where the old one ended)."""
        self._closed = False
        attempt = 0
        while True:
            self._move(ConnectionState.CONNECTING if attempt == 0 else ConnectionState.RECONNECTING)
            try:
                await self._open()
                return
            except InvalidStatus as err:
                if err.response.status_code in (401, 403) or not self.reconnect:
                    raise
            except (OSError, TimeoutError, ConnectionClosed):
                if not self.reconnect:
                    raise
            delay = backoff_delay(attempt)
            attempt += 1
            log.info("connect to %s failed; retry %d in %.1f s", self.url, attempt, delay)
            await asyncio.sleep(delay)

    async def _open(self) -> None:
        headers = dict(self.extra_headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._ws = await connect(
            self.url,
            additional_headers=headers,
            open_timeout=self.open_timeout,
            max_size=2**24,
            compression=None,
            ping_interval=None,
        )
        self.last_seq = 0
        self.connects += 1
        self._first_snapshot = True
        self._stop_resume()
        self._move(ConnectionState.CONNECTED)
        if self.connects > 1:
            if self._subscription is not None:
                await self._send("subscribe", self._subscription)
            # Taken before this connection's snapshot is read: the old cursor and epoch. A
            # previous connection's resume that was never served is asked for instead.
            if self.alarm_cursor is not None and self._unreplayed is None:
                self._unreplayed = self.resume_data()
            if self._unreplayed is not None:
                self._resume_asks = 0
                await self._ask_resume()

    def resume_data(self) -> dict[str, Any]:
        """What a `resume` sends: the cursor, and its epoch where the server gave one (a server
        without epochs refuses unknown keys)."""
        data: dict[str, Any] = {"alarm_cursor": self.alarm_cursor}
        if self.epoch is not None:
            data["epoch"] = self.epoch
        return data

    @property
    def data_live(self) -> bool:
        """False while the server says its plant data are not live (its socket may be fine)."""
        return self.data_status is None

    async def close(self) -> None:
        self._closed = True
        task = self._stop_resume()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ws is not None:
            await self._ws.close()
        self._move(ConnectionState.DISCONNECTED)

    # -- resume --------------------------------------------------------------------------

    async def _ask_resume(self) -> None:
        """Send the unserved resume as a request; `_track` reads its reply."""
        assert self._unreplayed is not None
        self._resume_id = next(self._ids)
        self._resume_asks += 1
        await self._send("resume", self._unreplayed, self._resume_id)

    async def _ask_resume_after(self, delay: float, ws: ClientConnection) -> None:
        await asyncio.sleep(delay)
        if self._ws is not ws or self._closed or self._unreplayed is None:
            return
        # A connection that closes meanwhile: recv sees it, the next one asks again.
        with contextlib.suppress(ConnectionClosed):
            await self._ask_resume()

    def _stop_resume(self) -> asyncio.Task[None] | None:
        """Forget this connection's resume request and cancel its wait (the cursor is kept)."""
        task, self._resume_task, self._resume_id = self._resume_task, None, None
        if task is not None and not task.done():
            task.cancel()
            return task
        return None

    def _resume_answered(self, reply: dict[str, Any]) -> None:
        self._resume_id = None
        data, self._unreplayed = self._unreplayed, None
        if reply.get("ok") is True or data is None:
            self.resume_failed = False
            return
        error = reply.get("error")
        policy = self.resume_retry
        if error == "too_many_requests":
            self.resume_refusals += 1
            if self._resume_asks < policy.tries and self._ws is not None:
                self._unreplayed = data
                delay = policy.delay(self._resume_asks)
                log.info(
                    "resume from alarm event %s refused as busy (ask %d of %d); again in %.1f s",
                    data["alarm_cursor"],
                    self._resume_asks,
                    policy.tries,
                    delay,
                )
                self._resume_task = asyncio.get_running_loop().create_task(
                    self._ask_resume_after(delay, self._ws)
                )
                return
            why = f"the server stayed busy (asked {self._resume_asks} times)"
        else:
            why = f"{error}: {reply.get('message', '')}"
        self.resume_failed = True
        log.warning(
            "alarm events after event %s (epoch %s) missed while disconnected could not be "
            "replayed: %s; read them from GET %s/api/alarms/history",
            data["alarm_cursor"],
            data.get("epoch", "-"),
            why,
            self._http_base(),
        )

    def _http_base(self) -> str:
        """The server's HTTP address beside the socket's (ws://h:8000/ws -> http://h:8000)."""
        url = "http" + self.url[2:] if self.url.startswith("ws") else self.url
        url = url.split("?", 1)[0].rstrip("/")
        return url.removesuffix("/ws")

    def _move(self, to: ConnectionState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.url}: {self.state} -> {to}")
        self.state = to

    # -- requests ------------------------------------------------------------------------

    async def _send(self, type_: str, data: Any, request_id: Any = None) -> None:
        if self._ws is None:
            raise ConnectionError("not connected")
        message: dict[str, Any] = {"type": type_, "data": data}
        if request_id is not None:
            message["id"] = request_id
        await self._ws.send(orjson.dumps(message).decode())

    async def request(self, type_: str, data: Any, timeout: float = 5.0) -> dict[str, Any]:
        """Send a request with an id and wait for its `reply` (while iterating elsewhere)."""
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(type_, data, request_id)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    async def subscribe(self, lines: list[str] | str = "*", types: list[str] | None = None) -> None:
        data: dict[str, Any] = {"lines": lines}
        if types is not None:
            data["types"] = types
        self._subscription = data
        await self._send("subscribe", data)

    async def heartbeat(self, data: Any = None) -> None:
        await self._send("heartbeat", data if data is not None else {})

    async def ack(self, alarm_id: int, comment: str = "") -> dict[str, Any]:
        return await self.request("ack", {"alarm_id": alarm_id, "comment": comment})

    # -- frames --------------------------------------------------------------------------

    async def recv(self) -> dict[str, Any]:
        """The next frame; reconnects underneath when the connection drops."""
        while True:
            if self._ws is None:
                await self.connect()
            assert self._ws is not None
            try:
                raw = await self._ws.recv()
            except ConnectionClosed as err:
                code = err.rcvd.code if err.rcvd is not None else 1006
                self._ws = None
                self._stop_resume()
                self._move(ConnectionState.DISCONNECTED)
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError(f"connection closed ({code})"))
                if self._closed or not self.reconnect:
                    raise
                if code == CLOSE_POLICY:
                    raise PolicyClose(err.rcvd.reason if err.rcvd else "policy") from err
                await asyncio.sleep(backoff_delay(0))
                continue
            frame: dict[str, Any] = orjson.loads(raw)
            self._track(frame)
            return frame

    def _track(self, frame: dict[str, Any]) -> None:
        seq = frame.get("seq")
        if isinstance(seq, int):
            if self.last_seq and seq != self.last_seq + 1:
                self.gaps += 1
            self.last_seq = seq
        kind, data = frame.get("type"), frame.get("data")
        if kind == "alarm" and isinstance(data, dict) and isinstance(data.get("event_id"), int):
            self.alarm_cursor = max(self.alarm_cursor or 0, data["event_id"])
        elif kind == "snapshot" and isinstance(data, dict):
            cursor = data.get("alarm_cursor")
            if isinstance(cursor, int):
                # As given: after a journal reset the server's cursor may be lower than ours.
                self.alarm_cursor = cursor
            epoch = data.get("epoch")
            self.epoch = epoch if isinstance(epoch, str) else None
            # A connection's first snapshot speaks for its server (without data_live: an
            # older server, live by its frames alone); later ones change it only by saying so.
            first, self._first_snapshot = self._first_snapshot, False
            live = data.get("data_live")
            if live is True or (first and live is None):
                self.data_status = None
            elif live is False and self.data_status is None:
                self.data_status = {"live": False, "reason": "", "since": None}
        elif kind == "data_status" and isinstance(data, dict):
            self.data_status = None if data.get("live") is not False else dict(data)
        elif kind == "reply" and isinstance(data, dict):
            if self._resume_id is not None and data.get("id") == self._resume_id:
                self._resume_answered(data)
                return
            future = self._pending.get(data.get("id"))
            if future is not None and not future.done():
                future.set_result(data)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed:
                return


@contextlib.asynccontextmanager
async def open_client(url: str, **kwargs: Any) -> AsyncIterator[PlantClient]:
    client = PlantClient(url, **kwargs)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


__all__ = [
    "PlantClient",
    "PolicyClose",
    "ResumeRetry",
    "backoff_delay",
    "open_client",
    "websockets",
]

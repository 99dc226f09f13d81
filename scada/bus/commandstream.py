"""Operator commands (ack, shelve, unshelve) from gateways to the active ingest node.

A gateway appends a command to its own stream `commands:<node>` (its ACL user may write no
other: the stream names the gateway, whatever the entry says) with a request id (the
client's, or a fresh one); the active ingest node finds the gateways' streams (SCAN, every
`rescan_every` s), reads them in the consumer group `ingest`, applies the command (journal
commit, with the request id in the ledger, see `ledger`), publishes the reply on that
gateway's `replies:<node>` stream and only then acknowledges the entry (XACK). An entry
whose consumer died before acknowledging stays pending and is claimed by the next active node
after `claim_idle` s (XAUTOCLAIM); the ledger turns that second delivery, and any retry with
the same request id, into the stored answer. An entry that is no command is acknowledged and
dropped (logged), so it cannot hold up the ones behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from scada.bus import ledgerstream
from scada.bus.conn import raise_if_cancelled, stream_entries
from scada.bus.keys import BusKeys, text
from scada.bus.lease import Lease
from scada.bus.publish import FencedPublisher

log = logging.getLogger(__name__)

GROUP = "ingest"


@dataclass(frozen=True, slots=True)
class Command:
    request_id: str
    kind: str
    body: dict[str, Any]
    reply_to: str  # the gateway: on Redis the one whose stream it came on
    entry: str  # its stream entry id (what XACK needs)
    stream: str = ""  # the stream it came on (Redis; "" on a MemoryBus)


@dataclass(frozen=True, slots=True)
class Reply:
    request_id: str
    result: dict[str, Any]
    duplicate: bool  # answered from the ledger: the command had been applied before


def _command(keys: BusKeys, stream: str, entry: str, fields: dict[bytes, bytes]) -> Command | None:
    """The entry as a command; None if it is not one (no request id, kind or JSON body)."""
    try:
        return Command(
            request_id=fields[b"r"].decode(),
            kind=fields[b"k"].decode(),
            body=dict(orjson.loads(fields[b"b"])),
            reply_to=keys.command_node(stream),  # not the `g` the entry claims
            entry=entry,
            stream=stream,
        )
    except (KeyError, ValueError, TypeError):
        return None


class CommandSender:
    """The gateway side: send a command, wait for its reply."""

    def __init__(self, redis: Redis, keys: BusKeys, node: str, *, maxlen: int = 10_000) -> None:
        self.redis = redis
        self.keys = keys
        self.node = node
        self.maxlen = maxlen
        self._reply_cursor: str | None = None
        self._early: dict[str, Reply] = {}  # replies read while waiting for another one

    async def send(self, kind: str, body: dict[str, Any], request_id: str | None = None) -> str:
        """Append a command; returns its request id (pass the same id again to retry)."""
        await self._start_replies()
        request_id = request_id or uuid.uuid4().hex
        fields: dict[Any, Any] = {
            "r": request_id,
            "k": kind,
            "b": orjson.dumps(body),
            "g": self.node,
        }
        stream = self.keys.commands(self.node)
        await self.redis.xadd(stream, fields, maxlen=self.maxlen, approximate=True)
        return request_id

    async def request(
        self,
        kind: str,
        body: dict[str, Any],
        request_id: str | None = None,
        timeout: float = 5.0,
    ) -> Reply:
        """Send and wait for the reply; TimeoutError if none comes (retry with the same id)."""
        request_id = await self.send(kind, body, request_id)
        return await asyncio.wait_for(self.reply(request_id), timeout)

    async def reply(self, request_id: str) -> Reply:
        while request_id not in self._early:
            # A blocking read cancelled by `request`'s timeout may swallow the cancellation
            # (redis-py): without this the wait went on for good once no reply could come.
            raise_if_cancelled()
            for reply in await self.read_replies():
                self._early[reply.request_id] = reply
        return self._early.pop(request_id)

    async def _start_replies(self) -> None:
        if self._reply_cursor is None:
            last: Any = await self.redis.xrevrange(self.keys.replies(self.node), count=1)
            self._reply_cursor = text(last[0][0]) if last else "0-0"

    async def read_replies(self, block: float = 1.0) -> list[Reply]:
        """Replies on this gateway's stream since the last call, waiting up to `block` s."""
        await self._start_replies()
        stream = self.keys.replies(self.node)
        answer = await self.redis.xread(
            {stream: self._reply_cursor or "0-0"}, block=int(block * 1000)
        )
        replies: list[Reply] = []
        for _, entries in stream_entries(answer):
            for entry, fields in entries:
                self._reply_cursor = entry
                data = orjson.loads(fields[b"e"])
                replies.append(Reply(data["request_id"], data["result"], data["duplicate"]))
        return replies


Apply = Callable[[Command], Awaitable[dict[str, Any]]]
Lookup = Callable[[str], dict[str, Any] | None]


class CommandConsumer:
    """The active ingest side: read, apply once, reply, acknowledge."""

    def __init__(
        self,
        redis: Redis,
        keys: BusKeys,
        lease: Lease,
        *,
        apply: Apply,
        lookup: Lookup,
        claim_idle: float = 5.0,
        reply_maxlen: int = 1_000,
        ledger_maxlen: int = 10_000,
        rescan_every: float = 1.0,
    ) -> None:
        """`apply(command)` journals the command's effect and its request id in one commit
        and returns the result; `lookup(request_id)` returns the stored result of an applied
        command or None (it is called in a worker thread)."""
        self.redis = redis
        self.keys = keys
        self.lease = lease
        self.apply = apply
        self.lookup = lookup
        self.claim_idle = claim_idle
        self.rescan_every = rescan_every
        self.streams: set[str] = set()  # the gateways' command streams found so far
        self._scanned_at: float | None = None
        self.reply_maxlen = reply_maxlen
        self.ledger_maxlen = ledger_maxlen
        self.publisher = FencedPublisher(redis, keys)
        self.applied = 0
        self.duplicates = 0
        self.malformed = 0

    async def ensure_group(self) -> None:
        """Find every gateway's command stream and create the consumer group (from the
        stream's start) on each that lacks it."""
        self.streams = set()
        await self._discover()

    async def _discover(self) -> None:
        """Take in the command streams that appeared since the last look (a gateway's first
        command makes its stream)."""
        found: set[str] = set()
        async for key in self.redis.scan_iter(
            match=self.keys.commands_pattern, count=1000, _type="STREAM"
        ):
            found.add(text(key))
        for stream in sorted(found - self.streams):
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0")
            except ResponseError as err:
                if "BUSYGROUP" in str(err):
                    continue
                if "requires the key to exist" in str(err):  # gone since the scan
                    found.discard(stream)
                    continue
                raise
        self.streams |= found
        self._scanned_at = asyncio.get_running_loop().time()

    async def fetch(self, count: int = 100, block: float = 1.0) -> list[Command]:
        """Commands to handle: first those a dead consumer left unacknowledged, then new ones."""
        try:
            return await self._fetch(count, block)
        except ResponseError as err:
            # NOGROUP: a stream lost with its group (Redis restarted empty) and made again by
            # its gateway; UNBLOCKED: one deleted while this read waited on it. Look again,
            # make the groups again.
            if not str(err).startswith(("NOGROUP", "UNBLOCKED")):
                raise
            self.streams, self._scanned_at = set(), None
            return []

    async def _fetch(self, count: int, block: float) -> list[Command]:
        now = asyncio.get_running_loop().time()
        if self._scanned_at is None or now - self._scanned_at >= self.rescan_every:
            await self._discover()
        consumer = self.lease.node
        commands: list[Command] = []
        for stream in sorted(self.streams):
            claimed: Any = await self.redis.xautoclaim(
                stream, GROUP, consumer, int(self.claim_idle * 1000), count=count
            )
            # [next start id, [(id, fields)], deleted ids]; fields None: trimmed meanwhile.
            entries = [(text(entry), fields) for entry, fields in claimed[1] if fields]
            commands += await self._commands(stream, entries)
        if commands:
            return commands
        if not self.streams:  # no gateway has sent anything yet
            await asyncio.sleep(min(block, self.rescan_every))
            return []
        answer = await self.redis.xreadgroup(
            GROUP,
            consumer,
            dict.fromkeys(sorted(self.streams), ">"),
            count=count,
            block=int(block * 1000),
        )
        for stream, entries in stream_entries(answer):
            commands += await self._commands(stream, entries)
        return commands

    async def _commands(self, stream: str, entries: list[tuple[str, Any]]) -> list[Command]:
        """The entries that are commands; any other is acknowledged and dropped (logged): an
        entry nobody can apply must not stop the commands behind it."""
        commands = []
        for entry, fields in entries:
            command = _command(self.keys, stream, entry, fields)
            if command is None:
                self.malformed += 1
                log.warning("%s %s: not a command, dropped", stream, entry)
                await self.redis.xack(stream, GROUP, entry)
            else:
                commands.append(command)
        return commands

    async def handle(self, command: Command) -> Reply:
        """Apply (unless already applied), reply, then acknowledge the entry."""
        fence = self.lease.fence()
        stored = await asyncio.to_thread(self.lookup, command.request_id)
        if stored is None:
            self.lease.fence()  # the journal write below must not outlive the lease
            result, duplicate = await self.apply(command), False
            self.applied += 1
            # The standby's ledger learns it too (scada.bus.ledgerstream), before the reply.
            entry = ledgerstream.encode(command.request_id, result, time.time())
            await self.publisher.publish(
                self.keys.ledger, fence, [("*", entry)], maxlen=self.ledger_maxlen
            )
        else:
            result, duplicate = stored, True
            self.duplicates += 1
        reply = Reply(command.request_id, result, duplicate)
        payload = orjson.dumps(
            {"request_id": reply.request_id, "result": result, "duplicate": duplicate}
        )
        await self.publisher.publish(
            self.keys.replies(command.reply_to), fence, [("*", payload)], maxlen=self.reply_maxlen
        )
        await self.redis.xack(command.stream, GROUP, command.entry)
        return reply

    async def run(self) -> None:
        """Handle commands while this node holds the lease, until cancelled."""
        await self.ensure_group()
        while True:
            raise_if_cancelled()  # a cancelled blocking read may have been swallowed
            if not self.lease.held():
                await asyncio.sleep(0.2)
                continue
            for command in await self.fetch():
                await self.handle(command)

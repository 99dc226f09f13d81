"""One delivery worker per target: sends its outbox rows in order until each is confirmed.

A failure keeps the rows queued and waits (exponential backoff) before the same rows are
tried again, so a target's order never changes. `TargetHealth` logs the first failure of an
outage and the recovery, once each, whatever the number of attempts in between.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from scada.notify.outbox import Outbox, Row
from scada.notify.payload import (
    EVENT_ID_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    email_message,
    signature,
)
from scada.notify.settings import EmailTarget, RetrySettings, WebhookTarget
from scada.notify.transport import (
    DeliveryError,
    post_json,
    redacted_url,
    send_mail,
    tls_context,
)

log = logging.getLogger(__name__)

Db = Callable[..., Awaitable[Any]]  # runs an Outbox method in the outbox thread


class TargetHealth:
    """In-memory view of one target's outage, for logs and the API."""

    def __init__(self, name: str, destination: str, clock: Callable[[], float]) -> None:
        self.name = name
        self.destination = destination
        self._clock = clock
        self.failing_since: float | None = None
        self.consecutive_failures = 0
        self.next_attempt_at: float | None = None

    def failure(self, reason: str, retry_in: float) -> None:
        now = self._clock()
        self.consecutive_failures += 1
        self.next_attempt_at = now + retry_in
        if self.failing_since is None:
            self.failing_since = now
            log.warning(
                "notifications to %s (%s) failing: %s; retrying with backoff, "
                "logged again on recovery",
                self.name,
                self.destination,
                reason,
            )

    def success(self, count: int) -> None:
        if self.failing_since is not None:
            log.info(
                "notifications to %s recovered after %.0f s and %d failed attempt(s); "
                "%d notification(s) delivered",
                self.name,
                self._clock() - self.failing_since,
                self.consecutive_failures,
                count,
            )
        self.failing_since = None
        self.consecutive_failures = 0
        self.next_attempt_at = None


def backoff(retry: RetrySettings, failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure (n >= 1)."""
    exponent = min(failures - 1, 64)
    return float(min(retry.max_seconds, retry.initial_seconds * retry.multiplier**exponent))


class TargetWorker:
    """The loop shared by both kinds: take rows, send, mark delivered or back off."""

    kind = "target"

    def __init__(
        self,
        name: str,
        destination: str,
        retry: RetrySettings,
        outbox: Outbox,
        db: Db,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.retry = retry
        self.outbox = outbox
        self.db = db
        self.clock = clock
        self.health = TargetHealth(name, destination, clock)
        self.wake = asyncio.Event()

    async def run(self) -> None:
        await self.prepare()
        while True:
            self.wake.clear()
            rows = await self.db(self.outbox.head, self.name, 1)
            if not rows:
                await self.wake.wait()
                continue
            rows = await self.ready(rows)
            try:
                await self.send(rows)
            except DeliveryError as err:
                await self.db(
                    self.outbox.failed, self.name, [r.id for r in rows], str(err), self.clock()
                )
                delay = backoff(self.retry, self.health.consecutive_failures + 1)
                self.health.failure(str(err), delay)
                await asyncio.sleep(delay)
            else:
                await self.db(self.outbox.delivered, self.name, [r.id for r in rows], self.clock())
                self.health.success(len(rows))

    async def prepare(self) -> None:
        """Once per start of `run`, before the first row."""

    async def ready(self, head: list[Row]) -> list[Row]:
        """Wait until the target may send, then return the rows to send together."""
        return head

    async def send(self, rows: list[Row]) -> None:
        raise NotImplementedError


class WebhookWorker(TargetWorker):
    kind = "webhook"

    def __init__(self, target: WebhookTarget, retry: RetrySettings, *args: Any) -> None:
        super().__init__(target.name, redacted_url(target.url), target.retry or retry, *args)
        self.target = target
        self._secret = target.secret_value()
        self._context = tls_context(target.ca_file) if target.url.startswith("https:") else None

    async def send(self, rows: list[Row]) -> None:
        for row in rows:
            headers = {
                SIGNATURE_HEADER: signature(self._secret, row.body),
                EVENT_ID_HEADER: row.event_id,
                # One per (event, target), the same on every attempt and on either node of a
                # cluster (the notification id starts with the shared journal epoch there).
                IDEMPOTENCY_HEADER: f"{row.event_id}/{self.name}",
                "X-Scada-Delivery-Attempt": str(row.attempts + 1),
            }
            await post_json(
                self.target.url,
                row.body,
                headers,
                timeout=self.target.timeout_seconds,
                context=self._context,
            )


class TokenBucket:
    """At most `capacity` sends at once, refilled at capacity per `period` seconds."""

    def __init__(self, capacity: int, period: float, monotonic: Callable[[], float]) -> None:
        self.capacity = capacity
        self.rate = capacity / period
        self._monotonic = monotonic
        self._tokens = float(capacity)
        self._stamp = monotonic()

    @property
    def tokens(self) -> float:
        """Tokens there now."""
        self._refill()
        return self._tokens

    def restore(self, tokens: float, elapsed: float) -> None:
        """Go on from a bucket that held `tokens` `elapsed` seconds ago (a restart: measured
        on the wall clock; a clock stepped back counts as no time, never as a refill)."""
        self._tokens = min(self.capacity, max(0.0, tokens) + max(0.0, elapsed) * self.rate)
        self._stamp = self._monotonic()

    def _refill(self) -> None:
        now = self._monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self) -> float:
        """Take a token and return 0, or return the seconds until one is there."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def take(self) -> None:
        while (wait := self.try_take()) > 0:
            await asyncio.sleep(wait)


class EmailWorker(TargetWorker):
    """One mail per event while the rate limit allows, else (and in digest mode) everything
    waiting goes into one digest mail."""

    kind = "email"

    def __init__(self, target: EmailTarget, retry: RetrySettings, *args: Any) -> None:
        super().__init__(
            target.name, f"smtp://{target.host}:{target.port}", target.retry or retry, *args
        )
        self.target = target
        self.bucket = TokenBucket(target.max_messages, target.per_minutes * 60.0, time.monotonic)
        self._context = tls_context(target.ca_file)
        # smtplib blocks: its own thread, so a slow mail server never holds a shared pool.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"notify-smtp-{target.name}")

    async def prepare(self) -> None:
        """The rate limit goes on where the last run (this process or one before) left it."""
        saved = await self.db(self.outbox.bucket, self.name)
        if saved is not None:
            tokens, at = saved
            self.bucket.restore(tokens, self.clock() - at)

    async def take_token(self) -> None:
        """Wait for a token; the bucket is stored before the mail goes out, so a restart
        (or a crash right after the send) never finds more tokens than were left."""
        await self.bucket.take()
        await self.db(self.outbox.save_bucket, self.name, self.bucket.tokens, self.clock())

    async def ready(self, head: list[Row]) -> list[Row]:
        if self.target.digest_minutes > 0:
            due = head[0].created_at + self.target.digest_minutes * 60.0
            if (wait := due - self.clock()) > 0:
                await asyncio.sleep(wait)
        else:
            await self.take_token()
        rows: list[Row] = await self.db(
            self.outbox.head, self.name, self.target.max_events_per_message
        )
        return rows or head

    async def send(self, rows: list[Row]) -> None:
        t = self.target
        message = email_message(
            [r.body for r in rows], sender=t.sender, to=t.to, subject_prefix=t.subject_prefix
        )
        call = functools.partial(
            send_mail,
            message,
            host=t.host,
            port=t.port,
            security=t.security,
            username=t.username,
            password=t.password_value(),
            timeout=t.timeout_seconds,
            context=self._context,
        )
        await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

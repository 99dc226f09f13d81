"""Notifier: the long-running notification worker (start()/stop(), wired in the lifespan).

It owns the outbox (one dedicated thread does all its SQLite work, so an fsync there never
occupies the pool the alarm journal commits through), the feeder and one delivery worker
per target.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from scada.core.config import PlantConfig, resolve_data_path
from scada.core.timefmt import iso_or_none
from scada.notify.delivery import EmailWorker, TargetWorker, WebhookWorker
from scada.notify.feeder import CommittedEvents, Feeder
from scada.notify.outbox import Outbox
from scada.notify.settings import NotificationsConfig, WebhookTarget

log = logging.getLogger(__name__)

RESTART_DELAY = 5.0  # seconds before a failed worker runs again
HEALTHY_RUN = 60.0  # a worker that ran this long before failing had recovered


class Notifier:
    def __init__(
        self,
        config: NotificationsConfig,
        outbox_path: Path,
        source: CommittedEvents,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.outbox_path = outbox_path
        self.source = source
        self.clock = clock
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="notify-outbox")
        self._tasks: list[asyncio.Task[None]] = []
        self.outbox: Outbox | None = None
        self.feeder: Feeder | None = None
        self.workers: dict[str, TargetWorker] = {}

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def start(
        self, skip_through: int = 0, *, handover: bool = False, instance: str | None = None
    ) -> None:
        """`skip_through`: events up to this journal id were notified elsewhere (the other
        node of a cluster delivered them): never route them. `handover`: `skip_through` is
        that node's delivered-through mark, so a new outbox starts there (Feeder.open).
        `instance`: the id every notification id starts with (a cluster's journal epoch, so
        both nodes give an event the same notification id; default: the outbox's own)."""
        outbox = await self.db(Outbox, self.outbox_path, max_queued=self.config.max_queued)
        self.outbox = outbox
        retry = self.config.retry
        for target in self.config.targets:
            args = (retry, outbox, self.db, self.clock)
            worker: TargetWorker = (
                WebhookWorker(target, *args)
                if isinstance(target, WebhookTarget)
                else EmailWorker(target, *args)
            )
            self.workers[target.name] = worker
        for name, stats in outbox.stats.items():
            if name not in self.workers and stats.queued:
                log.warning(
                    "notification outbox holds %d notification(s) for %s, which is no longer "
                    "configured: kept, not sent",
                    stats.queued,
                    name,
                )
        self.feeder = Feeder(self.config, self.source, outbox, self.db, self.clock, self._wake)
        # Subscribe before reading the cursor: a commit in between only wakes the feeder.
        # (A stopped feeder's listener stays subscribed; it only sets an Event.)
        self.source.on_committed(self.feeder.committed)
        await self.feeder.open(skip_through, handover=handover)
        if (
            handover
            and instance is not None
            and (gone := await self.db(outbox.forget_through, instance, skip_through))
        ):
            log.info(
                "notifications: %d queued notification(s) of events up to id %d dropped: the "
                "other node delivered them",
                gone,
                skip_through,
            )
        if instance is not None:
            await self.db(outbox.adopt_instance, instance)
        self._tasks = [self._spawn(self.feeder.run, "feeder")]
        self._tasks += [self._spawn(w.run, w.name) for w in self.workers.values()]
        log.info(
            "notifications: %d rule(s), %d target(s), outbox %s",
            len(self.config.rules),
            len(self.workers),
            self.outbox_path,
        )

    async def delivered_through(self) -> int:
        """The newest journal id up to which every event's notifications are delivered or
        dropped (reminders aside): what a cluster node taking over need not send again."""
        assert self.feeder is not None and self.outbox is not None
        routed = self.feeder.cursor  # read first: rows of later events only raise the min
        pending = await self.db(self.outbox.oldest_pending)
        return routed if pending is None else min(routed, pending - 1)

    def _spawn(self, run: Callable[[], Awaitable[None]], name: str) -> asyncio.Task[None]:
        return asyncio.create_task(self._supervise(run, name), name=f"notify-{name}")

    async def _supervise(self, run: Callable[[], Awaitable[None]], name: str) -> None:
        """Keep a worker running: an unexpected error (the outbox disk full, a bug) is logged
        once per streak and the worker starts again from the outbox, which lost nothing."""
        failing = False
        while True:
            started = time.monotonic()
            try:
                await run()
                return
            except Exception:
                # A run that lasted a while was a recovery: its failure starts a new streak.
                if not failing or time.monotonic() - started > HEALTHY_RUN:
                    log.exception(
                        "notification worker %s failed; restarting it every %g s",
                        name,
                        RESTART_DELAY,
                    )
                failing = True
            await asyncio.sleep(RESTART_DELAY)

    def _wake(self, targets: set[str]) -> None:
        for name in targets:
            if worker := self.workers.get(name):
                worker.wake.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for worker in self.workers.values():
            if isinstance(worker, EmailWorker):
                worker.close()
        if self.outbox is not None:
            await self.db(self.outbox.close)
        self._thread.shutdown(wait=True)

    async def snapshot(self) -> dict[str, Any]:
        """Delivery state per target, for GET /api/notifications."""
        assert self.outbox is not None
        oldest = await self.db(self.outbox.oldest_queued)
        targets = []
        for name, worker in self.workers.items():
            stats = self.outbox.target(name)
            targets.append(
                {
                    "name": name,
                    "kind": worker.kind,
                    "destination": worker.health.destination,
                    "queued": stats.queued,
                    "delivered": stats.delivered,
                    "failed_attempts": stats.failed_attempts,
                    "dropped": stats.dropped,
                    "last_error": stats.last_error,
                    "last_error_at": iso_or_none(stats.last_error_at),
                    "last_success": iso_or_none(stats.last_success),
                    "outage_since": iso_or_none(stats.outage_since),
                    "oldest_queued_at": iso_or_none(oldest.get(name)),
                    "next_attempt_at": iso_or_none(worker.health.next_attempt_at),
                }
            )
        return {
            "enabled": True,
            "rules": len(self.config.rules),
            "cursor": self.feeder.cursor if self.feeder else 0,
            "journal_cursor": self.source.cursor(),
            "targets": targets,
        }

    def metrics(self) -> Iterator[Metric]:
        """For Runtime.metric_sources: read on the event loop, from memory only."""
        if self.outbox is None:
            return
        per_target = [(name, self.outbox.target(name)) for name in self.workers]
        families = (
            (GaugeMetricFamily, "scada_notify_queued", "Notifications waiting.", "queued"),
            (CounterMetricFamily, "scada_notify_delivered", "Confirmed.", "delivered"),
            (
                CounterMetricFamily,
                "scada_notify_failed_attempts",
                "Delivery attempts that failed.",
                "failed_attempts",
            ),
            (
                CounterMetricFamily,
                "scada_notify_dropped",
                "Oldest notifications dropped from a full outbox.",
                "dropped",
            ),
        )
        for kind, name, help_, attr in families:
            family = kind(name, help_, labels=["target"])
            for target, stats in per_target:
                family.add_metric([target], getattr(stats, attr))
            yield family
        up = GaugeMetricFamily(
            "scada_notify_up", "0 while the target's deliveries fail.", labels=["target"]
        )
        for target, stats in per_target:
            up.add_metric([target], 0.0 if stats.outage_since is not None else 1.0)
        yield up
        lag = self.source.cursor() - (self.feeder.cursor if self.feeder else 0)
        yield GaugeMetricFamily(
            "scada_notify_lag_events", "Committed alarm events not yet routed.", max(lag, 0)
        )


def build_notifier(
    plant: PlantConfig, config: NotificationsConfig, source: CommittedEvents
) -> Notifier | None:
    """The notifier for this config, or None when no rule routes anywhere."""
    if not config.rules or not config.targets:
        return None
    path = resolve_data_path(plant, config.outbox_path, "notify.sqlite")
    return Notifier(config, path, source)

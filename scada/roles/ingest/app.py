"""`scada serve --role ingest`: the all-in-one plant as one node of an active/standby pair.

The same building blocks as `scada.roles.allinone.create_app` (drivers, tag store, alarms, journal,
historian, REST, /ws), plus an IngestNode (scada.roles.ingest.node) that holds or waits for the
lease in Redis. While active the node fences every journal write, publishes every commit
(the outbox) and every tick's frame, and applies the gateways' commands; while standing by
it mirrors the alarm stream into its journal and talks to no device, and its /api/* and /ws
answer 503 (scada.roles.ingest.status). See docs/cluster.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from scada.auth.replica.publisher import AuthPublisher
from scada.bus.bdseq import next_bdseq
from scada.bus.keys import BusKeys
from scada.bus.notifymark import NotifyMark
from scada.core.config import PlantConfig
from scada.roles.allinone import (
    Plant,
    build_plant,
    build_sparkplug,
    close_plant,
    open_plant,
    plant_app,
    plant_routes,
)
from scada.roles.ingest import status as web
from scada.roles.ingest.commandapply import CommandApplier
from scada.roles.ingest.follow import FrameFollower
from scada.roles.ingest.framepublish import FrameTap
from scada.roles.ingest.node import IngestNode
from scada.roles.ingest.process import IngestProcess

log = logging.getLogger(__name__)


def build_node(plant: Plant, process: IngestProcess) -> IngestNode:
    config = plant.config
    settings = config.cluster
    alarms = plant.alarms
    journal = alarms.journal
    commands = CommandApplier(
        alarms,
        plant.auditor,
        plant.auth,
        lambda: plant.runtime.config.alarms.default_user,
        plant.hub.announce,
        lambda: plant.runtime.config.auth,
    )
    return IngestNode(
        settings.redis_url,
        BusKeys(settings.prefix),
        settings.node,
        journal,
        journal.epoch,
        process,
        apply_command=commands.apply,
        lookup_command=commands.lookup,
        lease_options={"ttl": settings.lease_ttl, "renew_every": settings.renew_every},
        frames_maxlen=settings.frames_maxlen,
        alarms_maxlen=settings.alarms_maxlen,
        adopt_epoch=journal.adopt_epoch,
    )


def follow_frames(plant: Plant) -> FrameFollower | None:
    """The standby's historian recorder (None without a historian)."""
    historian = plant.historian
    if historian is None:
        return None
    settings = plant.config.cluster
    return FrameFollower(
        settings.redis_url,
        BusKeys(settings.prefix),
        historian.schema,
        historian.record,
        resolution_ms=historian.resolution,
        last_recorded=lambda: historian.last_recorded,
    )


def create_ingest_app(
    config: PlantConfig,
    *,
    scenario: str | Path | None = None,
    config_path: str | Path | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> Starlette:
    if not config.cluster.node:
        raise ValueError("an ingest node needs a name ([cluster] node)")
    plant = build_plant(config, scenario=scenario, on_fatal=on_fatal)
    runtime = plant.runtime
    node_ref: list[IngestNode] = []
    frames = FrameTap(runtime, plant.alarms.flood, lambda p: node_ref[0].publish_frame(p))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await open_plant(app, plant, first_admin=False)  # the active node's: AuthPublisher
        if follower is not None:
            follower.start()  # standing by until the node takes the lease
        task = asyncio.create_task(node.run(), name="ingest-node")
        task.add_done_callback(stopped)
        try:
            yield
        finally:
            # Stop writing first (tick, devices, notifications), then let the node publish
            # what is committed and release the lease: the standby takes over at once.
            await process.stand_by()
            task.remove_done_callback(stopped)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if follower is not None:
                await follower.stop()
            await close_plant(plant)
            log.info("stopped: journal and audit closed, node off the bus")

    def stopped(task: asyncio.Task[None]) -> None:
        reason = "ingest node stopped" if task.cancelled() else f"{task.exception()!r}"
        log.critical("cluster node failed: %s", reason)
        if on_fatal is not None:
            on_fatal(f"cluster node failed: {reason}")

    routes: list[BaseRoute] = [
        Route("/ready", web.ready),
        Route("/health", web.health),  # before the plant's: 503 when stuck between roles
        *plant_routes(plant),
    ]
    app = plant_app(plant, routes, lifespan, config_path)
    follower = follow_frames(plant)
    process = IngestProcess(app, plant, frames, follower)
    node = build_node(plant, process)
    node_ref.append(node)
    # Notifications hand over at the active node's delivered-through mark.
    process.mark = NotifyMark(
        node.redis,
        node.keys,
        node.lease,
        epoch=lambda: node.outbox.journal_epoch,
        published_through=lambda: node.outbox.published_through,
        mirrored_through=lambda: node.mirror.mirrored_through,
    )
    # One login for all gateways: the active node's users, tokens and sessions in Redis.
    auth_rows = AuthPublisher(node.redis, node.keys, node.lease, plant.auth, first_admin=True)
    process.on_activate.append(auth_rows.activate)
    process.on_stand_by.append(auth_rows.stand_by)
    # Only the active node is the Sparkplug edge node: connected after the takeover, a clean
    # NDEATH when it stands by; every node connects with the same MQTT client id, so the broker
    # drops a deposed holder's connection (and sends its will) when the new one connects.
    sparkplug = build_sparkplug(plant, lambda: next_bdseq(node.redis, node.keys, node.lease))
    if sparkplug is not None:
        edge = sparkplug

        async def start_sparkplug() -> None:
            edge.start()

        process.on_activate.append(start_sparkplug)
        process.on_stand_by.append(edge.stop)
    plant.alarms.set_fence(node.fence)
    # The journal writes only what the bus accepted (one id, one event across the nodes).
    plant.alarms.journal.gate = node.outbox.accept
    plant.alarms.on_committed(lambda _events: node.committed())
    runtime.on_frame(frames)
    runtime.metric_sources.append(lambda: web.node_metrics(node, frames))
    if follower is not None:
        runtime.metric_sources.append(follower.metrics)
    app.user_middleware.insert(
        0, Middleware(web.StandbyGate, node=node, auth_ready=auth_rows.ready)
    )
    app.state.node = node
    app.state.auth_flush = auth_rows.flush  # a login answers once its session is in Redis
    app.state.auth_ready = auth_rows.ready  # and waits for a takeover's merge
    app.state.ingest = process  # `on_activate` / `on_stand_by`: hooks of other parts
    return app

"""What a load balancer sees of an ingest node: 503 while standing by, /ready, /metrics.

A standby answers /api/* and /ws with 503 {"error": "standby", "active": <node or null>}, so
nginx (`proxy_next_upstream ... http_503 non_idempotent`) tries the active node; /health is
200 on both, 503 on a node stuck between roles (activating or deposing longer than its
activation deadline: a supervisor restarts it); /ready is 200 only on the active node. A node that has just taken over answers
503 {"error": "starting"} until it has merged the cluster's auth rows: before that it would
refuse a session made on the old active node with 401 and clear the browser's cookie.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from scada.roles.ingest.framepublish import FrameTap
from scada.roles.ingest.node import IngestNode, Role
from scada.web.health import readiness
from scada.web.responses import OrjsonResponse, runtime_of

STATES: tuple[Role, ...] = tuple(Role)


def _gated(path: str) -> bool:
    return path.startswith("/api/") or path == "/ws"


class StandbyGate:
    """ASGI middleware: /api/* and /ws only on the active node."""

    def __init__(
        self, app: ASGIApp, node: IngestNode, auth_ready: Callable[[], bool] = lambda: True
    ) -> None:
        self.app = app
        self.node = node
        self.auth_ready = auth_ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not _gated(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.node.state is Role.ACTIVE:
            if self.auth_ready():
                await self.app(scope, receive, send)
                return
            body = orjson.dumps({"error": "starting", "active": self.node.name})
        else:
            active = await self.node.active_node()
            body = orjson.dumps({"error": "standby", "active": active})
        start = "http.response.start"
        if scope["type"] == "websocket":
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1013})  # try again later
                return
            start = "websocket.http.response.start"
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
        ]
        await send({"type": start, "status": 503, "headers": headers})
        await send({"type": start.replace("start", "body"), "body": body})


def cluster_status(node: IngestNode) -> dict[str, Any]:
    stuck = node.stuck()
    return {
        "role": "ingest",
        "node": node.name,
        "state": str(node.state),
        "token": node.lease.token if node.state is Role.ACTIVE else None,
        **({"pending_events": node.forwarder.pending} if node.forwarder.pending else {}),
        **({"unfit": node.unfit_reason} if node.unfit_reason else {}),
        **({"stuck": stuck} if stuck else {}),
    }


async def health(request: Request) -> Response:
    """200 while the process lives and its node is not stuck between roles, else 503."""
    node: IngestNode = request.app.state.node
    stuck = node.stuck()
    if stuck:
        return OrjsonResponse({"status": "stuck", "cluster": cluster_status(node)}, 503)
    return OrjsonResponse({"status": "alive"})


async def ready(request: Request) -> Response:
    """200 on the active node once it serves (auth rows merged), 503 on any other."""
    node: IngestNode = request.app.state.node
    auth_ready = getattr(request.app.state, "auth_ready", None)
    active = node.state is Role.ACTIVE and (auth_ready is None or auth_ready())
    body: dict[str, Any] = readiness(runtime_of(request))[1] if active else {"ready": False}
    body["cluster"] = cluster_status(node)
    return OrjsonResponse(body, status_code=200 if active else 503)


def node_metrics(node: IngestNode, frames: FrameTap) -> Iterator[Metric]:
    """For Runtime.metric_sources: the node's role, token and bus counters."""
    state = GaugeMetricFamily(
        "scada_cluster_state", "1 for this ingest node's current state.", labels=["state"]
    )
    for name in STATES:
        state.add_metric([name], 1.0 if node.state == name else 0.0)
    yield state
    yield GaugeMetricFamily(
        "scada_cluster_fencing_token",
        "The fencing token of the lease this node holds (0: none).",
        float(node.lease.token or 0) if node.state is Role.ACTIVE else 0.0,
    )
    yield GaugeMetricFamily(
        "scada_cluster_pending_events",
        "Events this node recorded that the cluster's record does not hold yet (forwarded late).",
        float(node.forwarder.pending),
    )
    yield CounterMetricFamily(
        "scada_cluster_late_events_journaled",
        "Late events (recorded by a node cut off from the bus) this node added to the record.",
        float(node.intake.journaled),
    )
    yield CounterMetricFamily(
        "scada_cluster_activations_abandoned",
        "Takeovers given up because the node was not serving within its activation deadline.",
        float(node.activations_abandoned),
    )
    yield CounterMetricFamily(
        "scada_cluster_frames_dropped",
        "Tick frames not published (refused, Redis unreachable, or the previous in flight).",
        float(node.frames_dropped + frames.skipped),
    )
    yield GaugeMetricFamily(
        "scada_cluster_outbox_published_through",
        "The newest journal event id on the alarm stream, as far as this node knows.",
        float(node.outbox.published_through),
    )
    yield CounterMetricFamily(
        "scada_cluster_commands_applied", "Commands applied (not from the ledger).",
        float(node.commands.applied),
    )  # fmt: skip
    yield CounterMetricFamily(
        "scada_cluster_commands_duplicate", "Commands answered from the ledger.",
        float(node.commands.duplicates),
    )  # fmt: skip
    yield CounterMetricFamily(
        "scada_cluster_mirrored_events", "Alarm events mirrored from the stream.",
        float(node.mirror.mirrored),
    )  # fmt: skip

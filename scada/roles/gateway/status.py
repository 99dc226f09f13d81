"""A gateway's health, readiness and metrics: is it up, is its bus live, what it fans out.

`/ready` is 200 only while the bus is live (contract 5): a load balancer or the local cluster
then sends no new client to a gateway whose screens would be stale.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from scada.auth.replica.view import RedisAuthView
from scada.roles.gateway.bussource import BusSource
from scada.roles.gateway.remotecommands import BusCommands
from scada.web.metrics import broadcaster_metrics, fanout_report, render_with


def _source(request: Request) -> BusSource:
    source: BusSource = request.app.state.source
    return source


def bus_state(source: BusSource) -> dict[str, object]:
    ring = source.feed.ring
    return {
        "role": "gateway",
        "node": source.config.cluster.node,
        "bus": "live" if source.live else "stale",
        "epoch": ring.epoch,
        "cursor": ring.newest,
        "reason": source.reason,
    }


async def health(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def ready(request: Request) -> Response:
    source = _source(request)
    return JSONResponse(
        {"ready": source.live, "cluster": bus_state(source)},
        status_code=200 if source.live else 503,
    )


async def websocket_health(request: Request) -> Response:
    source = _source(request)
    return JSONResponse(
        {
            **fanout_report(source.broadcaster),
            "batch_interval_ms": source.config.server.batch_interval_ms,
            "devices": [],
            "cluster": bus_state(source),
        }
    )


class GatewayCollector:
    def __init__(
        self, source: BusSource, commands: BusCommands, auth: RedisAuthView | None = None
    ) -> None:
        self.source = source
        self.commands = commands
        self.auth = auth

    def collect(self) -> Iterator[Metric]:
        source, commands = self.source, self.commands
        yield from broadcaster_metrics(source.broadcaster)
        yield GaugeMetricFamily("scada_bus_live", "1 while the bus is read.", int(source.live))
        yield GaugeMetricFamily(
            "scada_bus_cursor", "Newest alarm event id read.", source.feed.ring.newest
        )
        yield CounterMetricFamily(
            "scada_bus_frames", "Frames read from the bus.", value=source.frames_read
        )
        yield CounterMetricFamily(
            "scada_bus_resets", "Feed restarts from the state hash.", value=source.feed.resets
        )
        sent = CounterMetricFamily(
            "scada_bus_commands", "Commands sent to the ingest node.", labels=["outcome"]
        )
        sent.add_metric(["sent"], commands.sent)
        sent.add_metric(["resent"], commands.resent)
        sent.add_metric(["answered"], commands.answered)
        sent.add_metric(["timed_out"], commands.timed_out)
        yield sent
        if self.auth is not None:
            yield from self.auth.metrics()


async def metrics(request: Request) -> Response:
    collector: GatewayCollector = request.app.state.collector
    return PlainTextResponse(render_with(collector), media_type="text/plain; version=0.0.4")

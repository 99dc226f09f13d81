"""Prometheus exposition through prometheus_client.

A scrape reads the values the running plant already counts (broadcaster, tick, devices) at
scrape time through `RuntimeCollector`, plus any per-runtime source added to
`Runtime.metric_sources`; nothing is counted twice into a registry of its own.

prometheus_client writes every value at full precision and gives summaries their `_sum` and
`_count`, which a hand-written `%g` exposition did not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from scada.core.stats import percentile, percentile_rounded

if TYPE_CHECKING:
    from scada.fanout.broadcaster import Broadcaster
    from scada.plant.runtime import Runtime

MetricSource = Callable[[], Iterable[Metric]]


def summary(
    name: str,
    doc: str,
    recent_ms: Iterable[float],
    *,
    count: int,
    sum_seconds: float,
    quantiles: Sequence[float],
    labels: dict[str, str] | None = None,
    into: Metric | None = None,
) -> Metric:
    """A summary of a recent-sample window (quantiles) with its running `_sum` and `_count`."""
    metric = into if into is not None else Metric(name, doc, "summary")
    base = labels or {}
    window = list(recent_ms)
    if window:
        for q in quantiles:
            value = (percentile(window, q) or 0.0) / 1000
            metric.add_sample(name, {**base, "quantile": str(q)}, value)
    metric.add_sample(f"{name}_count", base, float(count))
    metric.add_sample(f"{name}_sum", base, sum_seconds)
    return metric


def broadcaster_metrics(broadcaster: Broadcaster) -> Iterator[Metric]:
    """The WebSocket fan-out and its tick: every server role that has clients has these."""
    stats = broadcaster.stats
    yield GaugeMetricFamily(
        "scada_ws_connections", "Open WebSocket connections.", len(broadcaster.clients)
    )
    yield _count("scada_ws_connections", "WebSocket connections accepted.", stats.connections_total)
    yield _count("scada_ws_frames_sent", "Frames written to clients.", stats.frames_sent)
    yield _count("scada_ws_bytes_sent", "Payload bytes written to clients.", stats.bytes_sent)
    yield _count(
        "scada_ws_slow_clients_dropped", "Clients closed with 1013.", stats.slow_clients_dropped
    )
    yield _count("scada_tick", "Broadcast ticks run.", stats.ticks)
    yield _count("scada_tick_overruns", "Ticks that overran their slot.", stats.tick_overruns)
    yield _count("scada_tick_errors", "Ticks that raised.", stats.errors)
    yield summary(
        "scada_tick_seconds",
        "Duration of ticks (quantiles over the recent window).",
        stats.tick_ms,
        count=stats.ticks,
        sum_seconds=stats.tick_seconds_sum,
        quantiles=(0.5, 0.9, 0.99),
    )


def fanout_report(broadcaster: Broadcaster) -> dict[str, Any]:
    """The fan-out's counters for /health/websocket (every role with clients)."""
    stats = broadcaster.stats
    ticks = list(stats.tick_ms)
    return {
        "connections_total": stats.connections_total,
        "connections_active": len(broadcaster.clients),
        "sinks": broadcaster.sink_kinds(),
        "frames_sent": stats.frames_sent,
        "bytes_sent": stats.bytes_sent,
        "slow_clients_dropped": stats.slow_clients_dropped,
        "errors": stats.errors,
        "ticks": stats.ticks,
        "tick_overruns": stats.tick_overruns,
        "tick_ms_p50": percentile_rounded(ticks, 0.5),
        "tick_ms_p99": percentile_rounded(ticks, 0.99),
    }


class RuntimeCollector:
    """Reads the counters the broadcaster, the tick and the pollers keep, at scrape time."""

    def __init__(self, rt: Runtime, broadcaster: Broadcaster) -> None:
        self.rt = rt
        self.broadcaster = broadcaster

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        yield from broadcaster_metrics(self.broadcaster)
        yield from self._devices()
        for source in rt.metric_sources:
            yield from source()

    def _devices(self) -> Iterator[Metric]:
        devices = [p.status for p in self.rt.pollers]
        up = GaugeMetricFamily(
            "scada_device_up", "1 when the device's last read succeeded.", labels=["device"]
        )
        polls = CounterMetricFamily("scada_device_polls", "Successful reads.", labels=["device"])
        errors = CounterMetricFamily(
            "scada_device_errors", "Failed reads or connects.", labels=["device"]
        )
        reconnects = CounterMetricFamily(
            "scada_device_reconnects", "Reconnections after a failure.", labels=["device"]
        )
        latency = Metric("scada_device_poll_seconds", "Read latency (recent quantiles).", "summary")
        for d in devices:
            up.add_metric([d.name], 1.0 if d.healthy else 0.0)
            polls.add_metric([d.name], d.polls)
            errors.add_metric([d.name], d.errors)
            reconnects.add_metric([d.name], d.reconnects)
            summary(
                latency.name,
                "",
                d.poll_ms,
                count=d.polls,
                sum_seconds=d.poll_seconds_sum,
                quantiles=(0.5, 0.99),
                labels={"device": d.name},
                into=latency,
            )
        yield from (up, polls, errors, reconnects, latency)


def _count(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class _Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class _Scrape:
    def __init__(self, extra: _Collector) -> None:
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from self.extra.collect()


def render_with(extra: _Collector) -> bytes:
    """`extra`'s metrics (read at scrape time) in the exposition format."""
    return generate_latest(_Scrape(extra))


def render_metrics(rt: Runtime, broadcaster: Broadcaster) -> bytes:
    return render_with(RuntimeCollector(rt, broadcaster))

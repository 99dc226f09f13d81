"""Prometheus text exposition of the broadcaster, tick and device counters."""

from __future__ import annotations

from scada.core.stats import percentile
from scada.runtime import Runtime


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(rt: Runtime) -> str:
    stats = rt.broadcaster.stats
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    metric(
        "scada_ws_connections",
        "gauge",
        "Open WebSocket connections.",
        [("", len(rt.broadcaster.clients))],
    )
    metric(
        "scada_ws_connections_total",
        "counter",
        "WebSocket connections accepted.",
        [("", stats.connections_total)],
    )
    metric(
        "scada_ws_frames_sent_total",
        "counter",
        "Frames written to clients.",
        [("", stats.frames_sent)],
    )
    metric(
        "scada_ws_bytes_sent_total",
        "counter",
        "Payload bytes written to clients.",
        [("", stats.bytes_sent)],
    )
    metric(
        "scada_ws_slow_clients_dropped_total",
        "counter",
        "Clients closed with 1013.",
        [("", stats.slow_clients_dropped)],
    )
    metric("scada_tick_total", "counter", "Broadcast ticks run.", [("", stats.ticks)])
    metric(
        "scada_tick_overruns_total",
        "counter",
        "Ticks that overran their slot.",
        [("", stats.tick_overruns)],
    )
    metric("scada_tick_errors_total", "counter", "Ticks that raised.", [("", stats.errors)])
    ticks = list(stats.tick_ms)
    if ticks:
        q = [
            (f'{{quantile="{p}"}}', (percentile(ticks, p) or 0.0) / 1000) for p in (0.5, 0.9, 0.99)
        ]
        metric("scada_tick_seconds", "summary", "Duration of recent ticks.", q)
    devices = [p.status for p in rt.pollers]

    def per_device(attr: str) -> list[tuple[str, float]]:
        return [(f'{{device="{_esc(d.name)}"}}', float(getattr(d, attr))) for d in devices]

    metric(
        "scada_device_up",
        "gauge",
        "1 when the device's last read succeeded.",
        [(f'{{device="{_esc(d.name)}"}}', 1.0 if d.healthy else 0.0) for d in devices],
    )
    metric("scada_device_polls_total", "counter", "Successful reads.", per_device("polls"))
    metric(
        "scada_device_errors_total", "counter", "Failed reads or connects.", per_device("errors")
    )
    metric(
        "scada_device_reconnects_total",
        "counter",
        "Reconnections after a failure.",
        per_device("reconnects"),
    )
    lat = [
        (f'{{device="{_esc(d.name)}",quantile="{p}"}}', (percentile(d.poll_ms, p) or 0.0) / 1000)
        for d in devices
        if d.poll_ms
        for p in (0.5, 0.99)
    ]
    if lat:
        metric("scada_device_poll_seconds", "summary", "Recent read latency.", lat)
    return "\n".join(out) + "\n"

"""/metrics through prometheus_client: full-precision counters, summaries with _sum/_count,
one percentile definition and one ISO formatter shared by every caller."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from scada.alarms import kpi
from scada.alarms import model as alarm_model
from scada.core.config import load_config
from scada.core.stats import nearest_rank, percentile
from scada.core.timefmt import iso_ms
from scada.fanout.broadcaster import Broadcaster
from scada.plant.runtime import Runtime
from scada.web.metrics import render_metrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_keep_full_precision_and_summaries_have_sum_and_count() -> None:
    broadcaster = Broadcaster.from_settings(load_config().server)
    rt = Runtime(load_config(), stats=broadcaster.stats)
    stats = broadcaster.stats
    stats.frames_sent = 12_345_678
    stats.bytes_sent = 98_765_432_123
    stats.ticks = 3
    stats.tick_ms.extend([10.0, 20.0, 30.0])
    stats.tick_seconds_sum = 0.06
    device = rt.pollers[0].status
    device.polls, device.poll_seconds_sum = 2, 0.004
    device.poll_ms.extend([1.0, 3.0])
    text = render_metrics(rt, broadcaster).decode()
    assert "1.23457e+07" not in text
    got = samples(text)
    assert got[("scada_ws_frames_sent_total", ())] == 12_345_678
    assert got[("scada_ws_bytes_sent_total", ())] == 98_765_432_123
    assert got[("scada_tick_seconds_count", ())] == 3
    assert abs(got[("scada_tick_seconds_sum", ())] - 0.06) < 1e-12
    assert got[("scada_tick_seconds", (("quantile", "0.5"),))] == 0.02
    name = device.name
    assert got[("scada_device_poll_seconds_count", (("device", name),))] == 2
    assert got[("scada_device_poll_seconds_sum", (("device", name),))] == 0.004
    assert got[("scada_device_poll_seconds", (("device", name), ("quantile", "0.99")))] == 0.003
    assert got[("scada_device_up", (("device", name),))] == 0
    assert "# TYPE scada_ws_connections gauge" in text


def test_runtime_metric_sources_join_the_scrape() -> None:
    from prometheus_client.core import GaugeMetricFamily

    rt = Runtime(load_config())
    rt.metric_sources.append(lambda: [GaugeMetricFamily("scada_extra", "An extra.", 7)])
    broadcaster = Broadcaster.from_settings(rt.config.server)
    assert samples(render_metrics(rt, broadcaster).decode())[("scada_extra", ())] == 7


def test_one_nearest_rank_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0  # rank ceil(2) = 2, not index 2
    assert percentile(range(1, 101), 0.07) == 7  # 0.07 * 100 is not quite 7 in floats
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([1.0, 2.0], 0.0) == 1.0
    # The alarm KPIs use the same definition.
    assert vars(kpi)["nearest_rank"] is nearest_rank  # (in SQL: ORDER BY ... OFFSET rank - 1)


def test_one_iso_formatter_rounds_to_the_millisecond() -> None:
    assert iso_ms(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1.0006) == "1970-01-01T00:00:01.001Z"
    assert iso_ms(1.9996) == "1970-01-01T00:00:02.000Z"
    assert alarm_model.iso_ms is iso_ms

"""Tag store quality rules and history downsampling."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.base import Reading
from scada.core.config import load_config
from scada.core.tags import Quality, TagSchema
from scada.plant.samples import SampleEncoder
from scada.plant.tagstore import TagStore
from scada.plant.trendring import HistoryRing, downsample

SCHEMA = TagSchema(load_config().lines)


def full_reading(value: float = 1.0, t: float = 1000.0) -> Reading:
    idx = np.arange(SCHEMA.size)
    return Reading.build(idx, np.full(SCHEMA.size, value), t)


def test_fresh_values_are_good_then_stale_after_stale_after() -> None:
    store = TagStore(SCHEMA)
    assert (store.quality == Quality.BAD).all()  # nothing read yet
    store.write(full_reading(), now=100.0)
    assert (store.line_quality() == Quality.GOOD).all()
    store.refresh(100.9)
    assert (store.line_quality() == Quality.GOOD).all()
    store.refresh(101.01)
    assert (store.line_quality() == Quality.STALE).all()
    store.write(full_reading(2.0), now=101.5)  # fresh data makes it good again
    assert (store.line_quality() == Quality.GOOD).all()


def test_nan_is_bad_and_mark_bad_keeps_reason() -> None:
    store = TagStore(SCHEMA)
    values = np.ones(SCHEMA.size)
    values[SCHEMA.index("3", "diameter")] = np.nan
    store.write(Reading.build(np.arange(SCHEMA.size), values, 1.0), now=1.0)
    q = store.line_quality()
    assert q[2] == Quality.BAD and q[1] == Quality.GOOD
    line5 = SCHEMA.line_indices(["5"])
    store.mark_bad(line5, "device plc: timeout")
    assert store.line_quality()[4] == Quality.BAD
    assert store.reasons[int(line5[0])] == "device plc: timeout"


def test_dirty_lines_are_only_those_that_changed() -> None:
    store = TagStore(SCHEMA)
    store.write(full_reading(), now=1.0)
    store.take_dirty()
    store.write(full_reading(), now=1.1)  # same values, same quality
    assert store.take_dirty().tolist() == []
    idx = np.array([SCHEMA.index("7", "diameter")])
    store.write(Reading.build(idx, np.array([5.0]), 2.0), now=1.2)
    assert store.take_dirty().tolist() == [6]


def test_line_sample_groups_zones_and_hides_bad_values() -> None:
    store = TagStore(SCHEMA)
    values = np.arange(SCHEMA.size, dtype=float)
    state_idx = SCHEMA.index("1", "state")
    values[state_idx] = 2.0
    values[SCHEMA.index("1", "diameter")] = np.nan
    store.write(Reading.build(np.arange(SCHEMA.size), values, 1_790_000_000.0), now=1.0)
    sample = SampleEncoder(SCHEMA).encode(store, [0])[0]
    assert sample["production_line_id"] == "1"
    assert sample["body_temperatures"] == [0.0, 1.0, 2.0, 3.0]
    assert sample["diameter"] is None and sample["bad_tags"] == ["diameter"]
    assert sample["state"] == "running" and sample["quality"] == "bad"
    assert sample["timestamp"].endswith("Z")


def test_history_ring_wraps_and_keeps_order() -> None:
    ring = HistoryRing(capacity=5, width=2)
    for i in range(8):
        ring.append(float(i), np.array([i, -i]))
    times, data = ring.window(0.0, slice(0, 2))
    assert times.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert data[:, 0].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    times, _ = ring.window(5.5, slice(0, 1))
    assert times.tolist() == [6.0, 7.0]


def test_downsample_returns_requested_points_with_true_min_max() -> None:
    rng = np.random.default_rng(3)
    times = np.arange(0, 300, 0.1)
    values = rng.normal(0, 1, (len(times), 2))
    values[1234, 0] = 50.0  # a spike decimation would lose
    values[2000, 1] = np.nan
    ds = downsample(times, values, 0.0, 300.0, 600)
    assert ds.minimum.shape == (600, 2) and len(ds.bucket_times) == 600
    assert np.nanmax(ds.maximum[:, 0]) == 50.0
    for b in (0, 17, 599):
        chunk = values[(times >= b * 0.5) & (times < (b + 1) * 0.5)]
        assert ds.minimum[b, 0] == pytest.approx(chunk[:, 0].min())
        assert ds.maximum[b, 0] == pytest.approx(chunk[:, 0].max())
        assert ds.mean[b, 0] == pytest.approx(chunk[:, 0].mean())
    assert np.isfinite(ds.maximum[2000 // 5, 1])  # NaN ignored inside its bucket


def test_downsample_leaves_empty_buckets_empty() -> None:
    times = np.array([0.5, 9.5])
    ds = downsample(times, np.array([[1.0], [2.0]]), 0.0, 10.0, 10)
    assert ds.maximum[0, 0] == 1.0 and ds.maximum[9, 0] == 2.0
    assert np.isnan(ds.maximum[1:9, 0]).all()


def test_a_non_finite_good_reading_is_bad_raises_the_quality_alarm_and_no_limit() -> None:
    """NaN or Inf with GOOD status (a driver or the simulator) becomes bad where readings
    enter the store, with a reason; the alarm engine then raises the quality alarm and the
    limit checks never see the value."""
    from tests.unit.conftest_alarms import Rig, diameter_plant

    rig = Rig(diameter_plant())
    store = TagStore(rig.schema)
    i = rig.schema.index("1", "diameter")
    idx = np.arange(rig.schema.size)
    for value in (np.inf, np.nan, -np.inf):
        values = rig.values.copy()
        values[i] = value
        good = np.full(rig.schema.size, Quality.GOOD, dtype=np.uint8)
        store.write(Reading(idx, values, good, np.full(rig.schema.size, 1.0)), now=1.0)
        assert store.quality[i] == Quality.BAD
        assert store.reasons[i] == "not a finite number"
    store.write(
        Reading(
            idx,
            np.r_[rig.values[:i], np.inf, rig.values[i + 1 :]],
            np.full(rig.schema.size, Quality.GOOD, dtype=np.uint8),
            np.full(rig.schema.size, 1.0),
        ),
        now=1.0,
    )
    rig.values, rig.quality = store.values, store.quality
    events = rig.run(5.0)
    conditions = {(e.condition, e.event) for e in events}
    assert ("quality", "raised") in conditions
    assert not {c for c, _ in conditions} & {"hi", "hihi", "lo", "lolo", "rate"}
    # A finite good value afterwards is good again, its reason gone.
    values = rig.values.copy()
    values[i] = 12.0
    store.write(Reading.build(idx, values, 2.0), now=2.0)
    assert store.quality[i] == Quality.GOOD and i not in store.reasons

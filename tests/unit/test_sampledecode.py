"""SampleDecoder is SampleEncoder's inverse: every tag kind and quality survives the wire."""

from __future__ import annotations

import numpy as np
import orjson

from scada.core.config import load_config
from scada.core.tags import Quality, TagSchema
from scada.plant.sampledecode import SampleDecoder
from scada.plant.samples import SampleEncoder
from scada.plant.tagstore import TagStore

SCHEMA = TagSchema(load_config().lines)
KINDS = {(r.config.kind, r.config.group is not None) for r in SCHEMA.refs}


def plant_store() -> TagStore:
    """Values the wire carries exactly (rounded to each tag's decimals, states in range);
    line i has all its tags in quality i % 4, and the last line mixes good, stale and bad."""
    rng = np.random.default_rng(7)
    store = TagStore(SCHEMA)
    for ref in SCHEMA.refs:
        states = ref.config.states
        if states is not None:
            store.values[ref.index] = rng.integers(len(states))
        else:
            store.values[ref.index] = round(rng.uniform(-500, 500), ref.config.decimals)
    for pos, line_id in enumerate(SCHEMA.line_ids):
        store.quality[SCHEMA.line_slices[line_id]] = list(Quality)[pos % 4]
    mixed = SCHEMA.line_slices[SCHEMA.line_ids[-1]]
    store.quality[mixed] = Quality.GOOD
    store.quality[mixed.start] = Quality.STALE  # a grouped tag
    store.quality[mixed.stop - 1] = Quality.BAD  # the state tag
    return store


def wire(store: TagStore, positions: list[int]) -> list[dict[str, object]]:
    records = SampleEncoder(SCHEMA).encode(store, positions)
    decoded: list[dict[str, object]] = orjson.loads(orjson.dumps(records))
    return decoded


def test_every_tag_kind_and_quality_round_trips() -> None:
    assert {("analog", False), ("analog", True), ("state", False)} == KINDS
    store = plant_store()
    assert set(store.quality.tolist()) == {int(q) for q in Quality}
    values = np.full(SCHEMA.size, -1.0)
    quality = np.full(SCHEMA.size, 99, dtype=np.uint8)
    lines = SampleDecoder(SCHEMA).decode_into(
        wire(store, list(range(len(SCHEMA.line_ids)))), values, quality
    )
    assert lines == len(SCHEMA.line_ids)
    np.testing.assert_array_equal(quality, store.quality)
    bad = store.quality == Quality.BAD
    assert np.isnan(values[bad]).all()  # a bad tag has no value on the wire
    np.testing.assert_array_equal(values[~bad], store.values[~bad])


def test_a_partial_frame_leaves_the_other_lines_alone() -> None:
    store = plant_store()
    decoder = SampleDecoder(SCHEMA)
    values = np.zeros(SCHEMA.size)
    quality = np.zeros(SCHEMA.size, dtype=np.uint8)
    records = wire(store, [1])
    records.append({"production_line_id": "no-such-line", "quality": "good"})
    assert decoder.decode_into(records, values, quality) == 1
    span = SCHEMA.line_slices[SCHEMA.line_ids[1]]
    np.testing.assert_array_equal(values[span], store.values[span])
    np.testing.assert_array_equal(quality[span], store.quality[span])
    outside = np.ones(SCHEMA.size, dtype=bool)
    outside[span] = False
    assert (values[outside] == 0).all() and (quality[outside] == 0).all()


def test_a_field_the_record_lacks_is_bad() -> None:
    store = plant_store()
    store.quality[:] = Quality.GOOD
    record = wire(store, [0])[0]
    del record["diameter"]
    values = np.zeros(SCHEMA.size)
    quality = np.zeros(SCHEMA.size, dtype=np.uint8)
    SampleDecoder(SCHEMA).decode_into([record], values, quality)
    i = SCHEMA.index(SCHEMA.line_ids[0], "diameter")
    assert quality[i] == Quality.BAD and np.isnan(values[i])
    assert (quality[SCHEMA.line_slices[SCHEMA.line_ids[0]]] == Quality.BAD).sum() == 1

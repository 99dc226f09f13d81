"""LineSample records back into tag store arrays: the inverse of scada.plant.samples.SampleEncoder.

A standby ingest node records the active node's frames in its own historian
(scada.roles.ingest.follow). What the wire form keeps is what comes back: each tag's value rounded
to its decimals, a state tag's label as its index, no value (NaN) for a bad tag. Per-tag
quality: a tag named in `bad_tags` is bad without a value and stale with one; the others are
good, or uncertain when their line is (the wire form names only stale and bad tags, so in an
uncertain line every tag not named is taken as uncertain). A field the record lacks (the
other node runs another config) is bad; lines this schema does not know are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from scada.core.tags import Quality, TagSchema
from scada.plant.samples import SampleEncoder

_GOOD, _UNCERTAIN, _STALE, _BAD = (int(q) for q in Quality)
_MISSING = object()

Field = tuple[str, list[int], dict[str, int] | None]


class SampleDecoder:
    def __init__(self, schema: TagSchema) -> None:
        self.schema = schema
        layout = SampleEncoder(schema).layout
        self._lines: dict[str, tuple[slice, list[Field], dict[str, int]]] = {}
        for pos, line_id in enumerate(schema.line_ids):
            span = schema.line_slices[line_id]
            fields: list[Field] = [
                (name, idx, None if states is None else {s: i for i, s in enumerate(states)})
                for name, idx, states in layout[pos]
            ]
            names = {ref.name: ref.index for ref in schema.refs[span]}
            self._lines[line_id] = (span, fields, names)

    def decode_into(
        self, records: Iterable[dict[str, Any]], values: np.ndarray, quality: np.ndarray
    ) -> int:
        """Write each record's line into `values`/`quality` (schema-sized); lines decoded."""
        done = 0
        for record in records:
            line = self._lines.get(record.get("production_line_id"))  # type: ignore[arg-type]
            if line is None:
                continue
            span, fields, names = line
            quality[span] = _UNCERTAIN if record.get("quality") == "uncertain" else _GOOD
            for name, idx, states in fields:
                raw = record.get(name, _MISSING)
                if raw is _MISSING:
                    values[idx] = np.nan
                    quality[idx] = _BAD
                    continue
                given = raw if isinstance(raw, list) else [raw]
                for n, i in enumerate(idx):
                    v: Any = given[n] if n < len(given) else None
                    if states is not None and v is not None:
                        v = states.get(v)
                    values[i] = np.nan if v is None else float(v)
            for tag in record.get("bad_tags") or ():
                at = names.get(tag)
                if at is not None:
                    quality[at] = _BAD if values[at] != values[at] else _STALE
            done += 1
        return done

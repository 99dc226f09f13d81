"""LineSample records: the per-line view of the tag store that goes on the wire."""

from __future__ import annotations

from typing import Any

import numpy as np

from scada.core.tags import QUALITY_LABELS, Quality, TagSchema
from scada.core.timefmt import iso_ms
from scada.plant.tagstore import TagStore


class SampleEncoder:
    """Builds LineSample dicts; the layout per line (groups, decimals) is worked out once."""

    def __init__(self, schema: TagSchema) -> None:
        self.schema = schema
        self._decimals = np.array([r.config.decimals for r in schema.refs])
        # Per line: (field name, tag positions, states) in wire order (SampleDecoder's too).
        self.layout: list[list[tuple[str, list[int], list[str] | None]]] = []
        for line_id in schema.line_ids:
            fields: list[tuple[str, list[int], list[str] | None]] = []
            groups: dict[str, list[int]] = {}
            for ref in schema.refs[schema.line_slices[line_id]]:
                group = ref.config.group
                if group is None:
                    fields.append((ref.name, [ref.index], ref.config.states))
                elif group in groups:
                    groups[group].append(ref.index)
                else:
                    groups[group] = [ref.index]
                    fields.append((group, groups[group], None))
            self.layout.append(fields)
        self.grouped = {name for fields in self.layout for name, idx, _ in fields if len(idx) > 1}
        self._names = [ref.name for ref in schema.refs]

    def encode(
        self, store: TagStore, line_positions: np.ndarray | list[int]
    ) -> list[dict[str, Any]]:
        # Plain Python lists and ints: indexing numpy scalars and comparing with IntEnum
        # members per tag cost most of a tick at 500 lines (see docs/performance.md).
        rounded = self._rounded(store)
        quality: list[int] = store.quality.tolist()
        line_q: list[int] = store.line_quality().tolist()
        line_t: list[float] = store.line_source_time().tolist()
        names = self._names
        bad_q, stale_q = int(Quality.BAD), int(Quality.STALE)
        stamps: dict[float, str] = {}  # lines read together share their source time
        out = []
        for pos in np.asarray(line_positions).tolist():
            t = line_t[pos]
            stamp = stamps.get(t)
            if stamp is None and t > 0:
                stamp = stamps[t] = iso_ms(t)
            record: dict[str, Any] = {
                "production_line_id": self.schema.line_ids[pos],
                "timestamp": stamp,
                "quality": QUALITY_LABELS[line_q[pos]],
            }
            bad: list[str] = []
            for name, idx, states in self.layout[pos]:
                vals: list[Any] = [None if quality[i] == bad_q else rounded[i] for i in idx]
                if states is not None:
                    v = vals[0]
                    vals = [states[int(v)] if v is not None and 0 <= v < len(states) else None]
                if len(idx) > 1 or name in self.grouped:
                    record[name] = vals
                else:
                    record[name] = vals[0]
                for i in idx:
                    if quality[i] >= stale_q:
                        bad.append(names[i])
            if bad:
                record["bad_tags"] = bad
            out.append(record)
        return out

    def _rounded(self, store: TagStore) -> list[float | None]:
        values = store.values
        # Per-tag decimals: round with the largest factor once, then per column.
        out = np.empty_like(values)
        for d in np.unique(self._decimals):
            mask = self._decimals == d
            out[mask] = np.round(values[mask], int(d))
        return [None if v != v else v for v in out.tolist()]  # NaN -> None

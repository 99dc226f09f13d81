"""LineSample records: the per-line view of the tag store that goes on the wire."""

from __future__ import annotations

from typing import Any

import numpy as np

from scada.tags import QUALITY_LABELS, Quality, TagSchema
from scada.tagstore import TagStore
from scada.timefmt import iso_ms


class SampleEncoder:
    """Builds LineSample dicts; the layout per line (groups, decimals) is worked out once."""

    def __init__(self, schema: TagSchema) -> None:
        self.schema = schema
        self._decimals = np.array([r.config.decimals for r in schema.refs])
        self._layout: list[list[tuple[str, list[int], list[str] | None]]] = []
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
            self._layout.append(fields)
        self._grouped = {name for fields in self._layout for name, idx, _ in fields if len(idx) > 1}

    def encode(
        self, store: TagStore, line_positions: np.ndarray | list[int]
    ) -> list[dict[str, Any]]:
        rounded = self._rounded(store)
        quality = store.quality
        line_q = store.line_quality()
        line_t = store.line_source_time()
        out = []
        for pos in line_positions:
            record: dict[str, Any] = {
                "production_line_id": self.schema.line_ids[pos],
                "timestamp": iso_ms(line_t[pos]) if line_t[pos] > 0 else None,
                "quality": QUALITY_LABELS[line_q[pos]],
            }
            bad: list[str] = []
            for name, idx, states in self._layout[pos]:
                vals: list[Any] = [None if quality[i] == Quality.BAD else rounded[i] for i in idx]
                if states is not None:
                    v = vals[0]
                    vals = [states[int(v)] if v is not None and 0 <= v < len(states) else None]
                if len(idx) > 1 or name in self._grouped:
                    record[name] = vals
                else:
                    record[name] = vals[0]
                bad.extend(self.schema.refs[i].name for i in idx if quality[i] >= Quality.STALE)
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

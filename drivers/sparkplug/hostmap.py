"""Settings of the `sparkplug` driver (`[devices.settings]`) and its tag map: pure, no
connection. See docs/sparkplug.md.

    [devices.settings]
    group = "plant"
    edge_node = "extruders"          # default edge node of every line
    host_id = "scada"                # our STATE topic: spBv1.0/STATE/scada
    [devices.settings.broker]
    url = "mqtt://127.0.0.1:1883"
    username = "scada"
    password_env = "SCADA_MQTT_PASSWORD"
    [devices.settings.lines."3"]
    device = "L3"                    # default "line<id>"
    map = { diameter = "Gauge/OD" }  # tag -> metric name; default: the tag's name
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field

from drivers.base import DriverSettings
from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.topics import check_id
from scada.core.config import DeviceConfig, PlantConfig, TagConfig

SparkplugId = Annotated[str, AfterValidator(check_id)]


class LineMap(DriverSettings):
    edge_node: SparkplugId | None = None
    device: SparkplugId | None = None
    map: dict[str, str] = Field(default_factory=dict)


class SparkplugSettings(DriverSettings):
    broker: BrokerSettings = BrokerSettings()
    group: SparkplugId = "plant"
    edge_node: SparkplugId | None = None
    host_id: SparkplugId = "scada"
    # Seconds a seq gap may stay open before a rebirth request ([tck-id-operational-behavior-
    # host-reordering-param]); and the least time between two requests to one edge node.
    reorder_timeout: float = Field(default=2.0, ge=0, le=60)
    rebirth_retry: float = Field(default=5.0, gt=0, le=300)
    map: dict[str, str] = Field(default_factory=dict)
    lines: dict[str, LineMap] = Field(default_factory=dict)


def device_id(line_id: str) -> str:
    """The Sparkplug device id of a line, unless configured: as in tag paths."""
    return f"line{line_id}"


@dataclass(frozen=True, slots=True)
class Point:
    """Where one tag comes from."""

    key: int  # schema index (or order, for check)
    edge_node: str
    device: str
    metric: str
    tag: TagConfig


def resolve_points(
    settings: SparkplugSettings,
    device: DeviceConfig,
    config: PlantConfig,
    schema_index: dict[tuple[str, str], int] | None = None,
    path: str = "settings",
) -> tuple[list[Point], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    points: list[Point] = []
    line_ids = config.device_lines(device)
    known = {lid: config.line(lid) for lid in line_ids if any(li.id == lid for li in config.lines)}
    all_tags = {name for line in known.values() for name in line.tags}
    for name in settings.map:
        if name not in all_tags:
            problems.append((f"{path}.map.{name}", "no such tag on the lines of this device"))
    for lid in settings.lines:
        if lid not in known:
            problems.append((f"{path}.lines.{lid}", f"line {lid!r} is not fed by this device"))
    for lid, line in known.items():
        lm = settings.lines.get(lid, LineMap())
        node = lm.edge_node or settings.edge_node
        if node is None:
            problems.append((f"{path}.edge_node", f"no edge node for line {lid!r}"))
            continue
        for name in lm.map:
            if name not in line.tags:
                problems.append((f"{path}.lines.{lid}.map.{name}", f"line {lid!r} has no such tag"))
        for name, tag in line.tags.items():
            metric = lm.map.get(name) or settings.map.get(name) or name
            key = schema_index[(lid, name)] if schema_index else len(points)
            points.append(Point(key, node, lm.device or device_id(lid), metric, tag))
    return points, problems

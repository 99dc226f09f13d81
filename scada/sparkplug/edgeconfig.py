"""The `[sparkplug]` section: the service's edge node (off by default).

    [sparkplug]
    enabled = true
    group = "plant"
    edge_node = "scada"
    primary_host = "ignition"        # wait for its STATE online before the birth
    lines = "*"                      # which lines become devices ("line<id>")
    publish_interval_ms = 100        # at most once per tick
    deadband = { diameter = 0.002, "line3.melt_pressure" = 1.0 }
    [sparkplug.broker]
    url = "mqtts://broker.plant:8883"
    username = "scada"
    password_env = "SCADA_MQTT_PASSWORD"

PlantConfig keeps the section as a plain table (core imports nothing of ours); this module
validates it as drivers validate their settings, with dotted key paths.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.hostmap import SparkplugId
from scada.core.config import PlantConfig, format_path
from scada.core.errors import ConfigError


class WriteSettings(BaseModel):
    """DCMD writes a host may make, as which user of this service (`scada users add`): the
    user's role must allow the action (acknowledging: operator) when the write arrives, and
    every write is audited as that user. The one write there is: `Alarms/<alarm>/Acknowledged`
    = true acknowledges the alarm."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1, max_length=64)
    allow: list[str] = Field(
        default_factory=list
    )  # metric name patterns, e.g. "Alarms/*/Acknowledged"


class EdgeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    broker: BrokerSettings = BrokerSettings()
    group: SparkplugId = "plant"
    edge_node: SparkplugId = "scada"
    primary_host: SparkplugId | None = None
    lines: list[str] | Literal["*"] = "*"
    publish_interval_ms: int = Field(default=100, ge=10, le=60_000)
    # Tag name (every line) or tag path "line<id>.<tag>" -> change, in engineering units, a
    # value must make to be published (after rounding to the tag's decimals).
    deadband: dict[str, float] = Field(default_factory=dict)
    alarms: bool = True  # alarm state of each line as metrics "Alarms/..."
    writes: WriteSettings | None = None  # None: every DCMD write refused


def edge_settings(config: PlantConfig) -> EdgeSettings:
    """The validated section; raises ConfigError listing every problem."""
    problems = sparkplug_problems(config)
    if problems:
        raise ConfigError("[sparkplug]", problems)
    return EdgeSettings.model_validate(config.sparkplug)


def sparkplug_problems(config: PlantConfig, *, environment: bool = True) -> list[tuple[str, str]]:
    try:
        section = EdgeSettings.model_validate(config.sparkplug)
    except ValidationError as err:
        return [_problem(e) for e in err.errors()]
    problems: list[tuple[str, str]] = []
    line_ids = [line.id for line in config.lines]
    if section.lines != "*":
        for i, lid in enumerate(section.lines):
            if lid not in line_ids:
                problems.append((f"sparkplug.lines[{i}]", f"no line with id {lid!r}"))
    tags = {name for line in config.lines for name in line.tags}
    paths = {f"line{line.id}.{name}" for line in config.lines for name in line.tags}
    for key, value in section.deadband.items():
        if key not in tags and key not in paths:
            problems.append((f"sparkplug.deadband.{key}", "no such tag name or tag path"))
        if value < 0:
            problems.append((f"sparkplug.deadband.{key}", "must be 0 or more"))
    if section.publish_interval_ms < config.server.batch_interval_ms:
        problems.append(
            (
                "sparkplug.publish_interval_ms",
                f"at most the tick rate: not under server.batch_interval_ms "
                f"({config.server.batch_interval_ms})",
            )
        )
    for key, message in section.broker.problems() if section.enabled else []:
        if environment or not key.endswith("_env"):
            problems.append((f"sparkplug.broker.{key}", message))
    return problems


def _problem(error: Any) -> tuple[str, str]:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return format_path(("sparkplug", *error["loc"])), message

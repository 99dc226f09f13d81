"""Plant configuration: TOML validated once, at start, into frozen pydantic models.

Structural problems (wrong type, unknown key) come from pydantic; semantic ones (limits out of
order, duplicate line ids) from `_semantic_problems`. Both are reported together, each with the
dotted key path of the bad value, so `scada check-config` can list every problem at once.
"""

from __future__ import annotations

import copy
import itertools
import re
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from scada.core.errors import ConfigError
from scada.core.roles import AUDIENCES, Role

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
LIMIT_NAMES = ("hihi", "hi", "lo", "lolo")
DEFAULT_SEVERITY: dict[str, Severity] = {
    "hihi": "critical",
    "hi": "high",
    "lo": "high",
    "lolo": "critical",
}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _number_is_value(raw: Any) -> Any:
    """Let `hi = 12.3` stand for `hi = { value = 12.3 }`."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return {"value": raw}
    return raw


class LimitConfig(Frozen):
    """One alarm limit. Unset options fall back to the tag's `limits` table."""

    value: float
    severity: Severity | None = None
    deadband: float | None = Field(default=None, ge=0)
    on_delay: float | None = Field(default=None, ge=0)
    off_delay: float | None = Field(default=None, ge=0)
    message: str | None = None


LimitField = Annotated[LimitConfig | None, BeforeValidator(_number_is_value)]


class LimitsConfig(Frozen):
    hihi: LimitField = None
    hi: LimitField = None
    lo: LimitField = None
    lolo: LimitField = None
    # Deadband in engineering units, or in percent of the tag's span (one of the two).
    deadband: float = Field(default=0.0, ge=0)
    deadband_percent: float | None = Field(default=None, ge=0, le=100)
    on_delay: float = Field(default=0.0, ge=0)
    off_delay: float = Field(default=0.0, ge=0)

    def items(self) -> Iterator[tuple[str, LimitConfig]]:
        for name in LIMIT_NAMES:
            limit = getattr(self, name)
            if limit is not None:
                yield name, limit


class RateConfig(Frozen):
    """Rate-of-change alarm: |change| over `window` seconds, per second, above the limit."""

    max_per_second: float = Field(gt=0)
    window: float = Field(default=5.0, gt=0)
    severity: Severity = "medium"
    on_delay: float = Field(default=0.0, ge=0)
    off_delay: float = Field(default=0.0, ge=0)


class FrozenConfig(Frozen):
    """Frozen value: the tag moved less than `min_change` for `seconds` while its line runs."""

    min_change: float = Field(gt=0)
    seconds: float = Field(default=60.0, gt=0)
    severity: Severity = "medium"


class DeviationConfig(Frozen):
    """Deviation from setpoint: |value - setpoint| above `absolute` (or `percent` of the
    setpoint) for `on_delay` seconds; clears once back within it for `off_delay`."""

    absolute: float | None = Field(default=None, gt=0)
    percent: float | None = Field(default=None, gt=0)
    on_delay: float = Field(default=0.0, ge=0)
    off_delay: float = Field(default=0.0, ge=0)
    severity: Severity = "medium"


class TagConfig(Frozen):
    kind: Literal["analog", "state"] = "analog"
    unit: str = ""
    description: str = ""
    # Tags sharing a group are sent as one array, in config order (body_temperatures).
    group: str | None = None
    setpoint: float | None = None
    tolerance: float | None = Field(default=None, gt=0)
    span: tuple[float, float] | None = None
    decimals: int = Field(default=2, ge=0, le=9)
    limits: LimitsConfig | None = None
    rate: RateConfig | None = None
    # Seconds a tag may be bad or stale before its quality alarm is raised; null disables it.
    quality_delay: float | None = Field(default=2.0, ge=0)
    quality_severity: Severity = "high"
    states: list[str] | None = None
    # Out of service: evaluated and journaled as suppressed, never announced.
    suppressed: bool = False
    # Designed suppression by line state: while the line's `state` tag is one of these, the
    # tag's limit, rate, deviation and frozen alarms are suppressed (journaled, not shown).
    suppress_when: list[str] = Field(default_factory=list)
    frozen: FrozenConfig | None = None
    deviation: DeviationConfig | None = None
    # State tags: states that raise an alarm `line<id>.<tag>.<state>`, with its severity.
    alarm_states: dict[str, Severity] = Field(default_factory=dict)


class LineConfig(Frozen):
    id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = ""
    stale_after: float = Field(default=1.0, gt=0)
    # One alarm `line<id>.quality` when every tag of the line is bad or stale (a silent
    # source), standing for the tags' own quality alarms, which it suppresses meanwhile.
    quality_alarm: bool = False
    tags: dict[str, TagConfig]

    @property
    def title(self) -> str:
        return self.name or f"Line {self.id}"


class DeviceConfig(Frozen):
    """One source of samples: a driver instance and the lines it feeds."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    driver: str = "sim"
    lines: list[str] | Literal["*"] = "*"
    poll_interval_ms: int = Field(default=100, ge=10, le=60_000)
    # Driver-specific; validated by the driver's own settings model (see drivers.base).
    settings: dict[str, Any] = Field(default_factory=dict)


class SimulatorConfig(Frozen):
    seed: int = 42
    scenario: str | None = None
    # The plant is a simulator process (`scada simulate modbus --control-port`): the
    # /api/simulator/faults routes forward to its fault port (docs/cluster.md), with the
    # bearer token read from this environment variable.
    control_url: str | None = Field(default=None, pattern=r"^https?://")
    control_token_env: str = "SCADA_SIMULATOR_TOKEN"


class ServerConfig(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    batch_interval_ms: int = Field(default=100, ge=10, le=5000)
    heartbeat_interval_ms: int = Field(default=15_000, ge=1000, le=300_000)
    max_message_bytes: int = Field(default=65_536, ge=256)
    # A client whose unsent data passes this is closed with 1013.
    max_client_buffer_bytes: int = Field(default=1_048_576, ge=4096)
    # A client whose socket stays blocked (nothing drains) this long is closed with 1013 too.
    slow_client_timeout: float = Field(default=2.0, gt=0)
    # Kernel send buffer per WebSocket; bounded so a stuck client cannot pin megabytes.
    socket_send_buffer: int = Field(default=262_144, ge=0)  # 0: the OS default
    history_seconds: int = Field(default=900, ge=60, le=86_400)
    data_dir: str = "data"
    # Browser origins allowed to open /ws, e.g. "https://scada.plant.example"; empty means
    # only the server's own origin (the Host the request was addressed to).
    allowed_origins: list[str] = Field(default_factory=list)
    max_connections: int = Field(default=10_000, ge=1)
    max_connections_per_user: int = Field(default=50, ge=1)
    # Anonymous viewers may fill at most this many slots, so operators can always get in.
    max_anonymous_connections: int = Field(default=9_000, ge=0)
    # Client messages per second per connection; beyond the burst they get `rate_limited`
    # errors, and a client that keeps going past twice the burst is closed with 1008.
    messages_per_second: float = Field(default=20.0, gt=0)
    message_burst: int = Field(default=40, ge=1)
    # A connection must complete each HTTP request head / WebSocket handshake within this.
    handshake_timeout: float = Field(default=10.0, gt=0)
    # ... and each request body within this after its head.
    request_body_timeout: float = Field(default=10.0, gt=0)
    # An idle keep-alive HTTP connection is closed after this.
    keepalive_timeout: float = Field(default=5.0, gt=0)
    # Request heads over these get 431 (websockets' own parser stops at 128 header fields).
    max_request_head_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    max_request_headers: int = Field(default=100, ge=8, le=128)
    # Connections not (yet) upgraded to WebSocket; idle keep-alive ones are closed first.
    max_http_connections: int = Field(default=1_000, ge=1)
    # Host names the server answers to besides its own (DNS rebinding guard); "*": any.
    allowed_hosts: list[str] = Field(default_factory=list)
    # CSP, nosniff, frame and referrer policies on every response (nginx adds them too).
    security_headers: bool = True
    shutdown_grace: float = Field(default=5.0, ge=0)


class AlarmSettings(Frozen):
    journal_path: str | None = None  # default: <data_dir>/journal.sqlite
    retention_days: float = Field(default=90.0, gt=0)
    retention_events: int = Field(default=1_000_000, ge=1000)
    default_user: str = "operator"
    require_comment: list[Severity] = Field(default_factory=list)
    max_shelve_minutes: int = Field(default=480, ge=1)
    # First-out: an alarm raised on a line with no other alarm raised there in the window
    # before it is marked first_out (the likely root cause of the burst that follows).
    first_out_window: float = Field(default=10.0, gt=0)
    # Flood: more than flood_start_above annunciated in flood_window seconds starts an
    # episode; fewer than flood_end_below in the trailing window ends it (EEMUA 191).
    flood_window: float = Field(default=600.0, gt=0)
    flood_start_above: int = Field(default=10, ge=1)
    flood_end_below: int = Field(default=5, ge=1)


class CompressionRule(Frozen):
    """Historian compression of one tag (or a glob of tag paths): the error it may make."""

    method: Literal["deadband", "swinging_door"] = "swinging_door"
    deviation: float = Field(gt=0)


class HistorianSettings(Frozen):
    enabled: bool = True
    path: str | None = None  # default: <data_dir>/history.sqlite
    # Retention per tier, in days (see docs/historian.md).
    raw_days: float = Field(default=30.0, gt=0)
    rollup_1m_days: float = Field(default=365.0, gt=0)
    rollup_1h_days: float = Field(default=3650.0, gt=0)
    # A killed process loses at most this many seconds of samples.
    flush_interval: float = Field(default=1.0, gt=0, le=1.0)
    max_points: int = Field(default=10_000, ge=10)
    # Tag path or glob ("line*.diameter") -> compression; off for every other tag.
    compression: dict[str, CompressionRule] = Field(default_factory=dict)


def _audiences(value: dict[str, int]) -> dict[str, int]:
    unknown = sorted(set(value) - set(AUDIENCES))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; one of {', '.join(AUDIENCES)}")
    if any(v < 0 for v in value.values()):
        raise ValueError("limits are 0 or more")
    return value


# A limit per role, with anonymous clients as a role of their own.
PerAudience = Annotated[dict[str, int], AfterValidator(_audiences)]


class AuthSettings(Frozen):
    # Clients without credentials: allowed (plant-floor screens) with this role, or refused.
    allow_anonymous: bool = True
    anonymous_role: Role = "viewer"
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    # Secure cookie flag: "auto" sets it when the request came over https (directly or via
    # a trusted proxy's X-Forwarded-Proto).
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    # Peers whose X-Forwarded-For / X-Forwarded-Proto headers are believed (your Nginx).
    trusted_proxies: list[str] = Field(default_factory=list)
    database: str | None = None  # default: <data_dir>/auth.sqlite
    # Login throttling: failed logins per client address and in total within the window;
    # past either, logins get 429 until the window has room again.
    login_failures_per_address: int = Field(default=5, ge=1)
    login_failures_total: int = Field(default=30, ge=1)
    login_window_seconds: float = Field(default=60.0, gt=0)
    # Password checks (argon2id, ~19 MiB each) run on this many threads of their own, with
    # at most this many waiting; more concurrent logins get 429 at once.
    password_hash_threads: int = Field(default=1, ge=1, le=8)
    password_hash_queue: int = Field(default=4, ge=1)
    # Heavy reads (KPIs, alarm history, history, audit, exports, resume): how many may run
    # at once per client address, and in total per role; more get 429 with Retry-After.
    heavy_reads_per_client: int = Field(default=2, ge=1)
    heavy_reads_per_role: PerAudience = Field(
        default_factory=lambda: {
            "anonymous": 2,
            "viewer": 4,
            "operator": 4,
            "engineer": 4,
            "admin": 4,
        }
    )
    # Exports (whole ranges streamed as CSV/JSONL) running at once in the whole server.
    max_exports: int = Field(default=1, ge=1)
    # Alarm events a `resume` may replay, per role; further behind gets a fresh snapshot.
    resume_events: PerAudience = Field(
        default_factory=lambda: {
            "anonymous": 500,
            "viewer": 2000,
            "operator": 10_000,
            "engineer": 10_000,
            "admin": 10_000,
        }
    )


class ConsoleSettings(Frozen):
    """The browser console (docs/console.md)."""

    # Horn for new unacknowledged high/critical alarms on screens nobody is logged in to
    # (wall screens); logged-in consoles sound by default. Each browser may still switch it.
    anonymous_sound: bool = False
    # No frame for this long: the page shows "no live data". None: the longest stale_after.
    no_data_after: float | None = Field(default=None, gt=0)


class ClusterSettings(Frozen):
    """`scada serve --role ingest|gateway` (docs/cluster.md); role `all` ignores it."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # This process's name on the bus (lease holder, command replies): unique per process.
    # Empty: "<role>-<hostname>-<port>".
    node: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    prefix: str = Field(default="scada", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    # Lease: held for lease_ttl s, renewed every renew_every s; a standby takes over at most
    # lease_ttl + 0.5 s after the holder's last renewal. The holder trusts it until 1 s before
    # (counted from its last renewal Redis confirmed), so renew_every < lease_ttl - 1.
    lease_ttl: float = Field(default=3.0, ge=2.0, le=60.0)
    renew_every: float = Field(default=1.0, gt=0, le=20.0)
    # A gateway that reads nothing from the bus for this long marks its clients' data stale.
    read_deadline: float = Field(default=2.0, gt=0, le=60.0)
    # Alarm events a gateway keeps for resumes; entries kept in the alarm and frame streams.
    ring_size: int = Field(default=10_000, ge=100)
    alarms_maxlen: int = Field(default=100_000, ge=1000)
    frames_maxlen: int = Field(default=100, ge=10)
    # How long a gateway waits for the active ingest node to answer a command (it retries
    # with the same request id within this time, so a failover in between applies it once).
    command_timeout: float = Field(default=10.0, gt=0, le=120.0)

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> ClusterSettings:
        if not self.renew_every < self.lease_ttl - 1.0:
            raise ValueError("renew_every must be shorter than lease_ttl - 1")
        return self


class PlantConfig(Frozen):
    server: ServerConfig = ServerConfig()
    auth: AuthSettings = AuthSettings()
    console: ConsoleSettings = ConsoleSettings()
    simulator: SimulatorConfig = SimulatorConfig()
    alarms: AlarmSettings = AlarmSettings()
    historian: HistorianSettings = HistorianSettings()
    cluster: ClusterSettings = ClusterSettings()
    # Validated by scada.notify.settings, as drivers validate their settings (core imports
    # nothing of ours).
    notifications: dict[str, Any] = Field(default_factory=dict)
    # The service as a Sparkplug B edge node, validated by scada.sparkplug.edgeconfig (off by
    # default: `make run` needs no broker).
    sparkplug: dict[str, Any] = Field(default_factory=dict)
    devices: list[DeviceConfig] = Field(default_factory=lambda: [DeviceConfig(name="sim")])
    lines: list[LineConfig] = Field(min_length=1)

    def line(self, line_id: str) -> LineConfig:
        for line in self.lines:
            if line.id == line_id:
                return line
        raise KeyError(line_id)

    def device_lines(self, device: DeviceConfig) -> list[str]:
        if device.lines == "*":
            return [line.id for line in self.lines]
        return list(device.lines)


# ---------------------------------------------------------------------------------------------
# Loading


def default_config_text() -> str:
    return resources.files("scada").joinpath("defaults/plant.toml").read_text("utf-8")


def load_config(path: str | Path | None = None) -> PlantConfig:
    """Read and validate a config file (or the packaged default). Raises ConfigError."""
    if path is None:
        return parse_config(default_config_text(), source="<default plant.toml>")
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as err:
        raise ConfigError(str(p), [("<file>", f"cannot read: {err.strerror or err}")]) from err
    return _relative_to(parse_config(text, source=str(p)), p.resolve().parent)


def _relative_to(config: PlantConfig, base: Path) -> PlantConfig:
    """Relative paths in a config file mean relative to that file, wherever `scada` runs
    (so `scada users add` and `scada serve` always open the same stores)."""
    server = config.server
    if not Path(server.data_dir).is_absolute():
        server = server.model_copy(update={"data_dir": str(base / server.data_dir)})
    simulator = config.simulator
    if simulator.scenario and not Path(simulator.scenario).is_absolute():
        simulator = simulator.model_copy(update={"scenario": str(base / simulator.scenario)})
    return config.model_copy(update={"server": server, "simulator": simulator})


def parse_config(text: str, *, source: str = "<config>") -> PlantConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, [("<toml>", str(err))]) from err
    return config_from_dict(raw, source=source)


def config_from_dict(raw: dict[str, Any], *, source: str = "<config>") -> PlantConfig:
    """Validate a config; ConfigError lists every problem found at once: schema errors, and
    the checks of what is valid (invalid keys read as their defaults), not only the first."""
    config, problems = _validate_what_can_be(_apply_line_defaults(raw))
    if config is not None:
        problems += [p for p in _semantic_problems(config) if p not in problems]
    if problems:
        raise ConfigError(source, _blame_line_defaults(raw, problems), partial=config)
    assert config is not None
    return config


def _validate_what_can_be(data: dict[str, Any]) -> tuple[PlantConfig | None, list[tuple[str, str]]]:
    """The model, after dropping each key the schema refuses (up to a few rounds), and the
    schema's problems; None when a refusal cannot be dropped (a required key)."""
    data = copy.deepcopy(data)
    problems: list[tuple[str, str]] = []
    for _ in range(5):
        try:
            return PlantConfig.model_validate(data), problems
        except ValidationError as err:
            errors = err.errors()
            problems += [p for p in map(_pydantic_problem, errors) if p not in problems]
            if not all([_drop(data, e["loc"]) for e in errors]):
                return None, problems
    return None, problems


def _drop(data: Any, loc: tuple[Any, ...]) -> bool:
    """Remove the table key at `loc` (list items stay: later paths keep their indices)."""
    keys = [k for k in loc if isinstance(k, int) or not str(k).startswith("function-")]
    for key in keys[:-1]:
        if (isinstance(data, dict) and key in data) or (
            isinstance(data, list) and isinstance(key, int) and key < len(data)
        ):
            data = data[key]
        else:
            return False
    if keys and isinstance(data, dict) and keys[-1] in data:
        del data[keys[-1]]
        return True
    return False


_LINE_PATH = re.compile(r"lines\[(\d+)\]\.(.+)")


def _blame_line_defaults(
    raw: dict[str, Any], problems: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """A problem at a key whose value a line took from `[line_defaults]` (it does not set the
    key itself) is reported once, at its `line_defaults.` key, not once per line."""
    defaults, lines = raw.get("line_defaults"), raw.get("lines")
    out: list[tuple[str, str]] = []
    for path, reason in problems:
        match = _LINE_PATH.fullmatch(path)
        if match and isinstance(defaults, dict) and isinstance(lines, list):
            i, rest = int(match.group(1)), match.group(2)
            keys = rest.split(".")
            line = lines[i] if i < len(lines) else None
            if _has_path(defaults, keys) and not _has_path(line, keys):
                path = f"line_defaults.{rest}"
        if (path, reason) not in out:
            out.append((path, reason))
    return out


def _has_path(data: Any, keys: list[str]) -> bool:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def _apply_line_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Merge `[line_defaults]` under every `[[lines]]` entry so 8 similar lines stay short."""
    data = dict(raw)
    defaults = data.pop("line_defaults", None)
    if not isinstance(defaults, dict) or not isinstance(data.get("lines"), list):
        if defaults is not None and not isinstance(defaults, dict):
            data["line_defaults"] = defaults  # let validation report the wrong type
        return data
    data["lines"] = [
        deep_merge(defaults, line) if isinstance(line, dict) else line for line in data["lines"]
    ]
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, tables merged key by key (neither input is changed)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def _pydantic_problem(error: Any) -> tuple[str, str]:
    loc = tuple(p for p in error["loc"] if p not in ("function-before[_number_is_value(), ...]",))
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    return format_path(loc), message


def _semantic_problems(config: PlantConfig) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for i, line in enumerate(config.lines):
        if line.id in seen:
            yield f"lines[{i}].id", f"duplicate line id {line.id!r}"
        seen.add(line.id)
        if not line.tags:
            yield f"lines[{i}].tags", "a line needs at least one tag"
        for name, tag in line.tags.items():
            yield from _tag_problems(f"lines[{i}].tags.{name}", tag)
            states = line.tags["state"].states or [] if "state" in line.tags else []
            for state in tag.suppress_when:
                if state not in states:
                    yield (
                        f"lines[{i}].tags.{name}.suppress_when",
                        f"{state!r} is not a state of the line's `state` tag",
                    )
    names = set()
    fed_by: dict[str, str] = {}  # line id -> the device that feeds it
    for i, device in enumerate(config.devices):
        if device.name in names:
            yield f"devices[{i}].name", f"duplicate device name {device.name!r}"
        names.add(device.name)
        if device.lines != "*":
            for j, line_id in enumerate(device.lines):
                if line_id not in seen:
                    yield f"devices[{i}].lines[{j}]", f"no line with id {line_id!r}"
        lines = [line.id for line in config.lines] if device.lines == "*" else device.lines
        taken = [(lid, fed_by[lid]) for lid in dict.fromkeys(lines) if lid in fed_by]
        if taken:
            which = ", ".join(f"line {lid!r} by {other!r}" for lid, other in taken)
            yield (
                f"devices[{i}].lines",
                f"already fed by another device ({which}): one source per line",
            )
        for lid in lines:
            fed_by.setdefault(lid, device.name)


def _tag_problems(path: str, tag: TagConfig) -> Iterator[tuple[str, str]]:
    if tag.kind == "state" and not tag.states:
        yield f"{path}.states", "a state tag needs the list of its state names"
    for state in tag.alarm_states:
        if tag.kind != "state" or state not in (tag.states or []):
            yield f"{path}.alarm_states.{state}", "not one of the tag's states"
    if tag.deviation is not None:
        if tag.setpoint is None:
            yield f"{path}.deviation", "needs the tag's setpoint"
        if (tag.deviation.absolute is None) == (tag.deviation.percent is None):
            yield f"{path}.deviation", "give exactly one of absolute or percent"
    if (tag.frozen is not None or tag.deviation is not None) and tag.kind == "state":
        yield f"{path}", "frozen and deviation alarms are for analog tags"
    if tag.span is not None and tag.span[0] >= tag.span[1]:
        yield f"{path}.span", "must be [low, high] with low below high"
    limits = tag.limits
    if limits is None:
        return
    if tag.kind == "state":
        yield f"{path}.limits", "a state tag has no analog limits"
    if limits.deadband_percent is not None and tag.span is None:
        yield f"{path}.limits.deadband_percent", "needs the tag's span to compute from"
    present = [(name, limit.value) for name, limit in limits.items()]
    # Limits must be ordered lolo < lo < hi < hihi; name each one out of place.
    order = {name: i for i, name in enumerate(reversed(LIMIT_NAMES))}
    present.sort(key=lambda item: order[item[0]])
    for (low_name, low), (high_name, high) in itertools.pairwise(present):
        if high <= low:
            yield f"{path}.limits.{high_name}", f"must be above {low_name} ({low:g})"
    if tag.setpoint is not None:
        hi = limits.hi or limits.hihi
        lo = limits.lo or limits.lolo
        if hi is not None and tag.setpoint >= hi.value:
            yield f"{path}.setpoint", f"must be below the high limit ({hi.value:g})"
        if lo is not None and tag.setpoint <= lo.value:
            yield f"{path}.setpoint", f"must be above the low limit ({lo.value:g})"


def resolve_data_path(config: PlantConfig, value: str | None, default_name: str) -> Path:
    """A path from config: absolute as given, relative under the data dir."""
    base = Path(config.server.data_dir)
    if value is None:
        return base / default_name
    p = Path(value)
    return p if p.is_absolute() else base / p

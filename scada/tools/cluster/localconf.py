"""Config files for the processes of a local cluster (`scada cluster`): the plant config the
user gave (or the default), with each process's own data dir, node name and Redis URL (with
that node's Redis user and password in it: each file is 0600, in a 0700 directory).

TOML is written with inline tables only (one `key = {...}` line per top-level table), which
round-trips every value a plant config holds: strings, numbers, booleans, arrays, tables.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from scada.core.config import deep_merge, default_config_text
from scada.tools.cluster.credentials import private_dir, write_private
from scada.tools.cluster.nginxconf import NGINX_SOURCE
from simulators.modbus_server import driver_settings

# Paths that default to a file under data_dir: removed, so nodes never share a store.
PER_NODE_PATHS = (("alarms", "journal_path"), ("historian", "path"), ("auth", "database"))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a config value is not finite: {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(str(k))} = {_value(v)}" for k, v in value.items()) + "}"
        )
    raise ValueError(f"cannot write {type(value).__name__} to TOML")


def dumps_inline(data: dict[str, Any]) -> str:
    """A TOML document of `data`: one `key = value` line per top-level key."""
    return "".join(f"{json.dumps(str(k))} = {_value(v)}\n" for k, v in data.items())


def base_config(path: Path | None) -> dict[str, Any]:
    """The user's plant config as a dict (relative scenario made absolute), or the default."""
    if path is None:
        return tomllib.loads(default_config_text())
    raw = tomllib.loads(path.read_text("utf-8"))
    scenario = raw.get("simulator", {}).get("scenario")
    if scenario and not Path(scenario).is_absolute():
        raw["simulator"]["scenario"] = str(path.resolve().parent / scenario)
    return raw


def node_config(
    base: dict[str, Any], *, directory: Path, node: str, redis_url: str
) -> dict[str, Any]:
    """`base` for one process: data under `directory/data`, loopback only, the local
    cluster's nginx (and only it, by its own source address) trusted as a proxy."""
    out = deep_merge(base, {})
    for table, key in PER_NODE_PATHS:
        out.get(table, {}).pop(key, None)
    proxies = list(out.get("auth", {}).get("trusted_proxies", []))
    return deep_merge(
        out,
        {
            "server": {"data_dir": str(directory / "data"), "host": "127.0.0.1"},
            "auth": {"trusted_proxies": sorted({*proxies, NGINX_SOURCE})},
            "cluster": {"node": node, "redis_url": redis_url},
        },
    )


def simulated_lines(base: dict[str, Any], line_ids: list[str]) -> list[str]:
    """The lines `base` reads from the built-in simulator (`sim` devices; none given: all)."""
    devices = base.get("devices")
    if not devices:
        return list(line_ids)
    wanted: set[str] = set()
    for device in devices:
        if device.get("driver", "sim") == "sim":
            lines = device.get("lines", "*")
            wanted |= set(line_ids) if lines == "*" else {str(x) for x in lines}
    return [lid for lid in line_ids if lid in wanted]


def over_simulator(
    base: dict[str, Any], *, line_ids: list[str], port: int, control_url: str
) -> dict[str, Any]:
    """`base` with its `sim` devices replaced by one `modbus` device that polls the simulator
    process on `port` (the plant is a device: a failover does not reset it), and the fault
    routes forwarded to that process's `control_url`."""
    lines = simulated_lines(base, line_ids)
    devices = [d for d in base.get("devices", []) if d.get("driver", "sim") != "sim"]
    devices.append(
        {
            "name": "simulator",
            "driver": "modbus",
            "lines": lines,
            "poll_interval_ms": 100,
            "settings": driver_settings(lines, host="127.0.0.1", port=port),
        }
    )
    out = deep_merge(base, {"simulator": {"control_url": control_url}})
    out["devices"] = devices
    return out


def write_node_config(base: dict[str, Any], *, directory: Path, node: str, redis_url: str) -> Path:
    private_dir(directory)
    private_dir(directory / "data")
    data = node_config(base, directory=directory, node=node, redis_url=redis_url)
    header = (
        f"# Written by `scada cluster` for node {node}; rewritten at each start.\n"
        "# Holds this node's Redis password: keep it 0600.\n"
    )
    return write_private(directory / "plant.toml", header + dumps_inline(data))

"""Config validation: every problem reported with its key path, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scada.core.config import config_from_dict, deep_merge, load_config
from scada.core.errors import ConfigError
from tests.conftest import default_config_dict, write_config


def problems(overrides: dict[str, Any]) -> list[tuple[str, str]]:
    raw = deep_merge(default_config_dict(), overrides)
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    return info.value.problems


def test_default_plant_has_eight_lines_with_the_expected_tags() -> None:
    config = load_config()
    assert [line.id for line in config.lines] == [str(i) for i in range(1, 9)]
    line = config.lines[0]
    assert [n for n, t in line.tags.items() if t.group == "body_temperatures"] == [
        f"body_temperature_{i}" for i in range(1, 5)
    ]
    assert line.tags["diameter"].unit == "mm" and line.tags["diameter"].tolerance == 0.15
    assert config.server.batch_interval_ms == 100 and line.stale_after == 1.0
    # line_defaults merged under per-line overrides
    assert config.lines[4].tags["diameter"].setpoint == 16.0
    assert config.lines[4].tags["diameter"].limits.deadband == 0.02  # type: ignore[union-attr]
    assert config.lines[0].tags["diameter"].limits.hi.value == 12.2  # type: ignore[union-attr]


def test_limits_out_of_order_name_the_key() -> None:
    raw = default_config_dict()
    raw["lines"][2]["tags"] = {"diameter": {"limits": {"hi": 11.0, "lo": 11.8}}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    paths = dict(info.value.problems)
    assert paths["lines[2].tags.diameter.limits.hi"].startswith("must be above lo")


def test_every_problem_is_reported_at_once() -> None:
    found = dict(
        problems(
            {
                "server": {"port": "eighty", "bogus": 1},
                "devices": [{"name": "sim", "driver": "sim", "lines": ["1", "77"]}],
            }
        )
    )
    assert "server.port" in found
    assert found["server.bogus"] == "unknown key"
    raw = default_config_dict()
    raw["lines"][1]["id"] = "1"
    raw["lines"][3]["stale_after"] = -1
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    found = dict(info.value.problems)
    assert found["lines[3].stale_after"].startswith("Input should be greater than 0")


def test_semantic_problems() -> None:
    raw = default_config_dict()
    raw["lines"][1]["id"] = "1"
    raw["devices"] = [{"name": "sim", "driver": "sim", "lines": ["1", "77"]}]
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    found = dict(info.value.problems)
    assert found["lines[1].id"] == "duplicate line id '1'"
    assert found["devices[0].lines[1]"] == "no line with id '77'"


def test_setpoint_outside_limits_and_state_without_states() -> None:
    raw = default_config_dict()
    raw["lines"][0]["tags"] = {"diameter": {"setpoint": 13.0}, "state": {"states": []}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    found = dict(info.value.problems)
    assert found["lines[0].tags.diameter.setpoint"].startswith("must be below the high limit")
    assert "lines[0].tags.state.states" in found


def test_line_defaults_problems_are_reported_once_at_their_own_key() -> None:
    found = problems(
        {"line_defaults": {"tags": {"diameter": {"bogus": 1, "limits": {"hi": 11.0}}}}}
    )
    assert ("line_defaults.tags.diameter.bogus", "unknown key") in found
    assert not [p for p, _ in found if p.startswith("lines[") and p.endswith(".bogus")]
    # A line that overrides the tag has its own problem at its own key.
    raw = default_config_dict()
    raw["line_defaults"]["tags"]["diameter"]["limits"]["hi"] = 11.0
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    found = info.value.problems
    at_defaults = [p for p, _ in found if p.startswith("line_defaults.tags.diameter.limits")]
    assert at_defaults == ["line_defaults.tags.diameter.limits.hi"]  # once, not per line
    # Lines 5 and 6 set their own diameter limits: their problems (if any) stay theirs.
    assert all(not p.startswith(("lines[0].", "lines[1].")) for p, _ in found)


def test_two_devices_feeding_one_line_are_refused() -> None:
    found = problems(
        {
            "devices": [
                {"name": "a", "driver": "sim", "lines": ["1", "2"]},
                {"name": "b", "driver": "sim", "lines": ["2", "3"]},
                {"name": "c", "driver": "sim"},  # every line
            ]
        }
    )
    assert (
        "devices[1].lines",
        "already fed by another device (line '2' by 'a'): one source per line",
    ) in found
    assert [p for p, _ in found if p == "devices[2].lines"] == ["devices[2].lines"]


def test_a_modbus_device_without_a_map_is_one_problem() -> None:
    from drivers.registry import device_problems

    raw = deep_merge(
        default_config_dict(),
        {"devices": [{"name": "plc", "driver": "modbus", "settings": {"host": "127.0.0.1"}}]},
    )
    found = device_problems(config_from_dict(raw))
    assert found == [
        (
            "devices[0].settings.map",
            "missing: the modbus driver needs a tag map (see docs/drivers.md)",
        )
    ]


def scada(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scada", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_check_config_cli_exit_2_without_traceback(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.toml", {"server": {"port": -5}})
    result = scada("check-config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "server.port" in result.stderr and "Traceback" not in result.stderr
    good = write_config(tmp_path / "good.toml")
    result = scada("check-config", str(good), cwd=tmp_path)
    assert result.returncode == 0 and "8 lines" in result.stdout
    (tmp_path / "broken.toml").write_text("[server\nport=1")
    result = scada("check-config", str(tmp_path / "broken.toml"), cwd=tmp_path)
    assert result.returncode == 2 and "<toml>" in result.stderr
    result = scada("check-config", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_unknown_driver_and_bad_driver_settings(tmp_path: Path) -> None:
    bad = write_config(
        tmp_path / "bad.toml",
        {
            "devices": [
                {"name": "a", "driver": "profibus", "lines": ["1"]},
                {"name": "b", "driver": "sim", "lines": ["2"], "settings": {"speed": 3}},
            ]
        },
    )
    result = scada("check-config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "devices[0].driver: unknown driver" in result.stderr
    assert "devices[1].settings.speed: unknown key" in result.stderr


def test_serve_refuses_a_bad_file(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.toml", {"server": {"batch_interval_ms": 1}})
    result = scada("serve", "--config", str(bad), "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "server.batch_interval_ms" in result.stderr and "Traceback" not in result.stderr


def test_check_config_lists_four_mistakes_of_four_kinds_at_once(tmp_path: Path) -> None:
    raw = default_config_dict()
    raw["server"]["prot"] = 8000  # a typo: unknown key (schema)
    raw["server"]["batch_interval_ms"] = "fast"  # a wrong type (schema)
    raw["devices"][0]["driver"] = "modbuss"  # an unknown driver (driver registry)
    raw["lines"][2]["tags"] = {"diameter": {"limits": {"hi": 11.0, "lo": 12.5}}}  # limits
    bad = write_config(tmp_path / "bad.toml", base=raw)
    result = scada("check-config", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for path in (
        "server.prot: unknown key",
        "server.batch_interval_ms:",
        "devices[0].driver: unknown driver",
        "lines[2].tags.diameter.limits.hi: must be above lo",
    ):  # before, the schema's two came alone; the others only once they were fixed
        assert path in result.stderr, result.stderr


def test_a_required_key_missing_still_reports_the_rest() -> None:
    raw = default_config_dict()
    del raw["lines"][0]["id"]  # cannot be read past: no model to check further
    raw["server"]["prot"] = 1
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    paths = [p for p, _ in info.value.problems]
    assert "lines[0].id" in paths and "server.prot" in paths and info.value.partial is None


def test_help_lists_every_command_and_every_bench_mode(tmp_path: Path) -> None:
    from scada.tools.cli import BENCH_MODES, build_parser

    top = scada("--help", cwd=tmp_path).stdout
    description = " ".join(top.split("\n\n")[1].split())
    sub = next(a for a in build_parser("serve")._actions if a.dest == "command")
    commands = list(sub.choices or [])
    assert len(commands) >= 10
    assert all(name in description for name in commands), description
    bench = scada("bench", "--help", cwd=tmp_path).stdout
    flags = {a for a in bench.split() if a.startswith("--")}
    for mode, _ in BENCH_MODES:
        assert mode in bench and (mode == "(default)" or mode in flags)
    for flag in (
        "--cluster",
        "--ingest",
        "--history",
        "--idle-memory",
        "--churn",
        "--stall",
        "--readers",
    ):
        assert flag in [mode for mode, _ in BENCH_MODES]

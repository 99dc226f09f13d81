"""Packages depend one way: core <- drivers/simulators <- the service.

Each check imports a package in a fresh interpreter and lists the project modules it pulled in,
so a stray import anywhere in the chain shows up here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _loaded_after_import(module: str) -> set[str]:
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('scada', 'drivers', 'simulators'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize(
    "module",
    [
        "drivers.base",
        "drivers.sim",
        "drivers.modbus",
        "drivers.opcua",
        "drivers.opcua_settings",
        "drivers.opcua_trust",
        "drivers.registry",
        "simulators.simulation",
        "simulators.modbus_server",
        "simulators.opcua_server",
    ],
)
def test_drivers_and_simulators_pull_in_only_the_core(module: str) -> None:
    service = {
        m for m in _loaded_after_import(module) if m.startswith("scada.") and m != "scada.core"
    }
    outside_core = {m for m in service if not m.startswith("scada.core.")}
    assert outside_core == set(), f"{module} imports service modules: {sorted(outside_core)}"


def test_core_imports_nothing_of_ours_outside_itself() -> None:
    loaded = _loaded_after_import("scada.core.config") | _loaded_after_import("scada.core.tags")
    outside = {m for m in loaded if m not in ("scada",) and not m.startswith("scada.core")}
    assert outside == set()


def test_a_simulator_only_plant_never_imports_the_protocol_libraries(tmp_path: Path) -> None:
    """check-config and the full app of the simulated plant load neither asyncua nor pymodbus,
    nor (Sparkplug off by default) an MQTT or protobuf library."""
    code = (
        "import json, sys\n"
        "from scada.tools.cli import _load\n"
        "from scada.roles.allinone import create_app\n"
        "config = _load(None)\n"
        "create_app(config)\n"
        "from scada.plant.runtime import Runtime\n"
        "Runtime(config)\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('asyncua', 'pymodbus', 'aiomqtt', 'paho', 'google'))))"
    )
    # In a scratch directory: the app opens its data dir (relative to the working directory).
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.splitlines()[-1]) == []


def test_a_driver_whose_library_is_missing_is_one_config_problem(tmp_path: Path) -> None:
    """With asyncua unimportable, a plant naming an opcua device gets one clear line."""
    blocker = tmp_path / "asyncua"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('asyncua is broken here')\n")
    config = ROOT / "config" / "opcua.toml"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "scada", "check-config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "unavailable" in line]
    assert len(lines) == 1 and "devices[0].driver: driver opcua is unavailable" in lines[0]
    assert "Traceback" not in done.stderr

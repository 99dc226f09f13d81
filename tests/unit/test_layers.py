"""Packages depend one way: core <- drivers/simulators <- the service.

Each check imports a package in a fresh interpreter and lists the project modules it pulled in,
so a stray import anywhere in the chain shows up here."""

from __future__ import annotations

import json
import subprocess
import sys

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
        "simulators.runtime",
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

"""The gateway role imports only what it runs: no alarm engine, runtime, all-in-one app,
historian, notifier, drivers, simulators or protocol libraries (a fresh interpreter, so a
stray import anywhere in the chain shows up here)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

FORBIDDEN = (
    "scada.alarms",
    "scada.runtime",
    "scada.app",
    "scada.historian",
    "scada.notify",
    "scada.ingest",
    "drivers",
    "simulators",
    "asyncua",
    "pymodbus",
)


def test_the_gateway_app_imports_nothing_of_the_ingest_side() -> None:
    code = (
        "import json, sys\n"
        "from scada.server import app_factory\n"
        "from scada.core.config import load_config\n"
        "app_factory('gateway')(load_config(None))\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert "scada.gateway.app" in loaded and "scada.hub" in loaded
    pulled = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert pulled == []

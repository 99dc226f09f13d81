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
    "scada.plant.runtime",
    "scada.roles.allinone",
    "scada.historian",
    "scada.notify",
    "scada.roles.ingest",
    "drivers",
    "simulators",
    "asyncua",
    "pymodbus",
)


def test_a_gateway_process_imports_nothing_of_the_ingest_side() -> None:
    """`scada serve --role gateway` up to the moment uvicorn would start serving."""
    code = (
        "import json, sys, uvicorn\n"
        "from scada.tools.cli import main\n"
        "uvicorn.Server.run = lambda self, *a, **k: print(json.dumps(sorted(sys.modules)))\n"
        "main(['serve', '--role', 'gateway', '--port', '0'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert "scada.roles.gateway.app" in loaded and "scada.web.hub" in loaded
    pulled = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert pulled == []

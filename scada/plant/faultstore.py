"""Simulator faults injected at run time survive a restart of the server.

The in-process simulated plant starts from steady state at every start; without this, a
restart also dropped every fault an engineer had injected, and the alarms they held cleared
by themselves with nothing saying why (issue #21). The active injected faults are kept in
`<data_dir>/simulator-faults.json` (0600), written after each inject and clear, and injected
again at start with what was left of their duration. The process values still restart from
steady state, so a slow fault (a heater failure cools its zone over minutes) takes its time to
show again: the start-up log line says so.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from scada.core.datadir import private_file
from scada.core.errors import FaultError
from simulators.faults import parse_fault
from simulators.simulation import SimulatedPlant

log = logging.getLogger(__name__)

FILE_NAME = "simulator-faults.json"


def fault_file(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILE_NAME


def save(path: Path, plant: SimulatedPlant, now: float | None = None) -> None:
    """Write the plant's active faults (atomically: a crash leaves the old file or the new)."""
    wall = time.time() if now is None else now
    faults: list[dict[str, Any]] = []
    for fault in plant.faults.active():
        ends = None
        if fault.ends_at is not None:
            ends = wall + max(fault.ends_at - plant.time, 0.0)
        faults.append({"request": fault.request.model_dump(exclude_unset=True), "ends": ends})
    tmp = private_file(path.with_name(path.name + ".tmp"))
    tmp.write_text(json.dumps({"faults": faults}, indent=1))
    os.replace(tmp, path)


def restore(path: Path, plant: SimulatedPlant, now: float | None = None) -> int:
    """Inject again the faults `save` kept (those whose duration has not run out); their
    count. A file that cannot be read is set aside with a warning, never a failed start."""
    if not path.exists():
        return 0
    wall = time.time() if now is None else now
    try:
        kept = json.loads(path.read_text())["faults"]
        requests = []
        for item in kept:
            data = dict(item["request"])
            if item.get("ends") is not None:
                left = float(item["ends"]) - wall
                if left <= 0:
                    continue  # it ended while the server was down
                data["duration"] = left
            requests.append(parse_fault(data))
    except (OSError, ValueError, KeyError, TypeError, FaultError) as err:
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        log.warning("simulator faults in %s not restored (%s); moved to %s", path, err, aside)
        return 0
    for request in requests:
        plant.inject(request)
    if requests:
        log.info(
            "simulator: %d fault(s) injected before the restart are active again; the "
            "simulated process values restart from steady state, so slow faults take their "
            "time to show again",
            len(requests),
        )
    save(path, plant, wall)  # the ids and durations as they are now
    return len(requests)

"""Run `scada` with a wall clock that steps back on SIGUSR1 (this process only).

The machine's clock stays as it is: `time.time` of the server process alone is shifted by
SCADA_TEST_CLOCK_STEP seconds (default 120) backwards at each SIGUSR1, as an NTP step or an
operator changing the clock would. The monotonic clock is untouched.

    python -m tests.clockshift serve --config plant.toml --port 8123
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

_real_time = time.time
_offset = 0.0


def _shifted() -> float:
    return _real_time() + _offset


def _step(_signum: int, _frame: FrameType | None) -> None:
    global _offset
    _offset -= float(os.environ.get("SCADA_TEST_CLOCK_STEP", "120"))
    print(f"clockshift: wall clock now {_offset:+.0f} s", file=sys.stderr, flush=True)


time.time = _shifted
signal.signal(signal.SIGUSR1, _step)

if __name__ == "__main__":
    from scada.tools.cli import main

    sys.exit(main())

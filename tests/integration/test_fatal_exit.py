"""A server that cannot write its alarm journal exits non-zero with the real cause (issue #9):
not 143 from signalling itself, not a ROLLBACK error in place of "disk full"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, free_port, scaled, write_config

# The real CLI, with the journal's SQLite file capped at the pages it has after creation (a
# real SQLite limit, reported exactly as a full disk is: SQLITE_FULL).
RUN_WITH_A_FULL_JOURNAL = """
import sys
from scada.alarms import journal

plain_init = journal.Journal.__init__

def capped_init(self, *args, **kwargs):
    plain_init(self, *args, **kwargs)
    pages = self._db.execute("PRAGMA page_count").fetchone()[0]
    self._db.execute(f"PRAGMA max_page_count = {pages}")

journal.Journal.__init__ = capped_init
from scada.tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_journal_ends_the_server_non_zero_naming_the_cause(tmp_path: Path) -> None:
    # A tag the simulator does not produce reads bad at once: a quality alarm to journal.
    config = write_config(
        tmp_path / "plant.toml",
        {
            "server": {"data_dir": str(tmp_path / "data")},
            "line_defaults": {"tags": {"mystery": {"span": [0.0, 1.0], "quality_delay": 0.0}}},
        },
    )
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITH_A_FULL_JOURNAL, "serve", "--config", str(config),
         "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=scaled(60),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last == "scada: stopped: alarm journal write failed: database or disk is full"
    assert "cannot rollback" not in done.stderr
    assert "Traceback" not in done.stderr

"""`scada bench --readers`: the data a server under heavy readers opens.

Written before the server starts, through the product's own writers, never by raising alarms
live for hours: the alarm journal (`Journal.append`, 300,000 events by default: raise, ack and
clear of real alarm names over 30 days), the audit log (a tenth as many records, in the auth
store's table), and the historian file (`--history-hours` of the plant's simulator output,
encoded by the historian's own writer, ending now: the server goes on from there). API tokens
come from `scada tokens create`, the CLI an administrator uses.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from scada.auth.store import AuthStore
from scada.core.config import PlantConfig, config_from_dict, default_config_text
from scada.core.tags import TagSchema
from scada.historian.db import CHUNK_MS, HOUR_MS
from scada.tools.bench.historybench import build as build_history
from scada.tools.bench.historybench import simulate
from scada.tools.bench.stall import build_journal

Progress = Callable[[str], None] | None
HISTORY_TAGS = 32  # /api/history's most tags per request
SIM_MINUTES = 2  # recorded once, cycled over the whole span


def config_text(data: Path) -> str:
    """The built-in plant with its data directory at `data`."""
    return default_config_text().replace('data_dir = "data"', f"data_dir = {str(data)!r}", 1)


def plant(text: str) -> PlantConfig:
    import tomllib

    return config_from_dict(tomllib.loads(text))


def history_tags(config: PlantConfig, count: int = HISTORY_TAGS) -> list[str]:
    """The first `count` tag paths of the plant (line1.diameter, ...)."""
    paths = [r.path for r in TagSchema(config.lines).refs]
    if len(paths) < count:
        raise ValueError(f"the plant has {len(paths)} tags; the readers ask for {count}")
    return paths[:count]


def build_audit(path: Path, records: int, now: float) -> None:
    store = AuthStore(path)
    with store.db.transaction() as db:
        db.executemany(
            "INSERT INTO audit(at, user, role, address, action, target, result, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (now - i, "bench", "admin", "127.0.0.1", "ack", str(i), "ok", "")
                for i in range(records)
            ),
        )
    store.close()


def prepare(
    data: Path, config: PlantConfig, *, events: int, history_hours: float, progress: Progress
) -> dict[str, float]:
    """Journal and audit log in `data` (only if there is no journal yet: a prepared directory
    is reused) and the history (always anew); returns the seconds each build took."""
    data.mkdir(parents=True, exist_ok=True)
    now = time.time()
    took: dict[str, float] = {}
    journal = data / "journal.sqlite"
    if not journal.exists():
        if progress:
            progress(f"building a {events:,}-event journal")
        began = time.monotonic()
        build_journal(journal, events, now)
        build_audit(data / "auth.sqlite", events // 10, now)
        took["journal_s"] = round(time.monotonic() - began, 1)
    history = data / "history.sqlite"
    # Always new (0.3 s for 2 h of the 8-line plant): the readers ask for the last hour, so
    # the file must end now, not when a reused directory was built.
    for stale in (history, data / "history.sqlite-wal", data / "history.sqlite-shm"):
        stale.unlink(missing_ok=True)
    if progress:
        progress(f"building {history_hours:g} h of history")
    began = time.monotonic()
    schema, values = simulate(0, SIM_MINUTES, config=config)
    end_ms = round(now * 1000)
    end_ms -= end_ms % CHUNK_MS
    build_history(history, schema, values, end_ms, round(history_hours * HOUR_MS), None)
    took["history_s"] = round(time.monotonic() - began, 1)
    return took


def create_tokens(config_path: Path, count: int) -> list[str]:
    """`count` admin tokens made by `scada tokens create` (the secret is its last line)."""
    tokens = []
    for i in range(count):
        done = subprocess.run(
            [sys.executable, "-m", "scada", "tokens", "create", "--name", f"bench-reader-{i}",
             "--role", "admin", "--config", str(config_path)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"scada tokens create failed: {done.stderr.strip()}")
        tokens.append(done.stdout.strip().splitlines()[-1])
    return tokens

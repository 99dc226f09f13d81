"""`scada backup` of a running server that raises alarms, `scada restore` into a new directory,
and a server on it: the same alarm history, the same historian values, the same users."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from scada.core.config import deep_merge
from scada.core.timefmt import iso_ms
from tests.conftest import (
    OPEN_PLANT,
    ServerProcess,
    eventually,
    scaled,
    write_config,
)


def scada(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scada", *args],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        cwd=cwd,
    )


def alarm_events(server: ServerProcess) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    before = None
    while True:
        query = {"limit": 1000, **({"before": before} if before else {})}
        r = httpx.get(f"{server.http}/api/alarms/history", params=query, timeout=scaled(30))
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["events"]
        before = body["next_before"]
        if before is None:
            return sorted(out, key=lambda e: e["event_id"])


def history(server: ServerProcess, start_ms: int, end_ms: int) -> dict[str, Any]:
    params = {
        "tags": "line2.diameter,line3.diameter,line1.body_temperature_1",
        "from": iso_ms(start_ms / 1000),
        "to": iso_ms(end_ms / 1000),
    }
    r = httpx.get(f"{server.http}/api/history", params=params, timeout=scaled(30))
    assert r.status_code == 200, r.text
    return dict(r.json())


def flushed_after(server: ServerProcess, t_ms: int) -> bool:
    ready = httpx.get(f"{server.http}/ready", timeout=scaled(10)).json()
    last = ready["historian"]["last_flush"]
    return last is not None and datetime.fromisoformat(last).timestamp() * 1000 > t_ms


def inject(server: ServerProcess, line: str, offset: float) -> None:
    body = {"line": line, "kind": "step", "tag": "diameter", "offset": offset}
    r = httpx.post(f"{server.http}/api/simulator/faults", json=body, timeout=scaled(10))
    assert r.status_code == 201, r.text


def test_a_backup_of_a_running_server_restores_to_the_same_alarms_history_and_users(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    live = server_factory(OPEN_PLANT)
    live.cli("users", "add", "bob", "--role", "operator", "--password-stdin", stdin="pw-bob-123\n")
    admin = live.token("admin")
    inject(live, "2", 0.3)  # hi on line 2
    eventually(lambda: any(e["event"] == "raised" for e in alarm_events(live)), timeout=30)

    def enough_history() -> int | None:
        """Now (ms), once the minute up to now holds more than 20 recorded values to compare
        (a server that started a moment ago has fewer)."""
        end = round(time.time() * 1000)
        means = history(live, end - 60_000, end)["series"][0]["mean"]
        return end if sum(v is not None for v in means) > 20 else None

    range_end_ms: int = eventually(enough_history, timeout=30, interval=0.5)
    # Every sample up to range_end_ms is committed once a flush came a second after it.
    eventually(lambda: flushed_after(live, range_end_ms + 1000), timeout=30)
    before_backup = alarm_events(live)
    inject(live, "3", -0.3)  # lo on line 3: raised while the backup runs
    archive = tmp_path / "plant-backup.tar.gz"
    taken = scada("backup", str(archive), "--config", str(live.config_path), cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    assert "server running" in taken.stdout
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "config.toml", "journal.sqlite", "auth.sqlite"} <= names
    assert "history.sqlite" in names

    # Not over the directory the live server uses: refused, and that server goes on.
    refused = scada("restore", str(archive), "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert refused.returncode == 1 and "in use" in refused.stderr
    assert httpx.get(f"{live.http}/ready", timeout=scaled(10)).status_code == 200

    restored_dir = tmp_path / "restored"
    done = scada("restore", str(archive), "--data-dir", str(restored_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "integrity ok" in done.stdout
    restored_config = restored_dir / "config-from-backup.toml"
    assert restored_config.read_text() == live.config_path.read_text()
    assert restored_config.stat().st_mode & 0o077 == 0  # a config may hold secrets
    # A second restore into it is refused: it holds databases now.
    again = scada("restore", str(archive), "--data-dir", str(restored_dir), cwd=tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr

    with sqlite3.connect(restored_dir / "journal.sqlite") as db:  # the backup's newest event
        newest = int(db.execute("SELECT max(id) FROM events").fetchone()[0])
    config = write_config(
        tmp_path / "restored.toml",
        deep_merge(OPEN_PLANT, {"server": {"data_dir": str(restored_dir)}}),
    )
    copy = ServerProcess(config, tmp_path).start()
    try:
        # Alarms: the restored journal is the live one up to the backup's instant, event for
        # event (ids, bodies), and holds at least everything journaled before it began.
        # (The restored server journals events of its own above them: its plant starts anew.)
        restored_events = [e for e in alarm_events(copy) if e["event_id"] <= newest]
        live_events = alarm_events(live)
        assert restored_events == [e for e in live_events if e["event_id"] <= newest]
        assert newest >= max(e["event_id"] for e in before_backup)
        # History: the same values, qualities and times over a range the backup held.
        original = history(live, range_end_ms - 60_000, range_end_ms)
        assert sum(v is not None for v in original["series"][0]["mean"]) > 20
        assert history(copy, range_end_ms - 60_000, range_end_ms) == original
        # Users and tokens: the same list, through the same admin token.
        users = [
            httpx.get(
                f"{s.http}/api/users",
                headers={"Authorization": f"Bearer {admin}"},
                timeout=scaled(10),
            ).json()
            for s in (live, copy)
        ]
        assert users[0] == users[1] and "bob" in str(users[1])
        login = httpx.post(
            f"{copy.http}/api/login",
            json={"username": "bob", "password": "pw-bob-123"},
            timeout=scaled(30),
        )
        assert login.status_code == 200, login.text
    finally:
        copy.stop()

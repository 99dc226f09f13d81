"""Upgrades never lose data: the data directory release 0.1 wrote (tests/fixtures/datadir-0.1,
made by tests/fixtures/make_datadir.py) is served by this code and answers as it did then."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from scada.alarms.journal import MIGRATIONS as JOURNAL
from scada.auth.authdb import MIGRATIONS as AUTH
from scada.core.schema import version_of
from scada.historian.db import MIGRATIONS as HISTORY
from scada.notify.outbox import MIGRATIONS as NOTIFY
from tests.conftest import ROOT, ServerProcess, scaled

FIXTURE = ROOT / "tests" / "fixtures" / "datadir-0.1"


def test_the_release_0_1_data_directory_reads_back_unchanged(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "plant")  # never touch the fixture itself
    plant = tmp_path / "plant"
    expected: dict[str, Any] = json.loads((plant / "expected.json").read_text())
    config = tomllib.loads((plant / "plant.toml").read_text())
    # The fixture ages: keep its history and journal whatever today's date (tier choice and
    # pruning depend on the wall clock).
    config["historian"] = {"raw_days": 36500, "rollup_1m_days": 36500, "rollup_1h_days": 36500}
    config["alarms"]["retention_days"] = 36500
    (plant / "plant.toml").write_text(tomli_w.dumps(config))
    server = ServerProcess(plant / "plant.toml", plant).start()
    try:
        newest = max(e["event_id"] for e in expected["events"])
        served = httpx.get(
            f"{server.http}/api/alarms/history", params={"limit": 1000}, timeout=scaled(30)
        ).json()
        old = [e for e in served["events"] if e["event_id"] <= newest]
        assert len(old) == len(expected["events"]) >= 2
        for got, want in zip(old, expected["events"], strict=True):
            assert {k: got.get(k) for k in want} == want  # new fields may be added, none lost
        auth = {"Authorization": f"Bearer {expected['token']}"}
        users = httpx.get(f"{server.http}/api/users", headers=auth, timeout=scaled(30)).json()
        assert users == expected["users"]
        for want in expected["history"].values():
            params = {
                "tags": ",".join(s["tag"] for s in want["series"]),
                "from": want["from"],
                "to": want["to"],
                "points": 60,
            }
            got = httpx.get(f"{server.http}/api/history", params=params, timeout=scaled(30)).json()
            for g, w in zip(got["series"], want["series"], strict=True):
                for key in w:  # the first difference, named, before the whole answer
                    assert g[key] == w[key], (w["tag"], key)
            assert got == want
        assert any(v is not None for v in expected["history"]["raw"]["series"][0]["mean"])
    finally:
        server.stop()
    for name, migrations in (
        ("journal", JOURNAL),
        ("auth", AUTH),
        ("history", HISTORY),
        ("notify", NOTIFY),
    ):
        with sqlite3.connect(plant / "data" / f"{name}.sqlite") as db:
            assert version_of(db) == len(migrations)  # migrated to this release's schema
    with sqlite3.connect(plant / "data" / "notify.sqlite") as db:  # the queued webhooks kept
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] >= 1

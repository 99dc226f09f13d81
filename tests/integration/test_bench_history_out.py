"""`scada bench --history-out DIR` writes a historian file a server of that plant serves."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import httpx

from scada.core.config import deep_merge
from tests.conftest import ServerProcess, default_config_dict, scaled, write_config


def test_a_built_history_is_served_with_each_lines_own_diameter(tmp_path: Path) -> None:
    data = tmp_path / "data"
    built = subprocess.run(
        [sys.executable, "-m", "scada", "bench", "--history-out", str(data),
         "--history-days", "0.05", "--sim-minutes", "1", "--quiet"],
        capture_output=True, text=True, timeout=scaled(300), cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "80 tags x 0.05 days" in built.stdout
    again = subprocess.run(
        [sys.executable, "-m", "scada", "bench", "--history-out", str(data), "--quiet"],
        capture_output=True, text=True, timeout=scaled(120), cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 2 and "never overwrites" in again.stderr
    config = write_config(
        tmp_path / "plant.toml",
        deep_merge(default_config_dict(), {"server": {"data_dir": str(data)}}),
    )
    server = ServerProcess(config, tmp_path).start()
    try:
        params: dict[str, str | int] = {"tags": "line1.diameter,line5.diameter,line7.diameter", "from": "-70m",
                  "to": "-5m", "points": 100}  # fmt: skip
        doc = httpx.get(f"{server.http}/api/history", params=params, timeout=scaled(30)).json()
        means = [statistics.median(v for v in s["mean"] if v is not None) for s in doc["series"]]
        assert [round(m) for m in means] == [12, 16, 8]  # the lines' own setpoints
    finally:
        server.stop()

"""/api/history on a real server: the contract's shape, CSV round trip, refusals, line history."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scada.core.config import deep_merge
from tests.conftest import ServerProcess, default_config_dict, eventually, write_config


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("historian-api")
    config = write_config(
        tmp / "plant.toml",
        deep_merge(default_config_dict(), {"server": {"data_dir": str(tmp / "data")}}),
    )
    proc = ServerProcess(config, tmp).start()
    yield proc
    proc.stop()


def get(server: ServerProcess, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.http}/api/history", params=params, timeout=10)


def test_history_answers_in_the_contract_shape(server: ServerProcess) -> None:
    def enough() -> Any:
        doc = get(server, tags="line1.diameter,line1.body_temperature_2", **{"from": "-3s"}).json()
        return doc if len(doc["series"][0]["t"]) >= 20 else None

    doc = eventually(enough, timeout=15)
    assert doc["tier"] == "raw" and doc["bucket_ms"] is None
    diameter, temp = doc["series"]
    assert diameter["tag"] == "line1.diameter" and diameter["unit"] == "mm"
    assert diameter["setpoint"] == 12.0
    assert diameter["limits"] == {"hihi": 12.4, "hi": 12.2, "lo": 11.8, "lolo": 11.6}
    assert temp["unit"] == "°C"
    n = len(diameter["t"])
    assert all(len(diameter[k]) == n for k in ("min", "max", "first", "last", "mean", "quality"))
    assert diameter["min"] == diameter["max"] == diameter["mean"]  # raw: one sample each
    assert set(diameter["quality"]) <= {"good", "uncertain", "bad", "stale", "missing"}
    assert diameter["t"] == sorted(diameter["t"]) and 11 < diameter["min"][-1] < 13
    # Zoomed out: buckets over the whole range, older ones with no sample are "missing".
    doc = get(server, tags="line1.diameter", **{"from": "-24h", "to": "now", "points": 1000}).json()
    assert doc["tier"] == "1m" and doc["bucket_ms"] % 60_000 == 0
    s = doc["series"][0]
    assert 700 <= len(s["t"]) <= 1000 and s["quality"][0] == "missing" and s["min"][0] is None
    # The newest bucket holds the start, whose first ticks had no value yet (bad).
    assert s["quality"][-1] in ("good", "bad") and s["min"][-1] <= s["mean"][-1] <= s["max"][-1]
    assert s["t"][1] - s["t"][0] == doc["bucket_ms"]


def test_csv_export_round_trips(server: ServerProcess) -> None:
    eventually(
        lambda: (
            len(get(server, tags="line2.diameter", **{"from": "-2s"}).json()["series"][0]["t"]) > 5
        )
    )
    now = time.time()
    params = {
        "tags": "line2.diameter,line2.line_speed",
        "from": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 60)) + "Z",
        "to": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 1)) + "Z",
        "points": 30,
    }
    doc = get(server, **params).json()
    text = get(server, **params, format="csv")
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(text.text)))
    head = rows[0]
    assert head[:2] == ["time", "epoch_ms"]
    assert "line2.diameter.min [mm]" in head and "line2.line_speed.max [m/min]" in head
    for k, s in enumerate(doc["series"]):
        base = 2 + 6 * k
        assert head[base] == f"{s['tag']}.min [{s['unit']}]"
        back: dict[str, list[Any]] = {f: [] for f in ("min", "max", "first", "last", "mean")}
        for row in rows[1:]:
            for j, f in enumerate(back):
                back[f].append(float(row[base + j]) if row[base + j] else None)
        for f, values in back.items():
            assert values == s[f], f
        assert [r[base + 5] for r in rows[1:]] == s["quality"]
    assert [int(r[1]) for r in rows[1:]] == doc["series"][0]["t"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"tags": "line1.nope"}, "tags"),
        ({"tags": "line99.diameter"}, "tags"),
        ({}, "tags"),
        ({"tags": "line1.diameter", "from": "now", "to": "-1h"}, "from"),
        ({"tags": "line1.diameter", "from": "yesterday"}, "from"),
        ({"tags": "line1.diameter", "from": "-100000d"}, "from"),
        ({"tags": "line1.diameter", "to": "2999-01-01T00:00:00Z"}, "to"),
        ({"tags": "line1.diameter", "points": "1000000"}, "points"),
        ({"tags": "line1.diameter", "points": "many"}, "points"),
        ({"tags": "line1.diameter", "format": "xml"}, "format"),
    ],
)
def test_bad_requests_name_the_parameter(
    server: ServerProcess, params: dict[str, str], parameter: str
) -> None:
    r = get(server, **params)
    assert r.status_code == 400
    assert r.json()["parameter"] == parameter and r.json()["error"]


def test_line_history_keeps_its_shape_and_comes_from_the_historian(server: ServerProcess) -> None:
    r = httpx.get(f"{server.http}/api/lines/3/history", params={"seconds": 20, "points": 10})
    doc = r.json()
    assert r.status_code == 200
    assert set(doc) == {"line", "from", "to", "seconds", "points", "samples", "t", "series"}
    assert doc["line"] == "3" and len(doc["t"]) == 10 and doc["samples"] > 0
    assert set(doc["series"]["diameter"]) == {"min", "max", "mean"}
    assert doc["series"]["diameter"]["max"][-1] is not None
    # Longer than the old 15-minute memory ring: the historian answers.
    r = httpx.get(f"{server.http}/api/lines/3/history", params={"seconds": 86_400, "points": 100})
    assert r.status_code == 200 and len(r.json()["t"]) == 100


def test_ready_and_metrics_report_the_historian(server: ServerProcess) -> None:
    ready = httpx.get(f"{server.http}/ready").json()
    assert ready["historian"]["state"] == "ok" and ready["historian"]["disk_bytes"] > 0
    text = httpx.get(f"{server.http}/metrics").text
    assert "scada_historian_degraded 0.0" in text
    assert "scada_historian_disk_bytes" in text

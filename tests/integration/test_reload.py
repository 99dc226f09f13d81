"""Config reload at run time: new limits apply live, bad or structural changes change nothing."""

from __future__ import annotations

import tomllib
from typing import Any

import httpx

from scada.core.config import deep_merge
from tests.conftest import OPEN_PLANT, eventually, write_config


def test_reload_applies_new_limits_and_refuses_the_rest(server_factory: Any) -> None:
    server = server_factory(OPEN_PLANT)
    base = tomllib.loads(server.config_path.read_text())
    url = f"{server.http}/api/config/reload"

    def alarms() -> dict[str, Any]:
        return {a["alarm"]: a for a in httpx.get(f"{server.http}/api/alarms").json()["alarms"]}

    assert "line1.diameter.hi" not in alarms()
    # An engineer lowers line 1's diameter high limit under the running value (12.0 mm).
    lines = base["lines"]
    lines[0] = deep_merge(
        lines[0],
        {
            "tags": {
                "diameter": {
                    "limits": {"hi": 11.9, "lo": 11.5, "lolo": 11.4, "hihi": 12.4},
                    "setpoint": 11.7,
                }
            }
        },
    )
    write_config(server.config_path, {"lines": lines}, base=base)
    r = httpx.post(url)
    assert r.status_code == 200, r.text
    assert r.json()["changed_tags"] == ["line1.diameter"]
    raised = eventually(lambda: alarms().get("line1.diameter.hi"), timeout=10)
    assert raised["limit"] == 11.9 and raised["state"] == "unacked_active"
    meta = httpx.get(f"{server.http}/api/lines").json()["lines"][0]["tags"]["diameter"]
    assert meta["limits"]["hi"] == 11.9  # the dashboard's band follows

    # An invalid file is refused with key paths, and nothing changes.
    good_text = server.config_path.read_text()
    server.config_path.write_text(good_text.replace("stale_after = 1.0", "stale_after = -1", 1))
    r = httpx.post(url)
    assert r.status_code == 400 and any("stale_after" in p for p in r.json()["problems"])
    # A structural change needs a restart.
    write_config(
        server.config_path, {"server": {"batch_interval_ms": 200}}, base=tomllib.loads(good_text)
    )
    r = httpx.post(url)
    assert r.status_code == 409 and r.json()["problems"] == ["server"]
    assert alarms()["line1.diameter.hi"]["id"] == raised["id"]  # state survived every attempt

    # Only engineers may reload, and every attempt is on record.
    # (A server of its own data dir: two servers never share one.)
    own = {"server": {"data_dir": str(server.workdir / "viewer-data")}}
    viewer = server_factory(own, name="viewer.toml")
    assert httpx.post(f"{viewer.http}/api/config/reload").status_code == 403

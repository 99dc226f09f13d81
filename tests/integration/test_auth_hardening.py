"""Issue #9 on a running server: identities, cookies, clocks, throttles, limits, audit.

One server (module scope) for most checks, in an order where the destructive ones come last
(the audit fault, the global login lock-out); a second one whose wall clock a signal steps.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.conftest import ServerProcess, eventually, write_config
from tests.integration.test_security import admin_password, cli, login, token
from tests.integration.test_websocket import close_code, recv, until

HEAVY_GETS = [
    "/api/alarms/kpi?hours=24",
    "/api/alarms/history?limit=10",
    "/api/history?tags=line1.diameter&from=-5m",
    "/api/lines/1/history?seconds=60",
]


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("hardening")
    overrides = {
        "server": {"data_dir": str(tmp / "data"), "max_connections_per_user": 2},
        "auth": {
            "trusted_proxies": ["127.0.0.1"],
            "resume_events": {"anonymous": 0, "viewer": 0, "operator": 10_000},
            "heavy_reads_per_role": {"anonymous": 0, "viewer": 2, "admin": 2},
        },
    }
    server = ServerProcess(write_config(tmp / "plant.toml", overrides), tmp).start()
    yield server
    server.stop()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def add_user(server: ServerProcess, name: str, role: str, password: str) -> None:
    cli(server, "users", "add", name, "--role", role, "--password-stdin", stdin=password + "\n")


def audit_records(server: ServerProcess, **params: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.http}/api/audit", params=params, headers=bearer(token(server, "admin")))
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


async def hello(ws: ClientConnection) -> dict[str, Any]:
    frame = await recv(ws)
    assert frame["type"] == "connected"
    return dict(frame["data"])


def test_anonymous_is_its_own_identity_with_its_own_quota(plant: ServerProcess) -> None:
    add_user(plant, "operator", "operator", "operator-pass-1")
    cookie = {"Cookie": f"scada_session={login(plant, 'operator', 'operator-pass-1')}"}

    async def main() -> None:
        anonymous = [await connect(plant.ws) for _ in range(2)]
        for ws in anonymous:
            data = await hello(ws)
            assert data["user"] == "anonymous" and data["role"] == "viewer"
        # The real `operator` (the name anonymous acks are filed under) still has its 2 slots.
        mine = [await connect(plant.ws, additional_headers=cookie) for _ in range(2)]
        for ws in mine:
            assert (await hello(ws))["user"] == "operator"
        with pytest.raises(InvalidStatus) as refused:
            await connect(plant.ws, additional_headers=cookie)
        assert refused.value.response.status_code == 503
        await anonymous[0].send(json.dumps({"type": "ack", "id": 1, "data": {"alarm_id": 1}}))
        reply = await until(anonymous[0], lambda f: f["type"] == "reply")
        assert reply["data"]["error"] == "forbidden"
        for ws in anonymous + mine:
            await ws.close()

    asyncio.run(main())
    refusals = audit_records(plant, action="ack")
    assert [(r["user"], r["result"]) for r in refusals] == [("anonymous", "forbidden")]


@pytest.mark.parametrize("value", ["not a session!", "x" * 43])
def test_bad_session_cookie_gets_401_and_is_cleared(plant: ServerProcess, value: str) -> None:
    headers = {"Cookie": f"scada_session={value}"}
    r = httpx.get(f"{plant.http}/api/lines", headers=headers)
    assert r.status_code == 401
    assert r.headers["set-cookie"].startswith('scada_session="";')
    assert "max-age=0" in r.headers["set-cookie"].lower()

    async def handshake() -> InvalidStatus:
        with pytest.raises(InvalidStatus) as refused:
            await connect(plant.ws, additional_headers=headers)
        return refused.value

    refusal = asyncio.run(handshake())
    assert refusal.response.status_code == 401
    assert refusal.response.headers["set-cookie"].startswith('scada_session="";')
    assert httpx.get(f"{plant.http}/api/lines").status_code == 200  # then anonymous is fine


def test_out_of_range_audit_cursor_is_400(plant: ServerProcess) -> None:
    admin = bearer(token(plant, "admin"))
    for before in ("1e20", str(10**20), "-1", "0"):
        r = httpx.get(f"{plant.http}/api/audit", params={"before": before}, headers=admin)
        assert r.status_code == 400, (before, r.text)


def test_token_names_are_printable_and_bounded(plant: ServerProcess) -> None:
    admin = bearer(token(plant, "admin"))
    for name in ("\x1b[2J\x1b[31mowned", "tab\there", "n" * 8_000, ""):
        r = httpx.post(f"{plant.http}/api/tokens", json={"name": name}, headers=admin)
        assert r.status_code == 400, r.text
    r = httpx.post(f"{plant.http}/api/tokens", json={"name": "Wall board 3"}, headers=admin)
    assert r.status_code == 201
    result = subprocess.run(
        [
            *(sys.executable, "-m", "scada", "tokens", "--config", str(plant.config_path)),
            *("create", "--name", "\x1b]0;evil\x07", "--role", "viewer"),
        ],
        capture_output=True,
        text=True,
        cwd=plant.workdir,
    )
    assert result.returncode == 1 and "control" in result.stderr


def test_data_dir_is_private(plant: ServerProcess) -> None:
    data = plant.workdir / "data"
    assert data.stat().st_mode & 0o777 == 0o700
    files = [p for p in data.iterdir() if ".sqlite" in p.name]
    assert {"auth.sqlite", "journal.sqlite", "history.sqlite"} <= {p.name for p in files}
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: 0o600 for p in files}
    admin_password(plant)  # a 0600 file, not the log


def test_second_server_on_the_same_data_dir_stops_with_a_clear_message(
    plant: ServerProcess,
) -> None:
    second = ServerProcess(plant.config_path, plant.workdir).start(wait_ready=False)
    assert second.proc is not None
    assert second.proc.wait(30) == 1
    assert "is in use by scada server pid" in second.log()
    assert httpx.get(f"{plant.http}/ready").status_code == 200


def test_resume_is_bounded_per_role(plant: ServerProcess) -> None:
    engineer = bearer(token(plant, "engineer", "eng"))
    r = httpx.post(
        f"{plant.http}/api/simulator/faults",
        json={"line": "4", "kind": "sensor_dropout", "tag": "diameter"},
        headers=engineer,
    )
    assert r.status_code == 201, r.text
    eventually(lambda: httpx.get(f"{plant.http}/api/alarms").json()["alarm_cursor"] > 0, 20)
    operator = bearer(token(plant, "operator", "op-resume"))

    async def resume(headers: dict[str, str] | None) -> tuple[int, bool]:
        async with connect(plant.ws, additional_headers=headers) as ws:
            await until(ws, lambda f: f["type"] == "snapshot")
            await ws.send(json.dumps({"type": "resume", "id": 7, "data": {"alarm_cursor": 0}}))
            replayed = 0
            while True:
                frame = await recv(ws)
                replayed += frame["type"] == "alarm"
                if frame["type"] == "snapshot":
                    return replayed, frame["data"]["recovered"]

    assert asyncio.run(resume(None)) == (0, False)  # anonymous: a snapshot, no replay
    replayed, recovered = asyncio.run(resume(operator))
    assert replayed > 0 and recovered is True


def test_every_heavy_read_goes_through_the_limiter(plant: ServerProcess) -> None:
    viewer = bearer(token(plant, "viewer", "heavy-viewer"))
    for path in HEAVY_GETS:
        anonymous = httpx.get(plant.http + path)
        assert anonymous.status_code == 429, (path, anonymous.text)  # its role's limit is 0
        assert anonymous.headers["retry-after"] == "1"
        assert httpx.get(plant.http + path, headers=viewer).status_code == 200, path
    admin = bearer(token(plant, "admin", "heavy-admin"))
    assert httpx.get(f"{plant.http}/api/audit", headers=admin).status_code == 200
    assert httpx.get(f"{plant.http}/api/lines").status_code == 200  # light reads untouched


def test_deeply_nested_json_is_refused_not_a_server_error(plant: ServerProcess) -> None:
    operator = bearer(token(plant, "operator", "op-nested"))
    deep = '{"comment": ' + "[" * 5000 + "]" * 5000 + "}"
    r = httpx.post(f"{plant.http}/api/alarms/1/ack", content=deep, headers=operator)
    assert r.status_code == 400, r.text

    async def main() -> dict[str, Any]:
        async with connect(plant.ws, additional_headers=operator) as ws:
            await until(ws, lambda f: f["type"] == "snapshot")
            nested: Any = "x"
            for _ in range(400):  # parses (orjson reads 1024 levels), cannot be echoed back
                nested = [nested]
            message = {"type": "ack", "id": 1, "data": {"alarm_id": 1, "comment": nested}}
            await ws.send(json.dumps(message))
            error = await until(ws, lambda f: f["type"] == "error")
            await ws.send(json.dumps({"type": "heartbeat", "id": 2}))
            await until(ws, lambda f: f["type"] == "reply" and f["data"]["id"] == 2)
            return dict(error["data"])

    assert asyncio.run(main())["code"] == "invalid_message"


def test_an_action_whose_audit_cannot_be_written_is_refused(plant: ServerProcess) -> None:
    engineer = bearer(token(plant, "engineer", "eng-audit"))
    fault = {"line": "5", "kind": "line_stop"}
    faults = f"{plant.http}/api/simulator/faults"
    db = sqlite3.connect(plant.workdir / "data" / "auth.sqlite", isolation_level=None)
    db.execute(
        "CREATE TRIGGER injected_fault BEFORE INSERT ON audit "
        "BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END"
    )
    try:
        r = httpx.post(faults, json=fault, headers=engineer)
        assert r.status_code == 503 and r.json()["error"] == "audit_unavailable"
        assert [f for f in httpx.get(faults).json()["faults"] if f["line"] == "5"] == []
    finally:
        db.execute("DROP TRIGGER injected_fault")
        db.close()
    assert httpx.post(faults, json=fault, headers=engineer).status_code == 201


def test_login_failures_are_throttled_globally_not_only_per_address(
    plant: ServerProcess,
) -> None:
    """60 guesses from 60 addresses: the total budget (30 a minute) stops the rest."""
    statuses = [
        httpx.post(
            f"{plant.http}/api/login",
            json={"username": "admin", "password": f"guess-{i}"},
            headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
        ).status_code
        for i in range(60)
    ]
    assert statuses.count(401) == 30 and statuses[30:] == [429] * 30
    fresh = httpx.post(
        f"{plant.http}/api/login",
        json={"username": "admin", "password": admin_password(plant)},
        headers={"X-Forwarded-For": "203.0.113.99"},
    )
    assert fresh.status_code == 429 and int(fresh.headers["retry-after"]) > 0


# -- a wall-clock step in the server process ------------------------------------------------


class ShiftedServer(ServerProcess):
    module = "tests.clockshift"


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("clockshift")
    overrides = {"server": {"data_dir": str(tmp / "data")}, "auth": {"session_hours": 0.003}}
    server = ShiftedServer(write_config(tmp / "plant.toml", overrides), tmp).start()
    yield server
    server.stop()


def test_wall_clock_step_back_delays_no_revocation_and_no_expiry(shifted: ServerProcess) -> None:
    secret = token(shifted, "viewer", "kiosk")
    token_id = cli(shifted, "tokens", "list").split()[0]
    cookie = {"Cookie": f"scada_session={login(shifted, 'admin', admin_password(shifted))}"}

    async def main() -> list[int]:
        revoked = await connect(shifted.ws, additional_headers=bearer(secret))
        expiring = await connect(shifted.ws, additional_headers=cookie)
        for ws in (revoked, expiring):
            await until(ws, lambda f: f["type"] == "production_data")
        assert shifted.proc is not None
        shifted.proc.send_signal(signal.SIGUSR1)  # the server's wall clock: 120 s back
        await asyncio.to_thread(eventually, lambda: "wall clock now -120" in shifted.log())
        # Revoked by another process: only the periodic re-check can notice.
        await asyncio.to_thread(cli, shifted, "tokens", "revoke", token_id)
        # Both within the re-check period / the session's 10.8 s, not 120 s later.
        return [await asyncio.wait_for(close_code(ws), 40) for ws in (revoked, expiring)]

    assert asyncio.run(main()) == [1008, 1008]

"""`scada cluster`: the plant is a device. The simulator runs as its own process, both ingest
nodes poll it over Modbus, and a fault posted to the cluster's /api/simulator/faults lives in
that process: a `kill -9` of the active ingest node leaves the fault and the alarms it caused
in place on the new active node (issue #19, item 5)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from scada.auth.first_admin import read_password_file
from tests.conftest import eventually, free_port, scaled
from tests.integration.cluster_procs import require_roles
from tests.integration.cluster_redis import redis_server_binary
from tests.integration.nginx_helpers import client_ssl_context, nginx_binary
from tests.integration.test_cluster_local import descendants, gone

pytestmark = pytest.mark.nginx


def _found(lines: list[str], pattern: str, proc: subprocess.Popen[str]) -> re.Match[str] | None:
    if proc.poll() is not None:
        raise AssertionError(f"scada cluster exited {proc.returncode}:\n{''.join(lines)}")
    for line in list(lines):
        match = re.search(pattern, line)
        if match:
            return match
    return None


def _pid_of(root: int, node: str) -> int | None:
    for pid in descendants(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--node" in argv and argv[argv.index(b"--node") + 1] == node.encode():
            return pid
    return None


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_failover_keeps_the_plants_faults_and_alarms(tmp_path: Path) -> None:
    require_roles()
    redis_server_binary(), nginx_binary()  # skip without them
    port = free_port()
    directory = tmp_path / "c"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scada", "cluster", "--dir", str(directory), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        eventually(lambda: _found(lines, r"ready at ", proc), timeout=120, interval=0.2)
        described = _found(lines, r"simulator modbus :(\d+) \(faults :(\d+)\)", proc)
        assert described is not None, "".join(lines)
        control = f"http://127.0.0.1:{described[2]}/faults"
        nodes = {
            name: int(m[1])
            for name in ("ingest-a", "ingest-b")
            if (m := _found(lines, rf"{name} :(\d+)", proc))
        }
        hint = eventually(
            lambda: _found(lines, r"first login: .* in (\S+)$", proc),
            timeout=30,
        )
        credentials = read_password_file(Path(hint[1]))
        assert credentials is not None
        base = f"https://127.0.0.1:{port}"
        cert = directory / "tls" / "fullchain.pem"
        api = httpx.Client(base_url=base, verify=client_ssl_context(cert), timeout=10)
        r = api.post(
            "/api/login",
            json={"username": credentials[0], "password": credentials[1]},
            headers={"Origin": base},
        )
        assert r.status_code == 200, r.text

        # The simulator's fault port refuses a request without its token: nothing injected.
        r = httpx.post(control, json={"line": "3", "kind": "line_stop"}, timeout=5)
        assert r.status_code == 401
        r = api.post(
            "/api/simulator/faults",
            json={"line": "3", "kind": "heater_failure", "zone": 1},
            headers={"Origin": base},
        )
        assert r.status_code == 201, r.text
        fault = r.json()
        assert fault["kind"] == "heater_failure" and fault["line"] == "3"

        def line3_active() -> set[str]:
            got = api.get("/api/alarms")
            if got.status_code != 200:
                return set()
            alarms: list[dict[str, Any]] = got.json()["alarms"]
            return {
                a["alarm"]
                for a in alarms
                if a["production_line_id"] == "3"
                and a["state"] in ("unacked_active", "acked_active")
            }

        # Zone 1 cools without its heater: its low limit is crossed within seconds.
        before = eventually(
            lambda: (got := line3_active()) and any("body_temperature_1" in a for a in got) and got,
            timeout=90,
            interval=0.5,
        )
        active = eventually(
            lambda: next((n for n, p in nodes.items() if _ready(p)), None), timeout=30
        )
        other = next(n for n in nodes if n != active)
        pid = _pid_of(proc.pid, active)
        assert pid is not None
        print(f"line 3 active before: {sorted(before)}; kill -9 {active} (pid {pid})")
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: _ready(nodes[other]), timeout=60, interval=0.2)

        # The fault is still in the plant, answered through the new active node ...
        def faults() -> list[dict[str, Any]] | None:
            got = api.get("/api/simulator/faults")
            return got.json()["faults"] if got.status_code == 200 else None

        listed = eventually(faults, timeout=30)
        assert [(f["id"], f["kind"], f["line"]) for f in listed] == [
            (fault["id"], fault["kind"], "3")
        ]
        # ... and every alarm it raised is still active there: none cleared by the failover.
        after = eventually(lambda: line3_active() or None, timeout=30)
        assert before <= after, (before, after)
        cleared = api.get("/api/alarms/history", params={"line": "3", "limit": 1000}).json()
        gone_by_failover = [
            e["alarm"]
            for e in cleared["events"]
            if e["event"] == "cleared" and e["alarm"] in before
        ]
        assert gone_by_failover == [], gone_by_failover
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(scaled(60))
        finally:
            for pid in descendants(proc.pid) | {proc.pid}:
                if not gone(pid):
                    os.kill(pid, signal.SIGKILL)
        reader.join(10)

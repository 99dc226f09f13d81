"""`scada cluster`: the local cluster starts (Redis, two ingest nodes, two gateways, nginx),
serves the dashboard and live data at the URL it prints, and leaves no process behind after
SIGTERM; it refuses clearly when a binary is missing. Redis runs with an ACL user per role,
each node's URL (with its password) is in its own 0600 config, and no password reaches a
log, the output or a command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, NoPermissionError
from websockets.asyncio.client import connect

from scada.tools.cluster.localconf import base_config, dumps_inline
from tests.conftest import ROOT, eventually, free_port, scaled
from tests.integration.cluster_procs import require_roles
from tests.integration.cluster_redis import redis_server_binary
from tests.integration.nginx_helpers import client_ssl_context, nginx_binary

pytestmark = pytest.mark.nginx


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, grandchildren, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        kids = {p for p, pp in parents.items() if pp == parent}
        found |= kids
        todo.extend(kids)
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def cluster_command(directory: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "scada", "cluster", "--dir", str(directory), *args]


def test_inline_toml_round_trips_the_default_plant() -> None:
    base = base_config(None)
    assert tomllib.loads(dumps_inline(base)) == base


def test_refuses_without_redis_server(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-redis-server")
    result = subprocess.run(
        cluster_command(tmp_path / "c", "--redis-server", missing),
        capture_output=True,
        text=True,
        timeout=scaled(60),
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "no-redis-server is not an executable file" in result.stdout
    assert not (tmp_path / "c").exists()  # nothing started, nothing written


def test_local_cluster_serves_and_stops_cleanly(tmp_path: Path) -> None:
    require_roles()
    redis_server_binary(), nginx_binary()  # skip without them
    port = free_port()
    proc = subprocess.Popen(
        cluster_command(tmp_path / "c", "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    children: set[int] = set()
    try:
        url = eventually(lambda: _ready_url(lines, proc), timeout=90, interval=0.2)
        assert url == f"https://127.0.0.1:{port}/"
        cert = tmp_path / "c" / "tls" / "fullchain.pem"
        page = httpx.get(url, verify=client_ssl_context(cert), timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()

        async def frames() -> list[str]:
            wss = f"wss://127.0.0.1:{port}/ws"
            async with connect(wss, ssl=client_ssl_context(cert), open_timeout=10) as ws:
                types: list[str] = []
                while types.count("production_data") < 5:
                    types.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"])
                return types

        types = asyncio.run(frames())
        assert types[:2] == ["connected", "snapshot"]
        children = descendants(proc.pid)
        print(f"processes under scada cluster: {len(children)}")
        assert len(children) >= 6  # redis, 2 ingest, 2 gateways, nginx (+ workers)
        passwords = check_credentials(tmp_path / "c", children)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(scaled(60))
        finally:
            for pid in children | {proc.pid}:
                if not gone(pid):
                    os.kill(pid, signal.SIGKILL)
        reader.join(10)
    output = "".join(lines)
    assert code == 0, output
    assert "stopped" in output
    logs = "".join(
        p.read_text(errors="replace") for p in (tmp_path / "c" / "logs").rglob("*") if p.is_file()
    )
    for password in passwords:
        assert password not in output and password not in logs
    left = eventually(lambda: all(gone(p) for p in children), timeout=10)
    assert left, [p for p in children if not gone(p)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_credentials(directory: Path, children: set[int]) -> set[str]:
    """Every node's config names its own Redis user (0600, in a 0700 dir); Redis refuses a
    client without credentials and a gateway's user cannot publish; the AOF and every data
    file are 0600. Returns the passwords (which no log, output or command line may show)."""
    urls: dict[str, str] = {}
    for node in ("ingest-a", "ingest-b", "gateway-1", "gateway-2"):
        config = directory / node / "plant.toml"
        assert mode(config) == 0o600 and mode(directory / node) == 0o700, node
        urls[node] = tomllib.loads(config.read_text())["cluster"]["redis_url"]
        user = urlsplit(urls[node]).username
        assert user == ("ingest" if node.startswith("ingest") else node)
    passwords = {str(urlsplit(url).password) for url in urls.values()}
    assert len(passwords) == 3 and all(len(p) >= 16 for p in passwords)  # ingest, 2 gateways
    acl = directory / "redis" / "users.acl"
    assert mode(acl) == 0o600 and "user default off" in acl.read_text()
    assert not [p for p in passwords if p in acl.read_text()]  # digests only
    assert mode(directory / "redis") == 0o700
    for private in ("redis", "ingest-a"):
        files = [p for p in (directory / private).rglob("*") if p.is_file()]
        assert files and all(mode(p) == 0o600 for p in files), [(p, oct(mode(p))) for p in files]
    bare = urls["gateway-1"].replace(urlsplit(urls["gateway-1"]).netloc.split("@")[0] + "@", "")
    with pytest.raises(AuthenticationError), Redis.from_url(bare, socket_timeout=5) as anon:
        anon.get("scada:lease")
    with Redis.from_url(urls["gateway-1"], socket_timeout=5) as gateway:
        assert gateway.get("scada:epoch") is not None
        with pytest.raises(NoPermissionError):
            gateway.xadd("scada:frames", {"f": b"forged"})
    for pid in children:  # `ps` shows no password
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert not [p for p in passwords if p in argv], argv
    return passwords


def _ready_url(lines: list[str], proc: subprocess.Popen[str]) -> str | None:
    if proc.poll() is not None:
        raise AssertionError(f"scada cluster exited {proc.returncode}:\n{''.join(lines)}")
    for line in lines:
        found = re.search(r"ready at (\S+)", line)
        if found:
            return found[1]
    return None

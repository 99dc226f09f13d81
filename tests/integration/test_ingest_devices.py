"""A standby ingest node never talks to the devices (many allow one connection): two real
`scada serve --role ingest` processes on a real redis-server, one real Modbus device
(`scada simulate modbus`); the TCP connections to it are counted per process from /proc."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import OPEN_PLANT, ROOT, ServerProcess, eventually, free_port, write_config
from tests.integration.cluster_redis import RedisServer
from tests.integration.test_comms_e2e import Simulator

ESTABLISHED = "01"


def connections_to(process: ServerProcess, port: int) -> int:
    """Established TCP connections of the server process to 127.0.0.1:`port`."""
    assert process.proc is not None
    inodes = set()
    for fd in Path(f"/proc/{process.proc.pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == ESTABLISHED and int(remote.rsplit(":", 1)[1], 16) == port:
                count += inode in inodes
    return count


def state(node: ServerProcess) -> str:
    return str(httpx.get(f"{node.http}/ready", timeout=2).json()["cluster"]["state"])


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[tuple[Simulator, dict[str, ServerProcess]]]:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc to count connections")
    redis = RedisServer(tmp_path / "redis").start()
    device = Simulator(tmp_path, free_port())
    device.start()
    raw = tomllib.loads((ROOT / "config/modbus.toml").read_text())
    raw["devices"][0]["settings"]["port"] = device.port
    nodes: dict[str, ServerProcess] = {}
    for name in ("a", "b"):
        here = tmp_path / name
        here.mkdir()
        overrides = {**OPEN_PLANT, "server": {"data_dir": str(here / "data")}}
        config = write_config(here / "plant.toml", overrides, base=raw)
        args = ["--role", "ingest", "--node", f"ingest-{name}", "--redis-url", redis.url]
        nodes[name] = ServerProcess(config, here, args)
    try:
        eventually(device.listening, 30)
        yield device, nodes
    finally:
        for node in nodes.values():
            node.stop()
        device.kill()
        redis.kill()


def test_only_the_active_node_is_connected_to_the_device(
    plant: tuple[Simulator, dict[str, ServerProcess]],
) -> None:
    device, nodes = plant
    a, b = nodes["a"], nodes["b"]
    a.start()  # /ready 200: active, its device connected and polled
    b.start(wait_ready=False)
    eventually(lambda: state(b) == "standby", 30)
    assert connections_to(a, device.port) == 1
    assert connections_to(b, device.port) == 0

    a.kill()
    eventually(lambda: state(b) == "active", 10)
    eventually(lambda: connections_to(b, device.port) == 1)
    (polled,) = httpx.get(f"{b.http}/health/websocket").json()["devices"]
    assert polled["state"] == "connected"

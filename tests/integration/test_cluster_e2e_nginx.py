"""Real nginx with the shipped nginx/cluster.conf in front of a real cluster (Redis, two ingest
nodes, two gateways): wss to the gateways (least_conn), /api/ to whichever ingest node is
active (the standby's 503 sends nginx on to the other), the dashboard from a gateway, and
/api/ through a takeover.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from scada.tools.cluster.nginxconf import render_cluster_conf, render_plain_conf, template_text
from tests.conftest import eventually, free_port
from tests.integration.cluster_procs import Cluster, running_cluster
from tests.integration.nginx_helpers import NginxProcess, client_ssl_context

pytestmark = pytest.mark.nginx

OPEN: dict[str, Any] = {
    "auth": {"anonymous_role": "engineer", "trusted_proxies": ["127.0.0.1"]},
}


def test_cluster_conf_renders_and_nginx_accepts_it(tmp_path: Path) -> None:
    text = template_text()
    gateways = re.search(r"upstream scada_gateways \{.*?\n\}", text, re.DOTALL)
    ingest = re.search(r"upstream scada_ingest \{.*?\n\}", text, re.DOTALL)
    assert gateways is not None and ingest is not None
    assert "least_conn;" in gateways[0]
    assert len(re.findall(r"^\s*server ", ingest[0], re.MULTILINE)) == 2
    api = re.search(r"location /api/ \{.*?\n    \}", text, re.DOTALL)
    assert api is not None and "proxy_pass http://scada_ingest;" in api[0]
    assert "proxy_next_upstream error timeout http_503 non_idempotent;" in api[0]
    ws = re.search(r"location = /ws \{.*?\n    \}", text, re.DOTALL)
    assert ws is not None and "proxy_pass http://scada_gateways;" in ws[0]
    assert "proxy_set_header Upgrade $http_upgrade;" in ws[0]

    nginx = NginxProcess(tmp_path, upstream_port=0, rendered="")
    ports = [free_port() for _ in range(5)]
    rendered = render_cluster_conf(
        gateways=ports[:3],
        ingests=ports[3:],
        http_port=nginx.http_port,
        https_port=nginx.https_port,
        cert=nginx.cert,
        key=nginx.key,
        log_dir=tmp_path / "logs",
    )
    nginx.conf.write_text(rendered)
    nginx.check()
    for port in ports:
        assert f"server 127.0.0.1:{port} " in rendered
    # The bench's plain-http variant: one listen, no TLS, nginx accepts it too.
    plain = render_plain_conf(
        gateways=ports[:2], ingests=ports[3:], port=nginx.https_port, log_dir=tmp_path / "logs"
    )
    assert "ssl" not in re.sub(r"#.*", "", plain)
    assert re.findall(r"listen\s+(\S+);", plain) == [f"127.0.0.1:{nginx.https_port}"]
    nginx.conf.write_text(plain)
    nginx.check()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), nginx=True, overrides=OPEN) as c:
        yield c


def https(cluster: Cluster) -> httpx.Client:
    assert cluster.nginx is not None
    return httpx.Client(
        base_url=cluster.nginx.https, verify=client_ssl_context(cluster.nginx.cert), timeout=10
    )


def upstream_ports(cluster: Cluster, path: str) -> list[list[tuple[int, str]]]:
    """(port, status) of every upstream nginx tried, per logged request to `path`."""
    assert cluster.nginx is not None
    tried = []
    for line in cluster.nginx.access_log().splitlines():
        if f" {path} " not in line:
            continue
        addrs = re.search(r"upstream=(\S.*?) upstream_status=(\S.*?) upstream_time", line)
        assert addrs is not None, line
        ports = [int(a.rsplit(":", 1)[1]) for a in addrs[1].split(", ")]
        statuses = addrs[2].split(", ")
        tried.append(list(zip(ports, statuses, strict=True)))
    return tried


def test_dashboard_and_api_reach_the_right_roles(cluster: Cluster) -> None:
    gateways = {g.port for g in cluster.gateways}
    before = cluster.active()
    with https(cluster) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        for _ in range(10):
            r = client.get("/api/simulator/faults")
            assert r.status_code == 200, r.text
    after = cluster.active()
    served_by = [tries[-1] for tries in upstream_ports(cluster, "/")]
    assert served_by and all(port in gateways for port, _ in served_by), served_by
    api = upstream_ports(cluster, "/api/simulator/faults")
    states = {p.node: p.cluster_state() for p in cluster.ingests}
    print(f"/api/ requests: {len(api)}; upstreams tried: {api}; ingest nodes: {states}")
    assert len(api) == 10, api
    # Every request was answered by the active node (the same one throughout, unless the
    # lease moved meanwhile); those nginx sent to the standby first got its 503 and went on:
    # both nodes are in the upstream, the standby is never the answer.
    assert all(tries[-1][1] == "200" for tries in api), (api, states)
    assert {tries[-1][0] for tries in api} <= {before.port, after.port}, (api, states)
    assert all(status == "503" for tries in api for _, status in tries[:-1]), (api, states)
    if before is after:
        assert any(len(tries) == 2 for tries in api), "the standby was never tried first"


def test_wss_clients_spread_over_the_gateways_and_get_live_data(cluster: Cluster) -> None:
    assert cluster.nginx is not None
    wss, ssl = cluster.nginx.wss, client_ssl_context(cluster.nginx.cert)

    async def client() -> list[str]:
        async with connect(wss, ssl=ssl, open_timeout=10) as ws:
            types: list[str] = []
            while types.count("production_data") < 3:
                types.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"])
            return types

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(client() for _ in range(8)))

    seen = asyncio.run(main())
    assert all(types[:2] == ["connected", "snapshot"] for types in seen), seen
    # least_conn over concurrent sockets: each gateway served some of them.
    served = {tries[-1][0] for tries in upstream_ports(cluster, "/ws")}
    print(f"/ws served by gateways on ports {sorted(served)}")
    assert served == {g.port for g in cluster.gateways}


def test_api_follows_the_takeover(cluster: Cluster) -> None:
    """Last in the module: kill -9 the active ingest node; /api/ through nginx answers from
    the other node once it took over (503 "standby" in between, never a wrong answer)."""
    old = cluster.active()
    old.kill()
    statuses: list[int] = []

    def served() -> bool:
        with https(cluster) as client:
            r = client.get("/api/simulator/faults")
        statuses.append(r.status_code)
        assert r.status_code in (200, 503), r.text
        if r.status_code == 503:  # a standby's answer, or nginx's when neither answers
            assert r.json() == {"error": "standby", "active": r.json()["active"]}
        return r.status_code == 200

    eventually(served, timeout=10, interval=0.2)
    new = cluster.active()
    assert new is not old
    print(f"/api/ statuses through the takeover: {statuses}")
    assert upstream_ports(cluster, "/api/simulator/faults")[-1][-1] == (new.port, "200")

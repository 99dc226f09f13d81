"""Issue #20's minors, each checked where it is decided: one time-parameter parser for every
endpoint, role checks before the heavy-read limiter, reserved user names, and a local
cluster whose nodes believe X-Forwarded-For from their nginx only."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from scada.auth.authdb import AuthError
from scada.auth.identify import client_address
from scada.auth.store import AuthStore
from scada.core.config import config_from_dict, default_config_text
from scada.core.timefmt import TimeParameterError, time_param
from scada.roles.allinone import create_app
from scada.tools.cluster.localconf import node_config
from scada.tools.cluster.nginxconf import NGINX_SOURCE, render_cluster_conf


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e400", "-1", "1e12", "soon"])
def test_a_time_parameter_that_is_no_instant_is_refused_by_name(text: str) -> None:
    with pytest.raises(TimeParameterError, match="'from'"):
        time_param("from", text)


def test_a_time_parameter_in_range_is_read() -> None:
    assert time_param("since", "1970-01-01T00:00:10Z") == 10.0
    assert time_param("since", "2026-12-06T00:00:00") == 1796515200.0  # naive is UTC
    assert time_param("since", "1796515200.5") == 1796515200.5
    assert time_param("since", "") is None and time_param("since", None) is None


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    raw = tomllib.loads(default_config_text())
    raw["server"]["data_dir"] = str(tmp_path / "data")
    raw["auth"] = {"heavy_reads_per_role": {"anonymous": 1}}
    with TestClient(create_app(config_from_dict(raw))) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/alarms/history?from=nan", "from"),
        ("/api/alarms/history?since=1e400", "since"),
        ("/api/alarms/history?until=-5", "until"),
        ("/api/alarms/export?to=inf", "to"),
        ("/api/history?tags=1.diameter&from=nan", "from"),
    ],
)
def test_every_endpoint_refuses_a_non_finite_time_naming_it(
    client: TestClient, path: str, parameter: str
) -> None:
    r = client.get(path)
    assert r.status_code == 400, r.text
    assert parameter in r.text


def test_history_takes_from_and_to_as_the_export_does(client: TestClient) -> None:
    assert client.get("/api/alarms/history?from=2026-01-01T00:00:00Z").status_code == 200


def test_a_role_refusal_comes_before_the_heavy_read_limiter(client: TestClient) -> None:
    app = client.app
    heavy = app.state.heavy  # type: ignore[attr-defined]
    # Anonymous clients' one heavy slot is taken: a heavy read they may do gets 429...
    who = heavy.acquire("elsewhere|anonymous", "viewer", True)
    try:
        assert client.get("/api/alarms/kpi").status_code == 429
        # ...but one they may not do is refused for its role, and takes no slot.
        assert client.get("/api/audit").status_code in (401, 403)
    finally:
        heavy.release("elsewhere|anonymous", who)
    assert heavy.running() == 0
    assert client.get("/api/alarms/kpi").status_code == 200
    assert heavy.running() == 0  # released after the answer


@pytest.mark.parametrize("name", ["anonymous", "Anonymous", "ANONYMOUS"])
def test_no_account_may_be_named_like_clients_without_credentials(
    tmp_path: Path, name: str
) -> None:
    store = AuthStore(tmp_path / "auth.sqlite")
    try:
        with pytest.raises(AuthError, match="reserved"):
            store.add_user(name, "viewer", "a-long-password")
        assert store.count_users() == 0
    finally:
        store.close()


def test_the_local_cluster_trusts_its_nginx_alone(tmp_path: Path) -> None:
    conf = node_config({}, directory=tmp_path, node="a", redis_url="redis://127.0.0.1:1/0")
    assert conf["auth"]["trusted_proxies"] == [NGINX_SOURCE]
    text = render_cluster_conf(
        gateways=[1], ingests=[2], http_port=3, https_port=4,
        cert=tmp_path / "c", key=tmp_path / "k", log_dir=tmp_path,
    )  # fmt: skip
    assert f"proxy_bind {NGINX_SOURCE};" in text
    proxies = conf["auth"]["trusted_proxies"]
    spoofed = {"x-forwarded-for": "203.0.113.9"}
    # A local client that skips nginx: its claim is not believed.
    assert client_address({"client": ("127.0.0.1", 5)}, spoofed, proxies) == "127.0.0.1"
    # nginx, from its own source address: the client it saw.
    assert client_address({"client": (NGINX_SOURCE, 5)}, spoofed, proxies) == "203.0.113.9"

"""Each fault of issue #19 once against one local cluster (`scada cluster`'s supervisor, a
Redis proxy per ingest node, six screens through nginx, a steady alarm load), in order; after
each the independent checker compares both journals, the stream and every screen
(tests/chaos/checker.py). A fault fails on any forked id, any event lost, or a cluster that
does not settle (a takeover that never finished). The table is printed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.checker import Checker, Row
from tests.chaos.harness import ChaosCluster
from tests.chaos.nemesis import FAULTS
from tests.chaos.run import one, settle, table
from tests.chaos.screens import Screens
from tests.integration.cluster_procs import require_roles
from tests.integration.cluster_redis import redis_server_binary
from tests.integration.nginx_helpers import nginx_binary

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

ROWS: list[Row] = []


class Suite:
    def __init__(self, cluster: ChaosCluster, screens: Screens) -> None:
        self.cluster = cluster
        self.screens = screens
        self.checker = Checker(cluster, screens)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    require_roles()
    redis_server_binary(), nginx_binary()  # skip without them
    cluster = ChaosCluster(Path(tmp_path_factory.mktemp("chaos")) / "cluster")
    cluster.start()
    screens = Screens(cluster.ws_url, 6)
    screens.start()
    try:
        notes: list[str] = []
        assert settle(cluster, screens, notes) is not None, f"did not settle at start: {notes}"
        yield Suite(cluster, screens)
    finally:
        screens.stop()
        cluster.stop()
        if ROWS:
            print("\n" + table(ROWS))


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault(suite: Suite, fault: str) -> None:
    row = one(suite.cluster, suite.screens, suite.checker, fault)
    ROWS.append(row)
    print(f"{fault}: {row}")
    assert row.finished, f"{fault}: the cluster did not settle: {row.notes}"
    assert row.forked == 0, f"{fault}: {row.forked} forked ids: {row.notes}"
    assert row.lost == 0, f"{fault}: {row.lost} events lost: {row.notes}"

"""In a cluster only the active ingest node is the Sparkplug edge node: a kill -9 of it gives
one NDEATH (the broker's will) then one NBIRTH from the new active node, never two births
without a death between (real redis-server, two ingest processes, mosquitto)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.conftest import eventually_async, scaled
from tests.integration.cluster_procs import Cluster, cluster_factory  # noqa: F401  (fixture)
from tests.mosquitto import Mosquitto, mosquitto  # noqa: F401  (fixture)
from tests.sparkplug_probe import Probe


def _bdseq(payload: Any) -> int:
    return int(next(m for m in payload.metrics if m.name == "bdSeq").long_value)


def test_a_takeover_is_one_ndeath_then_one_nbirth(
    mosquitto: Mosquitto,  # noqa: F811
    cluster_factory: Callable[..., Cluster],  # noqa: F811
) -> None:
    """[tck-id-topic-structure-namespace-unique-edge-node-descriptor]
    [tck-id-topics-nbirth-bdseq-increment] [tck-id-payloads-ndeath-bdseq]"""
    overrides = {
        "sparkplug": {
            "enabled": True,
            "edge_node": "scada",
            "broker": {"url": mosquitto.url, **mosquitto.credentials("scada")},
        }
    }

    async def body() -> None:
        async with Probe(mosquitto) as probe:
            cluster = await asyncio.to_thread(
                cluster_factory, ingests=2, gateways=0, overrides=overrides
            )
            first = await asyncio.to_thread(cluster.active)
            await eventually_async(lambda: probe.of("NBIRTH"), timeout=30, what="first birth")
            bdseq = _bdseq(probe.of("NBIRTH")[0].payload)

            await asyncio.to_thread(first.kill)
            await eventually_async(
                lambda: len(probe.of("NBIRTH")) == 2, timeout=60, what="birth by the new node"
            )
            second = await asyncio.to_thread(cluster.active)
            assert second is not first
            lifecycle = [m for m in probe.messages if m.kind in ("NBIRTH", "NDEATH")]
            assert [m.kind for m in lifecycle] == ["NBIRTH", "NDEATH", "NBIRTH"]
            death, birth = lifecycle[1].payload, lifecycle[2].payload
            assert _bdseq(death) == bdseq  # the dead node's will
            assert _bdseq(birth) == (bdseq + 1) % 256  # the cluster's counter goes on
            # the new node's births and data follow, seq from 0
            after = probe.messages.index(lifecycle[2])
            await eventually_async(
                lambda: len(probe.of("DDATA", after)) > 8, what="data from the new node"
            )
            seqs = [m.payload.seq for m in probe.messages[after:] if m.kind != "STATE"]
            assert seqs[:3] == [0, 1, 2]

    asyncio.run(asyncio.wait_for(body(), scaled(240)))

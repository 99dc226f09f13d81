"""The nemesis: each fault of issue #19, run against a ChaosCluster. A fault returns when it is
over (the process killed, the pause or partition healed); the cluster then recovers by itself
(the supervisor restarts what died, as systemd would) while the checker waits for it.

The waits inside a fault are the fault's definition (a pause of 5 s is 5 s), not
synchronisation; every wait for the cluster polls a condition until a deadline.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from tests.chaos.harness import ChaosCluster

LEASE_TTL = 3.0  # [cluster] lease_ttl of the generated configs (the default)
DEADLINE = 60.0


class NemesisError(Exception):
    """The fault could not be set up (no active node to hit)."""


def wait_for(what: str, predicate: Callable[[], object], timeout: float = DEADLINE) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise NemesisError(f"{what} not within {timeout:g} s")
        time.sleep(0.05)


def the_active(c: ChaosCluster) -> str:
    found = wait_for("one active ingest node", lambda: (a := c.active()) and len(a) == 1 and a)
    assert isinstance(found, list)
    return str(found[0])


def lease_holder(c: ChaosCluster) -> str | None:
    client = c.redis()
    try:
        value = client.get("scada:lease")
    except Exception:
        return None
    finally:
        client.close()
    return value.decode().split(":", 1)[1] if value else None


def gateway_kill(c: ChaosCluster) -> str:
    c.kill("gateway-1")
    return "kill -9 gateway-1"


def active_kill(c: ChaosCluster) -> str:
    node = the_active(c)
    c.kill(node)
    return f"kill -9 {node}"


def kill_during_activation(c: ChaosCluster) -> str:
    node = the_active(c)
    other = next(n for n in c.proxies if n != node)
    c.kill(node)
    wait_for(f"{other} taking the lease", lambda: lease_holder(c) == other, 30)
    c.kill(other)
    serving = bool(c.samples) and other in c.samples[-1].active  # the monitor's last look
    return f"kill -9 {node}, then {other} as it took the lease (already serving: {serving})"


def sigstop_active(c: ChaosCluster) -> str:
    node = the_active(c)
    c.signal(node, signal.SIGSTOP)
    try:
        time.sleep(LEASE_TTL + 3.0)  # past its lease: the other node takes over meanwhile
    finally:
        c.signal(node, signal.SIGCONT)
    return f"SIGSTOP {node} {LEASE_TTL + 3.0:g} s"


def redis_stop(seconds: float) -> Callable[[ChaosCluster], str]:
    def fault(c: ChaosCluster) -> str:
        c.signal("redis", signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            c.signal("redis", signal.SIGCONT)
        return f"SIGSTOP redis {seconds:g} s"

    return fault


def redis_kill_aof(c: ChaosCluster) -> str:
    c.kill("redis")  # the supervisor starts it again after 2 s, from its AOF
    return "kill -9 redis (AOF)"


def redis_restart_empty(c: ChaosCluster) -> str:
    c.redis_restart_empty()
    return "redis restarted without its data"


def five_kills(c: ChaosCluster) -> str:
    killed = []
    for _ in range(5):
        node = the_active(c)
        c.kill(node)
        killed.append(node)
    return "kill -9 " + ", ".join(killed)


def partition_active(c: ChaosCluster) -> str:
    node = the_active(c)
    c.proxies[node].hang()
    try:
        time.sleep(10.0)
    finally:
        c.proxies[node].heal()
    return f"{node} cut from Redis 10 s (link hung, then healed)"


def link_reset_active(c: ChaosCluster) -> str:
    node = the_active(c)
    n = c.proxies[node].reset()
    return f"{node}'s Redis connections reset ({n})"


FAULTS: dict[str, Callable[[ChaosCluster], str]] = {
    "gateway kill -9": gateway_kill,
    "active ingest kill -9": active_kill,
    "kill -9 during activation": kill_during_activation,
    "active SIGSTOP past lease": sigstop_active,
    "redis SIGSTOP 5 s": redis_stop(5.0),
    "redis SIGSTOP 15 s": redis_stop(15.0),
    "redis kill -9 (AOF)": redis_kill_aof,
    "redis restarted empty": redis_restart_empty,
    "5 kills in a row": five_kills,
    "partition active 10 s": partition_active,
    "link reset (RST)": link_reset_active,
}

"""A compromised gateway cannot act for users whose credentials never came through it (issue
#20, "a gateway cannot forge what it does not know").

A real cluster (redis-server with ACLs, one ingest node, one gateway process). A user who logs
in and acks over the gateway's /ws is served end to end (the gateway signs with the key of the
cookie that came through it), and so is a program acking with an API token. Then the test plays a compromised gateway: only that gateway's
Redis credentials and what they can read (its auth replica: digests and public rows). It
cannot read a command key anywhere; every command it makes up is refused by the ingest node
and audited with the reason and the gateway's name: for the admin (whose session never came
through it) unsigned or with a guessed MAC, another user's session under the admin's name, a
user with no session, a command signed too long ago, a replayed request id, a session ended by
logout. Audit records it sends are written as its claims, under its own name even when the
entry names another gateway; it cannot write the audit stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis
from redis.exceptions import NoPermissionError
from websockets.asyncio.client import connect as ws_connect

from scada.auth.auditlog import AuditRecord, audit_query
from scada.auth.commandsig import command_key
from scada.auth.first_admin import PASSWORD_FILE, read_password_file
from scada.auth.passwords import token_digest
from scada.bus.commandstream import CommandSender, Reply
from scada.bus.keys import BusKeys
from scada.roles.ingest.alarmoutbox import decode_event
from tests.conftest import eventually, scaled
from tests.integration.cluster_procs import PREFIX, Cluster, RoleProcess, running_cluster
from tests.integration.cluster_redis import connect
from tests.integration.signing import signed
from tests.integration.test_bus_acl import readable
from tests.integration.test_gateway_role import opening, request

KEYS = BusKeys(PREFIX)
OVERRIDES: dict[str, Any] = {"alarms": {"require_comment": []}}
STEP = {"kind": "step", "tag": "diameter", "offset": 0.35}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("forgery"), overrides=OVERRIDES) as c:
        yield c


def login(node: RoleProcess, user: str, password: str) -> str:
    """The session secret a login on the ingest node gives (nginx sends /api/login there)."""
    r = httpx.post(
        f"{node.http}/api/login", json={"username": user, "password": password}, timeout=30
    )
    assert r.status_code == 200, r.text
    return str(r.cookies["scada_session"])


def raised(cluster: Cluster, line: str) -> dict[str, Any]:
    """The first alarm event raised on `line`, read from the bus."""
    with Redis.from_url(cluster.redis.admin_url, socket_timeout=5) as admin:

        def find() -> dict[str, Any] | None:
            entries: Any = admin.xrange(f"{PREFIX}:alarms")
            for _, fields in entries:
                event = orjson.loads(fields[b"e"])
                if event["alarm"].startswith(f"line{line}.") and event["event"] == "raised":
                    return dict(event)
            return None

        return dict(eventually(find, timeout=scaled(30)))


def acks_of(cluster: Cluster, occurrence: int) -> list[str]:
    """Who acknowledged `occurrence`, as the alarm stream says."""
    with Redis.from_url(cluster.redis.admin_url, socket_timeout=5) as admin:
        entries: Any = admin.xrange(f"{PREFIX}:alarms")
    return [
        str(e.acked_by)
        for _, fields in entries
        if (e := decode_event(fields[b"e"])).occurrence_id == occurrence
        and e.event == "acknowledged"
    ]


def audit(node: RoleProcess) -> list[AuditRecord]:
    return audit_query(node.data_dir / "auth.sqlite", limit=500)


def test_a_user_acks_through_the_gateway_and_the_gateway_cannot_forge_anyone(
    cluster: Cluster,
) -> None:
    active, gateway = cluster.active(), cluster.gateways[0]
    admin_name, admin_password = eventually(
        lambda: read_password_file(active.data_dir / PASSWORD_FILE)
    )
    admin = login(active, admin_name, admin_password)
    with httpx.Client(base_url=active.http, cookies={"scada_session": admin}, timeout=30) as http:
        for name in ("op1", "op2"):
            body = {"name": name, "role": "operator", "password": f"a long password {name}"}
            r = http.post("/api/users", json=body)
            assert r.status_code in (200, 201), r.text
        r = http.post("/api/tokens", json={"name": "bot", "role": "operator"})
        assert r.status_code in (200, 201), r.text
        bot = str(r.json()["token"])
    op1 = login(active, "op1", "a long password op1")
    for line in ("2", "3", "4"):
        r = httpx.post(
            f"{active.http}/api/simulator/faults",
            json={**STEP, "line": line},
            cookies={"scada_session": admin},
            timeout=30,
        )
        assert r.status_code == 201, r.text
    first, second, third = (raised(cluster, line)["occurrence_id"] for line in ("2", "3", "4"))

    # 1. End to end: op1's cookie comes through the gateway; op1's ack is applied as op1.
    # So is an API token's (a program acking over /ws).
    async def ack_over_ws(headers: dict[str, str], user: str, occurrence: int) -> Any:
        async with ws_connect(gateway.ws, additional_headers=headers) as ws:
            connected, _ = await opening(ws)
            assert connected["user"] == user
            return await request(ws, "ack", {"alarm_id": occurrence, "comment": "checked"}, 1)

    reply = asyncio.run(ack_over_ws({"Cookie": f"scada_session={op1}"}, "op1", first))
    assert reply["ok"] is True, reply
    assert eventually(lambda: acks_of(cluster, first)) == ["op1"]
    reply = asyncio.run(ack_over_ws({"Authorization": f"Bearer {bot}"}, "bot", third))
    assert reply["ok"] is True, reply
    assert eventually(lambda: acks_of(cluster, third)) == ["bot"]

    # 2. The compromised gateway: its own Redis user, and what that user can read.
    gateway_url = cluster.redis.url_for("gateway", gateway.node, PREFIX)
    with Redis.from_url(cluster.redis.admin_url, socket_timeout=5) as redis_admin:
        kinds = {key: redis_admin.type(key) for key in redis_admin.scan_iter(count=1000)}
        assert redis_admin.hlen(f"{PREFIX}:auth:keys") >= 2  # the sealed keys are there
    with Redis.from_url(gateway_url, socket_timeout=5) as mine:
        seen = b" ".join(v for k, t in kinds.items() if (v := readable(mine, k, t)))
        sessions: Any = mine.hgetall(f"{PREFIX}:auth:sessions")
        with pytest.raises(NoPermissionError):
            mine.hgetall(f"{PREFIX}:auth:keys")
        with pytest.raises(NoPermissionError):  # no record of its own into the audit trail
            mine.xadd(f"{PREFIX}:auth:audit", {"o": "x:1", "r": b"{}"})
    replica = {orjson.loads(row)["user"]: digest.decode() for digest, row in sessions.items()}
    assert replica["admin"] == token_digest(admin) and replica["op1"] == token_digest(op1)
    for secret in (admin, op1):  # neither a secret nor its key anywhere it can read
        assert secret.encode() not in seen and command_key(secret).encode() not in seen

    def who(user: str, digest: str | None, address: str) -> dict[str, Any]:
        return {"user": user, "role": "admin", "address": address, "anonymous": False,
                "session": digest}  # fmt: skip

    def forged(data: dict[str, Any], actor: dict[str, Any], key: str, rid: str) -> Any:
        return signed("ack", data, actor, request_id=rid, gateway=gateway.node, key=key)

    target = {"alarm_id": second, "comment": "forged"}
    admin_digest, op1_digest = replica["admin"], replica["op1"]
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        # The admin's session never came through this gateway: it has the digest only.
        "admin-unsigned": ("unsigned", {"data": target, "actor": who("admin", admin_digest,
                                                                     "192.0.2.1")}),
        "admin-guessed-mac": ("bad_signature", forged(
            target, who("admin", admin_digest, "192.0.2.2"), admin_digest, "admin-guessed-mac")),
        # op1's session did come through: its key signs, but not for another user's name.
        "op1-session-as-admin": ("unauthenticated", forged(
            target, who("admin", op1_digest, "192.0.2.3"), command_key(op1),
            "op1-session-as-admin")),
        # op2 exists, never logged in: no session to name.
        "op2-no-session": ("unsigned", {"data": target, "actor": who("op2", None, "192.0.2.4")}),
        "op2-with-op1-session": ("unauthenticated", forged(
            target, who("op2", op1_digest, "192.0.2.5"), command_key(op1),
            "op2-with-op1-session")),
        # op1's own, well signed, but an hour ago (captured, replayed later).
        "op1-stale": ("stale_command", signed(
            "ack", target, who("op1", op1_digest, "192.0.2.6"), request_id="op1-stale",
            gateway=gateway.node, key=command_key(op1), at=time.time() - 3600)),
    }  # fmt: skip

    async def as_the_gateway() -> dict[str, Reply]:
        sender = CommandSender(connect(gateway_url), KEYS, gateway.node)
        answers: dict[str, Reply] = {}
        try:
            for name, (_, body) in cases.items():
                rid = name if "proof" in body else uuid.uuid4().hex
                answers[name] = await sender.request("ack", body, rid, timeout=scaled(20))
            # The same refused command again, under its request id: the same answer, no
            # second look (and no second audit record).
            answers["replay"] = await sender.request(
                "ack", cases["admin-guessed-mac"][1], "admin-guessed-mac", timeout=scaled(20)
            )
            # It may report a refusal; it is written as its claim.
            claim = {"user": "admin", "role": "admin", "address": "192.0.2.9",
                     "action": "ws_connect", "target": "/ws", "result": "forbidden"}  # fmt: skip
            answers["claim"] = await sender.request("audit", {"record": claim}, timeout=20)
            # Under another gateway's name: its stream says who it is, whatever `g` says.
            lying: dict[Any, Any] = {"r": "lying", "k": "audit", "g": "gateway-2",
                     "b": orjson.dumps({"record": {**claim, "address": "192.0.2.8"}})}  # fmt: skip
            await sender.redis.xadd(KEYS.commands(gateway.node), lying)
            answers["lying"] = await asyncio.wait_for(sender.reply("lying"), scaled(20))
        finally:
            await sender.redis.aclose()
        return answers

    answers = asyncio.run(as_the_gateway())
    for name, (code, _) in cases.items():
        assert answers[name].result.get("error", {}).get("code") == code, (name, answers[name])
    assert answers["replay"].result == answers["admin-guessed-mac"].result
    assert answers["claim"].result == {"ok": True}
    assert acks_of(cluster, second) == []  # nothing forged was applied

    records = audit(active)
    refusals = {
        (r.address, r.user, r.result)
        for r in records
        if r.action == "ack" and r.address.startswith("192.0.2.")
    }
    assert refusals == {
        (body["actor"]["address"], body["actor"]["user"], code) for code, body in cases.values()
    }
    forged_records = [r for r in records if r.action == "ack" and r.address.startswith("192.0.2.")]
    assert all(r.detail.endswith(f"(via {gateway.node})") for r in forged_records)
    assert len(forged_records) == len(cases)  # the replay wrote nothing
    (claim,) = [r for r in records if r.address == "192.0.2.9"]
    assert (claim.user, claim.result) == ("admin", "forbidden")
    assert claim.detail == f"reported by {gateway.node}"
    assert answers["lying"].result == {"ok": True}  # answered on its own reply stream
    (lie,) = [r for r in records if r.address == "192.0.2.8"]
    assert lie.detail == f"reported by {gateway.node}"

    # 3. op1 logs out: the key the gateway learned from op1's cookie signs nothing any more.
    r = httpx.post(f"{active.http}/api/logout", cookies={"scada_session": op1}, timeout=30)
    assert r.status_code in (200, 204), r.text

    async def after_logout() -> Reply:
        sender = CommandSender(connect(gateway_url), KEYS, gateway.node)
        try:
            body = forged(target, who("op1", op1_digest, "192.0.2.10"), command_key(op1), "late")
            return await sender.request("ack", body, "late", timeout=scaled(20))
        finally:
            await sender.redis.aclose()

    ended = asyncio.run(after_logout())
    assert ended.result["error"]["code"] == "unauthenticated", ended.result
    assert acks_of(cluster, second) == []
    assert [r.result for r in audit(active) if r.address == "192.0.2.10"] == ["unauthenticated"]

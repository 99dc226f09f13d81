"""Signed commands (scada.auth.commandsig): the command key is stored beside the digest and
never in a public row; the ingest node's check (scada.roles.ingest.actorcheck) takes a command
for a named user only signed with the key of a live session or token of that user, in time.
Rows of an auth file from before (schema 1) open with no key: such sessions cannot sign."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from scada.auth import commandsig
from scada.auth.authdb import SCHEMA
from scada.auth.passwords import token_digest
from scada.auth.replica.rows import encode_changes, encode_row, public_row
from scada.auth.store import AuthStore
from scada.bus.commandstream import Command
from scada.core.config import AuthSettings
from scada.roles.ingest.actorcheck import Checked, check_actor
from scada.roles.ingest.commandapply import proof_of

DATA = {"alarm_id": 7, "comment": "seen"}


@pytest.fixture
def store(tmp_path: Path) -> AuthStore:
    store = AuthStore(tmp_path / "auth.sqlite")
    store.add_user("op1", "operator", "a long password op1")
    store.add_user("vic", "viewer", "a long password vic")
    return store


def command(
    user: str, secret: str | None, key: str | None, *, at: float | None = None, rid: str = "r1"
) -> Command:
    """An ack from `user` with the digest of `secret`, signed with `key` (None: unsigned)."""
    who = {
        "user": user,
        "role": "admin",
        "address": "203.0.113.7",
        "anonymous": False,
        "session": token_digest(secret) if secret else None,
    }
    body: dict[str, Any] = {"data": DATA, "actor": who}
    if key is not None:
        at = time.time() if at is None else at
        message = commandsig.payload(
            request_id=rid, kind="ack", gateway="gw-1", actor=who, data=DATA, at=at
        )
        body["proof"] = {"at": at, "mac": commandsig.sign(key, message)}
    # Through the bus as bytes and back, as the ingest node reads it.
    return Command(rid, "ack", orjson.loads(orjson.dumps(body)), "gw-1", "1-0")


def check(store: AuthStore, cmd: Command) -> Checked:
    who = cmd.body["actor"]
    return check_actor(
        store.rows(),
        AuthSettings(),
        user=who["user"],
        anonymous=who["anonymous"],
        digest=who["session"],
        needed="operator",
        proof=proof_of(cmd),
    )


def test_the_command_key_is_not_the_digest_nor_made_from_it() -> None:
    secret = "s3cret-session-id-of-forty-three-chars-xyz"
    key, digest = commandsig.command_key(secret), token_digest(secret)
    assert key != digest and len(key) == len(digest) == 64
    assert commandsig.command_key(secret) == key  # one secret, one key
    assert commandsig.command_key(digest) != key  # the digest a gateway holds is no secret


def test_a_signed_command_of_a_live_session_passes_and_any_change_fails(
    store: AuthStore,
) -> None:
    secret, _ = store.create_session("op1", 8)
    key = commandsig.command_key(secret)
    assert check(store, command("op1", secret, key)) == Checked("operator")

    assert check(store, command("op1", secret, None)).code == "unsigned"
    assert check(store, command("op1", None, key)).code == "unsigned"  # no session named
    guess = token_digest(secret)  # what a gateway's replica holds
    assert check(store, command("op1", secret, guess)).code == "bad_signature"
    tampered = command("op1", secret, key)
    tampered.body["data"]["alarm_id"] = 8  # not what was signed
    assert check(store, tampered).code == "bad_signature"
    late = command("op1", secret, key, at=time.time() - commandsig.MAX_AGE - 5)
    assert check(store, late).code == "stale_command"
    ahead = command("op1", secret, key, at=time.time() + commandsig.MAX_AHEAD + 5)
    assert check(store, ahead).code == "stale_command"


def test_the_session_must_be_live_and_the_users_own(store: AuthStore) -> None:
    mine, _ = store.create_session("op1", 8)
    theirs, _ = store.create_session("vic", 8)
    key_theirs = commandsig.command_key(theirs)
    # vic's session and key, op1's name: refused before any role check.
    assert check(store, command("op1", theirs, key_theirs)).code == "unauthenticated"
    # vic's own command: signed and live, but a viewer.
    assert check(store, command("vic", theirs, key_theirs)).code == "forbidden"
    store.delete_session(mine)  # logout
    key = commandsig.command_key(mine)
    assert check(store, command("op1", mine, key)).code == "unauthenticated"
    expired, _ = store.create_session("op1", -1)  # expired an hour ago
    assert check(store, command("op1", expired, commandsig.command_key(expired))).code == (
        "unauthenticated"
    )


def test_tokens_sign_like_sessions_and_revoked_ones_do_not(store: AuthStore) -> None:
    token_id, token = store.create_token("bi", "operator", "admin")
    key = commandsig.command_key(token)
    assert check(store, command("bi", token, key)) == Checked("operator")
    assert check(store, command("op1", token, key)).code == "unauthenticated"  # not its name
    store.revoke_token(token_id)
    assert check(store, command("bi", token, key)).code == "unauthenticated"


def test_keys_never_leave_in_a_public_row(store: AuthStore) -> None:
    secret, _ = store.create_session("op1", 8)
    _, token = store.create_token("bi", "viewer", "admin")
    rows = store.rows()
    for kind, secret_of in (("sessions", secret), ("tokens", token)):
        (row,) = rows[kind].values()
        key = commandsig.command_key(secret_of)
        assert row["command_key"] == key
        assert key.encode() not in encode_row(public_row(row))
        assert key.encode() not in encode_changes([(kind, "d", row)])


def test_an_auth_file_of_schema_1_opens_and_its_sessions_cannot_sign(tmp_path: Path) -> None:
    path = tmp_path / "auth.sqlite"
    old_secret = "a-session-from-release-0.1-with-no-key-xyz"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)  # release 0.1's tables, version 1
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO users(name, role, password, created) VALUES ('op1', 'operator', '!', 0)"
        )
        db.execute(
            "INSERT INTO sessions(digest, user, created, expires) VALUES (?, 'op1', ?, ?)",
            (token_digest(old_secret), time.time(), time.time() + 3600),
        )
    store = AuthStore(path)
    try:
        # The old session still identifies its user (viewing goes on) ...
        identity = store.session_identity(old_secret)
        assert identity is not None and identity.name == "op1"
        # ... but has no key: its commands through a gateway are refused until a new login.
        key = commandsig.command_key(old_secret)
        refused = check(store, command("op1", old_secret, key))
        assert refused.code == "unsigned" and "log in again" in refused.message
        fresh, _ = store.create_session("op1", 8)
        assert check(store, command("op1", fresh, commandsig.command_key(fresh))).role
    finally:
        store.close()

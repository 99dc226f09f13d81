"""Pure pieces of authentication: origins, forwarded addresses, log redaction, rate limits."""

from __future__ import annotations

import logging
from pathlib import Path

from scada.auth.identify import client_address, origin_allowed
from scada.auth.passwords import hash_password, needs_rehash, scrypt_hash, verify_password
from scada.auth.store import AuthStore
from scada.core.ratelimit import TokenBucket
from scada.server.serve import RedactTokens


def test_origin_exact_match_only() -> None:
    own = "http://plant.example:8000"
    assert origin_allowed(None, [], own)
    assert origin_allowed("http://plant.example:8000", [], own)
    for bad in (
        "http://plant.example:8000.evil.com",
        "http://plant.example.evil.com:8000",
        "https://plant.example:8000",
        "http://evilplant.example:8000",
        "null",
        "garbage",
    ):
        assert not origin_allowed(bad, [], own), bad
    allowed = ["https://scada.plant.example"]
    assert origin_allowed("https://scada.plant.example:443", allowed, own)
    assert not origin_allowed("https://scada.plant.example.evil.com", allowed, own)
    assert not origin_allowed(own, allowed, own)  # an explicit list replaces the default


def test_forwarded_for_only_from_trusted_proxies() -> None:
    headers = {"x-forwarded-for": "203.0.113.7, 10.0.0.2"}
    scope = {"client": ("127.0.0.1", 5000)}
    assert client_address(scope, headers, []) == "127.0.0.1"
    assert client_address(scope, headers, ["127.0.0.1", "10.0.0.0/8"]) == "203.0.113.7"
    spoof = {"client": ("198.51.100.9", 5000)}
    assert client_address(spoof, headers, ["127.0.0.1"]) == "198.51.100.9"


def test_password_hash_round_trip() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    assert not verify_password("x", "not-a-hash")
    assert not needs_rehash(stored)


def test_old_scrypt_hash_verifies_and_is_replaced_at_login(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.sqlite")
    store.add_user("olga", "operator", "first password")
    store.db.write("UPDATE users SET password = ? WHERE name = 'olga'", scrypt_hash("old secret"))
    assert needs_rehash(store.password_hash("olga") or "")
    assert store.verify_login("olga", "wrong") is None
    assert (store.password_hash("olga") or "").startswith("scrypt$")  # no rehash on failure
    assert store.verify_login("olga", "old secret") is not None
    assert (store.password_hash("olga") or "").startswith("$argon2id$")
    assert store.verify_login("olga", "old secret") is not None
    assert tmp_path.joinpath("auth.sqlite").stat().st_mode & 0o777 == 0o600
    store.close()


def test_redaction_filter() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/ws?token=scada_SECRET&x=1"),
        None,
    )
    RedactTokens().filter(record)
    assert "SECRET" not in record.getMessage()
    assert "/ws?token=<redacted>&x=1" in record.getMessage()
    sneaky = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        "%s",
        ("GET /api/lines?%74oken=scada_SECRET2",),
        None,
    )
    RedactTokens().filter(sneaky)
    assert "SECRET2" not in sneaky.getMessage()


def test_token_bucket_refuses_then_reports_abuse_and_forgives() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    assert [bucket.take(0.0) for _ in range(5)] == [TokenBucket.OK] * 5
    assert [bucket.take(0.0) for _ in range(5)] == [TokenBucket.REFUSE] * 5
    assert bucket.take(0.0) == TokenBucket.ABUSE
    assert bucket.take(10.0) == TokenBucket.OK  # refilled: forgiven
    assert bucket.refused == 0


def test_failure_window_throttles_and_forgives() -> None:
    from scada.core.ratelimit import FailureWindow

    window = FailureWindow(limit=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        assert window.blocked_for("a", t) == 0.0
        window.fail("a", t)
    assert window.blocked_for("a", 3.0) == 57.0
    assert window.blocked_for("b", 3.0) == 0.0  # per address
    assert window.blocked_for("a", 60.5) == 0.0  # the oldest failure left the window
    window.fail("a", 61.0)
    window.fail("a", 61.0)
    window.forgive_one("a")  # a success takes back only its own mark
    assert window._recent("a", 61.0) == [2.0, 61.0]


def test_heavy_reads_limit_per_client_and_per_role() -> None:
    import pytest

    from scada.core.config import AuthSettings
    from scada.core.errors import Refused
    from scada.web.heavy import HeavyReads

    settings = AuthSettings(
        heavy_reads_per_client=1, heavy_reads_per_role={"anonymous": 1, "viewer": 2}
    )
    heavy = HeavyReads(lambda: settings)
    held = heavy.acquire("a|olga", "viewer", False)
    with pytest.raises(Refused) as again:
        heavy.acquire("a|olga", "viewer", False)  # one at a time per client
    assert again.value.status == 429
    heavy.acquire("b|ivan", "viewer", False)
    with pytest.raises(Refused):
        heavy.acquire("c|petr", "viewer", False)  # the role's 2 are taken
    heavy.acquire("d|anonymous", "viewer", True)  # anonymous counted on their own
    heavy.release("a|olga", held)
    heavy.acquire("c|petr", "viewer", False)
    assert heavy.running() == 3
    heavy.acquire_export()
    with pytest.raises(Refused):
        heavy.acquire_export()  # one export at a time in the whole server
    heavy.release_export()
    heavy.acquire_export()


def test_login_gate_counts_every_address_against_one_budget() -> None:
    import pytest

    from scada.auth.throttle import LoginGate
    from scada.core.config import AuthSettings
    from scada.core.errors import Refused

    class Frozen:
        def monotonic(self) -> float:
            return 100.0

        def wall(self) -> float:
            return 0.0

    gate = LoginGate(AuthSettings(login_failures_total=3), Frozen())
    for i in range(3):
        gate.admit(f"10.0.0.{i}")
    with pytest.raises(Refused) as refused:
        gate.admit("10.0.0.99")
    assert refused.value.status == 429
    gate.close()


def test_auth_routes_do_not_import_the_app() -> None:
    """The old circle scada.roles.allinone <-> scada.web.auth is gone: routes import no app."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys; import scada.web.auth; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('scada.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "scada.roles.allinone" not in loaded and "scada.web.hub" not in loaded

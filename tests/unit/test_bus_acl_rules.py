"""scada.bus.acl: the rules each role gets, the ACL file, URLs with credentials, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from scada.bus.acl import BusUser, acl_file, password_digest, redact, rules, with_user
from scada.tools.cluster.credentials import previous_password, write_private

GATEWAY = BusUser("gateway-1", "gateway", "p@ss/word:with%odd_chars", "gateway-1")


def test_a_gateway_reads_its_own_replies_only_and_writes_only_its_own_commands() -> None:
    text = rules("gateway", "plant", "gateway-1")
    assert "%R~plant:replies:gateway-1" in text and "replies:*" not in text
    writable = [t for t in text.split() if t.startswith(("~", "%W~", "%RW~"))]
    assert writable == ["%W~plant:commands:gateway-1"]
    assert "+eval" not in text and "+evalsha" not in text and "@scripting" not in text
    assert "auth:secrets" not in text and "auth:keys" not in text and "plant:lease" not in text


def test_ingest_has_the_prefix_and_no_admin_commands() -> None:
    text = rules("ingest", "plant")
    assert "~plant:*" in text and "-@dangerous" in text and "-@admin" in text
    assert "~*" not in text.split()


def test_the_acl_file_holds_digests_never_passwords() -> None:
    tools = BusUser("tools", "tools", "another-long-password")
    text = acl_file([GATEWAY, tools], "plant")
    assert text.startswith("user default off")
    assert GATEWAY.password not in text and tools.password not in text
    assert f"#{password_digest(GATEWAY.password)}" in text


def test_a_url_gets_the_user_quoted_and_logs_get_it_redacted() -> None:
    url = with_user("rediss://10.0.0.5:6380/0?ssl_ca_certs=/etc/ca.pem", GATEWAY)
    assert url.startswith("rediss://gateway-1:") and url.endswith(
        "@10.0.0.5:6380/0?ssl_ca_certs=/etc/ca.pem"
    )
    assert GATEWAY.password not in url  # quoted: '/', ':', '%' would break the URL
    assert redact(url) == "rediss://gateway-1:***@10.0.0.5:6380/0?ssl_ca_certs=/etc/ca.pem"
    assert redact("redis://:secret@host:6379/0") == "redis://***@host:6379/0"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"
    with pytest.raises(ValueError):
        with_user("http://host/", GATEWAY)


def test_bad_users_are_refused() -> None:
    with pytest.raises(ValueError):
        BusUser("gw 1", "gateway", "a-long-enough-password", "gw")
    with pytest.raises(ValueError):
        BusUser("gw", "gateway", "short", "gw")
    with pytest.raises(ValueError):
        BusUser("gw", "gateway", "a-long-enough-password")  # no node


def test_a_restart_keeps_the_password_the_config_holds(tmp_path: Path) -> None:
    config = write_private(
        tmp_path / "plant.toml",
        f'cluster = {{redis_url = "{with_user("redis://h:1/0", GATEWAY)}"}}\n',
    )
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert previous_password(config, "gateway-1") == GATEWAY.password
    assert previous_password(config, "someone-else") is None
    assert previous_password(tmp_path / "missing.toml", "gateway-1") is None

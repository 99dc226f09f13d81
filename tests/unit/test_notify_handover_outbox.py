"""The outbox's part in a cluster's notification hand-over (real SQLite file): the oldest
journal id still pending, dropping what the other node delivered, and the shared instance."""

from __future__ import annotations

from pathlib import Path

from scada.notify.outbox import Outbox


def test_pending_forget_and_shared_instance(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "notify.sqlite")
    assert outbox.oldest_pending() is None
    outbox.adopt_instance("00c0ffee00c0ffee")
    assert Outbox(tmp_path / "notify.sqlite").instance == "00c0ffee00c0ffee"
    rows = [
        ("hook", "1a2b3c4d:5", b"{}"),  # queued under an older instance: still pending
        ("hook", "00c0ffee00c0ffee:7", b"{}"),
        ("hook", "00c0ffee00c0ffee:12", b"{}"),
        ("mail", "00c0ffee00c0ffee:9", b"{}"),
        ("hook", "00c0ffee00c0ffee:unack:3:rule1", b"{}"),  # a reminder: not a journal id
    ]
    outbox.commit(rows, now=1.0, cursor=12)
    assert outbox.oldest_pending() == 5
    # The other node delivered up to 9: this outbox's rows of the shared instance up to 9 go.
    assert outbox.forget_through("00c0ffee00c0ffee", 9) == 2
    assert outbox.target("hook").queued == 3 and outbox.target("mail").queued == 0
    assert [r.event_id for r in outbox.head("hook", 10)] == [
        "1a2b3c4d:5",
        "00c0ffee00c0ffee:12",
        "00c0ffee00c0ffee:unack:3:rule1",
    ]
    (five,) = [r for r in outbox.head("hook", 10) if r.event_id == "1a2b3c4d:5"]
    outbox.delivered("hook", [five.id], now=2.0)
    assert outbox.oldest_pending() == 12
    outbox.close()

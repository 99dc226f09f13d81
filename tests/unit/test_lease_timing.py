"""The lease's local clock (no Redis): a held lease is trusted from the send time of the newest
renewal Redis confirmed, for ttl minus a margin larger than the standby's retry interval; an
unanswered renewal extends nothing. And an ingest node's role changes only along its design."""

from __future__ import annotations

import pytest

from scada.bus.lease import LeaseTiming
from scada.roles.ingest.node import TRANSITIONS, Role


def test_validity_counts_from_the_confirmed_renewals_send_time() -> None:
    timing = LeaseTiming(ttl=3.0, margin=1.0)
    assert not timing.valid(0.0)
    timing.confirmed(sent_at=10.0)  # the answer came back at, say, 10.4: still from 10.0
    assert timing.valid(11.9) and not timing.valid(12.0)
    assert timing.remaining(11.5) == pytest.approx(0.5)
    # A renewal sent at 11.0 and never answered: nothing extended.
    assert not timing.valid(12.0)
    timing.confirmed(sent_at=11.5)
    assert timing.valid(13.4) and not timing.valid(13.5)


def test_the_holder_stops_a_margin_before_any_other_node_can_take_over() -> None:
    ttl, margin, standby_retry = 3.0, 1.0, 0.5
    timing = LeaseTiming(ttl=ttl, margin=margin)
    sent = 100.0
    timing.confirmed(sent)
    # Redis ran the renewal no earlier than it was sent: the key lives until >= sent + ttl.
    earliest_takeover = sent + ttl
    assert not timing.valid(earliest_takeover - margin)
    assert margin > standby_retry


def test_an_older_confirmation_never_shortens_the_validity() -> None:
    timing = LeaseTiming(ttl=3.0, margin=1.0)
    timing.confirmed(5.0)
    timing.confirmed(4.0)
    assert timing.valid(6.9)
    timing.forget()
    assert not timing.valid(5.0) and timing.remaining(5.0) == 0.0


def test_a_margin_outside_the_ttl_is_refused() -> None:
    with pytest.raises(ValueError):
        LeaseTiming(ttl=3.0, margin=0.0)
    with pytest.raises(ValueError):
        LeaseTiming(ttl=3.0, margin=3.0)


def test_roles_change_only_along_the_design() -> None:
    assert TRANSITIONS[Role.STANDBY] == {Role.ACTIVATING, Role.UNFIT}
    assert TRANSITIONS[Role.ACTIVE] == {Role.DEPOSING}  # never straight to standby
    assert TRANSITIONS[Role.UNFIT] == set()
    # Every role is reachable from starting, and a role between two others never lasts.
    seen, todo = {Role.STARTING}, [Role.STARTING]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(Role)
    assert str(Role.ACTIVE) == "active"  # the str /ready and /metrics carry

"""Issue #21: the e-mail rate limit survives restarts (kept in the outbox file), so restarts
cannot hand out a fresh bucket ("at most 5 per 10 minutes" means across restarts too)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from scada.notify.delivery import EmailWorker, TokenBucket
from scada.notify.outbox import Outbox
from scada.notify.settings import EmailTarget, RetrySettings


def test_a_restored_bucket_refills_only_for_the_time_that_passed() -> None:
    now = [0.0]
    bucket = TokenBucket(5, 600.0, lambda: now[0])  # 5 mails per 10 minutes: one per 120 s
    bucket.restore(0.0, elapsed=60.0)  # empty a minute ago: half a token now
    assert bucket.tokens == pytest.approx(0.5)
    assert bucket.try_take() == pytest.approx(60.0)
    bucket.restore(0.0, elapsed=-3600.0)  # the wall clock stepped back: no refill
    assert bucket.try_take() == pytest.approx(120.0)
    bucket.restore(2.0, elapsed=86_400.0)  # a day later: full, not beyond
    assert bucket.tokens == 5.0
    bucket.restore(-1.0, elapsed=0.0)  # nonsense stored: never negative
    assert bucket.tokens == 0.0


def test_the_outbox_keeps_each_targets_bucket(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "notify.sqlite")
    assert outbox.bucket("mail") is None
    outbox.save_bucket("mail", 2.5, 1000.0)
    outbox.save_bucket("mail", 1.25, 1010.0)
    outbox.save_bucket("other", 5.0, 1000.0)
    outbox.close()
    again = Outbox(tmp_path / "notify.sqlite")
    assert again.bucket("mail") == (1.25, 1010.0)
    assert again.bucket("other") == (5.0, 1000.0)
    again.close()


def target() -> EmailTarget:
    return EmailTarget.model_validate(
        {
            "name": "shift",
            "host": "127.0.0.1",
            "from": "scada@plant.example",
            "to": ["lead@plant.example"],
            "max_messages": 5,
            "per_minutes": 10,
        }
    )


def test_two_restarts_do_not_give_a_fresh_bucket(tmp_path: Path) -> None:
    wall = [1_795_341_600.0]

    async def db(fn: Any, *args: Any) -> Any:
        return fn(*args)

    async def start() -> tuple[EmailWorker, Outbox]:
        """What a server start does: open the outbox, build the worker, run's prepare()."""
        outbox = Outbox(tmp_path / "notify.sqlite")
        worker = EmailWorker(target(), RetrySettings(), outbox, db, lambda: wall[0])
        await worker.prepare()
        return worker, outbox

    async def main() -> list[float]:
        sent = 0
        waits: list[float] = []
        for _ in range(3):  # the first start and two restarts, 30 s apart
            worker, outbox = await start()
            while worker.bucket.try_take() == 0.0:
                await worker.db(outbox.save_bucket, worker.name, worker.bucket.tokens, wall[0])
                sent += 1
            waits.append(worker.bucket.try_take())
            worker.close()
            outbox.close()
            wall[0] += 30.0
        # 5 mails in the first run, then 30 s refills a quarter of a token each time.
        assert sent == 5
        return waits

    waits = asyncio.run(main())
    # (The bucket refills on the monotonic clock while the test runs: a fraction of a second.)
    assert waits[0] == pytest.approx(120.0, abs=1.0)
    assert waits[1] == pytest.approx(90.0, abs=1.0)
    assert waits[2] == pytest.approx(60.0, abs=1.0)


def test_take_token_stores_the_bucket_before_the_send(tmp_path: Path) -> None:
    async def db(fn: Any, *args: Any) -> Any:
        return fn(*args)

    async def main() -> tuple[float, float] | None:
        outbox = Outbox(tmp_path / "notify.sqlite")
        worker = EmailWorker(target(), RetrySettings(), outbox, db, lambda: 5000.0)
        await worker.prepare()
        for _ in range(5):
            await worker.take_token()
        saved = outbox.bucket("shift")
        worker.close()
        outbox.close()
        return saved

    saved = asyncio.run(main())
    assert saved is not None
    tokens, at = saved
    assert tokens < 1.0 and at == 5000.0

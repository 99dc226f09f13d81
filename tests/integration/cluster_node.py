"""A minimal ingest node for the lease tests, run as a real subprocess:

    python -m tests.integration.cluster_node REDIS_URL NODE JOURNAL_PATH

It holds or waits for the lease; while it holds it, every 50 ms it journals one alarm event
(after `lease.fence()`), publishes it through the outbox and publishes one frame. It prints
one line per thing the test looks for: `held <token>`, `lost`, `journal refused`,
`publish refused`, `published <event id>`.
"""

from __future__ import annotations

import asyncio
import sys
import time

from redis.exceptions import RedisError

from scada.alarms.journal import Journal
from scada.alarms.model import AlarmEvent
from scada.bus.conn import connect
from scada.bus.framestream import FramePublisher
from scada.bus.keys import BusKeys
from scada.bus.lease import Lease, LeaseLost
from scada.bus.publish import Fenced
from scada.roles.ingest.alarmoutbox import Outbox

KEYS = BusKeys("test")


def say(line: str) -> None:
    print(line, flush=True)


def alarm_event(n: int, message: str = "diameter high") -> AlarmEvent:
    """An alarm event to journal (the cluster tests need many, not realistic ones)."""
    return AlarmEvent(
        event_id=None,
        occurrence_id=n,
        alarm=f"line1.diameter.hi.{n}",
        production_line_id="1",
        tag="diameter",
        condition="hi",
        severity="high",
        event="raised",
        state="unacked_active",
        message=message,
        value=2.1,
        limit=2.0,
        at=time.time(),
        raised_value=2.1,
    )


async def main(url: str, node: str, journal_path: str) -> None:
    redis = connect(url)
    journal = Journal(journal_path, retention_days=30, retention_events=1_000_000)
    lease = Lease(redis, KEYS, node)
    outbox = Outbox(redis, KEYS, lease, journal, "j0urnal")
    frames = FramePublisher(redis, KEYS, lease)
    held = False

    def changed(now_held: bool) -> None:
        nonlocal held
        held = now_held
        say(f"held {lease.token}" if now_held else "lost")

    asyncio.create_task(lease.run(changed))  # noqa: RUF006 (lives as long as the process)
    n = 0
    started = False
    while True:
        await asyncio.sleep(0.05)
        if not held and not started:
            continue
        n += 1
        try:
            lease.fence()
            journal.append([alarm_event(n, f"{node}/{lease.token}")])
        except LeaseLost:
            say("journal refused")
            continue
        try:
            if not started:
                await outbox.start()
                started = True
            await outbox.flush()
            await frames.publish(f"{node}/{lease.token}/{n}".encode())
            say(f"published {outbox.published_through}")
        except (LeaseLost, Fenced):
            say("publish refused")
        except RedisError as err:
            say(f"redis error {err}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

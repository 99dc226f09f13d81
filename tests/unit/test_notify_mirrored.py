"""A cluster node that takes over does not notify the events it mirrored from the node that
committed (and notified) them: the feeder starts after them, with a real journal and outbox."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from pathlib import Path
from typing import Any

from scada.notify.feeder import Feeder
from scada.notify.outbox import Outbox
from scada.notify.settings import NotificationsConfig
from tests.unit.conftest_alarms import Rig, diameter_plant
from tests.unit.test_alarm_service import Clock, make_service, tick


def test_the_feeder_skips_mirrored_events_and_keeps_its_own(tmp_path: Path) -> None:
    async def main() -> None:
        rig, clock = Rig(diameter_plant()), Clock()
        service = make_service(rig, tmp_path / "j.sqlite", clock)
        await service.start()
        outbox = Outbox(tmp_path / "notify.sqlite")

        async def db(fn: Any, *args: Any, **kwargs: Any) -> Any:
            return functools.partial(fn, *args, **kwargs)()

        def feeder() -> Feeder:
            return Feeder(NotificationsConfig(), service, outbox, db, clock, lambda _: None)

        rig.set("diameter", 12.3)
        await tick(service, rig, clock)  # event 1, committed here while active
        first = feeder()
        await first.open()
        assert first.cursor == 1

        # Standing by: the other node commits 2..3, this node's journal mirrors them.
        (own,) = service.journal.all_events()
        service.journal.append([dataclasses.replace(own, event_id=None) for _ in range(2)])
        await service.start()  # activation: restore (cursor 3)
        assert service.cursor() == 3

        unskipped = feeder()
        await unskipped.open()
        assert unskipped.cursor == 1  # without the skip it would notify 2..3 again

        again = feeder()
        await again.open(skip_through=3)
        assert again.cursor == 3 and outbox.cursor() == 3
        await service.close()
        outbox.close()

    asyncio.run(main())

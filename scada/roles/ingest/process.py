"""The ingest process a cluster node drives (scada.roles.ingest.node.IngestProcess).

`activate`: restore alarm state from the journal (what this node wrote or mirrored), then
connect the devices and tick, then notifications and the activation hooks. `stand_by`: the
reverse, also of an activation that did not finish (the node's activation deadline cancelled
it half way); a standby never talks to devices. Before its first activation the process does not
poll either (the app starts neither the pollers nor the tick).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette

from scada.bus.notifymark import NotifyMark
from scada.notify.service import Notifier
from scada.roles.allinone import Plant, start_notifier, stop_notifier
from scada.roles.ingest.follow import FrameFollower
from scada.roles.ingest.framepublish import FrameTap

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


class IngestProcess:
    def __init__(
        self,
        app: Starlette,
        plant: Plant,
        frames: FrameTap,
        follower: FrameFollower | None = None,
    ) -> None:
        self.app = app
        self.plant = plant
        self.frames = frames
        # Where the other node's notifications ended (set once the node exists).
        self.mark: NotifyMark | None = None
        # The historian records the active node's frames while this one stands by.
        self.follower = follower
        # Run after activation / before standing by, in order (e.g. the auth publisher).
        self.on_activate: list[Hook] = []
        self.on_stand_by: list[Hook] = []
        self.notifier: Notifier | None = None
        self.active = False
        self.activations = 0

    async def activate(self) -> None:
        plant = self.plant
        self.active = True  # from here on stand_by() undoes whatever started
        await plant.alarms.start()  # the engine's state from the journal, mirrored tail too
        plant.runtime.alarms_fenced = False
        if self.follower is not None:
            await self.follower.stop()  # the tick records from now on
        self.frames.reset()
        await plant.runtime.start()
        self.activations += 1
        log.info(
            "ingest active: %d alarm(s) not normal, journal cursor %d, %d device(s) connecting",
            len(plant.alarms.current()),
            plant.alarms.cursor(),
            len(plant.runtime.pollers),
        )
        assert self.mark is not None, "IngestProcess.mark is set before the node runs"
        start = await self.mark.start_at()
        self.notifier = await start_notifier(
            self.app,
            plant,
            start.skip_through,
            handover=start.handover,
            instance=start.instance,
        )
        self.mark.activate(self._delivered)
        for hook in self.on_activate:
            await hook()

    def _delivered(self) -> Awaitable[int] | None:
        return self.notifier.delivered_through() if self.notifier is not None else None

    async def stand_by(self) -> None:
        if not self.active:
            return
        self.active = False
        if self.mark is not None:
            await self.mark.finish(self._delivered)
        for hook in self.on_stand_by:
            await hook()
        runtime = self.plant.runtime
        await runtime.stop()  # the tick, then the device connections
        if self.follower is not None:
            self.follower.start()
        # Its clients see no data here any more: let them reconnect (to the active node).
        self.plant.broadcaster.close_all(1012, "standby")
        notifier, self.notifier = self.notifier, None
        await stop_notifier(self.app, self.plant, notifier)
        log.info("ingest standing by: devices disconnected, alarm evaluation stopped")

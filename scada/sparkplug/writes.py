"""DCMD writes to the service's edge node: refused unless `[sparkplug.writes]` allows the metric
and its user's role allows the action, audited either way (docs/sparkplug.md, "Writes").

The one write there is acknowledging an alarm: `Alarms/<tag>.<condition>/Acknowledged` = true
on the line's device. The role check and the audit record come from the role that runs the
edge node (they belong to the auth layer, which this ingest package does not import).
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from drivers.sparkplug.edge import Write
from scada.core.errors import Refused
from scada.sparkplug.edgeconfig import WriteSettings

log = logging.getLogger(__name__)

ACK = re.compile(r"^Alarms/(?P<alarm>.+)/Acknowledged$")
ACTION = "sparkplug_ack"


class WriteGate(Protocol):
    """What the role provides: `authorize` checks the user's role for the action and writes
    the `requested` audit record (None: go ahead; else the refusal's result code), `outcome`
    records how it ended (or a refusal decided here)."""

    async def authorize(self, user: str, action: str, target: str) -> str | None: ...

    async def outcome(
        self, user: str, action: str, target: str, result: str, detail: str
    ) -> None: ...


Acknowledge = Callable[[int, str, str], Awaitable[Any]]


class EdgeWrites:
    def __init__(
        self,
        settings: WriteSettings | None,
        gate: WriteGate | None,
        alarms_current: Callable[[], list[dict[str, Any]]] | None,
        acknowledge: Acknowledge | None,
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.alarms_current = alarms_current
        self.acknowledge = acknowledge
        self.applied = 0
        self.refused = 0

    async def apply(self, writes: list[Write]) -> None:
        for w in writes:
            try:
                await self._one(w)
            except Exception as err:  # one bad write never stops the edge node
                self.refused += 1
                log.warning("sparkplug write of %s/%s failed: %s", w.device, w.metric, err)

    async def _one(self, w: Write) -> None:
        target = f"{w.device}/{w.metric}"
        why = self._not_allowed(w)
        user = self.settings.user if self.settings is not None else "-"
        if why is not None:
            self.refused += 1
            log.warning("sparkplug: refused write of %s: %s", target, why)
            if self.gate is not None and self.settings is not None:
                await self.gate.outcome(user, ACTION, target, "forbidden", why)
            return
        assert self.settings is not None and self.gate is not None
        assert self.alarms_current is not None and self.acknowledge is not None
        refusal = await self.gate.authorize(user, ACTION, target)
        if refusal is not None:
            self.refused += 1
            log.warning("sparkplug: refused write of %s: %s (user %s)", target, refusal, user)
            return
        match = ACK.match(w.metric)
        assert match is not None and w.device is not None
        alarm = f"{w.device}.{match['alarm']}"  # devices are "line<id>", alarms "line<id>.<...>"
        occurrence = next((a["id"] for a in self.alarms_current() if a["alarm"] == alarm), None)
        if occurrence is None:
            self.refused += 1
            await self.gate.outcome(user, ACTION, target, "failed", f"{alarm} is not raised")
            return
        try:
            await self.acknowledge(int(occurrence), user, "acknowledged over Sparkplug (DCMD)")
        except Refused as err:  # already acknowledged, a comment required ...
            self.refused += 1
            await self.gate.outcome(user, ACTION, target, err.code, err.message)
            return
        self.applied += 1
        log.info("sparkplug: %s acknowledged %s over DCMD", user, alarm)
        await self.gate.outcome(user, ACTION, target, "ok", alarm)

    def _not_allowed(self, w: Write) -> str | None:
        if self.settings is None or self.gate is None or self.acknowledge is None:
            return "writes are off ([sparkplug.writes])"
        if w.device is None:
            return "no node metric is writable"
        if not any(fnmatch.fnmatchcase(w.metric, p) for p in self.settings.allow):
            return "metric not in [sparkplug.writes] allow"
        if ACK.match(w.metric) is None:
            return "only Alarms/<alarm>/Acknowledged can be written"
        if w.value is not True:
            return "an acknowledgement is the value true"
        return None

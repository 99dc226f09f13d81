"""Snapshots and `resume`: what a client sees first, and what it missed while away.

A resume names the epoch its cursor belongs to (optional: a client that sends none is taken
to mean the server's current epoch, as before epochs existed); another epoch's cursor means
nothing here, so it gets a fresh snapshot with `recovered: false` and no replay.

A resume is a heavy read a client can ask for with 61 bytes, so it is bounded: by role
(`auth.resume_events`: anonymous clients replay far fewer events than operators), one at a
time per connection, and through the shared heavy-read limiter. A client further behind
than its bound gets a fresh snapshot instead of the replay.
"""

from __future__ import annotations

from typing import Any

from scada.core.errors import Refused
from scada.fanout.broadcaster import Client
from scada.web.heavy import HeavyReads, audience
from scada.web.hub.plantsource import PlantSource


class Snapshots:
    def __init__(self, source: PlantSource, heavy: HeavyReads) -> None:
        self.source = source
        self.heavy = heavy

    def snapshot(
        self, *, recovered: bool | None = None, lines: list[str] | None = None
    ) -> dict[str, Any]:
        alarms = self.source.alarms
        data: dict[str, Any] = {
            "lines": self.source.line_samples(lines),
            "alarms": alarms.current() if alarms is not None else [],
            "alarm_cursor": alarms.cursor() if alarms is not None else 0,
            "flood": alarms.flood() if alarms is not None else None,
            "epoch": alarms.epoch() if alarms is not None else None,
            "data_live": self.source.data_live(),
        }
        if recovered is not None:
            data["recovered"] = recovered
        return data

    def send_snapshot(self, client: Client, *, recovered: bool | None = None) -> None:
        ids = self.source.line_ids
        lines = None if client.lines is None else [i for i in ids if i in client.lines]
        snapshot = self.snapshot(recovered=recovered, lines=lines)
        client.snapshot_cursor = snapshot["alarm_cursor"]
        client.send("snapshot", snapshot)

    def replay_bound(self, client: Client) -> int:
        bounds = self.source.config.auth.resume_events
        return bounds.get(audience(client.role, client.anonymous), 500)

    async def resume(self, client: Client, cursor: int, epoch: str | None = None) -> None:
        """Replay what the client missed before this connection's snapshot, then a snapshot.

        Events after `client.snapshot_cursor` already reached it live on this connection, so
        they are not sent twice. A cursor too far behind, or of another epoch, gets the
        snapshot alone.
        """
        alarms = self.source.alarms
        current = alarms.epoch() if alarms is not None else None
        if alarms is None or (epoch is not None and epoch != current):
            self.send_snapshot(client, recovered=False)
            return
        if client.resuming:
            raise Refused("busy", "a resume is already running on this connection")
        upto = client.snapshot_cursor
        if upto - cursor > self.replay_bound(client):
            self.send_snapshot(client, recovered=False)
            return
        client.resuming = True
        try:
            key = f"{client.address}|{client.user}"  # as the HTTP routes key a client
            async with self.heavy.slot(key, client.role, client.anonymous):
                missed = await alarms.replay(cursor, upto)
        finally:
            client.resuming = False
        if client.closed:
            return
        if missed is None or alarms.epoch() != current:  # (a gateway's bus may change epoch)
            self.send_snapshot(client, recovered=False)
            return
        for event in missed:
            if "alarm" in client.types and client.wants_line(event.get("production_line_id")):
                client.send("alarm", event)
        self.send_snapshot(client, recovered=True)

"""Open sockets whose credentials run out: logout, revocation, disabled users, expiry.

Runs on the monotonic clock: a session's expiry becomes a monotonic deadline when its socket
is admitted, and the periodic re-check (which catches revocations made by another process,
e.g. the CLI) is scheduled monotonically, so a step of the wall clock moves neither.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from scada.auth.identify import CredentialStore
from scada.core.clock import Clock
from scada.fanout.broadcaster import Broadcaster, Client

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
RECHECK_S = 5.0  # open sockets' credentials are re-checked this often


class SessionWatch:
    def __init__(
        self, broadcaster: Broadcaster, store: CredentialStore | None, clock: Clock
    ) -> None:
        self.broadcaster = broadcaster
        self.store = store
        self.clock = clock
        self._next_recheck = clock.monotonic() + RECHECK_S
        self._rechecking = False

    def close_session(self, session: str, reason: str) -> None:
        self._close_where(lambda c: c.session == session, reason)

    def close_user(self, user: str, reason: str) -> None:
        self._close_where(lambda c: not c.anonymous and c.user == user, reason)

    def _close_where(self, match: Callable[[Client], bool], reason: str) -> None:
        for client in [c for c in self.broadcaster.active() if match(c)]:
            client.sink.close(CLOSE_POLICY, reason)
            self.broadcaster.remove(client)

    async def _recheck_credentials(self) -> None:
        """Close sockets whose session or token was revoked, even by another process."""
        digests = list({c.session for c in self.broadcaster.active() if c.session})
        if self.store is None or not digests:
            return
        try:
            valid = await asyncio.to_thread(self.store.still_valid, digests)
        except Exception:
            log.exception("credential re-check failed")
            return
        self._close_where(
            lambda c: c.session is not None and c.session not in valid, "credentials revoked"
        )

    def on_tick(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next_recheck and not self._rechecking:
            self._next_recheck = now + RECHECK_S
            self._rechecking = True
            task = asyncio.create_task(self._recheck_credentials())
            task.add_done_callback(lambda _t: setattr(self, "_rechecking", False))
        # `expires` is a monotonic deadline (set at admission).
        self._close_where(lambda c: c.expires is not None and c.expires <= now, "session expired")

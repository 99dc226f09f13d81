"""One limiter for heavy reads: KPIs, alarm history, history, audit, exports and resume.

A heavy read costs a worker thread, a SQLite scan and memory for its answer, so nothing a
client can ask for may pile up: at most `auth.heavy_reads_per_client` run at once per client
(address and identity) and at most `auth.heavy_reads_per_role[audience]` per role, anonymous
clients counted on their own. Over either, the answer is 429 with Retry-After at once (no
queue: a queue is memory an attacker controls). The work itself runs off the event loop on
its own SQLite connection (each route's job); this bounds how much of it there can be.

`HeavyReadLimit` applies the limiter to every HTTP route whose path is heavy, whoever
defines the route, so a new heavy route only needs its path listed in HEAVY_PATHS. It takes
the slot only once the route's role check passed (`requires` calls the request's
`heavy_ticket`): a client refused by role gets 401/403 and never holds a slot.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from scada.core.config import AuthSettings, PlantConfig
from scada.core.errors import Refused
from scada.core.roles import ANONYMOUS

log = logging.getLogger(__name__)

HEAVY_PATHS = re.compile(
    r"^/api/("
    r"alarms/kpi|alarms/history|alarms/export.*|history|history/.*|audit|export.*"
    r"|lines/[^/]+/history"
    r")$"
)
# Exports stream a whole range (tens of MB) and encode every row in Python: besides the
# limits above, at most `auth.max_exports` run in the whole server at once.
EXPORT_PATHS = re.compile(r"^/api/(alarms/export.*|export.*)$")
RETRY_AFTER_S = 1


def audience(role: str, anonymous: bool) -> str:
    return ANONYMOUS if anonymous else role


class HeavyReads:
    def __init__(self, settings: Callable[[], AuthSettings]) -> None:
        self._settings = settings  # follows a config reload
        self._per_client: dict[str, int] = {}
        self._per_audience: dict[str, int] = {}
        self._exports = 0

    def running(self) -> int:
        return sum(self._per_audience.values())

    def acquire(self, client: str, role: str, anonymous: bool) -> str:
        """Take one heavy-read slot or raise Refused (429); returns the audience to release."""
        settings = self._settings()
        who = audience(role, anonymous)
        if self._per_client.get(client, 0) >= settings.heavy_reads_per_client:
            raise Refused(
                "too_many_requests",
                f"{settings.heavy_reads_per_client} heavy read(s) per client at a time; "
                "wait for the running one",
                429,
            )
        if self._per_audience.get(who, 0) >= settings.heavy_reads_per_role.get(who, 1):
            raise Refused(
                "too_many_requests", f"too many heavy reads by {who} clients; try again", 429
            )
        _bump(self._per_client, client, 1)
        _bump(self._per_audience, who, 1)
        return who

    def acquire_export(self) -> None:
        limit = self._settings().max_exports
        if self._exports >= limit:
            raise Refused(
                "too_many_requests", f"{limit} export(s) at a time on this server; try again", 429
            )
        self._exports += 1

    def release_export(self) -> None:
        self._exports -= 1

    def release(self, client: str, who: str) -> None:
        _bump(self._per_client, client, -1)
        _bump(self._per_audience, who, -1)

    @contextlib.asynccontextmanager
    async def slot(self, client: str, role: str, anonymous: bool) -> AsyncIterator[None]:
        """Hold one heavy-read slot for the block, or raise Refused (429) at once."""
        who = self.acquire(client, role, anonymous)
        try:
            yield
        finally:
            self.release(client, who)


def _bump(counts: dict[str, int], key: str, by: int) -> None:
    value = counts.get(key, 0) + by
    if value > 0:
        counts[key] = value
    else:
        counts.pop(key, None)  # bounded: only clients with a read running are remembered


class HeavyReadLimit:
    """ASGI middleware (after AuthMiddleware): heavy HTTP paths go through the limiter."""

    def __init__(self, app: ASGIApp, *, heavy: HeavyReads, config: Callable[[], PlantConfig]):
        self.app = app
        self.heavy = heavy
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not HEAVY_PATHS.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        state = scope.get("state", {})
        identity = state.get("identity")
        name, role = getattr(identity, "name", None), getattr(identity, "role", None)
        anonymous = identity is None or name is None  # None: anonymous; Invalid: refused later
        if anonymous:
            name, role = ANONYMOUS, self.config().auth.anonymous_role
        key = f"{state.get('client_address', '')}|{name}"
        export = bool(EXPORT_PATHS.match(scope.get("path", "")))
        taken: list[str] = []

        def ticket() -> Response | None:
            """Take the slot (called by `requires` after its role check): None, or the 429."""
            if taken:
                return None
            try:
                who = self.heavy.acquire(key, str(role), anonymous)
                if export:
                    try:
                        self.heavy.acquire_export()
                    except Refused:
                        self.heavy.release(key, who)
                        raise
            except Refused as err:
                log.debug("heavy read refused for %s: %s", key, err.message)
                return JSONResponse(
                    {"ok": False, "error": err.code, "message": err.message},
                    status_code=err.status,
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            taken.append(who)
            return None

        scope.setdefault("state", {})["heavy_ticket"] = ticket
        try:
            await self.app(scope, receive, send)
        finally:
            if taken:
                self.heavy.release(key, taken[0])
                if export:
                    self.heavy.release_export()

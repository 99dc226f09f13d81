"""The real all-in-one server in a thread of the test's process, for tests that hold its
heavy-read limiter themselves (`app.state.heavy`, used on the server's own event loop): a
client's resume is then refused `too_many_requests` until the test frees the slots.

Used by tests/browser/test_console_resume.py and tests/integration/test_client_resume.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import uvicorn

from scada.core.config import config_from_dict, deep_merge, default_config_text
from scada.core.errors import Refused
from scada.roles.allinone import create_app
from scada.server.serve import build_server
from scada.web.heavy import HeavyReads
from tests.conftest import OPEN_PLANT, eventually, free_port

T = TypeVar("T")


@dataclass
class Served:
    server: uvicorn.Server
    http: str
    data_dir: Path
    anonymous_slots: int
    loop: asyncio.AbstractEventLoop | None = None
    held: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ws(self) -> str:
        return "ws" + self.http.removeprefix("http") + "/ws"

    def on_loop(self, call: Callable[[], T]) -> T:
        """Run `call` on the server's event loop (where the limiter is used) and return it."""
        assert self.loop is not None

        async def run() -> T:
            return call()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    @property
    def heavy(self) -> HeavyReads:
        heavy: HeavyReads = self.server.config.loaded_app.app.state.heavy
        return heavy

    def hold_anonymous_slots(self) -> None:
        """Take every anonymous heavy-read slot (the clients are anonymous), as two other
        anonymous clients' reads would; a client's own reads may hold one for a moment: wait
        for it."""

        def take() -> bool:
            key = f"holder-{len(self.held)}|anonymous"
            try:
                self.held.append((key, self.on_loop(partial(self.heavy.acquire, key, "", True))))
            except Refused:
                return False
            return len(self.held) == self.anonymous_slots

        eventually(take, timeout=30)

    def free_slots(self) -> None:
        while self.held:
            key, who = self.held.pop()
            self.on_loop(partial(self.heavy.release, key, who))

    def journal_ids(self, after: int, upto: int) -> list[int]:
        db = sqlite3.connect(f"file:{self.data_dir / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT id FROM events WHERE id > ? AND id <= ? ORDER BY id", (after, upto)
            ).fetchall()
        finally:
            db.close()
        return [int(r[0]) for r in rows]

    def newest_journal_id(self) -> int:
        return max(self.journal_ids(0, 2**62) or [0])


@contextlib.contextmanager
def serve_in_thread(data_dir: Path) -> Iterator[Served]:
    """The default config with anonymous engineers (OPEN_PLANT), its data in `data_dir`."""
    raw = deep_merge(
        tomllib.loads(default_config_text()), {**OPEN_PLANT, "server": {"data_dir": str(data_dir)}}
    )
    config, port = config_from_dict(raw), free_port()
    server = build_server(config, port=port, log_level="warning", create_app=create_app)
    slots = config.auth.heavy_reads_per_role["anonymous"]
    served = Served(server, f"http://127.0.0.1:{port}", data_dir, slots)

    async def serve() -> None:
        served.loop = asyncio.get_running_loop()
        await server.serve()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started, 30)
        yield served
    finally:
        if served.loop is not None:
            served.free_slots()
        server.should_exit = True
        thread.join(30)

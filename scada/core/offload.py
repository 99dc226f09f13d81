"""Heavy reads in a separate process, so their Python CPU work never holds the tick's GIL.

KPIs, alarm history and export pages and audit pages are SQLite scans plus Python work
(decoding, the flood scan, CSV encoding). In a thread of the server process they compete
with the 100 ms tick for the GIL, and on two cores that showed as gaps of up to 310 ms in
`production_data` (bench --stall). Here they run in a small process pool instead: module-level
functions that take the SQLite path and parameters and return a compact result (aggregated
in the worker, never every row).

The pool is started lazily (forkserver: the children do not inherit the server's threads,
sockets or locks), its workers run at a lower OS priority (`os.nice`) so the tick wins the
CPU, a worker that dies is replaced (the pool is rebuilt and the call retried once), and the
app's lifespan shuts it down. A worker also ends by itself when the server process is gone
(SIGKILL gives the lifespan no chance): it waits on a pidfd of the server in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Final, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

WORKERS: Final = 2
NICE: Final = 10  # added to the server's niceness: under contention the tick runs first


def _start_worker(nice: int, server_pid: int) -> None:
    # Not permitted here: the work still runs, only at normal priority.
    with contextlib.suppress(OSError):
        os.nice(nice)
    threading.Thread(
        target=_exit_with_server, args=(server_pid,), name="server-watch", daemon=True
    ).start()


def _exit_with_server(server_pid: int) -> None:
    """Return never; end this worker once the server process has exited.

    A worker's parent is the fork server, not the server, so a killed server would otherwise
    leave it blocked on its call queue for good."""
    try:
        pidfd = os.pidfd_open(server_pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd (old kernel): look once a second
        while _alive(server_pid):
            time.sleep(1.0)
        os._exit(0)
    select.select([pidfd], [], [])  # readable once the process has exited
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_pid() -> int:
    """The pid of the process that runs it (tests prove the work leaves the server)."""
    return os.getpid()


class Offload:
    """One process pool for heavy reads; `run` awaits a function's result in a worker."""

    def __init__(self, workers: int = WORKERS, nice: int = NICE) -> None:
        self.workers = workers
        self.nice = nice
        self._pool: ProcessPoolExecutor | None = None
        self.restarts = 0

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            method = (
                "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            )
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context(method),
                initializer=_start_worker,
                initargs=(self.nice, os.getpid()),
            )
        return self._pool

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) in a worker process. A broken pool (a worker died) is replaced and the
        call tried once more; a second failure is raised."""
        for attempt in (1, 2):
            pool = self._executor()
            try:
                return await asyncio.wrap_future(pool.submit(fn, *args))
            except BrokenProcessPool:
                self._discard(pool)
                if attempt == 2:
                    raise
                log.warning("heavy-read worker died; starting a new one")
        raise AssertionError("unreachable")

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
            self.restarts += 1
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def started(self) -> bool:
        """Whether the pool runs (not before the first heavy read, not after `close`)."""
        return self._pool is not None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)


async def run_off(offload: Offload | None, fn: Callable[..., T], *args: object) -> T:
    """In the pool when there is one, else in a thread (a service used without an app)."""
    if offload is None:
        return await asyncio.to_thread(fn, *args)
    return await offload.run(fn, *args)

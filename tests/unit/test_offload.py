"""The heavy-read pool (scada.core.offload): real worker processes, a real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from scada.core.offload import NICE, Offload, worker_pid
from tests.conftest import ROOT, eventually


def test_work_runs_in_a_lower_priority_process_and_a_killed_worker_is_replaced() -> None:
    async def main() -> None:
        offload = Offload(workers=1)
        try:
            assert not offload.started  # started lazily, at the first heavy read
            first = await offload.run(worker_pid)
            assert first != os.getpid()
            assert offload.started and _running(first)
            own = os.getpriority(os.PRIO_PROCESS, 0)
            assert os.getpriority(os.PRIO_PROCESS, first) == min(19, own + NICE)

            os.kill(first, signal.SIGKILL)
            second = await offload.run(worker_pid)  # the broken pool is rebuilt, call retried
            assert second not in (first, os.getpid())
            assert offload.restarts == 1
            assert await offload.run(worker_pid) == second  # the new worker stays
        finally:
            await offload.close()
        assert not offload.started
        eventually(lambda: not _running(second), timeout=10)  # close ends the workers

    asyncio.run(main())


SERVER = """
import asyncio, sys
from scada.core.offload import Offload, worker_pid

async def main():
    offload = Offload(workers=1)
    print(await offload.run(worker_pid), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_workers_end_when_the_server_is_killed() -> None:
    """SIGKILL gives the server no chance to shut its pool down: the worker goes by itself."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        worker = int(server.stdout.readline())
        assert _running(worker)
    finally:
        server.kill()
        server.wait()
    eventually(lambda: not _running(worker), 10)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

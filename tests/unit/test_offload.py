"""The heavy-read pool (scada.offload): real worker processes, a real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal

from scada.offload import NICE, Offload, worker_pid


def test_work_runs_in_a_lower_priority_process_and_a_killed_worker_is_replaced() -> None:
    async def main() -> None:
        offload = Offload(workers=1)
        try:
            assert offload.pids() == []  # started lazily, at the first heavy read
            first = await offload.run(worker_pid)
            assert first != os.getpid()
            assert offload.pids() == [first]
            own = os.getpriority(os.PRIO_PROCESS, 0)
            assert os.getpriority(os.PRIO_PROCESS, first) == min(19, own + NICE)

            os.kill(first, signal.SIGKILL)
            second = await offload.run(worker_pid)  # the broken pool is rebuilt, call retried
            assert second not in (first, os.getpid())
            assert offload.restarts == 1
            assert await offload.run(worker_pid) == second  # the new worker stays
        finally:
            await offload.close()
        assert offload.pids() == []

    asyncio.run(main())

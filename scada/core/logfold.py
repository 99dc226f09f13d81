"""Repeated log events folded: one line per window, then one line with the count of the rest.

A reconnect storm or a connection flood would otherwise write a line per client; what an
operator needs is that it happens, how often, and one example. Events are told apart by
their format string, each with its own window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

WINDOW_S = 10.0


class Fold:
    """The first event of each kind per window is logged; the rest are counted, then summed up."""

    def __init__(self, logger: logging.Logger, window: float = WINDOW_S) -> None:
        self.logger = logger
        self.window = window
        self._until: dict[str, float] = {}  # per format string: folding until then
        self._folded: dict[str, tuple[int, tuple[Any, ...], int]] = {}
        self._flush_pending = False

    def event(self, msg: str, *args: Any, level: int = logging.INFO) -> None:
        if self.admit(msg, args, level):
            self.logger.log(level, msg, *args)

    def admit(self, msg: str, args: tuple[Any, ...], level: int = logging.INFO) -> bool:
        """True: log this one now. False: it was counted for the summary line."""
        now = time.monotonic()
        if now >= self._until.get(msg, 0.0):
            self._until[msg] = now + self.window
            return True
        count = self._folded.get(msg, (0, (), level))[0]
        self._folded[msg] = (count + 1, args, level)
        if not self._flush_pending:
            self._flush_pending = True
            try:
                asyncio.get_running_loop().call_later(self.window, self.flush)
            except RuntimeError:  # no running loop: the summary comes at once
                self.flush()
        return False

    def flush(self) -> None:
        """One line per kind folded since the last flush; their windows start again."""
        self._flush_pending = False
        folded, self._folded = self._folded, {}
        now = time.monotonic()
        self._until = {msg: until for msg, until in self._until.items() if until > now}
        for msg, (count, args, level) in folded.items():
            self._until[msg] = now + self.window
            if count == 1:
                self.logger.log(level, msg, *args)
            else:
                more = " (and %d more like it in the last %.0f s)"
                self.logger.log(level, msg + more, *args, count - 1, self.window)

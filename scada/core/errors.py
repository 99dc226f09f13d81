"""One exception tree for the project: callers catch ScadaError, tests match the subclass."""

from __future__ import annotations


class ScadaError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(ScadaError):
    """A configuration file is unreadable or invalid. Carries every problem found."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {reason}" for path, reason in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


class DriverError(ScadaError):
    """A device could not be reached or answered badly. The message names the device."""


class FaultError(ScadaError):
    """A simulator fault request is invalid (unknown line, kind or parameter)."""

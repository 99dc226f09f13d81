"""One exception tree for the project: callers catch ScadaError, tests match the subclass."""

from __future__ import annotations


class ScadaError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(ScadaError):
    """A configuration file is unreadable or invalid. Carries every problem found."""

    def __init__(
        self, source: str, problems: list[tuple[str, str]], partial: object = None
    ) -> None:
        self.source = source
        self.problems = problems
        # The config as far as it could be read (invalid keys left at their defaults), so
        # later checks (drivers, notifications) can still report their problems; or None.
        self.partial = partial
        lines = "\n".join(f"  {path}: {reason}" for path, reason in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


class DriverError(ScadaError):
    """A device could not be reached or answered badly. The message names the device."""


class FaultError(ScadaError):
    """A simulator fault request is invalid (unknown line, kind or parameter)."""


class Refused(ScadaError):
    """A request understood and refused: the one refusal type of every layer.

    `code` is the protocol's error code (WebSocket `reply.error`, REST `error`), `status` the
    HTTP status a REST answer carries.
    """

    def __init__(self, code: str, message: str = "", status: int = 400) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code
        self.status = status


class WriteFenced(ScadaError):
    """This process may no longer write the alarm journal (a cluster node that lost its lease,
    scada.roles.ingest.node): nothing was committed."""


class UnsupportedLibrary(ScadaError):
    """An installed library lacks an internal name one of our adapters relies on
    (scada.core.internals): refused at start, naming the library, its version and the names."""

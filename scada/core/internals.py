"""What every adapter over another library's internals shares: the check's vocabulary and
its one error.

The project's rule: a library's private names are touched in one adapter module per library,
and that module checks at start that the installed library still has every one of them. The
adapters: scada/server/uvicorn_check.py (uvicorn), drivers/sparkplug/aiomqtt_adapter.py
(aiomqtt's paho client), simulators/asyncua_adapter.py (asyncua's server) and
simulators/pymodbus_adapter.py (pymodbus' server context). Each lists what is missing and
hands the list to `refuse_missing`, which raises `UnsupportedLibrary` naming the library, its
installed version and every missing name, so nothing degrades silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import metadata

from scada.core.errors import UnsupportedLibrary

__all__ = [
    "UnsupportedLibrary",
    "describe",
    "missing_attributes",
    "missing_methods",
    "refuse_missing",
]


def describe(*distributions: str) -> str:
    """`aiomqtt 2.5.1 (paho-mqtt 2.2.0)`: the first distribution and the ones under it."""
    named = [f"{d} {_version(d)}" for d in distributions]
    return named[0] + (f" ({', '.join(named[1:])})" if len(named) > 1 else "")


def missing_attributes(obj: object, label: str, names: Iterable[str]) -> list[str]:
    """`label.name` for every name `obj` lacks."""
    return [f"{label}.{name}" for name in names if not hasattr(obj, name)]


def missing_methods(obj: object, label: str, names: Iterable[str]) -> list[str]:
    """`label.name` for every name that is not a callable of `obj`."""
    return [f"{label}.{name}" for name in names if not callable(getattr(obj, name, None))]


def refuse_missing(adapter: str, missing: Sequence[str], *distributions: str) -> None:
    """Raise UnsupportedLibrary when `missing` is not empty; `adapter` is the module's path,
    `distributions` the library first, then what it wraps."""
    if missing:
        raise UnsupportedLibrary(
            f"{describe(*distributions)} lacks what {adapter} relies on: "
            f"{', '.join(missing)}. Install the tested versions "
            f"(pip install -c requirements.lock .) or port {adapter} to this "
            f"{distributions[0]}."
        )


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "(not installed)"

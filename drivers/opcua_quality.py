"""OPC UA StatusCode → (Quality, reason): pure, no I/O, no asyncua objects needed.

OPC UA Part 4 §7.39: the top two bits of the 32-bit code are its severity: 00 Good,
01 Uncertain, 10 Bad, 11 reserved (clients must treat it as Bad). Bits 16..29 name the
condition (BadSensorFailure, UncertainLastUsableValue, ...); the low 16 bits are info bits
(overflow, limit bits) that do not change the name.
"""

from __future__ import annotations

from functools import lru_cache

from asyncua.ua.status_codes import code_to_name_doc

from scada.core.tags import Quality

SEVERITY_MASK = 0xC000_0000
CODE_MASK = 0xFFFF_0000
_SEVERITY = {
    0x0000_0000: Quality.GOOD,
    0x4000_0000: Quality.UNCERTAIN,
    0x8000_0000: Quality.BAD,
    0xC000_0000: Quality.BAD,  # reserved: treat as Bad
}
_GENERIC_NAME = {Quality.GOOD: "Good", Quality.UNCERTAIN: "Uncertain", Quality.BAD: "Bad"}


def status_name(code: int) -> str:
    """The symbolic name of a StatusCode, e.g. 'BadSensorFailure' or 'Bad (0x80AB0000)'."""
    code &= 0xFFFF_FFFF
    entry = code_to_name_doc.get(code & CODE_MASK)
    if entry is not None:
        return entry[0]
    quality = _SEVERITY[code & SEVERITY_MASK]
    return f"{_GENERIC_NAME[quality]} (0x{code:08X})"


@lru_cache(maxsize=1024)
def map_status(code: int) -> tuple[Quality, str | None]:
    """Quality of a value with this StatusCode, and why when it is not Good.

    The reason names the code (``"OPC UA BadSensorFailure (0x808C0000)"``) so an operator
    sees what the device said, not just "bad".
    """
    code &= 0xFFFF_FFFF
    quality = _SEVERITY[code & SEVERITY_MASK]
    if quality is Quality.GOOD:
        return quality, None
    return quality, f"OPC UA {status_name(code)} (0x{code:08X})"

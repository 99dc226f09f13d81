"""StatusCode → Quality mapping of the OPC UA driver (pure)."""

from __future__ import annotations

import pytest
from asyncua import ua

from drivers.opcua_quality import map_status, status_name
from scada.core.tags import Quality


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (ua.StatusCodes.Good, Quality.GOOD),
        (ua.StatusCodes.GoodLocalOverride, Quality.GOOD),
        (ua.StatusCodes.GoodClamped, Quality.GOOD),
        (ua.StatusCodes.Uncertain, Quality.UNCERTAIN),
        (ua.StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
        (ua.StatusCodes.UncertainSensorNotAccurate, Quality.UNCERTAIN),
        (ua.StatusCodes.Bad, Quality.BAD),
        (ua.StatusCodes.BadSensorFailure, Quality.BAD),
        (ua.StatusCodes.BadNoCommunication, Quality.BAD),
        (ua.StatusCodes.BadNodeIdUnknown, Quality.BAD),
        (ua.StatusCodes.BadWaitingForInitialData, Quality.BAD),
    ],
)
def test_severity_bits_decide_quality(code: int, quality: Quality) -> None:
    assert map_status(code)[0] is quality


def test_good_has_no_reason() -> None:
    assert map_status(ua.StatusCodes.Good) == (Quality.GOOD, None)
    assert map_status(ua.StatusCodes.GoodLocalOverride) == (Quality.GOOD, None)


def test_reason_names_the_code() -> None:
    quality, reason = map_status(ua.StatusCodes.BadSensorFailure)
    assert quality is Quality.BAD
    assert reason == "OPC UA BadSensorFailure (0x808C0000)"
    _, reason = map_status(ua.StatusCodes.UncertainLastUsableValue)
    assert reason is not None and "UncertainLastUsableValue" in reason


def test_info_bits_keep_the_name() -> None:
    # Low 16 bits carry info (limit bits, overflow); they do not change the condition.
    code = ua.StatusCodes.UncertainSensorNotAccurate | 0x0000_0100
    quality, reason = map_status(code)
    assert quality is Quality.UNCERTAIN
    assert reason is not None and "UncertainSensorNotAccurate" in reason
    assert f"0x{code:08X}" in reason


def test_reserved_severity_is_bad() -> None:
    quality, reason = map_status(0xC012_0000)
    assert quality is Quality.BAD
    assert reason is not None and "0xC0120000" in reason


def test_unknown_codes_fall_back_to_severity() -> None:
    assert status_name(0x80FF_0000) == "Bad (0x80FF0000)"
    assert status_name(0x40FE_0000) == "Uncertain (0x40FE0000)"
    assert map_status(0x80FF_0000)[0] is Quality.BAD
    assert map_status(0x00FE_0000)[0] is Quality.GOOD


def test_codes_above_32_bits_are_masked() -> None:
    assert map_status(ua.StatusCodes.BadSensorFailure | (1 << 32))[0] is Quality.BAD

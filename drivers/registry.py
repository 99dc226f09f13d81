"""Drivers by name: the built-in ones are imported only when a config names them.

So a simulator-only plant never imports asyncua or pymodbus, and a driver whose library is
missing or broken is reported once, as a config problem at the device's `driver` key, instead of
failing every start with a traceback.
"""

from __future__ import annotations

import importlib

from pydantic import ValidationError

from drivers.base import REGISTERED, Driver, DriverContext
from scada.core.config import DeviceConfig, PlantConfig, format_path
from scada.core.errors import ConfigError

# name -> module that registers it (with @drivers.base.register) when imported
BUILTIN = {
    "sim": "drivers.sim",
    "modbus": "drivers.modbus",
    "opcua": "drivers.opcua",
    "sparkplug": "drivers.sparkplug.driver",
}


class DriverUnavailable(ConfigError):
    """A known driver whose module or library failed to import."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"driver {name}", [("driver", reason)])
        self.reason = reason


def known() -> list[str]:
    return sorted({*BUILTIN, *REGISTERED})


def load(name: str) -> type[Driver] | None:
    """The driver class, None for an unknown name; DriverUnavailable if it cannot import."""
    if name not in REGISTERED and name in BUILTIN:
        try:
            importlib.import_module(BUILTIN[name])
        except ImportError as err:
            raise DriverUnavailable(name, f"driver {name} is unavailable: {err}") from err
    return REGISTERED.get(name)


def device_problems(config: PlantConfig) -> list[tuple[str, str]]:
    """Validate every device's driver name and settings; key paths as in check-config."""
    problems: list[tuple[str, str]] = []
    for i, device in enumerate(config.devices):
        try:
            cls = load(device.driver)
        except DriverUnavailable as err:
            problems.append((f"devices[{i}].driver", err.reason))
            continue
        if cls is None:
            problems.append(
                (f"devices[{i}].driver", f"unknown driver; one of {', '.join(known())}")
            )
            continue
        try:
            cls.settings_model.model_validate(device.settings)
        except ValidationError as err:
            for e in err.errors():
                path = format_path(("devices", i, "settings", *e["loc"]))
                msg = "unknown key" if e["type"] == "extra_forbidden" else str(e["msg"])
                problems.append((path, msg))
            continue
        problems.extend(cls.check(device, config, f"devices[{i}]"))
    return problems


def create_driver(device: DeviceConfig, context: DriverContext) -> Driver:
    cls = load(device.driver)
    if cls is None:
        raise ConfigError(device.name, [("driver", f"unknown driver {device.driver!r}")])
    settings = cls.settings_model.model_validate(device.settings)
    return cls(device, settings, context)

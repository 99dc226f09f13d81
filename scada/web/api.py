"""The plant's REST resources, one module each: lines, simulator faults, config reload, health."""

from __future__ import annotations

from starlette.routing import BaseRoute

from scada.web import configapi, health, lines, simfaults

routes: list[BaseRoute] = [*lines.routes, *simfaults.routes, *configapi.routes, *health.routes]

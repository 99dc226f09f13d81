"""/api/simulator/faults: list, inject and clear faults of the simulated plant (engineers)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scada.auth.identify import audit_request, audited, requires
from scada.core.errors import FaultError
from scada.web.responses import OrjsonResponse, problem, runtime_of
from simulators.faults import parse_fault

MAX_FAULT_BODY = 4096  # a fault request is a handful of keys


def _plant(request: Request) -> Any:
    return runtime_of(request).plant


async def list_faults(request: Request) -> Response:
    plant = _plant(request)
    if plant is None:
        return problem(404, "no_simulator", "this plant has no simulated device")
    return OrjsonResponse({"faults": [f.describe(plant.time) for f in plant.faults.active()]})


async def inject_fault(request: Request) -> Response:
    plant = _plant(request)
    if plant is None:
        return problem(404, "no_simulator", "this plant has no simulated device")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FAULT_BODY:
            return problem(
                413, "body_too_large", f"a fault request is at most {MAX_FAULT_BODY} bytes"
            )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        return problem(400, "invalid_json", f"body is not JSON: {err}")
    try:
        fault = plant.inject(parse_fault(body))
    except FaultError as err:
        return problem(400, "invalid_fault", str(err))
    await audit_request(
        request,
        "fault_inject",
        f"line {fault.request.line}: {fault.request.kind}",
        "ok",
        f"fault {fault.id}",
    )
    return OrjsonResponse({"id": fault.id, **fault.describe(plant.time)}, status_code=201)


async def clear_fault(request: Request) -> Response:
    plant = _plant(request)
    if plant is None:
        return problem(404, "no_simulator", "this plant has no simulated device")
    try:
        fault = plant.clear(int(request.path_params["fault_id"]))
    except (FaultError, ValueError) as err:
        return problem(404, "unknown_fault", str(err))
    await audit_request(request, "fault_clear", f"fault {fault.id}", "ok")
    return OrjsonResponse({"id": fault.id, "cleared": True})


routes = [
    Route("/api/simulator/faults", requires("viewer", list_faults), methods=["GET"]),
    Route(
        "/api/simulator/faults",
        requires("engineer", audited("fault_inject", inject_fault), action="fault_inject"),
        methods=["POST"],
    ),
    Route(
        "/api/simulator/faults/{fault_id}",
        requires("engineer", audited("fault_clear", clear_fault), action="fault_clear"),
        methods=["DELETE"],
    ),
]

"""/api/simulator/faults: list, inject and clear faults of the simulated plant (engineers).

The plant is this process's own simulator (the `sim` driver), or, where the config names
`[simulator] control_url`, a simulator process the devices poll (`scada simulate modbus
--control-port`, as `scada cluster` runs it): then each request is forwarded to its fault
port (simulators.control) and its answer returned, so the faults stay in the plant whichever
ingest node is active.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scada.auth.identify import audit_request, audited, requires
from scada.core.errors import FaultError
from scada.plant import faultstore
from scada.web.responses import OrjsonResponse, problem, runtime_of
from simulators.faults import parse_fault

log = logging.getLogger(__name__)

MAX_FAULT_BODY = 4096  # a fault request is a handful of keys
FORWARD_TIMEOUT = 5.0  # seconds: the simulator answers from memory


def _plant(request: Request) -> Any:
    return runtime_of(request).plant


def _keep(request: Request, plant: Any) -> None:
    """The active faults to the data dir, so a restart injects them again."""
    faultstore.save(faultstore.fault_file(runtime_of(request).config.server.data_dir), plant)


def _control(request: Request) -> tuple[str, str] | None:
    """(fault port URL, token) when the plant is a simulator process, else None."""
    sim = runtime_of(request).config.simulator
    if sim.control_url is None:
        return None
    return sim.control_url.rstrip("/") + "/faults", os.environ.get(sim.control_token_env, "")


async def _forward(
    control: tuple[str, str], method: str, path: str = "", body: bytes | None = None
) -> tuple[int, Any] | Response:
    """The simulator's (status, JSON body), or a 502/503 problem saying why not."""
    url, token = control
    try:
        async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT) as client:
            answer = await client.request(
                method,
                url + path,
                content=body,
                headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            )
        return answer.status_code, answer.json()
    except httpx.HTTPError as err:
        log.warning("simulator fault port %s unreachable: %s", url, err)
        return problem(503, "simulator_unreachable", f"the simulator at {url} did not answer")
    except ValueError:
        return problem(502, "simulator_bad_answer", f"the simulator at {url} answered no JSON")


async def list_faults(request: Request) -> Response:
    control = _control(request)
    if control is not None:
        got = await _forward(control, "GET")
        return got if isinstance(got, Response) else OrjsonResponse(got[1], status_code=got[0])
    plant = _plant(request)
    if plant is None:
        return problem(404, "no_simulator", "this plant has no simulated device")
    return OrjsonResponse({"faults": [f.describe(plant.time) for f in plant.faults.active()]})


async def inject_fault(request: Request) -> Response:
    control = _control(request)
    plant = _plant(request)
    if plant is None and control is None:
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
    if control is not None:
        return await _inject_remote(request, control, body)
    try:
        fault = plant.inject(parse_fault(body))
    except FaultError as err:
        return problem(400, "invalid_fault", str(err))
    _keep(request, plant)
    await audit_request(
        request,
        "fault_inject",
        f"line {fault.request.line}: {fault.request.kind}",
        "ok",
        f"fault {fault.id}",
    )
    return OrjsonResponse({"id": fault.id, **fault.describe(plant.time)}, status_code=201)


async def _inject_remote(request: Request, control: tuple[str, str], body: Any) -> Response:
    try:
        request_ = parse_fault(body)  # checked here too: a bad request is not forwarded
    except FaultError as err:
        return problem(400, "invalid_fault", str(err))
    got = await _forward(control, "POST", body=orjson.dumps(body))
    if isinstance(got, Response):
        return got
    status, answer = got
    if status == 201:
        await audit_request(
            request,
            "fault_inject",
            f"line {request_.line}: {request_.kind}",
            "ok",
            f"fault {answer.get('id')}",
        )
    return OrjsonResponse(answer, status_code=status)


async def clear_fault(request: Request) -> Response:
    control = _control(request)
    if control is not None:
        try:
            fault_id = int(request.path_params["fault_id"])
        except ValueError:
            return problem(404, "unknown_fault", "a fault id is a number")
        got = await _forward(control, "DELETE", f"/{fault_id}")
        if isinstance(got, Response):
            return got
        if got[0] == 200:
            await audit_request(request, "fault_clear", f"fault {fault_id}", "ok")
        return OrjsonResponse(got[1], status_code=got[0])
    plant = _plant(request)
    if plant is None:
        return problem(404, "no_simulator", "this plant has no simulated device")
    try:
        fault = plant.clear(int(request.path_params["fault_id"]))
    except (FaultError, ValueError) as err:
        return problem(404, "unknown_fault", str(err))
    _keep(request, plant)
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

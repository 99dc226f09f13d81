"""A protocol simulator's fault port: the simulated plant's faults over HTTP, for a cluster.

In a cluster the plant is a device (docs/cluster.md, "The plant in `scada cluster`"): the
simulator runs as its own process (`scada simulate modbus --control-port N`) and both ingest
nodes poll it through the real driver, so its faults must live in that process, not in
whichever node is active. An ingest node whose config names `[simulator] control_url`
forwards `/api/simulator/faults` here (`scada.web.simfaults`); the answers are the same JSON
as that route's.

    GET    /faults          {"faults": [...]}
    POST   /faults          a fault request (simulators.faults.FaultRequest) -> 201 {"id", ...}
    DELETE /faults/{id}     {"id", "cleared": true}

Every request carries `Authorization: Bearer <token>` (the token from the environment
variable the process was started with, compared in constant time): whoever reaches the port
must not be able to upset the plant. Loopback only unless told otherwise.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scada.core.errors import FaultError
from simulators.faults import parse_fault
from simulators.simulation import SimulatedPlant

log = logging.getLogger(__name__)

TOKEN_ENV = "SCADA_SIMULATOR_TOKEN"
MAX_BODY = 4096  # a fault request is a handful of keys


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _problem(status: int, code: str, message: str) -> Response:
    return _json({"ok": False, "error": code, "message": message}, status)


def control_app(plant: SimulatedPlant, token: str) -> Starlette:
    """The fault routes over `plant`, each refusing a request without the bearer token."""
    if not token:
        raise ValueError("the simulator's control port needs a token")
    expected = f"Bearer {token}".encode()

    def allowed(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    async def list_faults(request: Request) -> Response:
        if not allowed(request):
            return _problem(401, "unauthorized", "a bearer token is required")
        return _json({"faults": [f.describe(plant.time) for f in plant.faults.active()]})

    async def inject(request: Request) -> Response:
        if not allowed(request):
            return _problem(401, "unauthorized", "a bearer token is required")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _problem(413, "body_too_large", f"a fault request is at most {MAX_BODY} bytes")
        try:
            fault = plant.inject(parse_fault(orjson.loads(raw)))
        except orjson.JSONDecodeError as err:
            return _problem(400, "invalid_json", f"body is not JSON: {err}")
        except FaultError as err:
            return _problem(400, "invalid_fault", str(err))
        log.info(
            "simulator fault %d injected: %s on line %s",
            fault.id,
            fault.request.kind,
            fault.request.line,
        )
        return _json({"id": fault.id, **fault.describe(plant.time)}, 201)

    async def clear(request: Request) -> Response:
        if not allowed(request):
            return _problem(401, "unauthorized", "a bearer token is required")
        try:
            fault = plant.clear(int(request.path_params["fault_id"]))
        except (FaultError, ValueError) as err:
            return _problem(404, "unknown_fault", str(err))
        log.info("simulator fault %d cleared", fault.id)
        return _json({"id": fault.id, "cleared": True})

    return Starlette(
        routes=[
            Route("/faults", list_faults, methods=["GET"]),
            Route("/faults", inject, methods=["POST"]),
            Route("/faults/{fault_id}", clear, methods=["DELETE"]),
        ]
    )


async def serve_control(plant: SimulatedPlant, token: str, *, host: str, port: int) -> None:
    """Serve `control_app` until cancelled."""
    config = uvicorn.Config(
        control_app(plant, token), host=host, port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    log.info("simulator fault port listening on http://%s:%d/faults", host, port)
    await server.serve()

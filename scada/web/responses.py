"""What every REST resource shares: the JSON response, the problem body, the plant of a
request, and query-parameter checks that name the parameter."""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scada.plant.runtime import Runtime


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def problem(status: int, error: str, message: str) -> OrjsonResponse:
    return OrjsonResponse({"ok": False, "error": error, "message": message}, status_code=status)


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def line_or_404(request: Request) -> str | Response:
    line_id = request.path_params["line_id"]
    if line_id not in runtime_of(request).schema.line_ids:
        return problem(404, "unknown_line", f"no line with id {line_id!r}")
    return str(line_id)


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}")
    return value


def clean_column(column: Any, decimals: int) -> list[float | None]:
    return [None if math.isnan(v) else round(v, decimals) for v in column.tolist()]

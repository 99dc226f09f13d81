"""No heavy route builds its body on the event loop (issue #20): every HTTP route the heavy-read
limiter guards (scada.web.heavy.HEAVY_PATHS) gets its body from a worker (the offload process,
the historian's reader threads or a streamed page encoder), never from an encoder called in
the handler itself. A new heavy route that serialises on the loop fails here."""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import JSONResponse
from starlette.routing import Route

from scada.core.config import config_from_dict, default_config_text
from scada.roles.allinone import create_app
from scada.web.heavy import HEAVY_PATHS

# What builds a body from data. A fixed body (literals, f-strings, str()) is fine: an error.
ENCODERS = {"JSONResponse", "OrjsonResponse", "dumps", "to_csv", "writer", "_json", "DictWriter"}


def unwrap(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    while hasattr(endpoint, "__wrapped__"):
        endpoint = endpoint.__wrapped__
    return endpoint


def fixed(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant | ast.JoinedStr):
        return True
    if isinstance(node, ast.Call):
        return getattr(node.func, "id", "") == "str"
    if isinstance(node, ast.Dict):
        return all(k is None or fixed(k) for k in node.keys) and all(map(fixed, node.values))
    return False


def encoder_calls(fn: Callable[..., Any]) -> Iterator[str]:
    """Encoder calls in `fn`'s own body (nested functions are work handed to a worker)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    top = tree.body[0]
    assert isinstance(top, ast.AsyncFunctionDef | ast.FunctionDef)
    nested = {
        id(n)
        for node in ast.walk(top)
        if node is not top and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for n in ast.walk(node)
    }
    for node in ast.walk(top):
        if id(node) in nested or not isinstance(node, ast.Call):
            continue
        name = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        if name in ENCODERS and not all(
            map(fixed, [*node.args, *(k.value for k in node.keywords)])
        ):
            yield f"{fn.__qualname__}: {ast.unparse(node)[:80]}"


def heavy_routes(tmp_path: Path) -> list[Route]:
    import tomllib

    raw = tomllib.loads(default_config_text())
    raw["server"]["data_dir"] = str(tmp_path / "data")
    app = create_app(config_from_dict(raw))
    return [r for r in app.routes if isinstance(r, Route) and HEAVY_PATHS.match(r.path)]


def test_every_heavy_route_builds_its_body_off_the_loop(tmp_path: Path) -> None:
    routes = heavy_routes(tmp_path)
    assert {r.path for r in routes} >= {
        "/api/history",
        "/api/alarms/history",
        "/api/alarms/kpi",
        "/api/alarms/export",
        "/api/audit",
        "/api/lines/{line_id}/history",
    }
    found = [call for r in routes for call in encoder_calls(unwrap(r.endpoint))]
    assert found == []


def test_the_check_sees_a_body_built_on_the_loop() -> None:
    async def on_the_loop(request: Any) -> Any:
        rows = await request.json()
        return JSONResponse({"ok": True}), JSONResponse(rows)

    assert [c.split(":")[0] for c in encoder_calls(on_the_loop)] == [
        "test_the_check_sees_a_body_built_on_the_loop.<locals>.on_the_loop"
    ]


@pytest.mark.parametrize("path", ["/api/alarms", "/api/lines"])
def test_light_routes_are_not_heavy(path: str) -> None:
    assert not HEAVY_PATHS.match(path)


@pytest.mark.parametrize(
    "url",
    [
        "/api/history?tags=line1.diameter,line2.diameter&from=-10m&format=csv",
        "/api/history?tags=line1.diameter&from=-10m&points=5",
        "/api/lines/1/history?seconds=600",
    ],
)
def test_history_is_read_in_the_worker_process_not_in_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """A 32-tag, 1 h history read is 200-400 ms of Python: in the server's threads it held
    the GIL the tick needs. Every read of the history file is broken in this process, and
    the answer still comes: it was read in the worker process (which imports its own)."""
    import tomllib

    from starlette.testclient import TestClient

    import scada.historian.reading as reading

    def not_here(*args: Any) -> Any:
        raise AssertionError("a history read ran in the server process")

    for name in ("answer", "run", "samples", "buckets"):
        monkeypatch.setattr(reading, name, not_here)
    raw = tomllib.loads(default_config_text())
    raw["server"]["data_dir"] = str(tmp_path / "data")
    with TestClient(create_app(config_from_dict(raw))) as client:
        app = client.app
        assert app.state.offload is not None  # type: ignore[attr-defined]
        r = client.get(url)
    assert r.status_code == 200, r.text
    if "format=csv" in url:
        assert r.text.splitlines()[0].endswith("line2.diameter.quality")
    elif "points" in url:
        assert r.json()["series"][0]["tag"] == "line1.diameter"
    else:
        assert "diameter" in r.json()["series"]

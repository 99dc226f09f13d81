"""The layout is the architecture (docs/architecture.md): every layer imports only downward,
no module imports itself back through another, and no two modules share a name for two
different concepts. Each layer is imported whole in a fresh interpreter, so a stray import
anywhere in a chain shows up here."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("scada", "drivers", "simulators")
INGEST = {"plant", "alarms", "historian", "notify", "sparkplug"}
BELOW_AUTH = {"core", "drivers", "simulators", "bus", "fanout", *INGEST}
# What each layer may load (its own modules always). Bottom up, as in docs/architecture.md.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "drivers": {"core", "simulators"},  # the sim driver builds the simulated plant
    "simulators": {"core", "drivers"},  # the protocol simulators share the drivers' codecs
    "bus": {"core"},
    **{layer: {"core", "drivers", "simulators", "bus", *INGEST} for layer in INGEST},
    "fanout": {"core", "bus"},
    "auth": BELOW_AUTH,
    "web": BELOW_AUTH | {"auth"},
    "server": BELOW_AUTH | {"auth", "web"},
    "roles": BELOW_AUTH | {"auth", "web", "server"},
    "tools": BELOW_AUTH | {"auth", "web", "server", "roles"},
}
# Names two modules may share: the same concept in two or three shells.
SAME_CONCEPT = {
    "__init__.py",
    "__main__.py",
    "app.py",  # a role's ASGI application: scada.roles.ingest.app, scada.roles.gateway.app
    "status.py",  # a role's health, readiness and metrics page
    "service.py",  # an ingest subsystem's long-running object: alarms, historian, notify
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] != "scada" else parts[1]


def modules_of(layer: str) -> list[str]:
    base = ROOT / (layer if layer in ("drivers", "simulators") else f"scada/{layer}")
    names = []
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {PACKAGES!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


def test_scada_holds_packages_only() -> None:
    loose = sorted(p.name for p in (ROOT / "scada").glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]
    layers = {p.name for p in (ROOT / "scada").iterdir() if (p / "__init__.py").exists()}
    assert layers == set(ALLOWED) - {"drivers", "simulators"}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_downward(layer: str) -> None:
    loaded = loaded_after_importing(modules_of(layer))
    outside = {
        m
        for m in loaded
        if m != "scada" and layer_of(m) != layer and layer_of(m) not in ALLOWED[layer]
    }
    assert outside == set(), f"{layer} loads {sorted(outside)}"


def _imports(path: Path, module: str, known: set[str]) -> Iterator[str]:
    """Every project module `module` imports at run time (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in known:
                    yield sub
                elif node.module in known:
                    yield node.module


def import_graph() -> dict[str, set[str]]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    known = set(files)
    return {m: set(_imports(p, m, known)) - {m} for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_two_modules_share_a_name_for_two_concepts() -> None:
    seen: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    shared = {n: sorted(p) for n, p in seen.items() if len(p) > 1 and n not in SAME_CONCEPT}
    assert shared == {}

"""The declared dependencies are true: every imported package declared, floors pinned for the
floors job, and the lock inside the declared ranges."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
TEST = [Requirement(r) for r in PROJECT["optional-dependencies"]["test"]]
# Optional features a user installs on purpose (`pip install 'scada-stream[bench]'`).
OPTIONAL = [Requirement(r) for r in PROJECT["optional-dependencies"]["bench"]]


def pins(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def floor(req: Requirement) -> str | None:
    return next((s.version for s in req.specifier if s.operator == ">="), None)


def imported_top_level(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_every_imported_package_is_declared() -> None:
    ours = {"scada", "drivers", "simulators", "tests", "__future__"}
    dists = packages_distributions()
    declared = {canonicalize_name(r.name) for r in RUNTIME + OPTIONAL}
    missing = []
    for package in ("scada", "drivers", "simulators"):
        for name in imported_top_level(package) - ours - set(sys.stdlib_module_names):
            owners = {canonicalize_name(d) for d in dists.get(name, [name])}
            if not owners & declared:
                missing.append(f"{package} imports {name} ({', '.join(sorted(owners))})")
    assert missing == []


def test_every_dependency_has_a_floor_and_the_floors_file_pins_it() -> None:
    floors = pins("requirements-floors.txt")
    for req in RUNTIME:
        assert floor(req) is not None, f"{req.name} has no floor"
        assert floors.get(canonicalize_name(req.name)) == floor(req), req.name


def test_libraries_whose_internals_we_touch_have_an_upper_bound() -> None:
    bounded = {
        canonicalize_name(r.name) for r in RUNTIME if any(s.operator == "<" for s in r.specifier)
    }
    assert {"uvicorn", "asyncua", "pymodbus"} <= bounded


def test_the_lock_pins_every_dependency_inside_its_range() -> None:
    lock = pins("requirements.lock")
    for req in RUNTIME + TEST:
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = lock.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} vs {req}"

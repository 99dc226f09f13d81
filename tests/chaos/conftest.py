"""The chaos suite runs only when asked for (`make test-chaos`, i.e. `pytest -m chaos
tests/chaos`): a whole cluster and eleven faults are minutes of two busy cores, not part of
`make test`."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = config.getoption("markexpr", "") or ""
    if "chaos" in selected and "not chaos" not in selected:
        return
    skip = pytest.mark.skip(reason="the chaos suite runs with -m chaos (make test-chaos)")
    for item in items:
        if "chaos" in item.keywords:
            item.add_marker(skip)

"""The numpy plant model, its faults and scenarios, without a clock."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scada.core.config import load_config
from scada.core.errors import ConfigError, FaultError
from simulators.faults import parse_fault
from simulators.plant import COL, FAULT, RUNNING, STOPPED
from simulators.scenario import parse_scenario
from simulators.simulation import SimulatedPlant

LINES = load_config().lines
IDS = [line.id for line in LINES]


def run(plant: SimulatedPlant, seconds: float) -> None:
    plant.advance(seconds)


def test_same_seed_same_plant_and_other_seed_differs() -> None:
    a, b, c = (
        SimulatedPlant(LINES, seed=7),
        SimulatedPlant(LINES, seed=7),
        SimulatedPlant(LINES, seed=8),
    )
    for p in (a, b, c):
        run(p, 5)
    assert np.array_equal(a.sample()[0], b.sample()[0])
    assert not np.array_equal(a.sample()[0], c.sample()[0])


def test_steady_plant_sits_at_its_setpoints() -> None:
    plant = SimulatedPlant(LINES)
    run(plant, 60)
    values, valid = plant.sample()
    assert valid.all()
    assert values[:, COL["body_temperature_1"]] == pytest.approx(180.0, abs=2)
    assert values[:, COL["state"]].tolist() == [RUNNING] * 8
    assert values[0, COL["diameter"]] == pytest.approx(12.0, abs=0.15)
    assert values[4, COL["diameter"]] == pytest.approx(16.0, abs=0.2)
    assert values[6, COL["line_speed"]] == pytest.approx(35.0, abs=0.5)


def test_heater_failure_cools_the_zone_and_trips_the_line() -> None:
    plant = SimulatedPlant(LINES)
    plant.inject(parse_fault({"line": "3", "kind": "heater_failure", "zone": 2}))
    run(plant, 60)
    values, _ = plant.sample()
    assert values[2, COL["body_temperature_2"]] < 185 - 30
    assert values[2, COL["body_temperature_1"]] == pytest.approx(180, abs=2)
    assert values[2, COL["state"]] == FAULT
    assert values[0, COL["state"]] == RUNNING


def test_diameter_drift_ramps_and_clears() -> None:
    plant = SimulatedPlant(LINES)
    fault = plant.inject(parse_fault({"line": "1", "kind": "diameter_drift", "rate": 0.01}))
    run(plant, 30)
    assert plant.sample()[0][0, COL["diameter"]] == pytest.approx(12.3, abs=0.1)
    plant.clear(fault.id)
    run(plant, 1)
    assert plant.sample()[0][0, COL["diameter"]] == pytest.approx(12.0, abs=0.1)


def test_stuck_sensor_repeats_one_value() -> None:
    plant = SimulatedPlant(LINES)
    plant.inject(parse_fault({"line": "2", "kind": "stuck_sensor", "tag": "melt_pressure"}))
    seen = set()
    for _ in range(20):
        run(plant, 0.1)
        seen.add(plant.sample()[0][1, COL["melt_pressure"]])
    assert len(seen) == 1


def test_noise_burst_widens_the_spread() -> None:
    quiet, noisy = SimulatedPlant(LINES, seed=1), SimulatedPlant(LINES, seed=1)
    noisy.inject(parse_fault({"line": "1", "kind": "noise_burst", "gain": 20}))

    def spread(p: SimulatedPlant) -> float:
        vals = []
        for _ in range(100):
            run(p, 0.1)
            vals.append(p.sample()[0][0, COL["diameter"]])
        return float(np.std(vals))

    assert spread(noisy) > 5 * spread(quiet)


def test_line_stop_then_restart_through_starting() -> None:
    plant = SimulatedPlant(LINES)
    fault = plant.inject(parse_fault({"line": "5", "kind": "line_stop"}))
    run(plant, 20)
    values, _ = plant.sample()
    assert values[4, COL["state"]] == STOPPED and values[4, COL["line_speed"]] < 0.5
    plant.clear(fault.id)
    run(plant, 1)
    assert plant.sample()[0][4, COL["state"]] == 1  # starting
    run(plant, 30)
    assert plant.sample()[0][4, COL["state"]] == RUNNING


def test_sensor_dropout_marks_values_missing_at_once() -> None:
    plant = SimulatedPlant(LINES)
    plant.inject(parse_fault({"line": "6", "kind": "sensor_dropout", "tag": "*"}))
    _, valid = plant.sample()
    assert not valid[5].any() and valid[4].all()


def test_fault_duration_ends_it() -> None:
    plant = SimulatedPlant(LINES)
    plant.inject(parse_fault({"line": "1", "kind": "line_stop", "duration": 2}))
    run(plant, 1)
    assert len(plant.faults.active()) == 1
    run(plant, 1.5)
    assert plant.faults.active() == []


def test_fault_validation_names_the_problem() -> None:
    with pytest.raises(FaultError, match="zone does not apply"):
        parse_fault({"line": "1", "kind": "diameter_drift", "zone": 1})
    with pytest.raises(FaultError, match="needs the line"):
        parse_fault({"kind": "heater_failure"})
    with pytest.raises(FaultError, match="kind"):
        parse_fault({"line": "1", "kind": "flood"})
    plant = SimulatedPlant(LINES)
    with pytest.raises(FaultError, match="no line"):
        plant.inject(parse_fault({"line": "42", "kind": "line_stop"}))


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"line": "1", "kind": "server_unresponsive"}, "whole source: give no line"),
        ({"line": "1", "kind": "connection_drop"}, "whole source: give no line"),
        ({"line": "1", "kind": "heater_failure"}, "heater_failure needs zone"),
        ({"line": "1", "kind": "diameter_drift", "rate": 5.0}, "rate: Input should be less"),
        ({"line": "1", "kind": "diameter_drift", "rate": float("inf")}, "rate: Input should be"),
        ({"line": "1", "kind": "noise_burst", "tag": "diameter", "gain": 1e9}, "gain: Input"),
        ({"line": "1", "kind": "line_stop", "duration": 1e12}, "duration: Input should be less"),
        ({"line": "1", "kind": "step", "tag": "diameter"}, "step needs offset"),
        ({"line": "1", "kind": "step", "tag": "*", "offset": 1}, "step needs one analog tag"),
        ({"line": "x" * 100, "kind": "line_stop"}, "line: String should have at most"),
    ],
)
def test_fault_parameters_are_required_and_bounded(request_: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultError, match=message):
        parse_fault(request_)


def test_step_fault_moves_the_value_at_once_and_back_when_cleared() -> None:
    plant = SimulatedPlant(LINES)
    run(plant, 5)
    col = COL["diameter"]
    before = plant.sample()[0][0, col]
    fault = plant.inject(
        parse_fault({"line": "1", "kind": "step", "tag": "diameter", "offset": 2.0})
    )
    run(plant, 0.1)  # the next sample, no drift physics
    assert plant.sample()[0][0, col] == pytest.approx(before + 2.0, abs=0.05)
    assert plant.sample()[0][1, col] == pytest.approx(before, abs=0.05)  # other lines untouched
    plant.clear(fault.id)
    run(plant, 0.1)
    assert plant.sample()[0][0, col] == pytest.approx(before, abs=0.05)


def test_scenario_schedules_faults_over_simulated_time() -> None:
    raw: dict[str, object] = {
        "events": [
            {"at": 5, "line": "2", "kind": "line_stop", "duration": 5},
            {"at": 1, "line": "1", "kind": "sensor_dropout", "tag": "diameter"},
        ]
    }
    plant = SimulatedPlant(LINES, scenario=parse_scenario(raw, IDS, source="t"))
    run(plant, 2)
    assert [f.request.kind for f in plant.faults.active()] == ["sensor_dropout"]
    run(plant, 4)
    assert sorted(f.request.kind for f in plant.faults.active()) == ["line_stop", "sensor_dropout"]
    run(plant, 6)
    assert [f.request.kind for f in plant.faults.active()] == ["sensor_dropout"]


def test_bad_scenario_lists_problems() -> None:
    raw = {
        "events": [
            {"line": "1", "kind": "line_stop"},
            {"at": 1, "line": "99", "kind": "line_stop"},
        ],
        "extra": 1,
    }
    with pytest.raises(ConfigError) as info:
        parse_scenario(raw, IDS, source="s.toml")
    found = dict(info.value.problems)
    assert "events[0].at" in found and "events[1].line" in found and found["extra"] == "unknown key"

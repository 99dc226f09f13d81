"""Numpy model of extrusion lines, all stepped at once.

Sans-I/O: `step(dt)` advances simulated time by an explicit `dt`, and the only randomness comes
from the seeded generator, so a test replays the same plant bit for bit without a clock.

Physics, kept simple but causal so faults show up where an engineer expects them:
- each heating zone follows its setpoint through a first-order lag (heater on) or cools toward
  ambient (heater failed);
- haul-off speed follows its setpoint when running, ramps during start-up, falls to 0 stopped;
- diameter grows when the haul-off runs slower than set and when the melt is hotter (lower
  viscosity swells more), plus a slow mean-reverting drift and gauge noise;
- motor current and melt pressure rise with speed and with a colder (more viscous) melt;
- a line trips to `fault` when a barrel zone falls 30 °C under its setpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scada.core.config import LineConfig

ZONES = 4
# Simulator outputs, in column order. Configs map their tags onto these names.
SIM_TAGS: tuple[str, ...] = (
    "body_temperature_1",
    "body_temperature_2",
    "body_temperature_3",
    "body_temperature_4",
    "die_temperature",
    "diameter",
    "line_speed",
    "motor_current",
    "melt_pressure",
    "state",
)
COL = {name: i for i, name in enumerate(SIM_TAGS)}
STATES = ("stopped", "starting", "running", "fault")
STOPPED, STARTING, RUNNING, FAULT = range(4)

AMBIENT_C = 25.0
HEAT_TAU_S = 20.0  # zone lag with heater on
COOL_TAU_S = 120.0  # zone cooling with heater off
SPEED_TAU_S = 3.0
START_UP_S = 10.0
FAULT_UNDERTEMP_C = 30.0


@dataclass(frozen=True)
class LineParams:
    """Setpoints of one line, read from its tag config (defaults where a tag has none)."""

    zone_setpoints: tuple[float, ...] = (180.0, 185.0, 190.0, 195.0)
    die_setpoint: float = 200.0
    diameter_setpoint: float = 12.0
    speed_setpoint: float = 25.0

    @classmethod
    def from_line(cls, line: LineConfig) -> LineParams:
        def sp(tag: str, default: float) -> float:
            cfg = line.tags.get(tag)
            return cfg.setpoint if cfg is not None and cfg.setpoint is not None else default

        base = cls()
        zones = tuple(sp(f"body_temperature_{z + 1}", base.zone_setpoints[z]) for z in range(ZONES))
        return cls(
            zone_setpoints=zones,
            die_setpoint=sp("die_temperature", base.die_setpoint),
            diameter_setpoint=sp("diameter", base.diameter_setpoint),
            speed_setpoint=sp("line_speed", base.speed_setpoint),
        )


@dataclass
class Overrides:
    """What active faults impose on the model; rebuilt by the fault set every step."""

    heater_off: np.ndarray  # [L, ZONES] bool
    diameter_offset: np.ndarray  # [L] mm
    noise_gain: np.ndarray  # [L, T] multiplier of the gauge noise
    stuck: np.ndarray  # [L, T] bool: hold the value seen at injection
    dropout: np.ndarray  # [L, T] bool: no value (quality bad)
    stopped: np.ndarray  # [L] bool: line_stop
    silent: np.ndarray  # [L] bool: source_stop, the line publishes nothing (goes stale)
    offset: np.ndarray  # [L, T] added to the reading at once (step)

    @classmethod
    def none(cls, n_lines: int) -> Overrides:
        t = len(SIM_TAGS)
        return cls(
            heater_off=np.zeros((n_lines, ZONES), dtype=bool),
            diameter_offset=np.zeros(n_lines),
            noise_gain=np.ones((n_lines, t)),
            stuck=np.zeros((n_lines, t), dtype=bool),
            dropout=np.zeros((n_lines, t), dtype=bool),
            stopped=np.zeros(n_lines, dtype=bool),
            silent=np.zeros(n_lines, dtype=bool),
            offset=np.zeros((n_lines, t)),
        )


@dataclass
class PlantModel:
    params: list[LineParams]
    seed: int = 42
    time: float = 0.0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.params)
        self.rng = np.random.default_rng(self.seed)
        self.zone_sp = np.array([p.zone_setpoints for p in self.params], dtype=np.float64)
        self.die_sp = np.array([p.die_setpoint for p in self.params])
        self.dia_sp = np.array([p.diameter_setpoint for p in self.params])
        self.speed_sp = np.array([p.speed_setpoint for p in self.params])
        # A warm plant: every line starts running at its setpoints.
        self.zone = self.zone_sp + self.rng.normal(0, 0.3, self.zone_sp.shape)
        self.die = self.die_sp.copy()
        self.speed = self.speed_sp.copy()
        self.state = np.full(n, RUNNING, dtype=np.int64)
        self.start_timer = np.zeros(n)
        self.drift = np.zeros(n)
        self.overrides = Overrides.none(n)
        self.held = np.full((n, len(SIM_TAGS)), np.nan)
        self.values = np.zeros((n, len(SIM_TAGS)))
        self._compute_outputs(np.ones((n, len(SIM_TAGS))) * 0.0)

    @classmethod
    def from_lines(cls, lines: list[LineConfig], seed: int = 42) -> PlantModel:
        return cls([LineParams.from_line(line) for line in lines], seed=seed)

    @property
    def n_lines(self) -> int:
        return len(self.params)

    def step(self, dt: float) -> None:
        """Advance the plant by `dt` seconds."""
        if dt <= 0:
            return
        self.time += dt
        ov = self.overrides
        n = self.n_lines
        self._step_states(dt, ov)

        target = np.where(ov.heater_off, AMBIENT_C, self.zone_sp)
        tau = np.where(ov.heater_off, COOL_TAU_S, HEAT_TAU_S)
        self.zone += (target - self.zone) * (1.0 - np.exp(-dt / tau))
        self.zone += self.rng.normal(0, 0.15 * np.sqrt(dt), self.zone.shape)
        self.die += (self.die_sp - self.die) * (1.0 - np.exp(-dt / HEAT_TAU_S))
        self.die += self.rng.normal(0, 0.1 * np.sqrt(dt), n)

        speed_target = np.where(self.state == RUNNING, self.speed_sp, 0.0)
        starting = self.state == STARTING
        ramp = np.clip(1.0 - self.start_timer / START_UP_S, 0.0, 1.0)
        speed_target = np.where(starting, self.speed_sp * ramp, speed_target)
        self.speed += (speed_target - self.speed) * (1.0 - np.exp(-dt / SPEED_TAU_S))

        # Slow, mean-reverting drift of the diameter (die wear, material batch).
        self.drift += -self.drift * dt / 600.0 + self.rng.normal(0, 0.002 * np.sqrt(dt), n)
        noise = self.rng.normal(0, 1.0, (n, len(SIM_TAGS)))
        self._compute_outputs(noise)

    def _step_states(self, dt: float, ov: Overrides) -> None:
        self.start_timer = np.maximum(self.start_timer - dt, 0.0)
        cold = (self.zone < self.zone_sp - FAULT_UNDERTEMP_C).any(axis=1)
        stop = ov.stopped
        new_state = self.state.copy()
        new_state[stop] = STOPPED
        # A stopped or faulted line restarts by itself once nothing holds it down.
        restart = ~stop & ~cold & ((self.state == STOPPED) | (self.state == FAULT))
        new_state[restart] = STARTING
        self.start_timer[restart & (self.state != STARTING)] = START_UP_S
        done = (new_state == STARTING) & (self.start_timer <= 0.0)
        new_state[done] = RUNNING
        new_state[cold & ~stop] = FAULT
        self.state = new_state

    def _compute_outputs(self, noise: np.ndarray) -> None:
        ov = self.overrides
        gain = ov.noise_gain
        melt = 0.5 * (self.zone[:, ZONES - 1] + self.die)
        melt_nominal = 0.5 * (self.zone_sp[:, ZONES - 1] + self.die_sp)
        moving = self.speed > 0.5
        # The screw follows the haul-off except in steady running, where a slower haul-off
        # (relative to its setpoint) draws the melt less and the product swells.
        running = (self.state == RUNNING) & moving
        speed_ratio = np.where(running, self.speed_sp / np.maximum(self.speed, 0.5), 1.0)
        swell = 1.0 + 0.5 * (np.sqrt(speed_ratio) - 1.0) + 0.002 * (melt - melt_nominal)
        diameter = self.dia_sp * swell + self.drift + ov.diameter_offset
        viscosity = 1.0 + 0.01 * (melt_nominal - melt)
        out = self.values
        out[:, 0:ZONES] = self.zone + noise[:, 0:ZONES] * 0.05 * gain[:, 0:ZONES]
        out[:, COL["die_temperature"]] = self.die + noise[:, 4] * 0.05 * gain[:, 4]
        # Hold the gauge reading of a stopped line: the product in it is not moving.
        gauge = diameter + noise[:, 5] * 0.004 * gain[:, 5]
        out[:, COL["diameter"]] = np.where(moving | (out[:, 5] == 0), gauge, out[:, 5])
        # A tachometer reads no negative speed, whatever its noise.
        out[:, COL["line_speed"]] = np.maximum(self.speed + noise[:, 6] * 0.02 * gain[:, 6], 0.0)
        current = 15.0 + 2.8 * self.speed * viscosity
        out[:, COL["motor_current"]] = current + noise[:, 7] * 0.4 * gain[:, 7]
        pressure = 40.0 + 7.0 * self.speed * viscosity
        out[:, COL["melt_pressure"]] = pressure + noise[:, 8] * 1.0 * gain[:, 8]
        out[:, COL["state"]] = self.state
        out += ov.offset
        # A stuck sensor repeats the value it had when it stuck.
        hold = ov.stuck & ~np.isnan(self.held)
        out[hold] = self.held[hold]
        self.held = np.where(ov.stuck, np.where(np.isnan(self.held), out, self.held), np.nan)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Current readings [lines, SIM_TAGS] and which of them are valid (not dropped out)."""
        return self.values.copy(), ~self.overrides.dropout

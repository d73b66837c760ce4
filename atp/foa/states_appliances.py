"""Appliance states the FOA reads: wet appliances (programmes, start and ready-by) and water heaters.

Like `atp.foa.states`, these frozen dataclasses hold a device's sensor and user data and the
parameters of the FOA's predictive model; whoever owns the device fills them. `Programme` is
the appliance's own data (a fixed energy profile), shared by the FOA and the device.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from atp.foa.errors import StateError

__all__ = [
    "WATER_KWH_PER_L_K",
    "ApplianceStatus",
    "Programme",
    "WaterHeaterState",
    "WetApplianceState",
]

WATER_KWH_PER_L_K = 4.186 / 3600.0  # specific heat of water: 4.186 kJ/(kg K), 1 L = 1 kg
_TOL_KWH = 1e-6


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise StateError(message)


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise StateError(f"{name} must be a finite number, not {value!r}")


@dataclass(frozen=True)
class Programme:
    """A wet-appliance programme: fixed kWh per `step_s` step from its start (the last may be partial).

    The appliance draws each step's energy at constant power within that step, so the energy
    between any two instants after the start is the integral of that piecewise-constant power.
    """

    name: str
    energy_kwh: tuple[float, ...]
    step_s: int = 900

    def __post_init__(self) -> None:
        _require(bool(self.name), "a programme needs a name")
        _require(len(self.energy_kwh) > 0, f"programme {self.name!r} needs at least one step")
        _require(self.step_s > 0, f"programme {self.name!r}: step_s must be positive, not {self.step_s}")
        for k, e in enumerate(self.energy_kwh):
            _finite(f"programme {self.name!r} energy_kwh[{k}]", e)
            _require(e >= 0, f"programme {self.name!r}: energy_kwh[{k}] = {e} must not be negative")
        _require(
            self.energy_kwh[0] > _TOL_KWH,
            f"programme {self.name!r}: the first step must draw energy (a positive setpoint signals the start)",
        )

    @property
    def duration_s(self) -> int:
        """How long the programme runs, in seconds."""
        return self.step_s * len(self.energy_kwh)

    @property
    def total_kwh(self) -> float:
        """The programme's energy in kWh."""
        return float(sum(self.energy_kwh))

    def energy_between_kwh(self, from_s: float, to_s: float) -> float:
        """kWh drawn between `from_s` and `to_s` seconds after the start (0 outside the programme)."""
        times = np.arange(len(self.energy_kwh) + 1, dtype=float) * self.step_s
        cumulative = np.concatenate(([0.0], np.cumsum(self.energy_kwh)))
        lo, hi = np.interp([from_s, to_s], times, cumulative)
        return float(max(0.0, hi - lo))

    def n_steps(self, slice_s: int) -> int:
        """Steps of `slice_s` seconds the programme spans when it starts on a step boundary."""
        return math.ceil(self.duration_s / slice_s - 1e-9)

    def energy_per_step_kwh(self, slice_s: int) -> tuple[float, ...]:
        """kWh per `slice_s` step when the programme starts on a step boundary."""
        if slice_s == self.step_s:
            return self.energy_kwh
        return tuple(self.energy_between_kwh(k * slice_s, (k + 1) * slice_s) for k in range(self.n_steps(slice_s)))


class ApplianceStatus(enum.Enum):
    """Where a wet appliance is in its cycle."""

    IDLE = "idle"  # nothing to do: not loaded, or the last programme has finished
    WAITING = "waiting"  # loaded and start pressed; the programme has not started
    RUNNING = "running"  # a programme is running; it runs to its end


@dataclass(frozen=True)
class WetApplianceState:
    """A dishwasher or washing machine: its programmes, the user's request and what is running.

    When `status` is WAITING, the user pressed start at `pressed_at`, wants the load done by
    `ready_by`, prefers `preferred` and allows any programme in `allowed`. When RUNNING,
    `running` started at `started_at`. `programmes` lists every programme of the appliance.
    """

    kind: str
    status: ApplianceStatus
    programmes: tuple[Programme, ...]
    allowed: tuple[str, ...] = ()
    preferred: str | None = None
    pressed_at: datetime | None = None
    ready_by: datetime | None = None
    running: str | None = None
    started_at: datetime | None = None

    def __post_init__(self) -> None:
        names = [p.name for p in self.programmes]
        _require(len(names) == len(set(names)), f"programme names must be unique, not {names}")
        _require(bool(self.kind), "kind must name the appliance (e.g. 'dishwasher')")
        for name in self.allowed:
            _require(name in names, f"allowed programme {name!r} is not one of the appliance's: {', '.join(names)}")
        if self.status is ApplianceStatus.WAITING:
            if self.pressed_at is None or self.ready_by is None:
                raise StateError("a waiting appliance needs pressed_at and ready_by")
            _require(self.pressed_at.tzinfo is not None, "pressed_at must be timezone-aware (e.g. UTC)")
            _require(self.ready_by > self.pressed_at, "ready_by must be after pressed_at")
            _require(
                self.preferred is not None and self.preferred in self.allowed,
                f"preferred programme {self.preferred!r} must be one of the allowed: {', '.join(self.allowed)}",
            )
        if self.status is ApplianceStatus.RUNNING:
            _require(
                self.running in names and self.started_at is not None,
                f"a running appliance needs started_at and running in: {', '.join(names)}",
            )

    def programme(self, name: str) -> Programme:
        """The programme called `name`; StateError lists the known ones."""
        for p in self.programmes:
            if p.name == name:
                return p
        raise StateError(
            f"no programme {name!r}; the appliance's programmes: {', '.join(p.name for p in self.programmes)}"
        )


@dataclass(frozen=True)
class WaterHeaterState:
    """An electric water heater (boiler): a fully mixed tank, its element, thermostat and draws.

    Model: with C = tank_l * 4.186/3600 kWh/K, per step of dt_h hours with x kWh of heating and
    a draw of V litres of tank water replaced by cold inlet water,
    `T' = T - (V/tank_l)(T - inlet_c) - dt_h*ua_kw_per_k*(T - ambient_c)/C + x/C`.
    `draw_forecast_l[k]` is the predicted draw over the k-th step from now (the first step runs
    from now to the next grid boundary); a short forecast means no draws afterwards.
    """

    temp_c: float
    min_c: float
    max_c: float
    setpoint_c: float
    deadband_c: float
    tank_l: float
    element_kw: float
    ua_kw_per_k: float
    ambient_c: float
    inlet_c: float
    heat_on: bool
    draw_forecast_l: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("temp_c", "min_c", "max_c", "setpoint_c", "deadband_c", "ambient_c", "inlet_c"):
            _finite(name, getattr(self, name))
        for name in ("tank_l", "element_kw"):
            value = getattr(self, name)
            _finite(name, value)
            _require(value > 0, f"{name} must be positive, not {value}")
        _finite("ua_kw_per_k", self.ua_kw_per_k)
        _require(self.ua_kw_per_k >= 0, f"ua_kw_per_k must not be negative, not {self.ua_kw_per_k}")
        _require(self.min_c <= self.max_c, f"min_c {self.min_c} is above max_c {self.max_c}")
        _require(self.deadband_c >= 0, f"deadband_c must not be negative, not {self.deadband_c}")
        for k, v in enumerate(self.draw_forecast_l):
            _finite(f"draw_forecast_l[{k}]", v)
            _require(v >= 0, f"draw_forecast_l[{k}] = {v} L must not be negative")

    @property
    def capacity_kwh_per_k(self) -> float:
        """Heat capacity of the full tank in kWh/K."""
        return self.tank_l * WATER_KWH_PER_L_K

    def draws_l(self, n_steps: int) -> tuple[float, ...]:
        """The draw forecast for `n_steps` steps from now; beyond the forecast, no draws."""
        forecast = self.draw_forecast_l[:n_steps]
        return forecast + (0.0,) * (n_steps - len(forecast))

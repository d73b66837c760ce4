"""Electric water heater (boiler): a fully mixed hot-water tank with its element and thermostat (the truth).

Energy balance per step of dt_h hours, with C = tank_l * 4.186/3600 kWh/K, x kWh of heating
(element efficiency 1), V litres of tank water drawn and replaced by cold inlet water, and
standing losses UA (kW/K) to the ambient:

    T' = T - (V/tank_l)(T - inlet_c) - dt_h*UA*(T - ambient_c)/C + x/C

(`V/tank_l` capped at 1: a draw cannot take more than the tank). Uncontrolled, a hysteresis
thermostat switches the element on below `setpoint_c - deadband_c/2` and off above
`setpoint_c + deadband_c/2` at the start of each step and heats at full power while on;
controlled, the element draws the setpoint capped to [0, element kWh per step].

Draws (`HotWaterDraw`, litres of tank water at tank temperature) come from a seeded daily
profile (`WaterHeater.draw`): per person, a morning shower with probability 0.7 at
~N(07:00, 45 min) of 25-45 L; an evening shower with probability 0.3 at ~N(21:00, 1 h) of
25-45 L; kitchen draws ~N(19:00, 1 h) of 3-10 L, three a day; and 4-8 small draws of 1-5 L
spread over 07:00-22:00. That is about 40-60 L per person a day at 55-60 C, the order of the
Energy Saving Trust's measurements (2008: 122 L per household and day at 52 C) and of the
EN 16147 tapping profile M (5.845 kWh a day). Tanks of 80-200 L with 2-3 kW elements and UA of
1.0-2.5 W/K (standing losses about 1-2.5 kWh a day at 45 K above ambient) are typical of
European electric storage water heaters.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.foa.generators.thermal_block import thermostat_on
from atp.foa.states_appliances import WATER_KWH_PER_L_K, WaterHeaterState

__all__ = ["HotWaterDraw", "WaterHeater", "WaterHeaterError", "WaterHeaterStep"]

_DAY = timedelta(days=1)


class WaterHeaterError(ValueError):
    """A water heater is configured or driven impossibly; the message names the field."""


@dataclass(frozen=True)
class HotWaterDraw:
    """`litres` of hot water drawn from the tank at `time`."""

    time: datetime
    litres: float


@dataclass(frozen=True)
class WaterHeaterStep:
    """One step: start, tank temperature at start and end, litres drawn, kWh heated, control."""

    time: datetime
    temp_start_c: float
    temp_end_c: float
    drawn_l: float
    energy_kwh: float
    controlled: bool


class WaterHeater:
    """A storage water heater with its thermostat and the user's hot-water draws (module docstring).

    `min_c`/`max_c` are the user's limits (hot enough to use, not so hot it scalds or wastes);
    `history` lists every step.
    """

    def __init__(
        self,
        *,
        tank_l: float,
        element_kw: float,
        ua_w_per_k: float,
        ambient_c: float,
        inlet_c: float,
        temp_c: float,
        min_c: float,
        max_c: float,
        setpoint_c: float | None = None,
        deadband_c: float = 5.0,
        heat_on: bool = False,
        draws: Sequence[HotWaterDraw] = (),
    ) -> None:
        if tank_l <= 0 or element_kw <= 0 or ua_w_per_k < 0:
            raise WaterHeaterError(
                f"tank_l ({tank_l}) and element_kw ({element_kw}) must be positive, ua_w_per_k ({ua_w_per_k}) >= 0"
            )
        if min_c > max_c:
            raise WaterHeaterError(f"min_c {min_c} is above max_c {max_c}")
        if deadband_c < 0:
            raise WaterHeaterError(f"deadband_c must not be negative, not {deadband_c}")
        if any(d.litres < 0 for d in draws):
            raise WaterHeaterError("draws must not be negative")
        self.tank_l = tank_l
        self.element_kw = element_kw
        self.ua_w_per_k = ua_w_per_k
        self.ambient_c = ambient_c
        self.inlet_c = inlet_c
        self.temp_c = temp_c
        self.min_c = min_c
        self.max_c = max_c
        self.setpoint_c = setpoint_c if setpoint_c is not None else (min_c + max_c) / 2
        self.deadband_c = deadband_c
        self.heat_on = heat_on
        self.draws: tuple[HotWaterDraw, ...] = tuple(sorted(draws, key=lambda d: d.time))
        self._times = [d.time for d in self.draws]
        self._cumulative_l = np.concatenate(([0.0], np.cumsum([d.litres for d in self.draws])))
        self.history: list[WaterHeaterStep] = []

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        first_day: datetime,
        days: int,
        utc_offset_s: int = 0,
        tank_l: Sequence[float] = (80.0, 120.0, 150.0, 200.0),
        element_kw: Sequence[float] = (2.0, 3.0),
        ua_w_per_k: tuple[float, float] = (1.0, 2.5),
        people: tuple[int, int] = (1, 4),
        ambient_c: float = 18.0,
        inlet_c: float = 10.0,
        limits_c: tuple[float, float] = (45.0, 75.0),
        setpoint_c: float = 60.0,
        deadband_c: float = 5.0,
    ) -> WaterHeater:
        """A water heater with its parameters and a daily draw profile drawn from `rng` (fixed order).

        The tank starts at the setpoint with the element off.
        """
        if days < 0:
            raise WaterHeaterError(f"days must not be negative, not {days}")
        tank = float(rng.choice(np.asarray(tank_l, dtype=float)))
        power = float(rng.choice(np.asarray(element_kw, dtype=float)))
        ua = float(rng.uniform(*ua_w_per_k))
        persons = int(rng.integers(people[0], people[1] + 1))
        offset = timedelta(seconds=utc_offset_s)
        local = first_day.astimezone(UTC) + offset
        midnight = datetime(local.year, local.month, local.day, tzinfo=UTC) - offset
        draws = []

        def add(day: datetime, hour: float, litres: float) -> None:
            draws.append(HotWaterDraw(day + timedelta(seconds=round(float(np.clip(hour, 0.0, 23.99)) * 3600)), litres))

        for d in range(days):
            day = midnight + d * _DAY
            for _ in range(persons):
                morning, evening = rng.random(2)
                m_h, e_h = rng.normal(7.0, 0.75), rng.normal(21.0, 1.0)
                m_l, e_l = rng.uniform(25.0, 45.0, size=2)
                if morning < 0.7:
                    add(day, m_h, float(m_l))
                if evening < 0.3:
                    add(day, e_h, float(e_l))
            for hour, litres in zip(rng.normal(19.0, 1.0, size=3), rng.uniform(3.0, 10.0, size=3), strict=True):
                add(day, hour, float(litres))
            small = int(rng.integers(4, 9))
            for hour, litres in zip(rng.uniform(7.0, 22.0, size=small), rng.uniform(1.0, 5.0, size=small), strict=True):
                add(day, hour, float(litres))
        lo, hi = limits_c
        return cls(
            tank_l=tank,
            element_kw=power,
            ua_w_per_k=ua,
            ambient_c=ambient_c,
            inlet_c=inlet_c,
            temp_c=setpoint_c,
            min_c=lo,
            max_c=hi,
            setpoint_c=setpoint_c,
            deadband_c=deadband_c,
            draws=draws,
        )

    @property
    def capacity_kwh_per_k(self) -> float:
        """Heat capacity of the full tank in kWh/K."""
        return self.tank_l * WATER_KWH_PER_L_K

    def drawn_l(self, start: datetime, end: datetime) -> float:
        """Litres drawn in [start, end)."""
        i, j = bisect.bisect_left(self._times, start), bisect.bisect_left(self._times, end)
        return float(self._cumulative_l[j] - self._cumulative_l[i])

    def draw_forecast_l(self, now: datetime, *, slice_s: int, n_steps: int) -> tuple[float, ...]:
        """Litres drawn in the step from `now` to the next `slice_s` boundary, then in `n_steps` grid steps."""
        first = datetime.fromtimestamp((now.timestamp() // slice_s + 1) * slice_s, UTC)
        edges = [now] + [first + timedelta(seconds=k * slice_s) for k in range(n_steps + 1)]
        return tuple(self.drawn_l(a, b) for a, b in itertools.pairwise(edges))

    def thermostat(self) -> bool:
        """The thermostat's decision for a step starting now (hysteresis from `heat_on`; the FOA's
        rule, `atp.foa.generators.thermal_block.thermostat_on`)."""
        return thermostat_on(self.temp_c, self.heat_on, setpoint_c=self.setpoint_c, deadband_c=self.deadband_c)

    def state(
        self, now: datetime, *, slice_s: int = 900, n_steps: int = 96, draw_forecast_l: Sequence[float] | None = None
    ) -> WaterHeaterState:
        """What the FOA sees at `now`; the draw forecast is the true draws unless one is given."""
        forecast = (
            self.draw_forecast_l(now, slice_s=slice_s, n_steps=n_steps) if draw_forecast_l is None else draw_forecast_l
        )
        return WaterHeaterState(
            temp_c=self.temp_c,
            min_c=self.min_c,
            max_c=self.max_c,
            setpoint_c=self.setpoint_c,
            deadband_c=self.deadband_c,
            tank_l=self.tank_l,
            element_kw=self.element_kw,
            ua_kw_per_k=self.ua_w_per_k / 1000.0,
            ambient_c=self.ambient_c,
            inlet_c=self.inlet_c,
            heat_on=self.heat_on,
            draw_forecast_l=tuple(float(v) for v in forecast),
        )

    def step(self, now: datetime, setpoint_kwh: float | None, slice_s: int) -> float:
        """Advance over [now, now + slice_s): the kWh really drawn by the element."""
        dt_h = slice_s / 3600.0
        full_kwh = self.element_kw * dt_h
        if setpoint_kwh is None:
            self.heat_on = self.thermostat()
            energy = full_kwh if self.heat_on else 0.0
        else:
            energy = min(max(setpoint_kwh, 0.0), full_kwh)
            self.heat_on = energy > 0
        litres = self.drawn_l(now, now + timedelta(seconds=slice_s))
        start = self.temp_c
        c = self.capacity_kwh_per_k
        mixed = min(litres / self.tank_l, 1.0)
        loss = dt_h * self.ua_w_per_k / 1000.0 / c
        self.temp_c = start - mixed * (start - self.inlet_c) - loss * (start - self.ambient_c) + energy / c
        self.history.append(WaterHeaterStep(now, start, self.temp_c, litres, energy, setpoint_kwh is not None))
        return energy

    def temperatures_c(self) -> np.ndarray:
        """Tank temperature at the start of the first step and at the end of every step."""
        if not self.history:
            return np.array([self.temp_c])
        return np.array([self.history[0].temp_start_c] + [h.temp_end_c for h in self.history])

"""Device physics: what an EV charger and a heat-pump-heated building really consume (the truth).

The FOA never sees these classes: the world reads their `state(...)` (the sensor and user
data dataclasses of `atp.foa.states`), passes the FOA's setpoints to `step(...)`, and meters
what `step` returns. A setpoint of None means the device runs uncontrolled (no offer covers
the step). Energies are grid-side kWh per step unless a name says stored; steps may be of any
length (`slice_s` seconds) and must be taken in time order.

- `EVCharger`: daily home-charging sessions (`ChargingSession`), drawn by `EVCharger.draw` from
  a seeded `numpy.random.Generator`: arrival ~ N(18:00, 1.5 h) local time, departure ~
  N(07:30, 1 h) the next morning, arrival state of charge ~ U(20 %, 60 %), target 90 %,
  battery ~ U(40, 75) kWh, charger 7.4 or 11 kW (equally likely).
- `HeatPump`: the RC building `T[k+1] = T[k] + (dt_h*(T_out[k] - T[k])/R + cop*x_k)/C` with
  the true parameters (`RCBuilding`), a hysteresis thermostat when uncontrolled, and the
  parameters the FOA's model uses (which may differ: forecast error is the world's choice).

Plain floats for now; the state of each device is a few numbers, so the physics vectorises
over many devices later without changing the model.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.foa.generators.thermal_block import thermostat_on
from atp.foa.states import EVState, ThermalState

__all__ = ["ChargingSession", "DeviceError", "EVCharger", "HeatPump", "HeatPumpStep", "RCBuilding"]

_DAY = timedelta(days=1)


class DeviceError(ValueError):
    """A device is configured or driven impossibly; the message names the field."""


# -- EV ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChargingSession:
    """One plug-in: the EV is connected from `arrival` to `departure` (exclusive)."""

    arrival: datetime
    departure: datetime
    arrival_energy_kwh: float
    target_energy_kwh: float


class EVCharger:
    """A home charger with one EV: sessions, battery energy and the energy really drawn.

    Uncontrolled (setpoint None) it charges at full power until the session's target is
    stored; controlled it draws the setpoint, capped by the charger's power, by the time the
    EV is plugged in during the step and by the battery being full. No discharging.
    `history` lists `(step start, grid kWh drawn, stored kWh after)`.
    """

    def __init__(
        self,
        *,
        capacity_kwh: float,
        max_power_kw: float,
        sessions: Sequence[ChargingSession],
        charge_efficiency: float = 0.92,
    ) -> None:
        if capacity_kwh <= 0 or max_power_kw <= 0:
            raise DeviceError(f"capacity_kwh ({capacity_kwh}) and max_power_kw ({max_power_kw}) must be positive")
        if not 0 < charge_efficiency <= 1:
            raise DeviceError(f"charge_efficiency must lie in (0, 1], not {charge_efficiency}")
        ordered = sorted(sessions, key=lambda s: s.arrival)
        for s in ordered:
            if s.departure <= s.arrival:
                raise DeviceError(f"session arriving {s.arrival.isoformat()} departs before it arrives")
            if not 0 <= s.arrival_energy_kwh <= capacity_kwh or not 0 <= s.target_energy_kwh <= capacity_kwh:
                raise DeviceError(f"session arriving {s.arrival.isoformat()}: energies must lie in [0, capacity_kwh]")
        for a, b in itertools.pairwise(ordered):
            if b.arrival < a.departure:
                raise DeviceError(f"sessions overlap: {b.arrival.isoformat()} arrives before the previous departure")
        self.capacity_kwh = capacity_kwh
        self.max_power_kw = max_power_kw
        self.charge_efficiency = charge_efficiency
        self.sessions: tuple[ChargingSession, ...] = tuple(ordered)
        self._arrivals = [s.arrival for s in ordered]
        self._active: ChargingSession | None = None
        self.energy_kwh = ordered[0].arrival_energy_kwh if ordered else 0.0
        self.history: list[tuple[datetime, float, float]] = []

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        first_day: datetime,
        days: int,
        utc_offset_s: int = 0,
        battery_kwh: tuple[float, float] = (40.0, 75.0),
        charger_kw: Sequence[float] = (7.4, 11.0),
        arrival_soc: tuple[float, float] = (0.2, 0.6),
        target_soc: float = 0.9,
        charge_efficiency: float = 0.92,
    ) -> EVCharger:
        """A charger with one session per local day from `first_day`, drawn from `rng` (fixed order).

        Arrival ~ N(18:00, 1.5 h) clipped to [14:00, 23:30]; departure ~ N(07:30, 1 h) the next
        day clipped to [04:00, 11:00] and at least 2 h after arrival; times rounded to seconds.
        """
        if days < 0:
            raise DeviceError(f"days must not be negative, not {days}")
        capacity = float(rng.uniform(*battery_kwh))
        power = float(rng.choice(np.asarray(charger_kw, dtype=float)))
        offset = timedelta(seconds=utc_offset_s)
        local = first_day.astimezone(UTC) + offset
        midnight = datetime(local.year, local.month, local.day, tzinfo=UTC) - offset
        sessions = []
        for d in range(days):
            day = midnight + d * _DAY
            arrival_h = float(np.clip(rng.normal(18.0, 1.5), 14.0, 23.5))
            departure_h = float(np.clip(rng.normal(7.5, 1.0), 4.0, 11.0))
            soc = float(rng.uniform(*arrival_soc))
            arrival = day + timedelta(seconds=round(arrival_h * 3600))
            departure = max(day + _DAY + timedelta(seconds=round(departure_h * 3600)), arrival + timedelta(hours=2))
            sessions.append(ChargingSession(arrival, departure, soc * capacity, target_soc * capacity))
        return cls(capacity_kwh=capacity, max_power_kw=power, sessions=sessions, charge_efficiency=charge_efficiency)

    def _session_overlapping(self, start: datetime, end: datetime) -> ChargingSession | None:
        i = bisect.bisect_left(self._arrivals, end) - 1
        if i >= 0 and self.sessions[i].departure > start:
            return self.sessions[i]
        return None

    def _enter(self, session: ChargingSession | None) -> None:
        if session is not None and session is not self._active:
            self._active = session
            self.energy_kwh = session.arrival_energy_kwh

    def session_at(self, now: datetime) -> ChargingSession | None:
        """The session the EV is plugged in for at `now` (arrival <= now < departure)."""
        i = bisect.bisect_right(self._arrivals, now) - 1
        if i >= 0 and self.sessions[i].departure > now:
            return self.sessions[i]
        return None

    def arrived(self, now: datetime, slice_s: int = 900) -> bool:
        """True when an EV arrived within the step that ends at `now` ((now - slice_s, now])."""
        i = bisect.bisect_right(self._arrivals, now) - 1
        return i >= 0 and self._arrivals[i] > now - timedelta(seconds=slice_s) and self.sessions[i].departure > now

    def state(self, now: datetime) -> EVState:
        """What the FOA sees at `now`: plug, stored energy, target and departure, charger."""
        session = self.session_at(now)
        self._enter(session)
        if session is None:
            return EVState(
                plugged_in=False,
                now_energy_kwh=min(self.energy_kwh, self.capacity_kwh),
                capacity_kwh=self.capacity_kwh,
                target_energy_kwh=min(self.energy_kwh, self.capacity_kwh),
                departure=now,
                max_power_kw=self.max_power_kw,
                charge_efficiency=self.charge_efficiency,
            )
        return EVState(
            plugged_in=True,
            now_energy_kwh=self.energy_kwh,
            capacity_kwh=self.capacity_kwh,
            target_energy_kwh=session.target_energy_kwh,
            departure=session.departure,
            max_power_kw=self.max_power_kw,
            charge_efficiency=self.charge_efficiency,
        )

    def step(self, now: datetime, setpoint_kwh: float | None, slice_s: int) -> float:
        """Advance over [now, now + slice_s): the grid kWh really drawn (0 when unplugged)."""
        end = now + timedelta(seconds=slice_s)
        session = self._session_overlapping(now, end)
        drawn = 0.0
        if session is not None:
            self._enter(session)
            plugged_s = (min(end, session.departure) - max(now, session.arrival)).total_seconds()
            power_kwh = self.max_power_kw * max(plugged_s, 0.0) / 3600.0
            eff = self.charge_efficiency
            if setpoint_kwh is None:
                limit = max(0.0, session.target_energy_kwh - self.energy_kwh) / eff
                drawn = min(power_kwh, limit)
            else:
                limit = max(0.0, self.capacity_kwh - self.energy_kwh) / eff
                drawn = min(max(setpoint_kwh, 0.0), power_kwh, limit)
            self.energy_kwh += drawn * eff
        self.history.append((now, drawn, self.energy_kwh))
        return drawn


# -- heat pump ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RCBuilding:
    """A one-node thermal building: resistance R (K/kW), capacity C (kWh/K) and the heat pump's COP."""

    r_k_per_kw: float
    c_kwh_per_k: float
    cop: float

    def __post_init__(self) -> None:
        for name in ("r_k_per_kw", "c_kwh_per_k", "cop"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise DeviceError(f"RCBuilding.{name} must be a positive number, not {value}")

    def next_temp_c(self, temp_c: float, outdoor_c: float, energy_kwh: float, dt_h: float) -> float:
        """The indoor temperature after `dt_h` hours with `energy_kwh` electric kWh of heating."""
        return temp_c + (dt_h * (outdoor_c - temp_c) / self.r_k_per_kw + self.cop * energy_kwh) / self.c_kwh_per_k


@dataclass(frozen=True)
class HeatPumpStep:
    """One step of a heat pump: start, indoor temperature at start and end, outdoor, kWh, control."""

    time: datetime
    indoor_start_c: float
    indoor_end_c: float
    outdoor_c: float
    energy_kwh: float
    controlled: bool


class HeatPump:
    """A heat pump heating an RC building, with its hysteresis thermostat.

    `truth` drives the temperature; `model` (default: the truth) is what `state()` reports as
    the FOA's predictive model. Uncontrolled (setpoint None) the thermostat switches on below
    `setpoint_c - deadband_c/2` and off above `setpoint_c + deadband_c/2` at the start of each
    step and runs at full power while on; controlled, it draws the setpoint capped to
    [0, max power] (and is then `on` when it draws anything). `history` lists every step.
    """

    def __init__(
        self,
        *,
        truth: RCBuilding,
        model: RCBuilding | None = None,
        max_power_kw: float,
        indoor_temp_c: float,
        comfort_min_c: float,
        comfort_max_c: float,
        setpoint_c: float | None = None,
        deadband_c: float = 1.0,
        heat_on: bool = False,
    ) -> None:
        if max_power_kw <= 0:
            raise DeviceError(f"max_power_kw must be positive, not {max_power_kw}")
        if comfort_min_c > comfort_max_c:
            raise DeviceError(f"comfort_min_c {comfort_min_c} is above comfort_max_c {comfort_max_c}")
        if deadband_c < 0:
            raise DeviceError(f"deadband_c must not be negative, not {deadband_c}")
        self.truth = truth
        self.model = model if model is not None else truth
        self.max_power_kw = max_power_kw
        self.indoor_temp_c = indoor_temp_c
        self.comfort_min_c = comfort_min_c
        self.comfort_max_c = comfort_max_c
        self.setpoint_c = setpoint_c if setpoint_c is not None else (comfort_min_c + comfort_max_c) / 2
        self.deadband_c = deadband_c
        self.heat_on = heat_on
        self.history: list[HeatPumpStep] = []

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        max_power_kw: tuple[float, float] = (2.5, 4.0),
        cop: float = 3.0,
        ua_kw_per_k: tuple[float, float] = (0.12, 0.22),
        capacity_kwh_per_k: tuple[float, float] = (8.0, 14.0),
        comfort_c: tuple[float, float] = (20.0, 22.5),
        deadband_c: float = 1.0,
        model_error: float = 0.0,
    ) -> HeatPump:
        """A heat pump with parameters drawn uniformly from the ranges (R = 1/UA), from `rng`.

        The model's R, C and COP are the truth's times independent factors ~ N(1, model_error),
        clipped to [0.5, 1.5]; the indoor temperature starts at the setpoint (the band's middle).
        """
        truth = RCBuilding(1.0 / float(rng.uniform(*ua_kw_per_k)), float(rng.uniform(*capacity_kwh_per_k)), cop)
        power = float(rng.uniform(*max_power_kw))
        factors = np.clip(rng.normal(1.0, model_error, size=3), 0.5, 1.5) if model_error > 0 else np.ones(3)
        model = RCBuilding(truth.r_k_per_kw * factors[0], truth.c_kwh_per_k * factors[1], truth.cop * factors[2])
        lo, hi = comfort_c
        return cls(
            truth=truth,
            model=model,
            max_power_kw=power,
            indoor_temp_c=(lo + hi) / 2,
            comfort_min_c=lo,
            comfort_max_c=hi,
            deadband_c=min(deadband_c, hi - lo),
        )

    def thermostat(self) -> bool:
        """The thermostat's decision for a step starting now (hysteresis from `heat_on`; the FOA's
        rule, `atp.foa.generators.thermal_block.thermostat_on`)."""
        return thermostat_on(self.indoor_temp_c, self.heat_on, setpoint_c=self.setpoint_c, deadband_c=self.deadband_c)

    def state(self, now: datetime, outdoor_forecast_c: Sequence[float]) -> ThermalState:
        """What the FOA sees at `now`: indoor temperature, comfort, thermostat and the model."""
        return ThermalState(
            indoor_temp_c=self.indoor_temp_c,
            comfort_min_c=self.comfort_min_c,
            comfort_max_c=self.comfort_max_c,
            setpoint_c=self.setpoint_c,
            deadband_c=self.deadband_c,
            r_k_per_kw=self.model.r_k_per_kw,
            c_kwh_per_k=self.model.c_kwh_per_k,
            cop=self.model.cop,
            max_power_kw=self.max_power_kw,
            heat_on=self.heat_on,
            outdoor_temp_forecast_c=tuple(float(t) for t in outdoor_forecast_c),
        )

    def step(self, now: datetime, setpoint_kwh: float | None, slice_s: int, outdoor_temp_c: float) -> float:
        """Advance over [now, now + slice_s) at outdoor `outdoor_temp_c`: the kWh really drawn."""
        dt_h = slice_s / 3600.0
        full_kwh = self.max_power_kw * dt_h
        if setpoint_kwh is None:
            self.heat_on = self.thermostat()
            energy = full_kwh if self.heat_on else 0.0
        else:
            energy = min(max(setpoint_kwh, 0.0), full_kwh)
            self.heat_on = energy > 0
        start = self.indoor_temp_c
        self.indoor_temp_c = self.truth.next_temp_c(start, outdoor_temp_c, energy, dt_h)
        controlled = setpoint_kwh is not None
        self.history.append(HeatPumpStep(now, start, self.indoor_temp_c, outdoor_temp_c, energy, controlled))
        return energy

    def indoor_temperatures_c(self) -> np.ndarray:
        """Indoor temperature at the start of the first step and at the end of every step."""
        if not self.history:
            return np.array([self.indoor_temp_c])
        return np.array([self.history[0].indoor_start_c] + [h.indoor_end_c for h in self.history])

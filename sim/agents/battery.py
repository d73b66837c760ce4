"""Battery storage physics: state of charge, power limits and losses (the truth).

The world reads `Battery.state(now)` (an `atp.foa.generators.battery.BatteryState`), passes the
FOA's setpoints to `step(...)` and meters what `step` returns: grid-side kWh over the step,
positive when charging, negative when discharging to the home or the grid. Charging x kWh
stores `charge_efficiency * x`; discharging y kWh removes `y / discharge_efficiency`.

Uncontrolled (setpoint None) the battery is idle (0 kWh): self-consumption control is out of
scope. A setpoint is clipped to the power limits and to what the state of charge allows, so
the battery never leaves `[soc_min_kwh, soc_max_kwh]`; `history` records every step and how
many kWh were clipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from atp.foa.generators.battery import BatteryState
from sim.agents.devices import DeviceError

__all__ = ["Battery", "BatteryStep"]

_CLIP_TOL_KWH = 1e-9


@dataclass(frozen=True)
class BatteryStep:
    """One step: start, setpoint (None = uncontrolled), grid kWh executed, stored kWh after, kWh clipped."""

    time: datetime
    setpoint_kwh: float | None
    energy_kwh: float
    soc_kwh: float
    clipped_kwh: float


class Battery:
    """A stationary home battery with state-of-charge and power limits and two efficiencies."""

    def __init__(
        self,
        *,
        capacity_kwh: float,
        soc_kwh: float,
        max_charge_kw: float,
        max_discharge_kw: float,
        soc_min_kwh: float = 0.0,
        soc_max_kwh: float | None = None,
        charge_efficiency: float = 0.95,
        discharge_efficiency: float = 0.95,
    ) -> None:
        soc_max = capacity_kwh if soc_max_kwh is None else soc_max_kwh
        if capacity_kwh <= 0 or max_charge_kw <= 0 or max_discharge_kw <= 0:
            raise DeviceError(
                f"capacity_kwh ({capacity_kwh}), max_charge_kw ({max_charge_kw}) and "
                f"max_discharge_kw ({max_discharge_kw}) must be positive"
            )
        if not 0 <= soc_min_kwh <= soc_max <= capacity_kwh:
            raise DeviceError(
                f"need 0 <= soc_min_kwh ({soc_min_kwh}) <= soc_max_kwh ({soc_max}) <= capacity_kwh ({capacity_kwh})"
            )
        if not soc_min_kwh <= soc_kwh <= soc_max:
            raise DeviceError(f"soc_kwh {soc_kwh} must lie within [{soc_min_kwh}, {soc_max}]")
        for name, eta in (("charge_efficiency", charge_efficiency), ("discharge_efficiency", discharge_efficiency)):
            if not 0 < eta <= 1:
                raise DeviceError(f"{name} must lie in (0, 1], not {eta}")
        self.capacity_kwh = capacity_kwh
        self.soc_kwh = soc_kwh
        self.soc_min_kwh = soc_min_kwh
        self.soc_max_kwh = soc_max
        self.max_charge_kw = max_charge_kw
        self.max_discharge_kw = max_discharge_kw
        self.charge_efficiency = charge_efficiency
        self.discharge_efficiency = discharge_efficiency
        self.history: list[BatteryStep] = []

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        capacity_kwh: tuple[float, float] = (5.0, 15.0),
        c_rate: tuple[float, float] = (0.3, 1.0),
        soc: tuple[float, float] = (0.2, 0.8),
        soc_window: tuple[float, float] = (0.1, 0.95),
        efficiency: float = 0.95,
    ) -> Battery:
        """A battery drawn from `rng` (fixed order): capacity and C-rate uniform, SoC uniform within the window."""
        capacity = float(rng.uniform(*capacity_kwh))
        power = capacity * float(rng.uniform(*c_rate))
        lo, hi = soc_window
        start = float(np.clip(rng.uniform(*soc), lo, hi))
        return cls(
            capacity_kwh=capacity,
            soc_kwh=start * capacity,
            max_charge_kw=power,
            max_discharge_kw=power,
            soc_min_kwh=lo * capacity,
            soc_max_kwh=hi * capacity,
            charge_efficiency=efficiency,
            discharge_efficiency=efficiency,
        )

    def state(self, now: datetime) -> BatteryState:
        """What the FOA sees at `now`: stored energy, limits and efficiencies."""
        return BatteryState(
            capacity_kwh=self.capacity_kwh,
            soc_kwh=self.soc_kwh,
            soc_min_kwh=self.soc_min_kwh,
            soc_max_kwh=self.soc_max_kwh,
            max_charge_kw=self.max_charge_kw,
            max_discharge_kw=self.max_discharge_kw,
            charge_efficiency=self.charge_efficiency,
            discharge_efficiency=self.discharge_efficiency,
        )

    def limits_kwh(self, slice_s: float) -> tuple[float, float]:
        """(lowest, highest) grid kWh possible over a step of `slice_s` seconds from the current SoC."""
        dt_h = slice_s / 3600.0
        upper = min(self.max_charge_kw * dt_h, max(0.0, self.soc_max_kwh - self.soc_kwh) / self.charge_efficiency)
        lower = max(
            -self.max_discharge_kw * dt_h, -max(0.0, self.soc_kwh - self.soc_min_kwh) * self.discharge_efficiency
        )
        return lower, upper

    def step(self, now: datetime, setpoint_kwh: float | None, slice_s: int) -> float:
        """Advance over [now, now + slice_s): the grid kWh really exchanged (+ charging, - discharging)."""
        wanted = 0.0 if setpoint_kwh is None else float(setpoint_kwh)
        lower, upper = self.limits_kwh(slice_s)
        energy = min(max(wanted, lower), upper)
        if energy >= 0:
            self.soc_kwh += energy * self.charge_efficiency
        else:
            self.soc_kwh += energy / self.discharge_efficiency
        self.soc_kwh = min(max(self.soc_kwh, self.soc_min_kwh), self.soc_max_kwh)  # rounding only
        clipped = abs(wanted - energy)
        self.history.append(
            BatteryStep(now, setpoint_kwh, energy, self.soc_kwh, clipped if clipped > _CLIP_TOL_KWH else 0.0)
        )
        return energy

    def soc_trajectory_kwh(self) -> np.ndarray:
        """Stored kWh after every step so far."""
        return np.array([h.soc_kwh for h in self.history])

"""PV physics: production from irradiance, inverter limit and curtailment (the truth).

Production is negative grid-side energy. The world turns irradiance into the step's production
potential (`PvSystem.available_kwh`), reads `state(...)` (an `atp.foa.generators.pv.PvState`),
passes the FOA's setpoint to `step(...)` and meters what it returns. A setpoint is the energy
the EMS allows: curtailment means a setpoint closer to 0 than the potential. Uncontrolled
(setpoint None) the system produces its full potential. A setpoint beyond the potential (more
production than available) or above 0 (consumption) is clipped; `history` records it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from atp.foa.generators.pv import PvState
from sim.agents.devices import DeviceError

__all__ = ["PvStep", "PvSystem"]

_CLIP_TOL_KWH = 1e-9


@dataclass(frozen=True)
class PvStep:
    """One step: start, setpoint (None = uncontrolled), potential, kWh produced (<= 0), kWh clipped."""

    time: datetime
    setpoint_kwh: float | None
    available_kwh: float
    energy_kwh: float
    clipped_kwh: float

    @property
    def curtailed_kwh(self) -> float:
        """Production given up in this step (>= 0)."""
        return self.energy_kwh - self.available_kwh


class PvSystem:
    """A rooftop PV system of `kwp` behind an inverter of `inverter_kw` (AC)."""

    def __init__(self, *, kwp: float, inverter_kw: float, performance_ratio: float = 0.85) -> None:
        if kwp <= 0 or inverter_kw <= 0:
            raise DeviceError(f"kwp ({kwp}) and inverter_kw ({inverter_kw}) must be positive")
        if not 0 < performance_ratio <= 1:
            raise DeviceError(f"performance_ratio must lie in (0, 1], not {performance_ratio}")
        self.kwp = kwp
        self.inverter_kw = inverter_kw
        self.performance_ratio = performance_ratio
        self.history: list[PvStep] = []

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        kwp: tuple[float, float] = (3.0, 12.0),
        inverter_ratio: tuple[float, float] = (0.8, 1.0),
    ) -> PvSystem:
        """A system drawn from `rng` (fixed order): size uniform, inverter a uniform share of it."""
        size = float(rng.uniform(*kwp))
        return cls(kwp=size, inverter_kw=size * float(rng.uniform(*inverter_ratio)))

    def available_kwh(self, irradiance_w_per_m2: float, slice_s: int) -> float:
        """Production potential (<= 0 kWh) over a step at a plane-of-array irradiance, inverter-capped."""
        if irradiance_w_per_m2 < 0:
            raise DeviceError(f"irradiance_w_per_m2 must not be negative, not {irradiance_w_per_m2}")
        power_kw = min(self.kwp * irradiance_w_per_m2 / 1000.0 * self.performance_ratio, self.inverter_kw)
        return -power_kw * slice_s / 3600.0

    def state(self, now: datetime, available_kwh: float, forecast_kwh: Sequence[float]) -> PvState:
        """What the FOA sees at `now`: size, the potential of the step now and the forecast after it."""
        return PvState(
            kwp=self.kwp,
            inverter_kw=self.inverter_kw,
            available_kwh=float(available_kwh),
            forecast_kwh=tuple(float(e) for e in forecast_kwh),
        )

    def step(self, now: datetime, setpoint_kwh: float | None, slice_s: int, available_kwh: float) -> float:
        """Advance over [now, now + slice_s) with potential `available_kwh` (<= 0): the kWh produced (<= 0)."""
        if available_kwh > _CLIP_TOL_KWH:
            raise DeviceError(f"available_kwh is production, so <= 0 kWh, not {available_kwh}")
        potential = min(0.0, max(available_kwh, -self.inverter_kw * slice_s / 3600.0))
        wanted = potential if setpoint_kwh is None else float(setpoint_kwh)
        energy = min(max(wanted, potential), 0.0)
        clipped = abs(wanted - energy)
        self.history.append(PvStep(now, setpoint_kwh, potential, energy, clipped if clipped > _CLIP_TOL_KWH else 0.0))
        return energy

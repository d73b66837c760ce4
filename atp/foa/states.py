"""Device states the FOA reads: sensor and user data of an EV charger and of a heat pump.

The FOA never sees a device itself. Whoever owns the device (the simulated world, an xEMS,
a HIL proxy) fills these frozen dataclasses from its measurements and the user's settings;
the generators and the built-in EMS work on them alone. A state also carries the parameters
of the FOA's *predictive* model of the device, which may differ from the device's truth.

Energies are stored (battery-side) kWh unless a name says grid-side; powers are grid-side kW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from atp.foa.errors import StateError

__all__ = ["EVState", "ThermalState"]

_TOL_KWH = 1e-6


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise StateError(message)


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):  # the message is built only for a bad value (this runs every step)
        raise StateError(f"{name} must be a finite number, not {value!r}")


@dataclass(frozen=True)
class EVState:
    """An electric vehicle at its home charger.

    `now_energy_kwh` is stored in the battery now; `target_energy_kwh` must be stored by
    `departure` (a hard limit the user set); `max_power_kw` is the charger's grid-side power;
    `charge_efficiency` turns grid-side kWh into stored kWh.
    """

    plugged_in: bool
    now_energy_kwh: float
    capacity_kwh: float
    target_energy_kwh: float
    departure: datetime
    max_power_kw: float
    charge_efficiency: float = 0.92

    def __post_init__(self) -> None:
        for name in ("now_energy_kwh", "capacity_kwh", "target_energy_kwh", "max_power_kw", "charge_efficiency"):
            _finite(name, getattr(self, name))
        _require(self.capacity_kwh > 0, f"capacity_kwh must be positive, not {self.capacity_kwh}")
        _require(self.max_power_kw > 0, f"max_power_kw must be positive, not {self.max_power_kw}")
        _require(0 < self.charge_efficiency <= 1, f"charge_efficiency must lie in (0, 1], not {self.charge_efficiency}")
        _require(
            -_TOL_KWH <= self.now_energy_kwh <= self.capacity_kwh + _TOL_KWH,
            f"now_energy_kwh {self.now_energy_kwh} must lie within [0, capacity_kwh={self.capacity_kwh}]",
        )
        _require(
            0 <= self.target_energy_kwh <= self.capacity_kwh + _TOL_KWH,
            f"target_energy_kwh {self.target_energy_kwh} must lie within [0, capacity_kwh={self.capacity_kwh}]",
        )
        _require(self.departure.tzinfo is not None, "departure must be timezone-aware (e.g. UTC)")

    @property
    def need_kwh(self) -> float:
        """Grid-side kWh still needed to store the target (0 when it is reached)."""
        return max(0.0, self.target_energy_kwh - self.now_energy_kwh) / self.charge_efficiency


@dataclass(frozen=True)
class ThermalState:
    """A building heated by a heat pump, with its thermostat and the FOA's building model.

    The model is the RC building `T[k+1] = T[k] + dt_h/C * ((T_out[k] - T[k])/R + cop*P[k])`
    with R in K/kW, C in kWh/K and P the heat pump's electric power in kW.
    `outdoor_temp_forecast_c[k]` is the outdoor temperature over the k-th step from now (the
    first step runs from now to the next grid boundary).
    """

    indoor_temp_c: float
    comfort_min_c: float
    comfort_max_c: float
    setpoint_c: float
    deadband_c: float
    r_k_per_kw: float
    c_kwh_per_k: float
    cop: float
    max_power_kw: float
    heat_on: bool
    outdoor_temp_forecast_c: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("indoor_temp_c", "comfort_min_c", "comfort_max_c", "setpoint_c", "deadband_c"):
            _finite(name, getattr(self, name))
        for name in ("r_k_per_kw", "c_kwh_per_k", "cop", "max_power_kw"):
            value = getattr(self, name)
            _finite(name, value)
            _require(value > 0, f"{name} must be positive, not {value}")
        _require(
            self.comfort_min_c <= self.comfort_max_c,
            f"comfort_min_c {self.comfort_min_c} is above comfort_max_c {self.comfort_max_c}",
        )
        _require(self.deadband_c >= 0, f"deadband_c must not be negative, not {self.deadband_c}")
        _require(
            len(self.outdoor_temp_forecast_c) > 0, "outdoor_temp_forecast_c needs at least one value (the step now)"
        )
        if not all(map(math.isfinite, self.outdoor_temp_forecast_c)):
            for k, t in enumerate(self.outdoor_temp_forecast_c):
                _finite(f"outdoor_temp_forecast_c[{k}]", t)

    def outdoor_c(self, n_steps: int) -> tuple[float, ...]:
        """The forecast for `n_steps` steps from now; a short forecast repeats its last value."""
        forecast = self.outdoor_temp_forecast_c
        if len(forecast) >= n_steps:
            return forecast[:n_steps]
        return forecast + (forecast[-1],) * (n_steps - len(forecast))

"""Heat pump: a block offer whose polytope encodes the comfort band of an RC building model.

Model (the FOA's prediction; the truth lives with the device): with x_k the heat pump's kWh in
step k, dt_h the step in hours, R (K/kW), C (kWh/K) and the COP,

    T[k+1] = T[k] + (dt_h * (T_out[k] - T[k]) / R + cop * x_k) / C
           = a * T[k] + b_k + g * x_k,   a = 1 - dt_h/(R*C),  b_k = dt_h*T_out[k]/(R*C),  g = cop/C

so every T[k] is affine in x: T[1..n] = c + M x with M lower triangular, M[i, j] = g*a^(i-j)
(`thermal_block`: the one-state store shared with the water heater).

Offer (D2.1 7.1, steps 1 and 4): a block of the next `block_steps` steps from `first_start`,
no time flexibility, slices `[0, max_power * dt_h]`, and a polytope of 2n rows that is exactly
the comfort band: `M x <= comfort_max - c` and `-M x <= c - comfort_min`.

Default schedule: the thermostat's predicted operation (hysteresis: on below
`setpoint - deadband/2`, off above `setpoint + deadband/2`, otherwise unchanged, starting from
the current `heat_on`; full power while on). The step in progress (now to `first_start`) is
predicted the same way. If that trajectory leaves the comfort band (the band is already
violated, or the heat pump is too small for the weather), the offer's band is widened just
enough to contain it, so the default is feasible and the offer valid; the built-in EMS still
keeps the user's real band when it executes.

Captured flexibility: per step, the range of energies the step can take in some schedule that
keeps the comfort band (exact for this one-state model: reachable temperatures form an
interval). The offer's ranges over its block, capped by the device's, divided by the device's
ranges over the whole horizon (24 h by default): a 4 h block of a 24 h horizon captures about
a sixth. 1.0 when the device has no feasible comfort-keeping operation.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from atp.foa.errors import GenerationError
from atp.foa.generator import GenerationContext, register_generator
from atp.foa.generators.thermal_block import (
    TOL_K,
    ThermalBlock,
    ThermalBlockGenerator,
    thermostat_on,
    thermostat_schedule,
)
from atp.foa.states import ThermalState

__all__ = ["HeatPumpGenerator", "predict_temperatures", "thermostat_on"]


def _next_temp(state: ThermalState, temp_c: float, outdoor_c: float, energy_kwh: float, dt_h: float) -> float:
    return temp_c + (dt_h * (outdoor_c - temp_c) / state.r_k_per_kw + state.cop * energy_kwh) / state.c_kwh_per_k


def predict_temperatures(
    state: ThermalState, energy_kwh: np.ndarray, *, slice_s: int, start_temp_c: float, outdoor_c: np.ndarray
) -> np.ndarray:
    """T[1..n] under the FOA's model for per-step energies `energy_kwh`, from `start_temp_c`."""
    dt_h = slice_s / 3600.0
    temps = np.empty(len(energy_kwh))
    t = start_temp_c
    for k, x in enumerate(energy_kwh):
        t = _next_temp(state, t, float(outdoor_c[k]), float(x), dt_h)
        temps[k] = t
    return temps


def _check_state(state: object) -> ThermalState:
    if not isinstance(state, ThermalState):
        raise GenerationError(f"the heat_pump generator needs a ThermalState, not {type(state).__name__}")
    return state


def _coefficients(state: ThermalState, slice_s: int) -> tuple[float, float, float]:
    dt_h = slice_s / 3600.0
    rc = state.r_k_per_kw * state.c_kwh_per_k
    a = 1.0 - dt_h / rc
    if a <= 0:
        raise GenerationError(
            f"slice_s(={slice_s}) is too long for the building's time constant R*C = {rc:.3g} h: "
            "use a shorter slice or check r_k_per_kw and c_kwh_per_k"
        )
    return a, dt_h / rc, state.cop / state.c_kwh_per_k


@register_generator
class HeatPumpGenerator(ThermalBlockGenerator):
    """Block Flex-Offers for a heat pump in an RC building: the model in the module docstring, the offer
    and `block_steps` in `ThermalBlockGenerator`."""

    load_type = "heat_pump"
    version = "1"

    def block(self, state: ThermalState, ctx: GenerationContext, n: int) -> ThermalBlock:
        """The building over `n` steps from `ctx.first_start`; the step in progress runs on the thermostat."""
        state = _check_state(state)
        outdoor = np.asarray(state.outdoor_c(n + 1), dtype=float)
        lead_h = ctx.lead_s / 3600.0
        on = thermostat_on(state.indoor_temp_c, state.heat_on, setpoint_c=state.setpoint_c, deadband_c=state.deadband_c)
        start_temp = _next_temp(state, state.indoor_temp_c, float(outdoor[0]), state.max_power_kw * lead_h * on, lead_h)
        a, rate, g = _coefficients(state, ctx.slice_s)
        step_kwh = state.max_power_kw * ctx.slice_s / 3600.0
        dt_h = ctx.slice_s / 3600.0
        default = thermostat_schedule(
            start_temp,
            on,
            n=n,
            step_kwh=step_kwh,
            setpoint_c=state.setpoint_c,
            deadband_c=state.deadband_c,
            next_temp=lambda t, k, x: _next_temp(state, t, float(outdoor[k + 1]), x, dt_h),
        )
        return ThermalBlock(start_temp, np.full(n, a), rate * outdoor[1:], g, step_kwh, default)

    def band(self, state: ThermalState) -> tuple[float, float]:
        state = _check_state(state)
        return state.comfort_min_c, state.comfort_max_c

    def cut_out(self, state: object) -> float:
        """The thermostat's cut-out, setpoint + deadband/2 (C)."""
        state = _check_state(state)
        return state.setpoint_c + state.deadband_c / 2

    def keep_limits(
        self, state: ThermalState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """Keep the comfort band: full power if the step would end below it, off if above it.

        The end-of-step temperature is predicted with the FOA's model from the measured indoor
        temperature and the outdoor forecast for the step.
        """
        state = _check_state(state)
        dt_h = slice_s / 3600.0
        step_kwh = state.max_power_kw * dt_h
        outdoor = state.outdoor_temp_forecast_c[0]
        scheduled_next = _next_temp(state, state.indoor_temp_c, outdoor, min(max(scheduled_kwh, 0.0), step_kwh), dt_h)
        if scheduled_next < state.comfort_min_c - TOL_K and scheduled_kwh < step_kwh:
            return step_kwh, (
                f"comfort: indoor temperature would fall to {scheduled_next:.2f} C, below "
                f"{state.comfort_min_c:.2f} C; heating at full power"
            )
        if scheduled_next > state.comfort_max_c + TOL_K and scheduled_kwh > 0:
            return 0.0, (
                f"comfort: indoor temperature would rise to {scheduled_next:.2f} C, above "
                f"{state.comfort_max_c:.2f} C; heat pump off"
            )
        return scheduled_kwh, None

"""Electric water heater: a block offer whose polytope keeps the predicted tank temperature in its limits.

Model (the FOA's prediction; the truth lives with the device): a fully mixed tank of heat
capacity C = tank_l * 4.186/3600 kWh/K; with x_k the element's kWh in step k, dt_h the step
in hours, f_k = min(V_k / tank_l, 1) the share of the tank drawn (V_k the forecast draw in
litres, replaced by cold inlet water) and UA the standing loss (kW/K),

    T[k+1] = T[k] - f_k (T[k] - inlet_c) - dt_h*UA*(T[k] - ambient_c)/C + x_k/C
           = a_k * T[k] + b_k + g * x_k,   a_k = 1 - f_k - dt_h*UA/C,
             b_k = f_k*inlet_c + dt_h*UA*ambient_c/C,   g = 1/C

so every T[k] is affine in x: T[1..n] = c + M x with M lower triangular,
M[i, j] = g * a_(j+1) * ... * a_i. The draws make a_k and b_k vary from step to step.

Offer (D2.1 7.1, steps 1 and 4), as for the heat pump: a block of the next `block_steps`
steps from `first_start`, no time flexibility, slices `[0, element_kw * dt_h]`, and a polytope
of 2n rows that is exactly the limits: `M x <= max_c - c` and `-M x <= c - min_c`.

Default schedule: the thermostat's predicted operation (hysteresis: on below
`setpoint - deadband/2`, off above `setpoint + deadband/2`, otherwise unchanged, from the
current `heat_on`; full power while on); the step in progress (now to `first_start`) is
predicted the same way. If that trajectory leaves [min_c, max_c] (a large draw the element
cannot make up, or a tank already outside its limits), the offer's band is widened just
enough to contain it, so the default is feasible and the offer valid; the built-in EMS still
keeps the real limits when it executes.

Captured flexibility: as for the heat pump, per step the range of energies the step can take
in some schedule that keeps the limits (exact for this one-state model); the offer's ranges
over its block, capped by the device's, over the device's ranges over the whole horizon.
1.0 when the device has no feasible limit-keeping operation.
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
from atp.foa.states_appliances import WaterHeaterState

__all__ = ["WaterHeaterGenerator", "predict_tank_temperatures"]


def _check_state(state: object) -> WaterHeaterState:
    if not isinstance(state, WaterHeaterState):
        raise GenerationError(f"the water_heater generator needs a WaterHeaterState, not {type(state).__name__}")
    return state


def _step_coefficients(state: WaterHeaterState, draws_l: np.ndarray, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    """(a_k, b_k) of `T' = a_k T + b_k + x/C` for steps of `dt_h` hours with draws `draws_l`."""
    c = state.capacity_kwh_per_k
    mixed = np.minimum(np.asarray(draws_l, dtype=float) / state.tank_l, 1.0)
    loss = dt_h * state.ua_kw_per_k / c
    return 1.0 - mixed - loss, mixed * state.inlet_c + loss * state.ambient_c


def _next_temp(state: WaterHeaterState, temp_c: float, draw_l: float, energy_kwh: float, dt_h: float) -> float:
    a, b = _step_coefficients(state, np.array([draw_l]), dt_h)
    return float(a[0] * temp_c + b[0] + energy_kwh / state.capacity_kwh_per_k)


def predict_tank_temperatures(
    state: WaterHeaterState, energy_kwh: np.ndarray, *, slice_s: int, start_temp_c: float, draws_l: np.ndarray
) -> np.ndarray:
    """T[1..n] under the FOA's model for per-step energies `energy_kwh` and draws, from `start_temp_c`."""
    dt_h = slice_s / 3600.0
    temps = np.empty(len(energy_kwh))
    t = start_temp_c
    for k, x in enumerate(energy_kwh):
        t = _next_temp(state, t, float(draws_l[k]), float(x), dt_h)
        temps[k] = t
    return temps


def _block(state: WaterHeaterState, ctx: GenerationContext, n: int) -> ThermalBlock:
    draws = np.asarray(state.draws_l(n + 1), dtype=float)
    lead_h = ctx.lead_s / 3600.0
    on = thermostat_on(state.temp_c, state.heat_on, setpoint_c=state.setpoint_c, deadband_c=state.deadband_c)
    start_temp = _next_temp(state, state.temp_c, float(draws[0]), state.element_kw * lead_h * on, lead_h)
    dt_h = ctx.slice_s / 3600.0
    step_kwh = state.element_kw * dt_h
    a, b = _step_coefficients(state, draws[1:], dt_h)
    if np.any(a <= 0):
        k = int(np.flatnonzero(a <= 0)[0])
        raise GenerationError(
            f"step {k}: a draw of {draws[k + 1]:.1f} L (plus standing losses) empties the {state.tank_l:.0f} L tank "
            f"within one {ctx.slice_s} s step; use a shorter slice_s or check draw_forecast_l"
        )
    g = 1.0 / state.capacity_kwh_per_k
    default = thermostat_schedule(
        start_temp,
        on,
        n=n,
        step_kwh=step_kwh,
        setpoint_c=state.setpoint_c,
        deadband_c=state.deadband_c,
        next_temp=lambda t, k, x: float(a[k] * t + b[k] + g * x),
    )
    return ThermalBlock(start_temp, a, b, g, step_kwh, default)


@register_generator
class WaterHeaterGenerator(ThermalBlockGenerator):
    """Block Flex-Offers for an electric water heater: the model in the module docstring, the offer
    and `block_steps` in `ThermalBlockGenerator`."""

    load_type = "water_heater"
    version = "1"

    def block(self, state: WaterHeaterState, ctx: GenerationContext, n: int) -> ThermalBlock:
        """The tank over `n` steps from `ctx.first_start`; the step in progress runs on the thermostat."""
        return _block(_check_state(state), ctx, n)

    def band(self, state: WaterHeaterState) -> tuple[float, float]:
        state = _check_state(state)
        return state.min_c, state.max_c

    def cut_out(self, state: object) -> float:
        """The thermostat's cut-out, setpoint + deadband/2 (C)."""
        state = _check_state(state)
        return state.setpoint_c + state.deadband_c / 2

    def keep_limits(
        self, state: WaterHeaterState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """Keep [min_c, max_c]: full power if the step would end below min_c, off if above max_c.

        The end-of-step temperature is predicted with the FOA's model from the measured tank
        temperature and the forecast draw of the step (`draw_forecast_l[0]`). A schedule that
        heats at least as much as the tank's own thermostat would in this step is kept even when
        the step ends below min_c: a draw the element cannot make up takes the uncontrolled tank
        below min_c as well, and heating beyond the thermostat would draw energy the device
        never draws uncontrolled (the baseline it is settled against).
        """
        state = _check_state(state)
        dt_h = slice_s / 3600.0
        step_kwh = state.element_kw * dt_h
        draw = state.draws_l(1)[0]
        scheduled_next = _next_temp(state, state.temp_c, draw, min(max(scheduled_kwh, 0.0), step_kwh), dt_h)
        on = thermostat_on(state.temp_c, state.heat_on, setpoint_c=state.setpoint_c, deadband_c=state.deadband_c)
        if scheduled_next < state.min_c - TOL_K and scheduled_kwh < (step_kwh if on else 0.0):
            return step_kwh, (
                f"limits: tank temperature would fall to {scheduled_next:.2f} C, below {state.min_c:.2f} C; "
                "heating at full power"
            )
        if scheduled_next > state.max_c + TOL_K and scheduled_kwh > 0:
            return 0.0, (
                f"limits: tank temperature would rise to {scheduled_next:.2f} C, above {state.max_c:.2f} C; element off"
            )
        return scheduled_kwh, None

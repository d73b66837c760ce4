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

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from atp.flexoffer import FlexOffer, Polytope, Profile, Slice
from atp.foa.errors import GenerationError
from atp.foa.generator import FlexOfferGenerator, GenerationContext, register_generator
from atp.foa.generators.heat_pump import thermostat_on
from atp.foa.states_appliances import WaterHeaterState

__all__ = ["WaterHeaterGenerator", "predict_tank_temperatures"]

_TOL_K = 1e-6


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


@dataclass(frozen=True)
class _Block:
    """The block seen from `first_start`: model coefficients and the thermostat's prediction."""

    n: int
    step_kwh: float
    start_temp_c: float
    a: np.ndarray
    b: np.ndarray
    g: float
    default_kwh: np.ndarray


def _block(state: WaterHeaterState, ctx: GenerationContext, n: int) -> _Block:
    draws = np.asarray(state.draws_l(n + 1), dtype=float)
    lead_h = ctx.lead_s / 3600.0
    on = thermostat_on(state.temp_c, state.heat_on, setpoint_c=state.setpoint_c, deadband_c=state.deadband_c)
    temp = _next_temp(state, state.temp_c, float(draws[0]), state.element_kw * lead_h * on, lead_h)
    start_temp = temp
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
    default = np.zeros(n)
    for k in range(n):
        on = thermostat_on(temp, on, setpoint_c=state.setpoint_c, deadband_c=state.deadband_c)
        default[k] = step_kwh if on else 0.0
        temp = float(a[k] * temp + b[k] + g * default[k])
    return _Block(n, step_kwh, start_temp, a, b, g, default)


def _affine(block: _Block) -> tuple[np.ndarray, np.ndarray]:
    """(M, c) with T[1..n] = c + M @ x (row k = a_k * row k-1 + g * e_k)."""
    m = np.zeros((block.n, block.n))
    c = np.empty(block.n)
    row, level = np.zeros(block.n), block.start_temp_c
    for k in range(block.n):
        row = block.a[k] * row
        row[k] += block.g
        level = block.a[k] * level + block.b[k]
        m[k], c[k] = row, level
    return m, c


def _step_ranges(block: _Block, *, band: tuple[float, float]) -> np.ndarray | None:
    """Per-step energy range over the schedules that keep T[1..n] in `band`; None if there is none.

    Backward: bounds on the temperatures from which the band can still be kept to the end.
    Forward: the lowest and highest reachable temperatures within those bounds.
    """
    lo_c, hi_c = band
    a, b, g, e, n = block.a, block.b, block.g, block.step_kwh, block.n
    low_ok, high_ok = np.full(n + 1, lo_c), np.full(n + 1, hi_c)
    for k in range(n - 1, 0, -1):
        low_ok[k] = max(lo_c, (low_ok[k + 1] - b[k] - g * e) / a[k])
        high_ok[k] = min(hi_c, (high_ok[k + 1] - b[k]) / a[k])
    if np.any(low_ok[1:] > high_ok[1:] + _TOL_K):
        return None
    t_low = t_high = block.start_temp_c
    ranges = np.zeros(n)
    for k in range(n):
        x_max = min(e, (high_ok[k + 1] - a[k] * t_low - b[k]) / g)
        x_min = max(0.0, (low_ok[k + 1] - a[k] * t_high - b[k]) / g)
        if x_max < -_TOL_K / g or x_min > e + _TOL_K / g:
            return None
        ranges[k] = max(0.0, x_max - x_min)
        t_low = max(low_ok[k + 1], a[k] * t_low + b[k])
        t_high = min(high_ok[k + 1], a[k] * t_high + b[k] + g * e)
    return ranges


def _band(state: WaterHeaterState, block: _Block) -> tuple[float, float, np.ndarray, np.ndarray]:
    """The offer's band (the limits, widened to contain the default trajectory), M and c."""
    m, c = _affine(block)
    temps = c + m @ block.default_kwh
    return min(state.min_c, float(temps.min())), max(state.max_c, float(temps.max())), m, c


@register_generator
class WaterHeaterGenerator(FlexOfferGenerator):
    """Block Flex-Offers for an electric water heater (see the module docstring).

    `block_steps` is the block length in steps (16 = 4 h at 900 s); the world triggers the
    next offer one step before a block ends so that blocks follow each other.
    """

    load_type = "water_heater"
    version = "1"

    def __init__(self, *, block_steps: int = 16) -> None:
        if block_steps < 1:
            raise GenerationError(f"block_steps must be at least 1, not {block_steps}")
        self.block_steps = block_steps

    def generate(self, state: WaterHeaterState, ctx: GenerationContext) -> FlexOffer | None:
        """One block offer from `ctx.first_start`; None when the horizon holds no whole step."""
        state = _check_state(state)
        n = min(self.block_steps, ctx.steps_until(ctx.horizon_end))
        if n == 0:
            return None
        block = _block(state, ctx, n)
        lo_c, hi_c, m, c = _band(state, block)
        profile = Profile(
            slices=(Slice(n, (0.0, block.step_kwh)),),
            polytope=Polytope(
                A=tuple(tuple(float(v) for v in row) for row in np.vstack([m, -m])),
                b=tuple(float(v) for v in np.concatenate([hi_c - c, c - lo_c])),
            ),
        )
        return ctx.block_offer(self.load_type, profile, block.default_kwh)

    def captured_flexibility(self, state: WaterHeaterState, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """Share of the device's per-step ranges over the horizon that the offer's block captures."""
        state = _check_state(state)
        horizon = ctx.steps_until(ctx.horizon_end)
        if horizon == 0:
            return 1.0
        true_ranges = _step_ranges(_block(state, ctx, horizon), band=(state.min_c, state.max_c))
        if true_ranges is None or true_ranges.sum() <= 1e-9:
            return 1.0
        if offer is None or not offer.profiles:
            return 0.0
        n = min(offer.profiles[0].n_steps, horizon)
        block = _block(state, ctx, n)
        lo_c, hi_c, _, _ = _band(state, block)
        offer_ranges = _step_ranges(block, band=(lo_c, hi_c))
        if offer_ranges is None:
            return 0.0
        captured = np.minimum(offer_ranges, true_ranges[:n]).sum()
        return float(min(1.0, max(0.0, captured / true_ranges.sum())))

    def keep_limits(
        self, state: WaterHeaterState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """Keep [min_c, max_c]: full power if the step would end below min_c, off if above max_c.

        The end-of-step temperature is predicted with the FOA's model from the measured tank
        temperature and the forecast draw of the step (`draw_forecast_l[0]`).
        """
        state = _check_state(state)
        dt_h = slice_s / 3600.0
        step_kwh = state.element_kw * dt_h
        draw = state.draws_l(1)[0]
        scheduled_next = _next_temp(state, state.temp_c, draw, min(max(scheduled_kwh, 0.0), step_kwh), dt_h)
        if scheduled_next < state.min_c - _TOL_K and scheduled_kwh < step_kwh:
            return step_kwh, (
                f"limits: tank temperature would fall to {scheduled_next:.2f} C, below {state.min_c:.2f} C; "
                "heating at full power"
            )
        if scheduled_next > state.max_c + _TOL_K and scheduled_kwh > 0:
            return 0.0, (
                f"limits: tank temperature would rise to {scheduled_next:.2f} C, above {state.max_c:.2f} C; element off"
            )
        return scheduled_kwh, None

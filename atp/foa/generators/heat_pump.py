"""Heat pump: a block offer whose polytope encodes the comfort band of an RC building model.

Model (the FOA's prediction; the truth lives with the device): with x_k the heat pump's kWh in
step k, dt_h the step in hours, R (K/kW), C (kWh/K) and the COP,

    T[k+1] = T[k] + (dt_h * (T_out[k] - T[k]) / R + cop * x_k) / C
           = a * T[k] + b_k + g * x_k,   a = 1 - dt_h/(R*C),  b_k = dt_h*T_out[k]/(R*C),  g = cop/C

so every T[k] is affine in x: T[1..n] = c + M x with M lower triangular, M[i, j] = g*a^(i-j).

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

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from atp.flexoffer import FlexOffer, Polytope, Profile, Slice
from atp.foa.errors import GenerationError
from atp.foa.generator import FlexOfferGenerator, GenerationContext, register_generator
from atp.foa.states import ThermalState

__all__ = ["HeatPumpGenerator", "predict_temperatures", "thermostat_on"]

_TOL_K = 1e-6


def thermostat_on(indoor_temp_c: float, heat_on: bool, *, setpoint_c: float, deadband_c: float) -> bool:
    """Hysteresis thermostat: on below setpoint - deadband/2, off above setpoint + deadband/2."""
    if indoor_temp_c < setpoint_c - deadband_c / 2:
        return True
    if indoor_temp_c > setpoint_c + deadband_c / 2:
        return False
    return heat_on


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


@dataclass(frozen=True)
class _Block:
    """The block seen from `first_start`: model coefficients and the thermostat's prediction."""

    n: int
    step_kwh: float
    start_temp_c: float
    a: float
    g: float
    b: np.ndarray
    default_kwh: np.ndarray


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


def _block(state: ThermalState, ctx: GenerationContext, n: int) -> _Block:
    outdoor = np.asarray(state.outdoor_c(n + 1), dtype=float)
    # The step in progress runs uncontrolled: the thermostat.
    lead_h = ctx.lead_s / 3600.0
    on = thermostat_on(state.indoor_temp_c, state.heat_on, setpoint_c=state.setpoint_c, deadband_c=state.deadband_c)
    temp = _next_temp(state, state.indoor_temp_c, float(outdoor[0]), state.max_power_kw * lead_h * on, lead_h)
    start_temp = temp
    step_kwh = state.max_power_kw * ctx.slice_s / 3600.0
    dt_h = ctx.slice_s / 3600.0
    default = np.zeros(n)
    for k in range(n):
        on = thermostat_on(temp, on, setpoint_c=state.setpoint_c, deadband_c=state.deadband_c)
        default[k] = step_kwh if on else 0.0
        temp = _next_temp(state, temp, float(outdoor[k + 1]), default[k], dt_h)
    a, rate, g = _coefficients(state, ctx.slice_s)
    return _Block(n, step_kwh, start_temp, a, g, rate * outdoor[1:], default)


def _affine(block: _Block) -> tuple[np.ndarray, np.ndarray]:
    """(M, c) with T[1..n] = c + M @ x, built without Python loops."""
    k = np.arange(block.n)
    lag = k[:, None] - k[None, :]
    lower = lag >= 0
    powers = np.where(lower, block.a ** np.where(lower, lag, 0), 0.0)
    c = block.a ** (k + 1) * block.start_temp_c + powers @ block.b
    return block.g * powers, c


def _step_ranges(block: _Block, *, band: tuple[float, float]) -> np.ndarray | None:
    """Per-step energy range over the schedules that keep T[1..n] in `band`; None if there is none.

    Backward: L/U bound the temperatures from which the band can still be kept to the end.
    Forward: the lowest and highest reachable temperatures that stay within L/U.
    """
    lo_c, hi_c = band
    a, g, b, e, n = block.a, block.g, block.b, block.step_kwh, block.n
    low_ok, high_ok = np.full(n + 1, lo_c), np.full(n + 1, hi_c)
    for k in range(n - 1, 0, -1):
        low_ok[k] = max(lo_c, (low_ok[k + 1] - b[k] - g * e) / a)
        high_ok[k] = min(hi_c, (high_ok[k + 1] - b[k]) / a)
    if np.any(low_ok[1:] > high_ok[1:] + _TOL_K):
        return None
    t_low = t_high = block.start_temp_c
    ranges = np.zeros(n)
    for k in range(n):
        x_max = min(e, (high_ok[k + 1] - a * t_low - b[k]) / g)
        x_min = max(0.0, (low_ok[k + 1] - a * t_high - b[k]) / g)
        if x_max < -_TOL_K / g or x_min > e + _TOL_K / g:
            return None
        ranges[k] = max(0.0, x_max - x_min)
        t_low = max(low_ok[k + 1], a * t_low + b[k])
        t_high = min(high_ok[k + 1], a * t_high + b[k] + g * e)
    return ranges


@register_generator
class HeatPumpGenerator(FlexOfferGenerator):
    """Block Flex-Offers for a heat pump in an RC building (see the module docstring).

    `block_steps` is the block length in steps (16 = 4 h at 900 s); the world triggers the
    next offer one step before a block ends so that blocks follow each other.
    """

    load_type = "heat_pump"
    version = "1"

    def __init__(self, *, block_steps: int = 16) -> None:
        if block_steps < 1:
            raise GenerationError(f"block_steps must be at least 1, not {block_steps}")
        self.block_steps = block_steps

    def _n_steps(self, ctx: GenerationContext) -> int:
        return min(self.block_steps, ctx.steps_until(ctx.horizon_end))

    def generate(self, state: ThermalState, ctx: GenerationContext) -> FlexOffer | None:
        """One block offer from `ctx.first_start`; None when the horizon holds no whole step."""
        state = _check_state(state)
        n = self._n_steps(ctx)
        if n == 0:
            return None
        block = _block(state, ctx, n)
        m, c = _affine(block)
        temps = c + m @ block.default_kwh
        lo_c = min(state.comfort_min_c, float(temps.min()))
        hi_c = max(state.comfort_max_c, float(temps.max()))
        a_matrix = np.vstack([m, -m])
        b_vector = np.concatenate([hi_c - c, c - lo_c])
        profile = Profile(
            slices=(Slice(n, (0.0, block.step_kwh)),),
            polytope=Polytope(
                A=tuple(tuple(float(v) for v in row) for row in a_matrix),
                b=tuple(float(v) for v in b_vector),
            ),
        )
        return ctx.block_offer(self.load_type, profile, block.default_kwh)

    def captured_flexibility(self, state: ThermalState, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """Share of the device's per-step ranges over the horizon that the offer's block captures."""
        state = _check_state(state)
        horizon = ctx.steps_until(ctx.horizon_end)
        if horizon == 0:
            return 1.0
        true_ranges = _step_ranges(_block(state, ctx, horizon), band=(state.comfort_min_c, state.comfort_max_c))
        if true_ranges is None or true_ranges.sum() <= 1e-9:
            return 1.0
        if offer is None or not offer.profiles:
            return 0.0
        n = min(offer.profiles[0].n_steps, horizon)
        block = _block(state, ctx, n)
        m, c = _affine(block)
        temps = c + m @ block.default_kwh
        band = (min(state.comfort_min_c, float(temps.min())), max(state.comfort_max_c, float(temps.max())))
        offer_ranges = _step_ranges(block, band=band)
        if offer_ranges is None:
            return 0.0
        captured = np.minimum(offer_ranges, true_ranges[:n]).sum()
        return float(min(1.0, max(0.0, captured / true_ranges.sum())))

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
        if scheduled_next < state.comfort_min_c - _TOL_K and scheduled_kwh < step_kwh:
            return step_kwh, (
                f"comfort: indoor temperature would fall to {scheduled_next:.2f} C, below "
                f"{state.comfort_min_c:.2f} C; heating at full power"
            )
        if scheduled_next > state.comfort_max_c + _TOL_K and scheduled_kwh > 0:
            return 0.0, (
                f"comfort: indoor temperature would rise to {scheduled_next:.2f} C, above "
                f"{state.comfort_max_c:.2f} C; heat pump off"
            )
        return scheduled_kwh, None

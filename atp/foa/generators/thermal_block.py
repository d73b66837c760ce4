"""A one-state thermal store behind a thermostat, as block Flex-Offers see it.

Shared by the heat pump (an RC building) and the water heater (a tank with draws): with x_k
the energy of step k (kWh) and T[k] the store's temperature,

    T[k+1] = a_k * T[k] + b_k + g * x_k,

so every T[k] is affine in x: T[1..n] = c + M x, M lower triangular,
M[i, j] = g * a_{j+1} * ... * a_i. A device module gives the coefficients of its model
(`ThermalBlock`: a_k, b_k, g, the full-power step energy and the temperature at the block's
start); this module gives the thermostat's default schedule, the offer's polytope (exactly the
temperature band: `M x <= hi - c`, `-M x <= c - lo`, the band widened just enough to contain
the default trajectory so the default is feasible) and the per-step energy ranges that keep
the band (for captured flexibility). `ThermalBlockGenerator` is the generator both build on.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from atp.flexoffer import FlexOffer, Polytope, Profile, Slice
from atp.foa.errors import GenerationError
from atp.foa.generator import FlexOfferGenerator, GenerationContext

__all__ = ["ThermalBlock", "ThermalBlockGenerator", "thermostat_on", "thermostat_schedule"]

TOL_K = 1e-6


def thermostat_on(temp_c: float, heat_on: bool, *, setpoint_c: float, deadband_c: float) -> bool:
    """Hysteresis thermostat: on below setpoint - deadband/2, off above setpoint + deadband/2."""
    if temp_c < setpoint_c - deadband_c / 2:
        return True
    if temp_c > setpoint_c + deadband_c / 2:
        return False
    return heat_on


@dataclass(frozen=True)
class ThermalBlock:
    """The block seen from `first_start`: coefficients per step and the thermostat's schedule."""

    start_temp_c: float
    a: np.ndarray  # per step, 0 < a_k <= 1
    b: np.ndarray  # per step, degrees C
    g: float  # K per kWh
    step_kwh: float  # full power for one step
    default_kwh: np.ndarray

    @property
    def n(self) -> int:
        return len(self.a)

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(M, c) with T[1..n] = c + M @ x, without Python loops."""
        growth = np.cumprod(self.a)  # a_0 * ... * a_i
        ratio = np.tril(growth[:, None] / growth[None, :])  # a_{j+1} * ... * a_i for j <= i
        return self.g * ratio, growth * self.start_temp_c + ratio @ self.b

    def band(self, lo_c: float, hi_c: float) -> tuple[float, float]:
        """[lo_c, hi_c] widened just enough to contain the default trajectory."""
        m, c = self.affine()
        temps = c + m @ self.default_kwh
        return min(lo_c, float(temps.min())), max(hi_c, float(temps.max()))

    def profile(
        self, lo_c: float, hi_c: float, *, keep_end_level: bool = False, end_max_c: float | None = None
    ) -> Profile:
        """One slice of `n` steps in [0, step_kwh], its polytope exactly the band (widened).

        `keep_end_level`: one more row, T[n] >= the default trajectory's T[n]: the store ends the
        block at least as warm as its thermostat would leave it, so a schedule moves heat in time
        but cannot draw less by leaving the store colder (comfort spent is not flexibility).
        `end_max_c` (with `keep_end_level`, e.g. the thermostat's cut-out): one more row,
        T[n] <= max(end_max_c, the default's T[n]): heat banked beyond what the thermostat keeps
        would lower the next block's default below what the device draws uncontrolled."""
        lo_c, hi_c = self.band(lo_c, hi_c)
        m, c = self.affine()
        rows, rhs = [m, -m], [hi_c - c, c - lo_c]
        if keep_end_level:
            end_c = float(c[-1] + m[-1] @ self.default_kwh)
            rows.append(-m[-1:])
            rhs.append(np.array([c[-1] - end_c]))
            if end_max_c is not None:
                rows.append(m[-1:])
                rhs.append(np.array([max(end_max_c, end_c) - c[-1]]))
        return Profile(
            slices=(Slice(self.n, (0.0, self.step_kwh)),),
            polytope=Polytope(
                A=tuple(tuple(float(v) for v in row) for row in np.vstack(rows)),
                b=tuple(float(v) for v in np.concatenate(rhs)),
            ),
        )

    def step_ranges(self, lo_c: float, hi_c: float) -> np.ndarray | None:
        """Per-step energy range over the schedules that keep T[1..n] in [lo_c, hi_c]; None if none.

        Backward: bounds on the temperatures from which the band can still be kept to the end.
        Forward: the lowest and highest reachable temperatures within those bounds.
        """
        a, b, g, e, n = self.a, self.b, self.g, self.step_kwh, self.n
        low_ok, high_ok = np.full(n + 1, lo_c), np.full(n + 1, hi_c)
        for k in range(n - 1, 0, -1):
            low_ok[k] = max(lo_c, (low_ok[k + 1] - b[k] - g * e) / a[k])
            high_ok[k] = min(hi_c, (high_ok[k + 1] - b[k]) / a[k])
        if np.any(low_ok[1:] > high_ok[1:] + TOL_K):
            return None
        t_low = t_high = self.start_temp_c
        ranges = np.zeros(n)
        for k in range(n):
            x_max = min(e, (high_ok[k + 1] - a[k] * t_low - b[k]) / g)
            x_min = max(0.0, (low_ok[k + 1] - a[k] * t_high - b[k]) / g)
            if x_max < -TOL_K / g or x_min > e + TOL_K / g:
                return None
            ranges[k] = max(0.0, x_max - x_min)
            t_low = max(low_ok[k + 1], a[k] * t_low + b[k])
            t_high = min(high_ok[k + 1], a[k] * t_high + b[k] + g * e)
        return ranges


def thermostat_schedule(
    start_temp_c: float,
    heat_on: bool,
    *,
    n: int,
    step_kwh: float,
    setpoint_c: float,
    deadband_c: float,
    next_temp: Callable[[float, int, float], float],
) -> np.ndarray:
    """The thermostat's predicted operation over `n` steps (full power while on), the
    temperature stepped by the device's own model `next_temp(temp_c, step, energy_kwh)`."""
    default = np.zeros(n)
    temp, on = start_temp_c, heat_on
    for k in range(n):
        on = thermostat_on(temp, on, setpoint_c=setpoint_c, deadband_c=deadband_c)
        default[k] = step_kwh if on else 0.0
        temp = next_temp(temp, k, default[k])
    return default


class ThermalBlockGenerator(FlexOfferGenerator):
    """Block offers of `block_steps` steps for a thermal store; the device gives its model.

    Subclasses give `block(state, ctx, n)` (the ThermalBlock from `ctx.first_start`) and
    `band(state)` (the user's temperature limits); the world triggers the next offer one step
    before a block ends so that blocks follow each other.
    """

    def __init__(self, *, block_steps: int = 16, keep_end_level: bool = True) -> None:
        if block_steps < 1:
            raise GenerationError(f"block_steps must be at least 1, not {block_steps}")
        self.block_steps = block_steps
        self.keep_end_level = keep_end_level  # see ThermalBlock.profile

    @abstractmethod
    def block(self, state: Any, ctx: GenerationContext, n: int) -> ThermalBlock:
        """The device's model over `n` steps from `ctx.first_start`."""

    @abstractmethod
    def band(self, state: Any) -> tuple[float, float]:
        """The user's temperature limits (C)."""

    def cut_out(self, state: Any) -> float | None:
        """The thermostat's cut-out (C), the warmest end of a block under `keep_end_level`
        (`ThermalBlock.profile`); None (the default) leaves the end open upwards."""
        return None

    def generate(self, state: Any, ctx: GenerationContext) -> FlexOffer | None:
        """One block offer from `ctx.first_start`; None when the horizon holds no whole step."""
        n = min(self.block_steps, ctx.steps_until(ctx.horizon_end))
        if n == 0:
            return None
        block = self.block(state, ctx, n)
        profile = block.profile(*self.band(state), keep_end_level=self.keep_end_level, end_max_c=self.cut_out(state))
        return ctx.block_offer(self.load_type, profile, block.default_kwh)

    def captured_flexibility(self, state: Any, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """Share of the device's per-step ranges over the horizon that the offer's block captures:
        per step, the range of energies some band-keeping schedule takes (exact for a one-state
        model), the offer's (capped by the device's) over the device's; 1.0 when the device has
        no band-keeping operation."""
        horizon = ctx.steps_until(ctx.horizon_end)
        if horizon == 0:
            return 1.0
        true_ranges = self.block(state, ctx, horizon).step_ranges(*self.band(state))
        if true_ranges is None or true_ranges.sum() <= 1e-9:
            return 1.0
        if offer is None or not offer.profiles:
            return 0.0
        block = self.block(state, ctx, min(offer.profiles[0].n_steps, horizon))
        offer_ranges = block.step_ranges(*block.band(*self.band(state)))
        if offer_ranges is None:
            return 0.0
        captured = np.minimum(offer_ranges, true_ranges[: block.n]).sum()
        return float(min(1.0, max(0.0, captured / true_ranges.sum())))

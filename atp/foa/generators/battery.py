"""Battery storage: a block offer whose dependency (or polytope) constraint keeps the state of charge.

Model (the FOA's prediction; the truth lives with the device). With x_j the grid-side kWh of
step j (positive = charging, negative = discharging to the home or grid), the stored energy
changes by `f(x) = eta_c * x` for x >= 0 and `f(x) = x / eta_d` for x < 0, so the state of
charge after i steps is `S_i = S_0 + f(x_0) + ... + f(x_(i-1))`. With losses, S_i is not a
function of the accumulated grid energy d_i = x_0 + ... + x_(i-1) (cycling loses energy), so
the offer uses inner (conservative) bounds that are linear in d_i:

- Upper: `f(x) <= eta_c * x` for every x (since 1/eta_d >= eta_c), hence
  `S_i <= S_0 + eta_c * d_i`; requiring `d_i <= hi = (soc_max - S_0) / eta_c` keeps S_i <= soc_max.
- Lower: f is concave on `[-e_d, e_c]` (slope 1/eta_d, then eta_c), so it lies above its chord
  `l(x) = alpha * x + beta` through both ends, with `alpha > 0` and `beta <= 0`. Hence
  `S_i >= S_0 + alpha * d_i + i * beta`; requiring `d_i >= lo_i = (soc_min - S_0 - i * beta) / alpha`
  keeps S_i >= soc_min. `-i * beta` is the worst-case cycling loss of i steps.

After one step nothing can have cycled, so `lo_1 = (soc_min - S_0) * eta_d` exactly. Both
bounds are exact without losses (alpha = 1, beta = 0, f(x) = x). Every schedule that keeps
every prefix sum d_i within [lo_i, hi] and every step within its slice therefore keeps the
predicted state of charge within [soc_min, soc_max] at every step boundary.

Offer (D2.1 7.1, steps 1 and 4): a block of the next `block_steps` steps from `first_start`, no
time flexibility, slices `[-e_d, e_c]` with `e_c` the charge and `e_d` the discharge limit in kWh
per step (each also capped to what the whole state-of-charge window can take or give in a step,
which no feasible schedule exceeds anyway, and which tightens the chord). The prefix constraints
are given either as the dependency-based constraint (default, D2.1's first choice): per step i
the points `[d, lower, upper]` of `lower(d) = max(-e_d, lo_(i+1) - d)` and
`upper(d) = min(e_c, hi - d)` over the exact range of d reachable by feasible schedules (the
kinks are points, so the interpolation is exact); or as a polytope of the rows
`sum(x[:k]) <= hi` and `-sum(x[:k]) <= -lo_k` (`form="polytope"`, rows the slices already
imply left out). Both forms describe the same set of schedules.

Energy neutral (default, `energy_neutral=True`): the offer's total-energy constraint is
`[0, n * e_c]`, so every feasible schedule takes from the grid at least what it returns and the
battery ends its block with at least its starting charge minus cycling losses; without it a
planner could sell the stored energy of the morning as "savings".

Default schedule: idle (zeros): uncontrolled, the battery does nothing (self-consumption control
is out of scope). The step in progress (now to `first_start`) is idle too. To keep idle
feasible with losses (`lo_n <= 0`), the discharge limit `e_d` of the offer is lowered when the
battery is so close to `soc_min` that `n` steps of worst-case cycling loss would not fit; the
price of soundness is that discharging is limited near `soc_min` by up to `n * (-beta)` kWh
(about 0.06 kWh per step for 5 kW at 900 s and 95 % efficiencies).

Captured flexibility: per step, the range of grid energies the step can take in some schedule
that keeps the state of charge within its limits (exact for the true lossy device: the stored
energies reachable before a step form an interval). The offer's ranges over its block, capped by
the device's, divided by the device's ranges over the whole horizon (24 h by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from atp.flexoffer import DependencyPoint, FlexOffer, Polytope, Profile, Slice
from atp.foa.errors import GenerationError, StateError
from atp.foa.generator import FlexOfferGenerator, GenerationContext, register_generator

__all__ = ["BatteryGenerator", "BatteryState", "ConstraintForm"]

ConstraintForm = Literal["dependency", "polytope"]
_FORMS: tuple[str, ...] = ("dependency", "polytope")
_TOL_KWH = 1e-6


@dataclass(frozen=True)
class BatteryState:
    """A stationary battery behind an inverter: stored energy, limits and efficiencies.

    `soc_kwh` is stored (battery-side) now and must stay within `[soc_min_kwh, soc_max_kwh]`;
    `max_charge_kw` and `max_discharge_kw` are grid-side powers; charging x grid kWh stores
    `charge_efficiency * x`, discharging y grid kWh removes `y / discharge_efficiency`.
    """

    capacity_kwh: float
    soc_kwh: float
    soc_min_kwh: float
    soc_max_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95

    def __post_init__(self) -> None:
        for name in (
            "capacity_kwh",
            "soc_kwh",
            "soc_min_kwh",
            "soc_max_kwh",
            "max_charge_kw",
            "max_discharge_kw",
            "charge_efficiency",
            "discharge_efficiency",
        ):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise StateError(f"{name} must be a finite number, not {value!r}")
        for name in ("capacity_kwh", "max_charge_kw", "max_discharge_kw"):
            if getattr(self, name) <= 0:
                raise StateError(f"{name} must be positive, not {getattr(self, name)}")
        for name in ("charge_efficiency", "discharge_efficiency"):
            if not 0 < getattr(self, name) <= 1:
                raise StateError(f"{name} must lie in (0, 1], not {getattr(self, name)}")
        if not 0 <= self.soc_min_kwh <= self.soc_max_kwh <= self.capacity_kwh:
            raise StateError(
                f"need 0 <= soc_min_kwh ({self.soc_min_kwh}) <= soc_max_kwh ({self.soc_max_kwh}) "
                f"<= capacity_kwh ({self.capacity_kwh})"
            )
        if not self.soc_min_kwh - _TOL_KWH <= self.soc_kwh <= self.soc_max_kwh + _TOL_KWH:
            raise StateError(
                f"soc_kwh {self.soc_kwh} must lie within [soc_min_kwh={self.soc_min_kwh}, "
                f"soc_max_kwh={self.soc_max_kwh}]"
            )


@dataclass(frozen=True)
class _Block:
    """The block's prefix-sum bounds: lo[i] <= d_i <= hi for i = 0..n, steps in [-e_d, e_c].

    `lo` is tightened backwards (lo[i] >= lo[i+1] - e_c); `d_low`/`d_high` bound the prefix
    sums reachable by feasible schedules (forward and backward), so they are exact.
    """

    n: int
    charge_kwh: float
    discharge_kwh: float
    hi: float
    lo: np.ndarray
    lo_soc: np.ndarray
    d_low: np.ndarray
    d_high: np.ndarray


def _check_state(state: object) -> BatteryState:
    if not isinstance(state, BatteryState):
        raise GenerationError(f"the battery generator needs a BatteryState, not {type(state).__name__}")
    return state


def _chord(eta_c: float, eta_d: float, charge_kwh: float, discharge_kwh: float) -> tuple[float, float]:
    """(alpha, beta) of the chord of f over [-discharge_kwh, charge_kwh]; alpha > 0, beta <= 0."""
    span = charge_kwh + discharge_kwh
    alpha = (eta_c * charge_kwh + discharge_kwh / eta_d) / span
    beta = charge_kwh * discharge_kwh * (eta_c - 1.0 / eta_d) / span
    return alpha, min(beta, 0.0)


def _offer_discharge_kwh(state: BatteryState, n: int, charge_kwh: float, discharge_kwh: float) -> float:
    """The discharge limit per step such that the worst-case cycling loss of n steps fits above soc_min.

    The loss per step is c*e*k/(c+e) with k = 1/eta_d - eta_c; solving n*loss = reserve for e.
    One step cannot cycle (its bound is exact), so a one-step block keeps the full limit.
    """
    k = 1.0 / state.discharge_efficiency - state.charge_efficiency
    reserve = max(0.0, state.soc_kwh - state.soc_min_kwh)
    denominator = n * charge_kwh * k - reserve
    if n == 1 or denominator <= 0:
        return discharge_kwh
    return min(discharge_kwh, reserve * charge_kwh / denominator)


def _block(state: BatteryState, slice_s: int, n: int) -> _Block:
    dt_h = slice_s / 3600.0
    window = state.soc_max_kwh - state.soc_min_kwh
    # No step can move more than the whole window: the slices say so, and the chord gets tighter.
    charge = min(state.max_charge_kw * dt_h, window / state.charge_efficiency)
    discharge = min(state.max_discharge_kw * dt_h, window * state.discharge_efficiency)
    discharge = _offer_discharge_kwh(state, n, charge, discharge)
    soc = min(max(state.soc_kwh, state.soc_min_kwh), state.soc_max_kwh)
    hi = (state.soc_max_kwh - soc) / state.charge_efficiency
    steps = np.arange(n + 1, dtype=float)
    if charge + discharge > 0:
        alpha, beta = _chord(state.charge_efficiency, state.discharge_efficiency, charge, discharge)
        # lo_n <= 0 by the choice of `discharge`; min() only removes rounding so that idle stays feasible.
        lo_soc = np.minimum((state.soc_min_kwh - soc - steps * beta) / alpha, 0.0)
    else:
        lo_soc = np.zeros(n + 1)
    # After one step the state of charge is S_0 + f(x_0) exactly: d_1 >= (soc_min - S_0) * eta_d.
    lo_soc[1] = (state.soc_min_kwh - soc) * state.discharge_efficiency
    lo = lo_soc.copy()
    for i in range(n - 1, -1, -1):
        lo[i] = max(lo[i], lo[i + 1] - charge)
    d_low, d_high = np.zeros(n + 1), np.zeros(n + 1)
    for i in range(n):
        d_low[i + 1] = max(lo[i + 1], d_low[i] - discharge)
        d_high[i + 1] = min(hi, d_high[i] + charge)
    return _Block(n, charge, discharge, hi, lo, lo_soc, d_low, d_high)


def _step_bounds(block: _Block, i: int, d: float) -> tuple[float, float]:
    lower = max(-block.discharge_kwh, float(block.lo[i + 1]) - d)
    upper = min(block.charge_kwh, block.hi - d)
    return lower, max(upper, lower)


def _dependency(block: _Block) -> tuple[tuple[DependencyPoint, ...], ...]:
    """Per step, the points [d, lower, upper] of the exact piecewise-linear step bounds."""
    steps = []
    for i in range(block.n):
        low, high = float(block.d_low[i]), float(block.d_high[i])
        kinks = (float(block.lo[i + 1]) + block.discharge_kwh, block.hi - block.charge_kwh)
        ds = sorted({low, high, *(k for k in kinks if low < k < high)})
        steps.append(tuple((d, *_step_bounds(block, i, d)) for d in ds))
    return tuple(steps)


def _polytope(block: _Block) -> Polytope | None:
    """Rows sum(x[:k]) <= hi and -sum(x[:k]) <= -lo_k, without those the slices already imply."""
    rows: list[tuple[float, ...]] = []
    rhs: list[float] = []
    n = block.n
    for k in range(1, n + 1):
        if k * block.charge_kwh > block.hi + 1e-12:
            rows.append((1.0,) * k + (0.0,) * (n - k))
            rhs.append(block.hi)
        if -k * block.discharge_kwh < block.lo_soc[k] - 1e-12:
            rows.append((-1.0,) * k + (0.0,) * (n - k))
            rhs.append(-float(block.lo_soc[k]))
    if not rows:
        return None
    return Polytope(A=tuple(rows), b=tuple(rhs))


def _offer_ranges(block: _Block) -> np.ndarray:
    """Per-step range of x_i over the block's feasible schedules (exact: prefix sums are intervals)."""
    upper = np.minimum(block.charge_kwh, block.hi - block.d_low[:-1])
    lower = np.maximum(-block.discharge_kwh, block.lo[1:] - block.d_high[:-1])
    return np.maximum(upper - lower, 0.0)


def _device_ranges(state: BatteryState, slice_s: int, n: int) -> np.ndarray:
    """Per-step range of x_k for the true lossy battery over n steps from the current state."""
    dt_h = slice_s / 3600.0
    charge, discharge = state.max_charge_kw * dt_h, state.max_discharge_kw * dt_h
    eta_c, eta_d = state.charge_efficiency, state.discharge_efficiency
    k = np.arange(n, dtype=float)
    soc_low = np.maximum(state.soc_min_kwh, state.soc_kwh - k * discharge / eta_d)
    soc_high = np.minimum(state.soc_max_kwh, state.soc_kwh + k * charge * eta_c)
    upper = np.minimum(charge, np.maximum(state.soc_max_kwh - soc_low, 0.0) / eta_c)
    lower = np.maximum(-discharge, -np.maximum(soc_high - state.soc_min_kwh, 0.0) * eta_d)
    return np.maximum(upper - lower, 0.0)


@register_generator
class BatteryGenerator(FlexOfferGenerator):
    """Block Flex-Offers for a stationary battery (see the module docstring for the model).

    `block_steps` is the block length in steps (16 = 4 h at 900 s); `form` chooses how the
    state-of-charge limits are written: `"dependency"` (default) or `"polytope"`.
    """

    load_type = "battery"
    version = "1"

    def __init__(
        self, *, block_steps: int = 16, form: ConstraintForm = "dependency", energy_neutral: bool = True
    ) -> None:
        if block_steps < 1:
            raise GenerationError(f"block_steps must be at least 1, not {block_steps}")
        if form not in _FORMS:
            raise GenerationError(f"form must be one of {', '.join(_FORMS)}, not {form!r}")
        self.block_steps = block_steps
        self.form: ConstraintForm = form
        self.energy_neutral = energy_neutral

    def _n_steps(self, ctx: GenerationContext) -> int:
        return min(self.block_steps, ctx.steps_until(ctx.horizon_end))

    def generate(self, state: BatteryState, ctx: GenerationContext) -> FlexOffer | None:
        """One block offer from `ctx.first_start`; None without a whole step or without flexibility."""
        state = _check_state(state)
        n = self._n_steps(ctx)
        if n == 0:
            return None
        block = _block(state, ctx.slice_s, n)
        if _offer_ranges(block).sum() <= 1e-9:
            return None
        # Energy neutral: the block takes from the grid at least what it gives back, so a schedule
        # cannot "save" energy by emptying the battery (what the uncontrolled, idle battery would
        # not have done); the charge at the block's end is then at least S_0 minus cycling losses.
        total = (0.0, n * block.charge_kwh) if self.energy_neutral else None
        slices = (Slice(n, (-block.discharge_kwh, block.charge_kwh)),)
        if self.form == "dependency":
            profile = Profile(slices=slices, total_energy=total, dependency=_dependency(block))
        else:
            profile = Profile(slices=slices, total_energy=total, polytope=_polytope(block))
        return ctx.block_offer(self.load_type, profile, (0.0,) * n)

    def captured_flexibility(self, state: BatteryState, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """Share of the device's per-step ranges over the horizon that the offer's block captures."""
        state = _check_state(state)
        horizon = ctx.steps_until(ctx.horizon_end)
        if horizon == 0:
            return 1.0
        true_ranges = _device_ranges(state, ctx.slice_s, horizon)
        if true_ranges.sum() <= 1e-9:
            return 1.0
        if offer is None or not offer.profiles:
            return 0.0
        n = min(offer.profiles[0].n_steps, horizon)
        captured = np.minimum(_offer_ranges(_block(state, ctx.slice_s, n)), true_ranges[:n]).sum()
        return float(min(1.0, max(0.0, captured / true_ranges.sum())))

    def keep_limits(
        self, state: BatteryState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """Clip the step to what the measured state of charge and the power limits allow."""
        state = _check_state(state)
        dt_h = slice_s / 3600.0
        upper = min(state.max_charge_kw * dt_h, max(0.0, state.soc_max_kwh - state.soc_kwh) / state.charge_efficiency)
        lower = max(
            -state.max_discharge_kw * dt_h, -max(0.0, state.soc_kwh - state.soc_min_kwh) * state.discharge_efficiency
        )
        if scheduled_kwh > upper + 1e-9:
            return upper, (
                f"state of charge: {scheduled_kwh:.3f} kWh of charging exceeds the {upper:.3f} kWh the battery "
                f"can take now ({state.soc_kwh:.3f} of at most {state.soc_max_kwh:.3f} kWh stored); clipped"
            )
        if scheduled_kwh < lower - 1e-9:
            return lower, (
                f"state of charge: {-scheduled_kwh:.3f} kWh of discharging exceeds the {-lower:.3f} kWh the battery "
                f"can give now ({state.soc_kwh:.3f} of at least {state.soc_min_kwh:.3f} kWh stored); clipped"
            )
        return scheduled_kwh, None

"""Industrial process (KIBERnet style): an hour-ahead adaptation capacity with a make-up window.

A factory plans its consumption per hour (`baseline_kw_by_hour`). It tolerates consuming
`down_kw` less or `up_kw` more than planned, but energy not consumed is production not done:
the backlog (planned minus consumed kWh, positive = owed) must stay within `max_backlog_kwh`
at all times and be back within `tolerance_kwh` at most `makeup_s` seconds after the hour of
adaptation (D2.1 1.5 and 3.3: the prosumer offers its adaptation capacity for the hour ahead,
with a price).

Offer (D2.1 7.1: energy flexibility, then total energy, then a polytope; no time flexibility):

- A block from `first_start` of `3600 // slice_s` steps (at least one: the hour ahead) plus
  the make-up window of `makeup_s // slice_s` steps, cut at the 24 h horizon.
- Slices (one per step): `[max(0, baseline - down * dt_h), baseline + up * dt_h]` kWh.
- Total energy: `[B + b0 - tolerance, B + b0 + tolerance]`, B the baseline's total and b0 the
  backlog now, so that every schedule leaves the backlog within the tolerance (the adaptation
  is compensated). When |b0| exceeds the tolerance the bounds are widened just enough to
  contain B, so the default stays feasible.
- Polytope (2n rows): the backlog after each step stays within `+/- max_backlog_kwh`
  (widened to contain b0 when the process already exceeds it).
- `mode` from the context; a direct offer carries the context's price (KIBERnet: the
  adaptation is refunded at the offered price).

Default schedule: the baseline (what the process consumes uncontrolled).

Captured flexibility: the offer's per-step ranges (upper - lower, summed) over the process's
per-step adaptation ranges over the whole horizon (24 h by default): an hour plus a 2 h
make-up window of a 24 h horizon captures an eighth. 1.0 when the process has no adaptation
capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from atp.flexoffer import FlexOffer, Polytope, Profile, Slice
from atp.foa.errors import GenerationError, StateError
from atp.foa.generator import FlexOfferGenerator, GenerationContext, register_generator

__all__ = ["IndustrialGenerator", "IndustrialState", "baseline_kwh"]

_HOUR_S = 3600


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise StateError(message)


@dataclass(frozen=True)
class IndustrialState:
    """An industrial process: its hourly plan, adaptation capacity, make-up rule and backlog.

    `baseline_kw_by_hour[h]` is the planned power over the hour starting `plan_start + h`
    hours (`plan_start` on a full hour, at or before now); after the plan's end the last value
    repeats. `backlog_kwh` is planned minus consumed energy so far (positive = owed).
    """

    plan_start: datetime
    baseline_kw_by_hour: tuple[float, ...]
    up_kw: float
    down_kw: float
    max_backlog_kwh: float
    tolerance_kwh: float
    makeup_s: int
    backlog_kwh: float = 0.0

    def __post_init__(self) -> None:
        _require(self.plan_start.tzinfo is not None, "plan_start must be timezone-aware (e.g. UTC)")
        _require(self.plan_start.timestamp() % _HOUR_S == 0, "plan_start must be on a full hour")
        _require(len(self.baseline_kw_by_hour) > 0, "baseline_kw_by_hour needs at least one hour")
        for h, p in enumerate(self.baseline_kw_by_hour):
            _require(math.isfinite(p) and p >= 0, f"baseline_kw_by_hour[{h}] must be a number >= 0, not {p!r}")
        for name in ("up_kw", "down_kw", "max_backlog_kwh", "tolerance_kwh"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value >= 0, f"{name} must be a number >= 0, not {value!r}")
        _require(self.makeup_s >= 0, f"makeup_s must not be negative, not {self.makeup_s}")
        _require(math.isfinite(self.backlog_kwh), f"backlog_kwh must be a finite number, not {self.backlog_kwh!r}")

    def baseline_kw(self, hour: int) -> float:
        """The planned power over the hour-th hour from `plan_start` (the last value repeats)."""
        plan = self.baseline_kw_by_hour
        return float(plan[min(max(hour, 0), len(plan) - 1)])


def baseline_kwh(state: IndustrialState, start: datetime, duration_s: float) -> float:
    """The planned kWh over [start, start + duration_s), integrating the hourly plan."""
    t = (start - state.plan_start).total_seconds()
    end = t + duration_s
    total = 0.0
    while t < end - 1e-9:
        hour = math.floor(t / _HOUR_S)
        seg_end = min(end, (hour + 1) * _HOUR_S)
        total += state.baseline_kw(hour) * (seg_end - t) / 3600.0
        t = seg_end
    return total


def _check_state(state: object) -> IndustrialState:
    if not isinstance(state, IndustrialState):
        raise GenerationError(f"the industrial generator needs an IndustrialState, not {type(state).__name__}")
    return state


def _bounds(state: IndustrialState, ctx: GenerationContext, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(baseline, lower, upper) kWh per step for n steps from `first_start`."""
    dt_h = ctx.slice_s / 3600.0
    base = np.array(
        [baseline_kwh(state, ctx.first_start + timedelta(seconds=k * ctx.slice_s), ctx.slice_s) for k in range(n)]
    )
    return base, np.maximum(base - state.down_kw * dt_h, 0.0), base + state.up_kw * dt_h


@register_generator
class IndustrialGenerator(FlexOfferGenerator):
    """Hour-ahead adaptation offers of an industrial process (see the module docstring).

    The world triggers it every hour; `adapt_s` is the adaptation period (1 h, KIBERnet).
    """

    load_type = "industrial"
    version = "1"

    def __init__(self, *, adapt_s: int = _HOUR_S) -> None:
        if adapt_s <= 0:
            raise GenerationError(f"adapt_s must be positive, not {adapt_s}")
        self.adapt_s = adapt_s

    def _n_steps(self, state: IndustrialState, ctx: GenerationContext) -> int:
        n = max(1, self.adapt_s // ctx.slice_s) + state.makeup_s // ctx.slice_s
        return min(n, ctx.steps_until(ctx.horizon_end))

    def generate(self, state: IndustrialState, ctx: GenerationContext) -> FlexOffer | None:
        """One offer for the hour ahead and its make-up window; None when the horizon holds no step."""
        state = _check_state(state)
        n = self._n_steps(state, ctx)
        if n == 0:
            return None
        base, lower, upper = _bounds(state, ctx, n)
        b_total, b0, tol = float(base.sum()), state.backlog_kwh, state.tolerance_kwh
        total = (min(b_total + b0 - tol, b_total), max(b_total + b0 + tol, b_total))
        # backlog after step k = b0 + cumsum(base - x)[k]; keep it within +/- max (containing b0).
        limit = max(state.max_backlog_kwh, abs(b0))
        cum_base = np.cumsum(base)
        tri = np.tril(np.ones((n, n)))
        a_matrix = np.vstack([tri, -tri])
        b_vector = np.concatenate([cum_base + b0 + limit, limit - b0 - cum_base])
        profile = Profile(
            slices=tuple(Slice(1, (float(lo), float(hi))) for lo, hi in zip(lower, upper, strict=True)),
            total_energy=(float(total[0]), float(total[1])),
            polytope=Polytope(
                A=tuple(tuple(float(v) for v in row) for row in a_matrix), b=tuple(float(v) for v in b_vector)
            ),
        )
        return ctx.block_offer(self.load_type, profile, base)

    def captured_flexibility(self, state: IndustrialState, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """The offer's summed per-step ranges over the process's over the horizon, in [0, 1]."""
        state = _check_state(state)
        horizon = ctx.steps_until(ctx.horizon_end)
        if horizon == 0:
            return 1.0
        _, lower, upper = _bounds(state, ctx, horizon)
        true_range = float((upper - lower).sum())
        if true_range <= 1e-9:
            return 1.0
        if offer is None or not offer.profiles:
            return 0.0
        profile = offer.profiles[0]
        m = min(profile.n_steps, horizon)
        offered = np.minimum(profile.upper_kwh()[:m] - profile.lower_kwh()[:m], (upper - lower)[:m]).sum()
        return float(min(1.0, max(0.0, offered / true_range)))

    def keep_limits(
        self, state: IndustrialState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """Clip the step to the process's limits now: the adaptation capacity around the plan and
        the backlog the process can hold."""
        state = _check_state(state)
        dt_h = slice_s / 3600.0
        base = baseline_kwh(state, now, slice_s)
        lo = max(0.0, base - state.down_kw * dt_h, base + state.backlog_kwh - state.max_backlog_kwh)
        hi = base + state.up_kw * dt_h
        hi = max(lo, min(hi, base + state.backlog_kwh + state.max_backlog_kwh))
        executed = min(max(scheduled_kwh, lo), hi)
        if abs(executed - scheduled_kwh) <= 1e-9:
            return scheduled_kwh, None
        return executed, (
            f"process limits: {scheduled_kwh:.3f} kWh is outside [{lo:.3f}, {hi:.3f}] kWh "
            f"(plan {base:.3f} kWh, backlog {state.backlog_kwh:.3f} kWh); clipped"
        )

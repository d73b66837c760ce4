"""EV charging: one Flex-Offer per charging session, with time, energy and total-energy flexibility.

Model (D2.1 7.1 modelling order, steps 1-3; no polytope is needed):

- The step in progress (now to `first_start`) runs uncontrolled at full power; the generator
  predicts the energy stored at `first_start` from it.
- `needed` = (target - stored at first start) / efficiency, grid-side kWh. With `e` = the
  charger's kWh per step, the profile has `n = ceil(needed / e)` steps of `[0, e]` kWh: the
  fewest steps that can deliver the need at full power.
- Time flexibility: the profile may start from `first_start` to the last start that still
  ends by the departure (whole steps, within the 24 h horizon).
- Total energy: `[needed, min(n*e, needed + headroom)]`, where headroom is what the battery
  can store above the target (so the upper bound is a small slack inside the last step).
- Default schedule: uncontrolled charging, full power from `first_start`, the last step partial.
- `assignment_before` is `first_start`.

Every feasible schedule delivers the target by departure (the total's lower bound is the need
and the profile ends by departure) and never overfills the battery (the upper bound stays
below the capacity). When the departure is too close to deliver the need, the offer is the
full-power charging that is possible, with no flexibility. No offer when unplugged, when the
target is already stored, or when no whole step is left before departure.

Captured flexibility: the area-based measure (Valsomatzis et al., 2015) over the whole steps
from `first_start` to departure: the sum over steps j of the width between the highest and
the lowest cumulative grid energy after step j among feasible schedules. The device's true
set: any per-step energy in `[0, e]` with a total from `needed` up to a full battery; the
offer's set: its schedules. The ratio is < 1 when the departure lies beyond the horizon or
when the battery could take more than the offer's small slack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from atp.flexoffer import DefaultSchedule, FlexOffer, Profile, Slice
from atp.foa.errors import GenerationError
from atp.foa.generator import FlexOfferGenerator, GenerationContext, register_generator
from atp.foa.states import EVState

__all__ = ["EVGenerator"]

_TOL_KWH = 1e-6


@dataclass(frozen=True)
class _ChargePlan:
    """The session seen from `first_start`: what is needed and how many steps are left."""

    start: datetime
    step_kwh: float
    needed_kwh: float
    headroom_kwh: float
    steps_to_departure: int
    steps_in_window: int


def _check_state(state: object) -> EVState:
    if not isinstance(state, EVState):
        raise GenerationError(f"the ev generator needs an EVState, not {type(state).__name__}")
    return state


def _plan(state: EVState, ctx: GenerationContext) -> _ChargePlan | None:
    if not state.plugged_in or state.departure <= ctx.first_start:
        return None
    lead_kwh = min(state.max_power_kw * ctx.lead_s / 3600.0, state.need_kwh)
    stored = state.now_energy_kwh + lead_kwh * state.charge_efficiency
    needed = max(0.0, state.target_energy_kwh - stored) / state.charge_efficiency
    if needed <= _TOL_KWH:
        return None
    headroom = max(0.0, state.capacity_kwh - max(stored, state.target_energy_kwh)) / state.charge_efficiency
    return _ChargePlan(
        start=ctx.first_start,
        step_kwh=state.max_power_kw * ctx.slice_s / 3600.0,
        needed_kwh=needed,
        headroom_kwh=headroom,
        steps_to_departure=ctx.steps_until(state.departure),
        steps_in_window=ctx.steps_until(min(state.departure, ctx.horizon_end)),
    )


def _envelope_area(
    n_total: int, *, offset: int, flex_steps: int, n_steps: int, step_kwh: float, lo_kwh: float, hi_kwh: float
) -> float:
    """Sum over steps j = 1..n_total of max minus min cumulative energy after step j.

    Schedules: a profile of `n_steps` steps of [0, step_kwh] starting `offset` to
    `offset + flex_steps` steps after the first step, with a total in [lo_kwh, hi_kwh].
    """
    j = np.arange(1, n_total + 1, dtype=float)
    earliest_end = offset + n_steps
    latest_end = offset + flex_steps + n_steps
    high = np.clip((j - offset) * step_kwh, 0.0, hi_kwh)
    low = np.clip(lo_kwh - (latest_end - j) * step_kwh, 0.0, lo_kwh)
    high = np.where(j >= earliest_end, hi_kwh, high)
    return float(np.sum(np.maximum(high - low, 0.0)))


@register_generator
class EVGenerator(FlexOfferGenerator):
    """Flex-Offers for home EV charging sessions (see the module docstring for the model)."""

    load_type = "ev"
    version = "1"

    def generate(self, state: EVState, ctx: GenerationContext) -> FlexOffer | None:
        """One offer for the charging session, or None when there is nothing to charge."""
        plan = _plan(_check_state(state), ctx)
        if plan is None or plan.steps_in_window == 0:
            return None
        e = plan.step_kwh
        n_needed = math.ceil(plan.needed_kwh / e - 1e-9)
        if n_needed <= plan.steps_in_window:
            n, flex_steps = n_needed, plan.steps_in_window - n_needed
            needed = min(plan.needed_kwh, n * e)
            profile = Profile(
                slices=(Slice(n, (0.0, e)),),
                total_energy=(needed, min(n * e, needed + plan.headroom_kwh)),
            )
            last = needed - (n - 1) * e
        else:
            # Too little time: offer the full-power charging that is possible, without flexibility.
            n, flex_steps = plan.steps_in_window, 0
            profile = Profile(slices=(Slice(n, (e, e)),), total_energy=(n * e, n * e))
            last = e
        energy = (e,) * (n - 1) + (last,)
        start = plan.start
        return FlexOffer(
            issuer=ctx.issuer,
            mode=ctx.mode,
            profiles=(profile,),
            device=self.load_type,
            location=ctx.location,
            created_at=ctx.now,
            assignment_before=start,
            start_after=start,
            start_before=start + timedelta(seconds=flex_steps * ctx.slice_s),
            slice_s=ctx.slice_s,
            default_schedule=DefaultSchedule(start=start, profile=0, energy=energy),
            price=ctx.price(),
        )

    def captured_flexibility(self, state: EVState, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """Area-based flexibility of `offer` over that of the session (module docstring); in [0, 1]."""
        plan = _plan(_check_state(state), ctx)
        if plan is None or plan.steps_to_departure == 0:
            return 1.0
        e, n_true = plan.step_kwh, plan.steps_to_departure
        lo_true = min(plan.needed_kwh, n_true * e)
        hi_true = min(n_true * e, plan.needed_kwh + plan.headroom_kwh)
        true_area = _envelope_area(
            n_true, offset=0, flex_steps=0, n_steps=n_true, step_kwh=e, lo_kwh=lo_true, hi_kwh=hi_true
        )
        if true_area <= _TOL_KWH:
            return 1.0
        if offer is None or offer.start_after is None or offer.start_before is None:
            return 0.0
        profile = offer.profiles[0]
        lo, hi = profile.total_energy or (float(profile.lower_kwh().sum()), float(profile.upper_kwh().sum()))
        offset = round((offer.start_after - plan.start).total_seconds() / ctx.slice_s)
        flex_steps = round((offer.start_before - offer.start_after).total_seconds() / ctx.slice_s)
        area = _envelope_area(
            n_true,
            offset=offset,
            flex_steps=flex_steps,
            n_steps=profile.n_steps,
            step_kwh=float(profile.upper_kwh().max()),
            lo_kwh=lo,
            hi_kwh=hi,
        )
        return float(min(1.0, max(0.0, area / true_area)))

    def keep_limits(
        self, state: EVState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """Never miss the departure target: full power once the need no longer fits otherwise.

        After this step, the remaining need must still fit at full power into the time left
        before departure; if it does not, the step charges at full power (at most the need).
        """
        state = _check_state(state)
        if not state.plugged_in:
            return scheduled_kwh, None
        step_kwh = state.max_power_kw * slice_s / 3600.0
        need = state.need_kwh
        after_s = max(0.0, (state.departure - now).total_seconds() - slice_s)
        after_kwh = state.max_power_kw * after_s / 3600.0
        executed = min(max(scheduled_kwh, 0.0), step_kwh)
        if need - executed > after_kwh + _TOL_KWH:
            full = min(step_kwh, need)
            if full > executed:
                return full, (
                    f"departure target at risk: {need:.3f} kWh still needed, only {after_kwh:.3f} kWh "
                    "possible after this step; charging at full power"
                )
        return scheduled_kwh, None

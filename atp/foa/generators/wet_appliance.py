"""Wet appliances (dishwasher, washing machine): one offer per start press, an XOR profile per programme.

Model (D2.1 7.1 modelling order: time flexibility, step 2, then XOR profiles, step 5, since a
programme is a discrete alternative whose energies cannot be changed):

- An offer exists only while the appliance waits: the user pressed start, nothing runs yet.
  The step in progress (now to `first_start`) does not start it (the appliance starts at the
  first step that begins after the press), so the offer begins at `first_start`.
- Every allowed programme that fits between `first_start` and the deadline
  `min(ready_by, now + horizon)` is one profile (in the order of the appliance's programme
  list; `offered_programmes` names them): one slice of `[e, e]` per step, its fixed energy.
- Time flexibility: any start from `first_start` up to the latest start at which the longest
  offered programme still ends by the deadline (one window for all profiles, as the wire
  format has it). `assignment_before` is `first_start`.
- Default schedule: the preferred programme at `first_start`, which is what the appliance
  does uncontrolled. When the preferred programme does not fit before the deadline, the offer
  is that programme at `first_start` alone, without flexibility.

Every feasible schedule therefore runs one allowed programme to its end by the deadline.

Captured flexibility: the share of the device's true options that the offer contains, an
option being a pair (allowed programme, grid start from `first_start` that ends by
`ready_by`, whatever the horizon). The offer loses options when the deadline lies beyond the
horizon and when a short programme could start later than the longest one. 1.0 when the
device has at most one option.

`keep_limits`: a programme in progress cannot be changed, so the EMS executes its energy for
the step; a waiting appliance whose preferred programme would miss `ready_by` if it waited one
more step is started (the preferred programme's first step) even when the schedule says wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from atp.flexoffer import DefaultSchedule, FlexOffer, Profile, Slice
from atp.foa.errors import GenerationError
from atp.foa.generator import FlexOfferGenerator, GenerationContext, register_generator
from atp.foa.states_appliances import ApplianceStatus, Programme, WetApplianceState

__all__ = ["WetApplianceGenerator"]

_TOL_KWH = 1e-6


@dataclass(frozen=True)
class _Plan:
    """The request seen from `first_start`: the offered programmes and the start window."""

    programmes: tuple[Programme, ...]
    flex_steps: int
    default_index: int


def _check_state(state: object) -> WetApplianceState:
    if not isinstance(state, WetApplianceState):
        raise GenerationError(f"the wet_appliance generator needs a WetApplianceState, not {type(state).__name__}")
    return state


def _allowed(state: WetApplianceState) -> list[Programme]:
    return [p for p in state.programmes if p.name in state.allowed]


def _plan(state: WetApplianceState, ctx: GenerationContext) -> _Plan | None:
    if state.status is not ApplianceStatus.WAITING or state.ready_by is None or state.preferred is None:
        return None
    available = ctx.steps_until(min(state.ready_by, ctx.horizon_end))
    fitting = [p for p in _allowed(state) if p.n_steps(ctx.slice_s) <= available]
    names = [p.name for p in fitting]
    if state.preferred not in names:
        return _Plan((state.programme(state.preferred),), 0, 0)
    longest = max(p.n_steps(ctx.slice_s) for p in fitting)
    return _Plan(tuple(fitting), available - longest, names.index(state.preferred))


def _profile(programme: Programme, slice_s: int) -> Profile:
    return Profile(slices=tuple(Slice(1, (e, e)) for e in programme.energy_per_step_kwh(slice_s)))


@register_generator
class WetApplianceGenerator(FlexOfferGenerator):
    """Flex-Offers for dishwashers and washing machines (see the module docstring)."""

    load_type = "wet_appliance"
    version = "1"

    def offered_programmes(self, state: WetApplianceState, ctx: GenerationContext) -> tuple[str, ...]:
        """The programme names in the order of the offer's profiles (empty without an offer)."""
        plan = _plan(_check_state(state), ctx)
        return () if plan is None else tuple(p.name for p in plan.programmes)

    def generate(self, state: WetApplianceState, ctx: GenerationContext) -> FlexOffer | None:
        """One offer for the waiting load, or None when the appliance is idle or running."""
        plan = _plan(_check_state(state), ctx)
        if plan is None:
            return None
        start = ctx.first_start
        default = plan.programmes[plan.default_index].energy_per_step_kwh(ctx.slice_s)
        return FlexOffer(
            issuer=ctx.issuer,
            mode=ctx.mode,
            profiles=tuple(_profile(p, ctx.slice_s) for p in plan.programmes),
            device=self.load_type,
            location=ctx.location,
            created_at=ctx.now,
            assignment_before=start,
            start_after=start,
            start_before=start + timedelta(seconds=plan.flex_steps * ctx.slice_s),
            slice_s=ctx.slice_s,
            default_schedule=DefaultSchedule(start=start, profile=plan.default_index, energy=default),
            price=ctx.price(),
        )

    def captured_flexibility(self, state: WetApplianceState, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """Offered (programme, start) options over the device's true options; in [0, 1]."""
        state = _check_state(state)
        if state.status is not ApplianceStatus.WAITING or state.ready_by is None:
            return 1.0
        available = ctx.steps_until(state.ready_by)
        true_options = sum(max(0, available - p.n_steps(ctx.slice_s) + 1) for p in _allowed(state))
        if true_options <= 1:
            return 1.0
        if offer is None or offer.start_after is None or offer.start_before is None:
            return 0.0
        starts = round((offer.start_before - offer.start_after).total_seconds() / ctx.slice_s) + 1
        return float(min(1.0, len(offer.profiles) * starts / true_options))

    def keep_limits(
        self, state: WetApplianceState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """Run a started programme to its end; start the preferred one when waiting longer misses ready_by."""
        state = _check_state(state)
        if state.status is ApplianceStatus.RUNNING and state.running is not None and state.started_at is not None:
            programme = state.programme(state.running)
            elapsed_s = (now - state.started_at).total_seconds()
            energy = programme.energy_between_kwh(elapsed_s, elapsed_s + slice_s)
            if abs(energy - scheduled_kwh) > _TOL_KWH:
                return energy, (
                    f"programme {programme.name} in progress cannot be changed: executing its {energy:.4f} kWh "
                    f"instead of {scheduled_kwh:.4f} kWh"
                )
            return scheduled_kwh, None
        if state.status is ApplianceStatus.WAITING and state.ready_by is not None and state.preferred is not None:
            preferred = state.programme(state.preferred)
            latest_end = now + timedelta(seconds=slice_s + preferred.n_steps(slice_s) * slice_s)
            if scheduled_kwh <= _TOL_KWH and latest_end > state.ready_by:
                first = preferred.energy_between_kwh(0.0, slice_s)
                return first, (
                    f"ready-by {state.ready_by.isoformat()} at risk: waiting one more step would end programme "
                    f"{preferred.name} too late; starting it now"
                )
        return scheduled_kwh, None

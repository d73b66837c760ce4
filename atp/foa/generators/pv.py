"""PV with curtailment: a block offer whose flexibility is to produce less than the sun allows.

Model (D2.1 7.1, step 1 only: energy flexibility is the whole flexibility): production is
negative energy. `forecast_kwh[k]` is the production potential over the k-th whole step from
`first_start` (<= 0), capped by the inverter (`-inverter_kw * dt_h`). The system can produce
any amount from its potential up to nothing, so step k of the offer has the slice
`[max(forecast_kwh[k], -inverter_kw * dt_h), 0]`; steps are independent (no dependency).

Offer: a block of the next `block_steps` steps from `first_start` (at most the forecast's
length and the horizon), no time flexibility, consecutive steps with equal bounds merged into
one slice. Default schedule: the capped forecast, i.e. full production (uncontrolled). No offer
when the block holds no production (e.g. at night). Mode and price as the other generators
(a direct offer carries `ctx.price()`).

Captured flexibility: the offer's slice widths (capped per step by the device's) over the sum
of the device's potential production over the horizon (as far as the forecast reaches); 1.0
when the device produces nothing in that time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from atp.flexoffer import DefaultSchedule, FlexOffer, Profile, Slice
from atp.foa.errors import GenerationError, StateError
from atp.foa.generator import FlexOfferGenerator, GenerationContext, register_generator

__all__ = ["PvGenerator", "PvState"]

_TOL_KWH = 1e-6


@dataclass(frozen=True)
class PvState:
    """A PV system: its size, the production potential now and the forecast.

    `available_kwh` is the production potential (<= 0) over the step starting now, as the
    inverter measures it; `forecast_kwh[k]` the forecast potential (<= 0) over the k-th whole
    `slice_s` step from the first grid boundary after now.
    """

    kwp: float
    inverter_kw: float
    available_kwh: float
    forecast_kwh: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("kwp", "inverter_kw", "available_kwh"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise StateError(f"{name} must be a finite number, not {value!r}")
        for name in ("kwp", "inverter_kw"):
            if getattr(self, name) <= 0:
                raise StateError(f"{name} must be positive, not {getattr(self, name)}")
        if self.available_kwh > _TOL_KWH:
            raise StateError(f"available_kwh is production, so <= 0 kWh, not {self.available_kwh}")
        for k, e in enumerate(self.forecast_kwh):
            if not math.isfinite(e) or e > _TOL_KWH:
                raise StateError(f"forecast_kwh[{k}] must be a finite production, <= 0 kWh, not {e!r}")

    def potential_kwh(self, n_steps: int, slice_s: int) -> np.ndarray:
        """The forecast for the first `n_steps` steps, capped by the inverter (<= 0 kWh each)."""
        cap = self.inverter_kw * slice_s / 3600.0
        forecast = np.asarray(self.forecast_kwh[:n_steps], dtype=float)
        return np.minimum(np.maximum(forecast, -cap), 0.0)


def _check_state(state: object) -> PvState:
    if not isinstance(state, PvState):
        raise GenerationError(f"the pv generator needs a PvState, not {type(state).__name__}")
    return state


def _slices(lower_kwh: np.ndarray) -> tuple[Slice, ...]:
    """One slice `[lower, 0]` per run of equal lower bounds."""
    slices: list[Slice] = []
    for e in lower_kwh:
        if slices and slices[-1].energy[0] == e:
            slices[-1] = Slice(slices[-1].duration + 1, slices[-1].energy)
        else:
            slices.append(Slice(1, (float(e), 0.0)))
    return tuple(slices)


@register_generator
class PvGenerator(FlexOfferGenerator):
    """Block Flex-Offers for PV curtailment (see the module docstring for the model).

    `block_steps` is the block length in steps (16 = 4 h at 900 s).
    """

    load_type = "pv"
    version = "1"

    def __init__(self, *, block_steps: int = 16) -> None:
        if block_steps < 1:
            raise GenerationError(f"block_steps must be at least 1, not {block_steps}")
        self.block_steps = block_steps

    def _n_steps(self, state: PvState, ctx: GenerationContext) -> int:
        return min(self.block_steps, ctx.steps_until(ctx.horizon_end), len(state.forecast_kwh))

    def generate(self, state: PvState, ctx: GenerationContext) -> FlexOffer | None:
        """One block offer from `ctx.first_start`; None when the block holds no production."""
        state = _check_state(state)
        n = self._n_steps(state, ctx)
        if n == 0:
            return None
        potential = state.potential_kwh(n, ctx.slice_s)
        if potential.min() >= -_TOL_KWH:
            return None
        start = ctx.first_start
        return FlexOffer(
            issuer=ctx.issuer,
            mode=ctx.mode,
            profiles=(Profile(slices=_slices(potential)),),
            device=self.load_type,
            location=ctx.location,
            created_at=ctx.now,
            assignment_before=start,
            start_after=start,
            start_before=start,
            slice_s=ctx.slice_s,
            default_schedule=DefaultSchedule(start=start, profile=0, energy=tuple(float(e) for e in potential)),
            price=ctx.price(),
        )

    def captured_flexibility(self, state: PvState, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """The offer's curtailable kWh over the device's potential production over the horizon."""
        state = _check_state(state)
        horizon = min(ctx.steps_until(ctx.horizon_end), len(state.forecast_kwh))
        true_widths = -state.potential_kwh(horizon, ctx.slice_s)
        if true_widths.sum() <= 1e-9:
            return 1.0
        if offer is None or not offer.profiles:
            return 0.0
        profile = offer.profiles[0]
        n = min(profile.n_steps, horizon)
        widths = (profile.upper_kwh() - profile.lower_kwh())[:n]
        captured = np.minimum(widths, true_widths[:n]).sum()
        return float(min(1.0, max(0.0, captured / true_widths.sum())))

    def keep_limits(
        self, state: PvState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """The system cannot produce more than is available now: clip the step to the potential."""
        state = _check_state(state)
        available = min(0.0, max(state.available_kwh, -state.inverter_kw * slice_s / 3600.0))
        if scheduled_kwh < available - 1e-9:
            return available, (
                f"production: {-scheduled_kwh:.3f} kWh scheduled but only {-available:.3f} kWh available "
                "now; producing all that is available"
            )
        if scheduled_kwh > 1e-9:
            return 0.0, f"production: a PV system cannot consume {scheduled_kwh:.3f} kWh; producing nothing"
        return scheduled_kwh, None

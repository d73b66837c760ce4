"""Freezer or fridge on a smart plug: an always-on load offering a switch-off with its recovery.

The plug can only cut the power: while it is on, the appliance's own thermostat decides when
the compressor runs. A setpoint therefore switches the plug: at least `PLUG_ON_KWH / 2` kWh
is the plug on (the compressor follows its thermostat, as uncontrolled), less is the plug off.

Model (the FOA's prediction; the truth lives with the device): one thermal node, integrated
in sub-steps of `substep_s` seconds (the thermostat decides at the start of each sub-step),
with e the compressor's electric kWh in the sub-step and dt_h its length in hours,

    T <- T + (dt_h * ua * (T_amb - T) - cop * e) / C

(ua in kW/K: heat gain from the ambient; C in kWh/K; the compressor removes cop * e kWh of
heat). The thermostat switches on above `setpoint + deadband/2` and off below
`setpoint - deadband/2`; the temperature band `[temp_min, temp_max]` is the user's limit.
`run_compressor` is that thermostat and node, the one rule the physics (`sim.agents.freezer`)
steps with the truth's parameters and the FOA with its model's.

Offer (D2.1 7.1: energy flexibility; the rebound is part of the profile, so no time
flexibility, total, polytope, XOR or conditional is needed): a block from `first_start`
(`GenerationContext.block_offer`: no time flexibility, assigned before it starts) of
`span = min(block_steps, whole steps in the 24 h horizon)` steps, `on` being the compressor's
full step energy:

- `n` steps of `[0, on]` kWh: the plug may be switched off in any of them;
- `span - n` steps of `[PLUG_ON_KWH, on]` kWh: the plug is on; the first `k` of them are the
  recovery, in which the compressor pulls the temperature back to its cut-out (`k` = the
  steps the model's thermostat needs after `n` steps off);
- `n` is the largest number of steps such that `n` steps off keep the band and the recovery
  fits in the block (`n + k <= span`). Any schedule keeps the band: the plug is off for at
  most the `n` steps, and the thermostat never cools below its cut-out.
- No offer when not even one step can be switched off (the band is already at risk).

Because the recovery belongs to the offer, the rebound of a switch-off is metered against this
offer's default instead of being declared again by the next offer's, or counted as baseline
where no offer covers the steps after a switch-off.

Default schedule: the thermostat's operation over the `span` steps from `first_start`, each
step at least `PLUG_ON_KWH` (the plug on: the appliance runs as uncontrolled), predicted from
the measured state (the step in progress, now to `first_start`, runs uncontrolled and is
predicted the same way), or, after an offer whose schedule switched the plug off, continued
from where that offer's default left the thermostat (`FreezerGenerator`): a switch-off shifts
the appliance's cycle for good, so the measured state would declare the ATP's own shift.

Captured flexibility: `n` over the longest time the plug could stay off from the predicted
temperature at `first_start` (within the 24 h horizon): 1.0 when the appliance cannot be
switched off at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from atp.flexoffer import FlexOffer, Profile, Schedule, Slice
from atp.foa.errors import GenerationError, StateError
from atp.foa.generator import FlexOfferGenerator, GenerationContext, register_generator

__all__ = ["PLUG_ON_KWH", "FreezerGenerator", "FreezerState", "advance_freezer", "run_compressor"]

PLUG_ON_KWH = 1e-5  # the least energy a setpoint declares for a step with the plug on
_TOL_K = 1e-6


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise StateError(message)


@dataclass(frozen=True)
class FreezerState:
    """A freezer or fridge behind a smart plug, with its thermostat and the FOA's thermal model.

    `compressor_on` is the thermostat's demand (hysteresis state) now; `power_kw` the
    compressor's electric power; `ua_kw_per_k`, `c_kwh_per_k` and `cop` the model's heat gain,
    heat capacity and coefficient of performance. `ambient_forecast_c[k]` is the ambient
    temperature over the k-th step from now (the first runs from now to the next grid time);
    a short forecast repeats its last value.
    """

    temp_c: float
    temp_min_c: float
    temp_max_c: float
    setpoint_c: float
    deadband_c: float
    compressor_on: bool
    power_kw: float
    ua_kw_per_k: float
    c_kwh_per_k: float
    cop: float
    ambient_forecast_c: tuple[float, ...]
    substep_s: int = 60

    def __post_init__(self) -> None:
        for name in ("temp_c", "temp_min_c", "temp_max_c", "setpoint_c", "deadband_c"):
            value = getattr(self, name)
            _require(math.isfinite(value), f"{name} must be a finite number, not {value!r}")
        for name in ("power_kw", "ua_kw_per_k", "c_kwh_per_k", "cop"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value > 0, f"{name} must be a positive number, not {value!r}")
        _require(
            self.temp_min_c < self.temp_max_c,
            f"temp_min_c {self.temp_min_c} must be below temp_max_c {self.temp_max_c}",
        )
        _require(self.deadband_c >= 0, f"deadband_c must not be negative, not {self.deadband_c}")
        _require(
            self.temp_min_c <= self.setpoint_c - self.deadband_c / 2
            and self.setpoint_c + self.deadband_c / 2 <= self.temp_max_c,
            f"the thermostat's deadband {self.setpoint_c} +/- {self.deadband_c / 2} C must lie within the band "
            f"[{self.temp_min_c}, {self.temp_max_c}] C",
        )
        _require(self.substep_s > 0, f"substep_s must be positive, not {self.substep_s}")
        _require(len(self.ambient_forecast_c) > 0, "ambient_forecast_c needs at least one value (the step now)")
        for k, t in enumerate(self.ambient_forecast_c):
            _require(math.isfinite(t), f"ambient_forecast_c[{k}] must be a finite number, not {t!r}")

    def ambient_c(self, k: int) -> float:
        """The ambient temperature over the k-th step from now (the last value repeats)."""
        forecast = self.ambient_forecast_c
        return float(forecast[min(k, len(forecast) - 1)])


def run_compressor(
    temp_c: float,
    on: bool,
    *,
    budget_kwh: float | None,
    duration_s: float,
    ambient_c: float,
    setpoint_c: float,
    deadband_c: float,
    power_kw: float,
    ua_kw_per_k: float,
    c_kwh_per_k: float,
    cop: float,
    substep_s: float,
) -> tuple[float, bool, float]:
    """(temperature, thermostat demand, kWh drawn) after `duration_s` s of the thermostat and node.

    The thermostat decides at the start of each sub-step (on above `setpoint + deadband/2`, off
    below `setpoint - deadband/2`, else unchanged); `budget_kwh` None runs it uncontrolled,
    otherwise the compressor stops once it has drawn the budget (the plug switches off).
    """
    lower = setpoint_c - deadband_c / 2
    upper = setpoint_c + deadband_c / 2
    left_s = float(duration_s)
    drawn = 0.0
    while left_s > 0:
        dt_s = min(float(substep_s), left_s)
        if temp_c > upper:
            on = True
        elif temp_c < lower:
            on = False
        dt_h = dt_s / 3600.0
        e = power_kw * dt_h if on else 0.0
        if budget_kwh is not None:
            e = min(e, max(budget_kwh - drawn, 0.0))
        temp_c = temp_c + (dt_h * ua_kw_per_k * (ambient_c - temp_c) - cop * e) / c_kwh_per_k
        drawn += e
        left_s -= dt_s
    return temp_c, on, drawn


def advance_freezer(
    state: FreezerState, temp_c: float, on: bool, *, budget_kwh: float | None, duration_s: float, ambient_c: float
) -> tuple[float, bool, float]:
    """(temperature, thermostat demand, kWh drawn) after `duration_s` s under the FOA's model
    (`run_compressor` with the state's model parameters)."""
    return run_compressor(
        temp_c,
        on,
        budget_kwh=budget_kwh,
        duration_s=duration_s,
        ambient_c=ambient_c,
        setpoint_c=state.setpoint_c,
        deadband_c=state.deadband_c,
        power_kw=state.power_kw,
        ua_kw_per_k=state.ua_kw_per_k,
        c_kwh_per_k=state.c_kwh_per_k,
        cop=state.cop,
        substep_s=state.substep_s,
    )


def _check_state(state: object) -> FreezerState:
    if not isinstance(state, FreezerState):
        raise GenerationError(f"the freezer generator needs a FreezerState, not {type(state).__name__}")
    return state


def _in_band(state: FreezerState, temp_c: float) -> bool:
    return state.temp_min_c - _TOL_K <= temp_c <= state.temp_max_c + _TOL_K


@dataclass(frozen=True)
class _Plan:
    """The appliance at `first_start` as the model predicts it (the step in progress uncontrolled)."""

    step_kwh: float
    start_temp_c: float
    start_on: bool


def _predict(state: FreezerState, ctx: GenerationContext) -> _Plan:
    temp, on, _ = advance_freezer(
        state, state.temp_c, state.compressor_on, budget_kwh=None, duration_s=ctx.lead_s, ambient_c=state.ambient_c(0)
    )
    return _Plan(step_kwh=state.power_kw * ctx.slice_s / 3600.0, start_temp_c=temp, start_on=on)


def _ambient_index(j: int) -> int:
    """Index into the ambient forecast of the step that starts `j` steps after first_start."""
    return j + 1


def _off_temps(state: FreezerState, plan: _Plan, max_steps: int, slice_s: int) -> list[tuple[float, bool]]:
    """(temperature, thermostat demand) after m = 1..max_steps steps off from first_start, while in band."""
    temp, on = plan.start_temp_c, plan.start_on
    out: list[tuple[float, bool]] = []
    for m in range(max_steps):
        amb = state.ambient_c(_ambient_index(m))
        temp, on, _ = advance_freezer(state, temp, on, budget_kwh=0.0, duration_s=slice_s, ambient_c=amb)
        if not _in_band(state, temp):
            break
        out.append((temp, on))
    return out


def _recovery_steps(
    state: FreezerState, temp_c: float, on: bool, first_step: int, slice_s: int, cap: int
) -> int | None:
    """Steps the thermostat needs to reach its cut-out from `temp_c`; None if more than `cap`."""
    lower = state.setpoint_c - state.deadband_c / 2
    for m in range(cap):
        temp_c, on, _ = advance_freezer(
            state, temp_c, on, budget_kwh=None, duration_s=slice_s, ambient_c=state.ambient_c(first_step + m)
        )
        if not on or temp_c < lower:
            return m + 1
    return None


@dataclass(frozen=True)
class _Intervention:
    n: int  # steps the plug may be off
    k: int  # recovery steps after them, plug on
    span: int  # steps of the offer (the recovery and the rest of the block after the n steps)
    longest_off: int  # steps the plug could stay off from first_start within the horizon


def _intervention(state: FreezerState, ctx: GenerationContext, block_steps: int) -> tuple[_Plan, _Intervention]:
    horizon = ctx.steps_until(ctx.horizon_end)
    span = min(horizon, block_steps)
    plan = _predict(state, ctx)
    offs = _off_temps(state, plan, horizon, ctx.slice_s)
    for n in range(min(len(offs), span - 1), 0, -1):
        temp, on = offs[n - 1]
        k = _recovery_steps(state, temp, on, _ambient_index(n), ctx.slice_s, cap=span - n)
        if k is not None:
            return plan, _Intervention(n, k, span, len(offs))
    return plan, _Intervention(0, 0, span, len(offs))


@dataclass(frozen=True)
class _Shadow:
    """The thermostat as it would be without the FOA's switch-offs: (temp, demand) at `time`, the
    end of the default that predicted it; `switched_off` once that offer's schedule cut the plug."""

    time: datetime
    temp_c: float
    on: bool
    switched_off: bool = False


def _device_key(issuer: str, meter_id: str | None) -> tuple[str, str]:
    return issuer, meter_id or ""


def _uncontrolled_kwh(
    state: FreezerState, temp_c: float, on: bool, ctx: GenerationContext, n_steps: int
) -> tuple[list[float], float, bool]:
    """The thermostat's kWh per step over `n_steps` steps from `first_start`, and its end state."""
    energy = []
    for k in range(n_steps):
        temp_c, on, e = advance_freezer(
            state, temp_c, on, budget_kwh=None, duration_s=ctx.slice_s, ambient_c=state.ambient_c(_ambient_index(k))
        )
        energy.append(e)
    return energy, temp_c, on


@register_generator
class FreezerGenerator(FlexOfferGenerator):
    """Switch-off offers with their recovery for freezers and fridges on smart plugs (module docstring).

    `block_steps` is the longest offer (switch-off and recovery), e.g. the steps between two
    offers when the device owner refreshes them.

    Per device (its issuer and meter, one freezer per meter) the generator remembers where its
    last default left the thermostat (`_Shadow`). When that offer's schedule switched the plug
    off, the appliance no longer runs in the phase it would have uncontrolled (the switch-off
    delays its cycle, the recovery ends at the cut-out): the next default then continues the
    remembered thermostat (stepped uncontrolled up to the new offer's start on the model) instead
    of starting from the measured temperature, so the baselines follow what the appliance would
    have drawn without the ATP. Offers that kept the plug on let the next default start from the
    measured state again.
    """

    load_type = "freezer"
    version = "2"

    def __init__(self, *, block_steps: int = 16) -> None:
        if block_steps < 2:
            raise GenerationError(f"block_steps must be at least 2 (a step off and one to recover), not {block_steps}")
        self.block_steps = block_steps
        self._shadows: dict[tuple[str, str], _Shadow] = {}

    def _baseline_start(self, state: FreezerState, ctx: GenerationContext, plan: _Plan) -> tuple[float, bool]:
        """(temp, demand) at `first_start` from which the default runs the thermostat."""
        shadow = self._shadows.get(_device_key(ctx.issuer, ctx.location.meter_id))
        if shadow is None or not shadow.switched_off or shadow.time > ctx.first_start:
            return plan.start_temp_c, plan.start_on
        gap_s = (ctx.first_start - shadow.time).total_seconds()
        temp, on, _ = advance_freezer(
            state, shadow.temp_c, shadow.on, budget_kwh=None, duration_s=gap_s, ambient_c=state.ambient_c(0)
        )
        return temp, on

    def generate(self, state: FreezerState, ctx: GenerationContext) -> FlexOffer | None:
        """One switch-off offer with its recovery, or None when the band allows no step off."""
        state = _check_state(state)
        plan, iv = _intervention(state, ctx, self.block_steps)
        if iv.n == 0:
            return None
        on = plan.step_kwh
        profile = Profile(slices=(Slice(iv.n, (0.0, on)), Slice(iv.span - iv.n, (PLUG_ON_KWH, on))))
        temp, demand = self._baseline_start(state, ctx, plan)
        energy, end_c, end_on = _uncontrolled_kwh(state, temp, demand, ctx, iv.span)
        end = ctx.first_start + timedelta(seconds=iv.span * ctx.slice_s)
        self._shadows[_device_key(ctx.issuer, ctx.location.meter_id)] = _Shadow(end, end_c, end_on)
        return ctx.block_offer(self.load_type, profile, [max(e, PLUG_ON_KWH) for e in energy])

    def on_assigned(self, offer: FlexOffer, schedule: Schedule) -> None:
        """Remember that the schedule switches the plug off (the next default continues the shadow)."""
        meter_id = offer.location.meter_id if offer.location is not None else None
        key = _device_key(offer.issuer, meter_id)
        shadow = self._shadows.get(key)
        default = offer.default_schedule
        if shadow is None or default is None:
            return
        if shadow.time != default.start + timedelta(seconds=len(default.energy) * offer.slice_s):
            return  # a newer offer's shadow
        if any(e < PLUG_ON_KWH / 2 for e in schedule.energy):
            self._shadows[key] = replace(shadow, switched_off=True)

    def captured_flexibility(self, state: FreezerState, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """The offer's off period over the longest the plug could stay off from `first_start`."""
        state = _check_state(state)
        _, iv = _intervention(state, ctx, self.block_steps)
        if iv.longest_off == 0:
            return 1.0
        if offer is None or not offer.profiles:
            return 0.0
        off_steps = offer.profiles[0].slices[0].duration
        return float(min(1.0, off_steps / iv.longest_off))

    def keep_limits(
        self, state: FreezerState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """Switch the plug (on from `PLUG_ON_KWH / 2` kWh) and keep the band: plug on if the step
        would end too warm with the plug off.

        The plug on is executed as the compressor's full step energy: its thermostat decides what
        it draws, as uncontrolled (the EMS never cuts what the appliance does on its own). The
        end-of-step temperature is predicted with the FOA's model from the measured temperature,
        the thermostat's state and the ambient forecast for the step.
        """
        state = _check_state(state)
        step_kwh = state.power_kw * slice_s / 3600.0
        if scheduled_kwh >= PLUG_ON_KWH / 2:
            return step_kwh, None
        end_c, _, _ = advance_freezer(
            state, state.temp_c, state.compressor_on, budget_kwh=0.0, duration_s=slice_s, ambient_c=state.ambient_c(0)
        )
        if end_c > state.temp_max_c + _TOL_K:
            return step_kwh, (
                f"temperature band: would warm to {end_c:.2f} C, above {state.temp_max_c:.2f} C; plug switched on"
            )
        return 0.0, None

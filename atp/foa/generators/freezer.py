"""Freezer or fridge on a smart plug: an always-on load offering a switch-off with a rebound.

The plug can only cut the power: while it is on, the appliance's own thermostat decides when
the compressor runs. A setpoint is therefore an energy *budget* for the step: the compressor
follows its thermostat until the budget is used up (0 = plug off; a budget of at least the
compressor's full step energy = uncontrolled).

Model (the FOA's prediction; the truth lives with the device): one thermal node, integrated
in sub-steps of `substep_s` seconds (the thermostat decides at the start of each sub-step),
with e the compressor's electric kWh in the sub-step and dt_h its length in hours,

    T <- T + (dt_h * ua * (T_amb - T) - cop * e) / C

(ua in kW/K: heat gain from the ambient; C in kWh/K; the compressor removes cop * e kWh of
heat). The thermostat switches on above `setpoint + deadband/2` and off below
`setpoint - deadband/2`; the temperature band `[temp_min, temp_max]` is the user's limit.

Offer (D2.1 7.1: energy flexibility, then implicit time flexibility, then the two-mode
conditional operation; no total, polytope or XOR needed):

- `start_after` omitted (= now), `start_before_duration_s = window_steps * slice_s`: the
  intervention may start at any grid time from now to now + that duration.
- One profile of `n` steps of `[0, on]` kWh (`on` = the compressor's full step energy): the
  intervention period, during which the plug may be switched off entirely.
- `conditional = {0, 0.0, after_s, after_portion}`: no pre-cooling (a plug cannot force the
  compressor to run below its thermostat's cut-out); the rebound lasts `after_s = k * slice_s`,
  `k` being the most steps the model's thermostat needs, after `n` steps off from any start in
  the window, to pull the temperature back to its cut-out; `after_portion` is the share of the
  curtailed energy C (the default's energy over the `n` steps) that the compressor draws in
  those `k` steps on top of what it would draw without the intervention (intervention at the
  earliest grid start), clipped to [0, 1].
- `n` is the largest number of steps such that `n + k` steps with the plug off, from the
  predicted temperature at any possible start (now if on the grid, and the grid times
  `first_start + j * slice_s` for j = 0..window_steps), keep the band. That is what the
  expansion (`expand_conditional`) needs: its normal profile pads the `k` rebound steps with
  0 kWh, so the longest off period of any expanded schedule is `n + k` steps; any budget
  keeps the temperature at or below the all-off trajectory, and the thermostat never cools
  below its cut-out. The rebound steps' budget `after_portion * C / k` never exceeds `on`.
- No offer when not even one step can be switched off (the band is already at risk).

Default schedule: the thermostat's predicted operation over the `n` steps from `first_start`
(the step in progress, now to `first_start`, runs uncontrolled and is predicted the same way).

Captured flexibility: `n` over the longest time the plug could stay off from the predicted
temperature at `first_start` (within the 24 h horizon): 1.0 when the appliance cannot be
switched off at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from atp.flexoffer import Conditional, DefaultSchedule, FlexOffer, Profile, Slice, on_grid
from atp.foa.errors import GenerationError, StateError
from atp.foa.generator import FlexOfferGenerator, GenerationContext, register_generator

__all__ = ["FreezerGenerator", "FreezerState", "advance_freezer"]

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


def advance_freezer(
    state: FreezerState, temp_c: float, on: bool, *, budget_kwh: float | None, duration_s: float, ambient_c: float
) -> tuple[float, bool, float]:
    """(temperature, thermostat demand, kWh drawn) after `duration_s` s under the FOA's model.

    `budget_kwh` None runs the thermostat uncontrolled; otherwise the compressor stops once it
    has drawn the budget (the plug switches off).
    """
    lower = state.setpoint_c - state.deadband_c / 2
    upper = state.setpoint_c + state.deadband_c / 2
    left_s = float(duration_s)
    drawn = 0.0
    while left_s > 0:
        dt_s = min(float(state.substep_s), left_s)
        if temp_c > upper:
            on = True
        elif temp_c < lower:
            on = False
        dt_h = dt_s / 3600.0
        e = state.power_kw * dt_h if on else 0.0
        if budget_kwh is not None:
            e = min(e, max(budget_kwh - drawn, 0.0))
        temp_c = temp_c + (dt_h * state.ua_kw_per_k * (ambient_c - temp_c) - state.cop * e) / state.c_kwh_per_k
        drawn += e
        left_s -= dt_s
    return temp_c, on, drawn


def _check_state(state: object) -> FreezerState:
    if not isinstance(state, FreezerState):
        raise GenerationError(f"the freezer generator needs a FreezerState, not {type(state).__name__}")
    return state


def _in_band(state: FreezerState, temp_c: float) -> bool:
    return state.temp_min_c - _TOL_K <= temp_c <= state.temp_max_c + _TOL_K


@dataclass(frozen=True)
class _Plan:
    """The thermostat's predicted operation from `first_start` and what an intervention allows."""

    step_kwh: float
    temps_c: tuple[float, ...]  # at first_start + j * slice_s
    ons: tuple[bool, ...]
    energy_kwh: tuple[float, ...]  # per step from first_start, uncontrolled
    starts: tuple[int, ...]  # candidate start steps (-1 = now, on the grid)
    now_temp_c: float
    now_on: bool


def _predict(state: FreezerState, ctx: GenerationContext, n_steps: int) -> _Plan:
    temp, on, _ = advance_freezer(
        state, state.temp_c, state.compressor_on, budget_kwh=None, duration_s=ctx.lead_s, ambient_c=state.ambient_c(0)
    )
    temps, ons, energy = [temp], [on], []
    for k in range(n_steps):
        temp, on, e = advance_freezer(
            state, temp, on, budget_kwh=None, duration_s=ctx.slice_s, ambient_c=state.ambient_c(k + 1)
        )
        temps.append(temp)
        ons.append(on)
        energy.append(e)
    starts = ((-1,) if on_grid(ctx.now, ctx.slice_s) else ()) + tuple(range(n_steps + 1))
    return _Plan(
        step_kwh=state.power_kw * ctx.slice_s / 3600.0,
        temps_c=tuple(temps),
        ons=tuple(ons),
        energy_kwh=tuple(energy),
        starts=starts,
        now_temp_c=state.temp_c,
        now_on=state.compressor_on,
    )


def _start_point(plan: _Plan, j: int) -> tuple[float, bool]:
    if j < 0:
        return plan.now_temp_c, plan.now_on
    return plan.temps_c[j], plan.ons[j]


def _ambient_index(j: int) -> int:
    """Index into the ambient forecast of the step that starts `j` steps after first_start (-1: now)."""
    return j + 1


def _off_temps(state: FreezerState, plan: _Plan, j: int, max_steps: int, slice_s: int) -> list[tuple[float, bool]]:
    """(temperature, thermostat demand) after m = 1..max_steps steps off from start j, while in band."""
    temp, on = _start_point(plan, j)
    out: list[tuple[float, bool]] = []
    for m in range(max_steps):
        amb = state.ambient_c(_ambient_index(j + m))
        temp, on, _ = advance_freezer(state, temp, on, budget_kwh=0.0, duration_s=slice_s, ambient_c=amb)
        if not _in_band(state, temp):
            break
        out.append((temp, on))
    return out


def _recovery_steps(
    state: FreezerState, temp_c: float, on: bool, first_step: int, slice_s: int, cap: int
) -> tuple[int, list[float]]:
    """Steps the thermostat needs to reach its cut-out from `temp_c`, and the kWh it draws in them."""
    lower = state.setpoint_c - state.deadband_c / 2
    drawn: list[float] = []
    for m in range(cap):
        temp_c, on, e = advance_freezer(
            state, temp_c, on, budget_kwh=None, duration_s=slice_s, ambient_c=state.ambient_c(first_step + m)
        )
        drawn.append(e)
        if not on or temp_c < lower:
            return m + 1, drawn
    return cap, drawn


@dataclass(frozen=True)
class _Intervention:
    n: int
    k_after: int
    after_portion: float
    longest_off: int


def _intervention(state: FreezerState, ctx: GenerationContext, window_steps: int) -> tuple[_Plan, _Intervention]:
    horizon = ctx.steps_until(ctx.horizon_end)
    max_off = max(0, horizon - window_steps)
    plan = _predict(state, ctx, min(horizon, window_steps + max_off + 1))
    offs = {j: _off_temps(state, plan, j, max_off, ctx.slice_s) for j in plan.starts if j <= window_steps}
    longest_off = len(offs.get(0, []))
    limit = min(len(v) for v in offs.values()) if offs else 0
    for n in range(limit, 0, -1):
        k_after = 0
        for j, traj in offs.items():
            temp, on = traj[n - 1]
            k, _ = _recovery_steps(state, temp, on, _ambient_index(j + n), ctx.slice_s, cap=max(1, horizon))
            k_after = max(k_after, k)
        if n + k_after > limit:
            continue
        curtailed = sum(plan.energy_kwh[:n])
        temp, on = offs[0][n - 1]
        _, rebound = _recovery_steps(state, temp, on, _ambient_index(n), ctx.slice_s, cap=k_after)
        rebound += [0.0] * (k_after - len(rebound))
        default_after = list(plan.energy_kwh[n : n + k_after])
        default_after += [0.0] * (k_after - len(default_after))
        extra = sum(rebound) - sum(default_after)
        portion = min(1.0, max(0.0, extra / curtailed)) if curtailed > 1e-12 else 0.0
        return plan, _Intervention(n, k_after, portion, longest_off)
    return plan, _Intervention(0, 0, 0.0, longest_off)


@register_generator
class FreezerGenerator(FlexOfferGenerator):
    """Switch-off offers with a rebound for freezers and fridges on smart plugs (module docstring).

    `window_s` is how long from now an intervention may start (rounded down to whole steps,
    at least one step).
    """

    load_type = "freezer"
    version = "1"

    def __init__(self, *, window_s: int = 7200) -> None:
        if window_s < 0:
            raise GenerationError(f"window_s must not be negative, not {window_s}")
        self.window_s = window_s

    def _window_steps(self, ctx: GenerationContext) -> int:
        return max(1, self.window_s // ctx.slice_s)

    def generate(self, state: FreezerState, ctx: GenerationContext) -> FlexOffer | None:
        """One switch-off offer with its rebound, or None when the band allows no step off."""
        state = _check_state(state)
        window_steps = self._window_steps(ctx)
        plan, iv = _intervention(state, ctx, window_steps)
        if iv.n == 0:
            return None
        default = tuple(float(x) for x in plan.energy_kwh[: iv.n])
        return FlexOffer(
            issuer=ctx.issuer,
            mode=ctx.mode,
            profiles=(Profile(slices=(Slice(iv.n, (0.0, plan.step_kwh)),)),),
            device=self.load_type,
            location=ctx.location,
            created_at=ctx.now,
            start_before_duration_s=window_steps * ctx.slice_s,
            slice_s=ctx.slice_s,
            conditional=Conditional(
                prior_s=0, prior_portion=0.0, after_s=iv.k_after * ctx.slice_s, after_portion=iv.after_portion
            ),
            default_schedule=DefaultSchedule(start=ctx.first_start, profile=0, energy=default),
            price=ctx.price(),
        )

    def captured_flexibility(self, state: FreezerState, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """The offer's off period over the longest the plug could stay off from `first_start`."""
        state = _check_state(state)
        _, iv = _intervention(state, ctx, self._window_steps(ctx))
        if iv.longest_off == 0:
            return 1.0
        if offer is None or not offer.profiles:
            return 0.0
        return float(min(1.0, offer.profiles[0].n_steps / iv.longest_off))

    def keep_limits(
        self, state: FreezerState, scheduled_kwh: float, *, now: datetime, slice_s: int
    ) -> tuple[float, str | None]:
        """Keep the band: plug on if the step would end too warm, off if it would end too cold.

        The end-of-step temperature is predicted with the FOA's model from the measured
        temperature, the thermostat's state and the ambient forecast for the step.
        """
        state = _check_state(state)
        step_kwh = state.power_kw * slice_s / 3600.0
        budget = min(max(scheduled_kwh, 0.0), step_kwh)
        end_c, _, _ = advance_freezer(
            state,
            state.temp_c,
            state.compressor_on,
            budget_kwh=budget,
            duration_s=slice_s,
            ambient_c=state.ambient_c(0),
        )
        if end_c > state.temp_max_c + _TOL_K and scheduled_kwh < step_kwh:
            return step_kwh, (
                f"temperature band: would warm to {end_c:.2f} C, above {state.temp_max_c:.2f} C; plug switched on"
            )
        if end_c < state.temp_min_c - _TOL_K and scheduled_kwh > 0:
            return 0.0, (
                f"temperature band: would cool to {end_c:.2f} C, below {state.temp_min_c:.2f} C; plug switched off"
            )
        return scheduled_kwh, None

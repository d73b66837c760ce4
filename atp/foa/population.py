"""Vectorised offer generation for populations of EVs and heat pumps: one round, many devices.

`generate_ev_offers_batch` and `generate_heat_pump_offers_batch` compute, with numpy and for
all devices at once, the arrays that `EVGenerator.generate` and `HeatPumpGenerator.generate`
compute device by device (charging needs, windows, totals and default schedules; the thermostat
prediction, the RC model's affine map, the comfort-band polytope and its end level), then build the same
FlexOffers. They follow the per-device generators step for step, so the offers agree with them
(structure exactly, numbers within rounding: the batched matrix products may sum in another
order). The model, default schedule and captured flexibility are those of the two generators'
module docstrings; nothing new is modelled here.

All devices of one call share one `GenerationContext` (one round at one `now`). The result
has one entry per state, None where the per-device generator returns None. Heat pumps are
processed in chunks of `chunk_size` devices to bound the memory of the (devices, 2n, n)
polytope arrays. Building a round's offers creates millions of small Python objects (a 16-step
heat-pump polytope alone holds 512 numbers); none of them forms a reference cycle, so the
cyclic garbage collector is paused while they are built (and restored after), which saves it
from rescanning the growing heap again and again (about 3x faster for 100 000 devices).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.flexoffer import DefaultSchedule, FlexOffer, Polytope, Profile, Slice
from atp.foa.errors import GenerationError
from atp.foa.generator import GenerationContext
from atp.foa.states import EVState, ThermalState

__all__ = ["generate_ev_offers_batch", "generate_heat_pump_offers_batch"]

_TOL_KWH = 1e-6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if it runs) for the block; restore it after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _steps_until_us(t_us: np.ndarray, first_start_us: int, slice_s: int) -> np.ndarray:
    """`GenerationContext.steps_until` for many times given in integer microseconds since 1970."""
    return np.maximum(0, (t_us - first_start_us) // (slice_s * 1_000_000))


def generate_ev_offers_batch(states: Sequence[EVState], ctx: GenerationContext) -> list[FlexOffer | None]:
    """`EVGenerator().generate(state, ctx)` for every state, computed with arrays."""
    with _gc_paused():
        return _ev_offers(states, ctx)


def _ev_offers(states: Sequence[EVState], ctx: GenerationContext) -> list[FlexOffer | None]:
    for i, s in enumerate(states):
        if not isinstance(s, EVState):
            raise GenerationError(f"states[{i}]: the ev batch needs EVState, not {type(s).__name__}")
    n_dev = len(states)
    if n_dev == 0:
        return []
    plugged = np.fromiter((s.plugged_in for s in states), bool, n_dev)
    now_kwh = np.fromiter((s.now_energy_kwh for s in states), float, n_dev)
    cap = np.fromiter((s.capacity_kwh for s in states), float, n_dev)
    target = np.fromiter((s.target_energy_kwh for s in states), float, n_dev)
    power = np.fromiter((s.max_power_kw for s in states), float, n_dev)
    eff = np.fromiter((s.charge_efficiency for s in states), float, n_dev)
    dep_us = np.fromiter(((s.departure - _EPOCH) // _US for s in states), np.int64, n_dev)

    first_start = ctx.first_start
    first_us = (first_start - _EPOCH) // _US
    horizon_us = (ctx.horizon_end - _EPOCH) // _US
    # _plan
    need = np.maximum(0.0, target - now_kwh) / eff
    lead_kwh = np.minimum(power * ctx.lead_s / 3600.0, need)
    stored = now_kwh + lead_kwh * eff
    needed = np.maximum(0.0, target - stored) / eff
    headroom = np.maximum(0.0, cap - np.maximum(stored, target)) / eff
    e = power * ctx.slice_s / 3600.0
    in_window = _steps_until_us(np.minimum(dep_us, horizon_us), first_us, ctx.slice_s)
    active = plugged & (dep_us > first_us) & (needed > _TOL_KWH) & (in_window > 0)
    # generate
    with np.errstate(divide="ignore", invalid="ignore"):
        n_needed = np.ceil(needed / e - 1e-9)
    fits = n_needed <= in_window
    n = np.where(fits, n_needed, in_window).astype(np.int64)
    flex = np.where(fits, in_window - n, 0)
    n_e = n * e
    needed_fit = np.minimum(needed, n_e)
    total_lo = np.where(fits, needed_fit, n_e)
    total_hi = np.where(fits, np.minimum(n_e, needed_fit + headroom), n_e)
    slice_lo = np.where(fits, 0.0, e)
    last = np.where(fits, needed_fit - (n - 1) * e, e)

    step = timedelta(seconds=ctx.slice_s)
    offers: list[FlexOffer | None] = [None] * n_dev
    price = ctx.price()
    for i in np.flatnonzero(active).tolist():
        ni, ei = int(n[i]), float(e[i])
        profile = Profile(
            slices=(Slice(ni, (float(slice_lo[i]), ei)),),
            total_energy=(float(total_lo[i]), float(total_hi[i])),
        )
        offers[i] = FlexOffer(
            issuer=ctx.issuer,
            mode=ctx.mode,
            profiles=(profile,),
            device="ev",
            location=ctx.location,
            created_at=ctx.now,
            assignment_before=first_start,
            start_after=first_start,
            start_before=first_start + int(flex[i]) * step,
            slice_s=ctx.slice_s,
            default_schedule=DefaultSchedule(start=first_start, profile=0, energy=(ei,) * (ni - 1) + (float(last[i]),)),
            price=price,
        )
    return offers


def _thermostat(temp: np.ndarray, on: np.ndarray, setpoint: np.ndarray, half_band: np.ndarray) -> np.ndarray:
    return np.where(temp < setpoint - half_band, True, np.where(temp > setpoint + half_band, False, on))


def _heat_pump_chunk(states: Sequence[ThermalState], ctx: GenerationContext, n: int, offset: int) -> list[FlexOffer]:
    m_dev = len(states)
    indoor = np.fromiter((s.indoor_temp_c for s in states), float, m_dev)
    cmin = np.fromiter((s.comfort_min_c for s in states), float, m_dev)
    cmax = np.fromiter((s.comfort_max_c for s in states), float, m_dev)
    setpoint = np.fromiter((s.setpoint_c for s in states), float, m_dev)
    half_band = np.fromiter((s.deadband_c for s in states), float, m_dev) / 2
    r = np.fromiter((s.r_k_per_kw for s in states), float, m_dev)
    c = np.fromiter((s.c_kwh_per_k for s in states), float, m_dev)
    cop = np.fromiter((s.cop for s in states), float, m_dev)
    power = np.fromiter((s.max_power_kw for s in states), float, m_dev)
    heat_on = np.fromiter((s.heat_on for s in states), bool, m_dev)
    outdoor = np.array([s.outdoor_c(n + 1) for s in states], dtype=float).reshape(m_dev, n + 1)

    dt_h = ctx.slice_s / 3600.0
    rc = r * c
    a = 1.0 - dt_h / rc
    bad = np.flatnonzero(a <= 0)
    if bad.size:
        i = int(bad[0])
        raise GenerationError(
            f"states[{offset + i}]: slice_s(={ctx.slice_s}) is too long for the building's time constant "
            f"R*C = {rc[i]:.3g} h: use a shorter slice or check r_k_per_kw and c_kwh_per_k"
        )
    rate = dt_h / rc
    g = cop / c

    def next_temp(temp: np.ndarray, out: np.ndarray, energy: np.ndarray, hours: float) -> np.ndarray:
        return temp + (hours * (out - temp) / r + cop * energy) / c

    lead_h = ctx.lead_s / 3600.0
    on = _thermostat(indoor, heat_on, setpoint, half_band)
    temp = next_temp(indoor, outdoor[:, 0], power * lead_h * on, lead_h)
    start_temp = temp
    step_kwh = power * ctx.slice_s / 3600.0
    default = np.zeros((m_dev, n))
    for k in range(n):
        on = _thermostat(temp, on, setpoint, half_band)
        default[:, k] = np.where(on, step_kwh, 0.0)
        temp = next_temp(temp, outdoor[:, k + 1], default[:, k], dt_h)
    b = rate[:, None] * outdoor[:, 1:]
    # _affine, batched
    ks = np.arange(n)
    lag = ks[:, None] - ks[None, :]
    lower = lag >= 0
    powers = np.where(lower, a[:, None, None] ** np.where(lower, lag, 0), 0.0)
    c_vec = a[:, None] ** (ks + 1) * start_temp[:, None] + np.einsum("dij,dj->di", powers, b)
    m = g[:, None, None] * powers
    temps = c_vec + np.einsum("dij,dj->di", m, default)
    lo_c = np.minimum(cmin, temps.min(axis=1))
    hi_c = np.maximum(cmax, temps.max(axis=1))
    # The end level (ThermalBlock.profile with keep_end_level, the generator's default): T[n] at
    # least the default's, at most the thermostat's cut-out (or the default's T[n] when warmer).
    end_c = temps[:, -1]
    end_max_c = np.maximum(setpoint + half_band, end_c)
    a_rows = np.concatenate([m, -m, -m[:, -1:], m[:, -1:]], axis=1).tolist()
    b_rows = np.concatenate(
        [
            hi_c[:, None] - c_vec,
            c_vec - lo_c[:, None],
            (c_vec[:, -1] - end_c)[:, None],
            (end_max_c - c_vec[:, -1])[:, None],
        ],
        axis=1,
    ).tolist()
    defaults = default.tolist()
    steps = step_kwh.tolist()

    start = ctx.first_start
    price = ctx.price()
    offers = []
    for i in range(m_dev):
        profile = Profile(
            slices=(Slice(n, (0.0, steps[i])),),
            polytope=Polytope(A=tuple(map(tuple, a_rows[i])), b=tuple(b_rows[i])),
        )
        offers.append(
            FlexOffer(
                issuer=ctx.issuer,
                mode=ctx.mode,
                profiles=(profile,),
                device="heat_pump",
                location=ctx.location,
                created_at=ctx.now,
                assignment_before=start,
                start_after=start,
                start_before=start,
                slice_s=ctx.slice_s,
                default_schedule=DefaultSchedule(start=start, profile=0, energy=tuple(defaults[i])),
                price=price,
            )
        )
    return offers


def generate_heat_pump_offers_batch(
    states: Sequence[ThermalState], ctx: GenerationContext, *, block_steps: int = 16, chunk_size: int = 4096
) -> list[FlexOffer | None]:
    """`HeatPumpGenerator(block_steps=block_steps).generate(state, ctx)` for every state, with arrays."""
    if block_steps < 1:
        raise GenerationError(f"block_steps must be at least 1, not {block_steps}")
    if chunk_size < 1:
        raise GenerationError(f"chunk_size must be at least 1, not {chunk_size}")
    for i, s in enumerate(states):
        if not isinstance(s, ThermalState):
            raise GenerationError(f"states[{i}]: the heat_pump batch needs ThermalState, not {type(s).__name__}")
    n = min(block_steps, ctx.steps_until(ctx.horizon_end))
    if n == 0:
        return [None] * len(states)
    offers: list[FlexOffer | None] = []
    with _gc_paused():
        for lo in range(0, len(states), chunk_size):
            offers.extend(_heat_pump_chunk(states[lo : lo + chunk_size], ctx, n, lo))
    return offers

"""Wet-appliance and water-heater generators against their physics, and the built-in EMS guarding them.

As in test_foa_basic: device states come from the physics (`sim.agents.wet_appliance`,
`sim.agents.water_heater`), so "the default schedule is what the device does uncontrolled"
and "feasible schedules keep the device in its limits" are checked against the truth.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import Location, Mode, Schedule, check_schedule, validate_offer
from atp.foa import BuiltInEMS, GenerationContext, GenerationError, ScheduleRefusedError, StateError, load_types
from atp.foa.generators.water_heater import WaterHeaterGenerator
from atp.foa.generators.wet_appliance import WetApplianceGenerator
from atp.foa.states_appliances import ApplianceStatus, Programme, WaterHeaterState
from sim.agents.water_heater import HotWaterDraw, WaterHeater
from sim.agents.wet_appliance import (
    DISHWASHER_PROGRAMMES,
    WASHING_MACHINE_PROGRAMMES,
    StartRequest,
    WetAppliance,
)

DAY0 = datetime(2026, 1, 5, tzinfo=UTC)
LOCATION = Location(meter_id="M-042", bus=3)
TOL = 1e-6
CATALOGUE = {"dishwasher": DISHWASHER_PROGRAMMES, "washing_machine": WASHING_MACHINE_PROGRAMMES}


def context(now: datetime, slice_s: int = 900, **kw) -> GenerationContext:
    return GenerationContext(now=now, slice_s=slice_s, issuer="p1", location=LOCATION, mode=Mode.DELEGATED, **kw)


def at(t: datetime, k: int, slice_s: int) -> datetime:
    return t + timedelta(seconds=k * slice_s)


# -- wet appliances ---------------------------------------------------------------------------------
@st.composite
def wet_setups(draw):
    """(appliance, now = the press, slice_s): one request, pressed at `now`."""
    kind = draw(st.sampled_from(sorted(CATALOGUE)))
    names = [p.name for p in CATALOGUE[kind]]
    slice_s = draw(st.sampled_from([900, 900, 600, 3600]))
    now = DAY0 + timedelta(seconds=draw(st.integers(0, 2 * 86_400)))
    ready_by = now + timedelta(seconds=draw(st.integers(300, 6 * 3600) | st.integers(6 * 3600, 30 * 3600)))
    allowed = tuple(draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)))
    preferred = draw(st.sampled_from(allowed))
    request = StartRequest(now, ready_by, preferred, allowed)
    return WetAppliance(kind=kind, programmes=CATALOGUE[kind], requests=[request]), now, slice_s


def wet_offer(setup):
    appliance, now, slice_s = setup
    ctx, gen = context(now, slice_s), WetApplianceGenerator()
    state = appliance.state(now)
    return gen.generate(state, ctx), state, ctx, gen


@settings(max_examples=60)
@given(wet_setups())
def test_wet_offer_is_valid_and_default_is_the_uncontrolled_appliance(setup):
    appliance, now, slice_s = setup
    offer, state, ctx, gen = wet_offer(setup)
    assert state.status is ApplianceStatus.WAITING
    assert validate_offer(offer, now=now) == []
    assert offer.start_after == offer.assignment_before == ctx.first_start
    assert 0.0 <= gen.captured_flexibility(state, offer, ctx) <= 1.0
    names = gen.offered_programmes(state, ctx)
    assert names[offer.default_schedule.profile] == state.preferred and set(names) <= set(state.allowed)
    twin = copy.deepcopy(appliance)
    assert twin.step(now, None, int(ctx.lead_s)) == 0.0  # the step of the press does not start it
    default = offer.default_schedule.energy
    drawn = [twin.step(at(ctx.first_start, k, slice_s), None, slice_s) for k in range(len(default))]
    assert np.allclose(drawn, default, atol=TOL, rtol=0)
    (run,) = twin.runs
    assert run.programme == state.preferred and run.start == ctx.first_start


@settings(max_examples=60)
@given(wet_setups(), st.integers(0, 2**32 - 1), st.booleans())
def test_wet_any_start_and_programme_runs_to_its_end_by_the_deadline(setup, seed, name_it):
    appliance, now, slice_s = setup
    offer, state, ctx, gen = wet_offer(setup)
    rng = np.random.default_rng(seed)
    names = gen.offered_programmes(state, ctx)
    profile = int(rng.integers(len(offer.profiles)))
    flex = round((offer.start_before - offer.start_after).total_seconds() / slice_s)
    start = at(offer.start_after, int(rng.integers(flex + 1)), slice_s)
    energy = tuple(float(lo) for lo in offer.profiles[profile].lower_kwh())
    schedule = Schedule("fo-1", start, profile, energy, assigned_at=now)
    assert check_schedule(offer, schedule) == []
    ems = BuiltInEMS(generators={"wet_appliance": gen})
    appliance.step(now, None, int(ctx.lead_s))
    t, drawn = ctx.first_start, []
    while t < schedule.end(slice_s):
        setpoint = ems.setpoint(offer, schedule, appliance.state(t), now=t, device="dw")
        drawn.append(appliance.step(t, setpoint, slice_s, programme=names[profile] if name_it else None))
        t = at(t, 1, slice_s)
    assert ems.deviations == [] and appliance.deviations() == []
    (run,) = appliance.runs
    assert run.programme == names[profile] and run.start == start and run.controlled
    assert np.allclose(drawn[-len(energy) :], energy, atol=TOL, rtol=0)
    deadline = min(state.ready_by, ctx.horizon_end)
    if state.programme(names[profile]).n_steps(slice_s) <= ctx.steps_until(deadline):
        assert run.end <= deadline
    else:  # the preferred programme cannot make it: offered alone, at the first start
        assert names == (state.preferred,) and run.start == ctx.first_start


@settings(max_examples=40)
@given(wet_setups())
def test_wet_ems_refuses_schedules_outside_the_offer(setup):
    _, now, slice_s = setup
    offer, _, _, _ = wet_offer(setup)
    ems = BuiltInEMS(generators={"wet_appliance": WetApplianceGenerator()})
    default = offer.default_schedule
    late = Schedule("fo-1", at(offer.start_before, 1, slice_s), default.profile, default.energy, assigned_at=now)
    with pytest.raises(ScheduleRefusedError, match="latest start"):
        ems.check(offer, late)
    halved = Schedule("fo-1", default.start, default.profile, tuple(e / 2 for e in default.energy), assigned_at=now)
    with pytest.raises(ScheduleRefusedError, match="slice bounds"):
        ems.check(offer, halved)
    missing = Schedule("fo-1", default.start, len(offer.profiles), default.energy, assigned_at=now)
    with pytest.raises(ScheduleRefusedError, match="not a profile index"):
        ems.check(offer, missing)


def dishwasher(now: datetime, ready_h: float, preferred: str = "eco") -> WetAppliance:
    request = StartRequest(now, now + timedelta(hours=ready_h), preferred, ("eco", "normal", "quick"))
    return WetAppliance(kind="dishwasher", programmes=DISHWASHER_PROGRAMMES, requests=[request])


def test_wet_offer_shape_and_captured_flexibility():
    now = DAY0 + timedelta(hours=20, minutes=10)
    appliance = dishwasher(now, 10.0)
    offer, state, ctx, gen = wet_offer((appliance, now, 900))
    assert gen.offered_programmes(state, ctx) == ("eco", "normal", "quick")
    assert [p.n_steps for p in offer.profiles] == [8, 6, 4]
    # 20:15 to 06:10: 39 whole steps; eco (8 steps) may start up to step 31.
    assert offer.start_before == at(ctx.first_start, 31, 900)
    assert offer.profiles[2].lower_kwh().tolist() == offer.profiles[2].upper_kwh().tolist() == [0.4, 0.1, 0.3, 0.05]
    # true options 32 + 34 + 36 = 102, offered 3 * 32 = 96
    assert gen.captured_flexibility(state, offer, ctx) == pytest.approx(96 / 102)
    assert gen.captured_flexibility(state, None, ctx) == 0.0


def test_wet_deadline_too_close_offers_the_preferred_programme_without_flexibility():
    now = DAY0 + timedelta(hours=20)
    appliance = dishwasher(now, 1.5)  # eco needs 2 h
    offer, state, ctx, gen = wet_offer((appliance, now, 900))
    assert validate_offer(offer, now=now) == []
    assert len(offer.profiles) == 1 and offer.start_before == offer.start_after
    assert gen.offered_programmes(state, ctx) == ("eco",)


def test_wet_idle_or_running_appliance_offers_nothing_and_a_running_programme_is_kept():
    now = DAY0 + timedelta(hours=20)
    appliance = dishwasher(now, 10.0, preferred="quick")
    gen = WetApplianceGenerator()
    before = now - timedelta(minutes=5)
    assert appliance.state(before).status is ApplianceStatus.IDLE
    assert gen.generate(appliance.state(before), context(before)) is None
    appliance.step(now, None, 900)
    t = at(now, 1, 900)
    appliance.step(t, None, 900)  # uncontrolled: quick starts at the first step after the press
    t = at(t, 1, 900)
    state = appliance.state(t)
    assert state.status is ApplianceStatus.RUNNING and state.running == "quick"
    assert gen.generate(state, context(t)) is None
    executed, reason = gen.keep_limits(state, 0.0, now=t, slice_s=900)
    assert executed == pytest.approx(0.1) and "cannot be changed" in reason
    assert appliance.step(t, 0.0, 900) == pytest.approx(0.1)  # the physics ignores the interruption
    (deviation,) = appliance.deviations()
    assert "in progress" in deviation.deviation


def test_wet_ems_starts_the_preferred_programme_when_the_deadline_is_at_risk():
    now = DAY0 + timedelta(hours=20)
    appliance = dishwasher(now, 10.0)
    offer, state, ctx, gen = wet_offer((appliance, now, 900))
    late = Schedule("fo-1", offer.start_before, 0, offer.default_schedule.energy, assigned_at=now)
    hurried = dataclasses.replace(state, ready_by=ctx.first_start + timedelta(hours=2, minutes=20))
    ems = BuiltInEMS(generators={"wet_appliance": gen})
    assert ems.setpoint(offer, late, hurried, now=ctx.first_start, device="dw") == 0.0
    t = at(ctx.first_start, 1, 900)
    assert ems.setpoint(offer, late, hurried, now=t, device="dw") == pytest.approx(0.03)
    (deviation,) = ems.deviations
    assert "ready-by" in deviation.reason and deviation.scheduled_kwh == 0.0


def test_wet_requests_are_seeded_and_plausible():
    def draw(seed, kind):
        return WetAppliance.draw(np.random.default_rng(seed), kind=kind, first_day=DAY0, days=60)

    a = draw(3, "dishwasher")
    assert a.requests == draw(3, "dishwasher").requests != draw(4, "dishwasher").requests
    assert 30 <= len(a.requests) <= 60
    for r in a.requests:
        assert 18 <= r.pressed_at.hour <= 23 and 5 <= r.ready_by.hour <= 9 and r.preferred in r.allowed
    w = draw(3, "washing_machine")
    assert 10 <= len(w.requests) <= 50
    assert all(timedelta(hours=4) <= r.ready_by - r.pressed_at <= timedelta(hours=10) for r in w.requests)
    for p in DISHWASHER_PROGRAMMES + WASHING_MACHINE_PROGRAMMES:
        assert 0.2 <= p.total_kwh <= 1.5 and max(p.energy_kwh) <= 0.5  # at most 2 kW in a quarter hour


def test_programmes_resample_to_other_slices_and_bad_states_are_refused():
    eco = DISHWASHER_PROGRAMMES[0]
    assert sum(eco.energy_per_step_kwh(3600)) == pytest.approx(eco.total_kwh)
    assert len(eco.energy_per_step_kwh(600)) == 12 and eco.energy_per_step_kwh(600)[0] == pytest.approx(0.02)
    with pytest.raises(StateError, match="first step"):
        Programme("soak", (0.0, 0.5))
    waiting = dishwasher(DAY0, 5.0).state(DAY0)
    with pytest.raises(StateError, match="preferred"):
        dataclasses.replace(waiting, preferred="rinse")
    with pytest.raises(GenerationError, match="WetApplianceState"):
        WetApplianceGenerator().generate(waiting.programmes, context(DAY0))


# -- water heater --------------------------------------------------------------------------------------
@st.composite
def wh_setups(draw):
    """(water heater, now, slice_s, block_steps) with draws in the next day."""
    slice_s = draw(st.sampled_from([900, 900, 3600]))
    now = DAY0 + timedelta(seconds=slice_s * draw(st.integers(0, 100)) + draw(st.sampled_from([0, 1, 450, 899])))
    tank = draw(st.sampled_from([80.0, 120.0, 150.0, 200.0]) | st.floats(50.0, 300.0))
    lo = draw(st.floats(40.0, 55.0))
    hi = lo + draw(st.floats(5.0, 30.0))
    events = draw(st.lists(st.tuples(st.integers(0, 26 * 3600), st.floats(0.0, 0.15 * tank)), max_size=6))
    heater = WaterHeater(
        tank_l=tank,
        element_kw=draw(st.floats(1.0, 4.0)),
        ua_w_per_k=draw(st.floats(0.0, 4.0)),
        ambient_c=draw(st.floats(5.0, 25.0)),
        inlet_c=draw(st.floats(5.0, 15.0)),
        temp_c=draw(st.one_of(st.floats(lo, hi), st.floats(lo - 5.0, hi + 5.0))),
        min_c=lo,
        max_c=hi,
        setpoint_c=draw(st.floats(lo, hi)),
        deadband_c=draw(st.floats(0.0, hi - lo)),
        heat_on=draw(st.booleans()),
        draws=[HotWaterDraw(now + timedelta(seconds=s), litres) for s, litres in events],
    )
    return heater, now, slice_s, draw(st.integers(1, 24))


def wh_offer(setup, *, keep_end_level=True):
    heater, now, slice_s, block = setup
    ctx = context(now, slice_s)
    state = heater.state(now, slice_s=slice_s, n_steps=block + 1)
    gen = WaterHeaterGenerator(block_steps=block, keep_end_level=keep_end_level)
    return gen.generate(state, ctx), state, ctx


def run_wh(heater, now, ctx, setpoints):
    """Physics: the uncontrolled step in progress, then one setpoint (or None) per step."""
    twin = copy.deepcopy(heater)
    twin.step(now, None, int(ctx.lead_s))
    start_c = twin.temp_c
    drawn = [twin.step(at(ctx.first_start, k, ctx.slice_s), x, ctx.slice_s) for k, x in enumerate(setpoints)]
    return start_c, np.array(drawn), twin.temperatures_c()[2:]


def extreme_heating(
    state: WaterHeaterState, n: int, slice_s: int, start_c: float, band, *, highest: bool
) -> np.ndarray:
    """Energies of the highest (or lowest) tank trajectory that keeps T[1..n] in `band` (the FOA's model)."""
    dt_h, c = slice_s / 3600.0, state.capacity_kwh_per_k
    f = np.minimum(np.asarray(state.draws_l(n + 1)[1:]) / state.tank_l, 1.0)
    loss = dt_h * state.ua_kw_per_k / c
    a, b, g, e = 1 - f - loss, f * state.inlet_c + loss * state.ambient_c, 1 / c, state.element_kw * dt_h
    lo, hi = band
    low_ok, high_ok = np.full(n + 1, lo), np.full(n + 1, hi)
    for k in range(n - 1, 0, -1):
        low_ok[k] = max(lo, (low_ok[k + 1] - b[k] - g * e) / a[k])
        high_ok[k] = min(hi, (high_ok[k + 1] - b[k]) / a[k])
    x, t = np.zeros(n), start_c
    for k in range(n):
        target = high_ok[k + 1] if highest else low_ok[k + 1]
        x[k] = np.clip((target - a[k] * t - b[k]) / g, 0.0, e)
        t = a[k] * t + b[k] + g * x[k]
    return x


@settings(max_examples=60)
@given(wh_setups())
def test_water_heater_offer_is_valid_and_default_is_the_thermostat(setup):
    heater, now, _, block = setup
    offer, state, ctx = wh_offer(setup)
    gen = WaterHeaterGenerator(block_steps=block)
    assert 0.0 <= gen.captured_flexibility(state, offer, ctx) <= 1.0
    assert validate_offer(offer, now=now) == []
    assert offer.start_after == offer.start_before == ctx.first_start
    default = offer.default_schedule.energy
    assert len(default) == min(block, ctx.steps_until(ctx.horizon_end))
    _, drawn, _ = run_wh(heater, now, ctx, [None] * len(default))
    assert np.allclose(drawn, default, atol=TOL, rtol=0)


@settings(max_examples=60)
@given(wh_setups(), st.floats(0.0, 1.0), st.booleans())
def test_water_heater_feasible_schedules_keep_the_tank_in_its_limits(setup, weight, highest):
    heater, now, slice_s, block = setup
    offer, state, ctx = wh_offer(setup, keep_end_level=False)  # the band alone: every band-keeping schedule
    default = np.asarray(offer.default_schedule.energy)
    start_c, _, default_temps = run_wh(heater, now, ctx, list(default))
    band = (min(heater.min_c, default_temps.min()), max(heater.max_c, default_temps.max()))
    widened = band != (heater.min_c, heater.max_c)
    other = extreme_heating(state, len(default), slice_s, start_c, band, highest=highest)
    x = weight * default + (1 - weight) * other
    schedule = Schedule("fo-1", ctx.first_start, 0, tuple(float(v) for v in x), assigned_at=now)
    assert check_schedule(offer, schedule) == []
    _, _, temps = run_wh(heater, now, ctx, x.tolist())
    # The default offer also keeps the end level: the tank ends at least as hot as its thermostat
    # would leave it, and no hotter than the thermostat's cut-out (or the default's end, when
    # hotter), so heat banked in one block does not lower the next block's default.
    level_kept = check_schedule(wh_offer(setup)[0], schedule) == []
    end_max_c = max(heater.setpoint_c + heater.deadband_c / 2, default_temps[-1])
    ends_in_level = default_temps[-1] - 1e-6 <= temps[-1] <= end_max_c + 1e-6
    near_edge = min(abs(temps[-1] - default_temps[-1]), abs(temps[-1] - end_max_c)) < 1e-4
    assert level_kept == ends_in_level or near_edge
    assert np.all(temps >= band[0] - TOL) and np.all(temps <= band[1] + TOL)
    if not widened:
        ems, twin = BuiltInEMS(generators={"water_heater": WaterHeaterGenerator()}), copy.deepcopy(heater)
        twin.step(now, None, int(ctx.lead_s))
        for k in range(len(default)):
            t = at(ctx.first_start, k, slice_s)
            sp = ems.setpoint(offer, schedule, twin.state(t, slice_s=slice_s, n_steps=block), now=t)
            twin.step(t, sp, slice_s)
        assert ems.deviations == []
        assert heater.min_c - TOL <= twin.temperatures_c()[2:].min()
        assert twin.temperatures_c()[2:].max() <= heater.max_c + TOL


def boiler(temp_c: float, draws=()) -> WaterHeater:
    return WaterHeater(
        tank_l=150.0,
        element_kw=3.0,
        ua_w_per_k=1.5,
        ambient_c=18.0,
        inlet_c=10.0,
        temp_c=temp_c,
        min_c=45.0,
        max_c=75.0,
        setpoint_c=60.0,
        deadband_c=5.0,
        draws=draws,
    )


def test_water_heater_ems_refuses_an_infeasible_schedule():
    now = DAY0 + timedelta(hours=10)
    heater = boiler(74.0)
    ctx = context(now)
    offer = WaterHeaterGenerator().generate(heater.state(now), ctx)
    ems = BuiltInEMS(generators={"water_heater": WaterHeaterGenerator()})
    too_hot = Schedule("fo-1", ctx.first_start, 0, (0.75,) * 16, assigned_at=now)
    with pytest.raises(ScheduleRefusedError, match="polytope row"):
        ems.setpoint(offer, too_hot, heater.state(ctx.first_start), now=ctx.first_start)
    too_much = Schedule("fo-1", ctx.first_start, 0, (1.0,) + (0.0,) * 15, assigned_at=now)
    with pytest.raises(ScheduleRefusedError, match="slice bounds"):
        ems.check(offer, too_much)


def test_water_heater_ems_heats_when_an_unforecast_draw_cools_the_tank():
    now = DAY0 + timedelta(hours=6)
    shower = [HotWaterDraw(now + timedelta(minutes=20), 60.0)]
    heater = boiler(47.0, shower)
    ctx = context(now)
    blind = heater.state(now, draw_forecast_l=[0.0])  # the FOA expects no draw
    # without the end level: "off" would otherwise leave the tank colder than its thermostat
    offer = WaterHeaterGenerator(block_steps=4, keep_end_level=False).generate(blind, ctx)
    off = Schedule("fo-1", ctx.first_start, 0, (0.0,) * 4, assigned_at=now)
    assert check_schedule(offer, off) == []
    ems = BuiltInEMS(generators={"water_heater": WaterHeaterGenerator()})
    heater.step(now, 0.0, int(ctx.lead_s))
    t = ctx.first_start
    state = heater.state(t, n_steps=4)  # now the sensor sees the shower starting
    assert ems.setpoint(offer, off, state, now=t, device="boiler") == pytest.approx(0.75)
    (deviation,) = ems.deviations
    assert "below 45.00 C" in deviation.reason and deviation.device == "boiler"


def test_water_heater_draws_are_seeded_with_morning_and_evening_peaks():
    def draw(seed):
        return WaterHeater.draw(np.random.default_rng(seed), first_day=DAY0, days=30)

    a = draw(5)
    assert a.draws == draw(5).draws != draw(6).draws
    assert a.tank_l in (80.0, 120.0, 150.0, 200.0) and a.element_kw in (2.0, 3.0)
    litres_by_hour = np.zeros(24)
    for d in a.draws:
        litres_by_hour[d.time.hour] += d.litres
    per_day = litres_by_hour.sum() / 30
    assert 20.0 <= per_day <= 250.0
    assert litres_by_hour[6:9].sum() > litres_by_hour[0:5].sum() and litres_by_hour[18:22].sum() > 0.2 * per_day * 30
    assert heater_forecast_matches_draws(a)


def heater_forecast_matches_draws(heater: WaterHeater) -> bool:
    now = DAY0 + timedelta(hours=5, minutes=7)
    forecast = heater.draw_forecast_l(now, slice_s=900, n_steps=96)
    return abs(sum(forecast) - heater.drawn_l(now, DAY0 + timedelta(hours=5, minutes=15, days=1))) < 1e-9


def test_water_heater_refuses_bad_states_and_draws_that_empty_the_tank():
    with pytest.raises(StateError, match="min_c"):
        dataclasses.replace(boiler(60.0).state(DAY0), min_c=80.0)
    flood = boiler(60.0).state(DAY0, draw_forecast_l=[0.0, 200.0])
    with pytest.raises(GenerationError, match="empties"):
        WaterHeaterGenerator().generate(flood, context(DAY0))


def test_registry_knows_both_load_types():
    assert {"wet_appliance", "water_heater"} <= set(load_types())

"""Battery and PV-curtailment generators against their device physics and the built-in EMS.

Device states come from the physics (`sim.agents.battery`, `sim.agents.pv`), so "the default
schedule is what the device does uncontrolled" and "every feasible schedule keeps the device
within its limits" are checked against the truth, not against the FOA's own model.
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
from atp.flexoffer.feasibility import TOLERANCE_KWH
from atp.foa import BuiltInEMS, GenerationContext, GenerationError, ScheduleRefusedError, StateError, generator_for
from atp.foa.generators.battery import BatteryGenerator, BatteryState
from atp.foa.generators.pv import PvGenerator, PvState
from sim.agents.battery import Battery
from sim.agents.pv import PvSystem

DAY0 = datetime(2026, 6, 1, tzinfo=UTC)
LOCATION = Location(meter_id="M-017", bus=12)
TOL = 1e-6


def context(now: datetime, slice_s: int = 900, **kw) -> GenerationContext:
    return GenerationContext(now=now, slice_s=slice_s, issuer="p1", location=LOCATION, mode=Mode.DELEGATED, **kw)


def at(t: datetime, k: int, slice_s: int) -> datetime:
    return t + timedelta(seconds=k * slice_s)


def schedule_of(offer, x, now) -> Schedule:
    return Schedule("fo-1", offer.start_after, 0, tuple(float(v) for v in x), assigned_at=now)


# -- strategies --------------------------------------------------------------------------------
efficiencies = st.one_of(st.just(1.0), st.floats(0.7, 1.0))


@st.composite
def battery_setups(draw):
    """(battery, now, slice_s, block_steps)."""
    slice_s = draw(st.sampled_from([900, 900, 3600]))
    now = DAY0 + timedelta(seconds=slice_s * draw(st.integers(0, 200)) + draw(st.sampled_from([0, 1, 450, 899])))
    capacity = draw(st.floats(1.0, 30.0))
    lo = capacity * draw(st.floats(0.0, 0.4))
    hi = min(lo + (capacity - lo) * draw(st.floats(0.0, 1.0)), capacity)  # min: lo + (c - lo) may round above c
    soc = draw(st.one_of(st.just(lo), st.just(hi), st.floats(lo, hi)))
    battery = Battery(
        capacity_kwh=capacity,
        soc_kwh=soc,
        max_charge_kw=draw(st.floats(0.2, 15.0)),
        max_discharge_kw=draw(st.floats(0.2, 15.0)),
        soc_min_kwh=lo,
        soc_max_kwh=hi,
        charge_efficiency=draw(efficiencies),
        discharge_efficiency=draw(efficiencies),
    )
    return battery, now, slice_s, draw(st.integers(1, 24))


@st.composite
def pv_setups(draw):
    """(pv system, now, slice_s, block_steps, potential of the step now, potentials of the next steps)."""
    slice_s = draw(st.sampled_from([900, 900, 3600]))
    now = DAY0 + timedelta(seconds=slice_s * draw(st.integers(0, 200)) + draw(st.sampled_from([0, 1, 450, 899])))
    pv = PvSystem(kwp=draw(st.floats(1.0, 15.0)), inverter_kw=draw(st.floats(0.5, 15.0)))
    n = draw(st.integers(1, 30))
    irradiance = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 1100.0)), min_size=n + 1, max_size=n + 1))
    available = [pv.available_kwh(g, slice_s) for g in irradiance]
    return pv, now, slice_s, draw(st.integers(1, 24)), available[0], available[1:]


# -- battery helpers ---------------------------------------------------------------------------------
def battery_offers(setup, mode=Mode.DELEGATED, price=None, *, energy_neutral=False):
    """Dependency and polytope offers of one battery state (by default without the energy-neutral
    total, so that the state-of-charge properties see every schedule the chain allows)."""
    battery, now, slice_s, block = setup
    ctx = context(now, slice_s) if price is None else dataclasses.replace(context(now, slice_s), mode=mode)
    state = battery.state(now)
    dep = BatteryGenerator(block_steps=block, energy_neutral=energy_neutral).generate(state, ctx)
    poly = BatteryGenerator(block_steps=block, form="polytope", energy_neutral=energy_neutral).generate(state, ctx)
    return dep, poly, state, ctx


def sample_dependency_schedule(offer, rng: np.random.Generator, *, extreme: bool) -> np.ndarray:
    """Step by step within the dependency bounds at the accumulated d (the ends only when `extreme`)."""
    profile = offer.profiles[0]
    x, d = [], 0.0
    for points in profile.dependency:
        ds = [p[0] for p in points]
        d_in = min(max(d, ds[0]), ds[-1])
        lo = float(np.interp(d_in, ds, [p[1] for p in points]))
        hi = float(np.interp(d_in, ds, [p[2] for p in points]))
        v = (hi if rng.random() < 0.5 else lo) if extreme else rng.uniform(lo, hi)
        x.append(v)
        d += v
    return np.array(x)


def stored_trajectory(state: BatteryState, x: np.ndarray) -> np.ndarray:
    """The true SoC after each step without any clipping."""
    f = np.where(x >= 0, x * state.charge_efficiency, x / state.discharge_efficiency)
    return state.soc_kwh + np.cumsum(f)


def run_battery(battery, now, ctx, offer, schedule, generator):
    """Physics under the EMS: the idle step in progress, then the schedule step by step."""
    twin, ems = copy.deepcopy(battery), BuiltInEMS(generators={"battery": generator})
    twin.step(now, None, int(ctx.lead_s))
    for k in range(len(schedule.energy)):
        t = at(ctx.first_start, k, ctx.slice_s)
        twin.step(t, ems.setpoint(offer, schedule, twin.state(t), now=t, device="bat"), ctx.slice_s)
    return twin, ems


# -- battery ----------------------------------------------------------------------------------------
@settings(max_examples=80)
@given(battery_setups())
def test_battery_offers_are_valid_and_default_is_idle(setup):
    battery, now, _, block = setup
    dep, poly, state, ctx = battery_offers(setup)
    gen = BatteryGenerator(block_steps=block)
    assert 0.0 <= gen.captured_flexibility(state, dep, ctx) <= 1.0
    if dep is None:  # no flexibility at all: a battery pinned at soc_min == soc_max
        assert poly is None and state.soc_max_kwh - state.soc_min_kwh <= TOL
        return
    n = min(block, ctx.steps_until(ctx.horizon_end))
    for offer in (dep, poly):
        assert validate_offer(offer, now=now) == []
        assert offer.profiles[0].n_steps == n and offer.device == "battery"
        assert offer.start_after == offer.start_before == offer.assignment_before == ctx.first_start
    assert dep.profiles[0].dependency is not None and poly.profiles[0].dependency is None
    twin = copy.deepcopy(battery)
    twin.step(now, None, int(ctx.lead_s))
    drawn = [twin.step(at(ctx.first_start, k, ctx.slice_s), None, ctx.slice_s) for k in range(n)]
    assert np.allclose(drawn, dep.default_schedule.energy, atol=TOL, rtol=0)
    assert dep.default_schedule.energy == poly.default_schedule.energy
    window = state.soc_max_kwh - state.soc_min_kwh
    upper = min(state.max_charge_kw * ctx.slice_s / 3600, window / state.charge_efficiency)
    assert dep.profiles[0].upper_kwh().max() == pytest.approx(upper)
    assert -dep.profiles[0].lower_kwh().min() <= state.max_discharge_kw * ctx.slice_s / 3600 + TOL


@settings(max_examples=80)
@given(battery_setups(), st.integers(0, 2**32 - 1), st.booleans())
def test_battery_feasible_schedules_keep_the_state_of_charge(setup, seed, extreme):
    battery, now, _, _ = setup
    dep, poly, state, ctx = battery_offers(setup)
    if dep is None:
        return
    x = sample_dependency_schedule(dep, np.random.default_rng(seed), extreme=extreme)
    assert check_schedule(dep, schedule_of(dep, x, now)) == []
    assert check_schedule(poly, schedule_of(poly, x, now)) == []
    soc = stored_trajectory(state, x)
    assert np.all(soc >= state.soc_min_kwh - TOL) and np.all(soc <= state.soc_max_kwh + TOL)
    for offer, form in ((dep, "dependency"), (poly, "polytope")):
        twin, ems = run_battery(battery, now, ctx, offer, schedule_of(offer, x, now), BatteryGenerator(form=form))
        assert ems.deviations == []
        assert all(h.clipped_kwh <= TOL for h in twin.history)
        assert np.allclose([h.energy_kwh for h in twin.history[1:]], x, atol=TOL, rtol=0)
        trajectory = twin.soc_trajectory_kwh()
        assert np.all(trajectory >= twin.soc_min_kwh - TOL) and np.all(trajectory <= twin.soc_max_kwh + TOL)


@settings(max_examples=80)
@given(battery_setups(), st.integers(0, 2**32 - 1), st.booleans())
def test_energy_neutral_battery_offers_cannot_empty_the_battery(setup, seed, extreme):
    """By default a block takes from the grid at least what it gives back: a schedule that
    discharges on balance is infeasible, and every feasible one ends the block with at least the
    starting charge minus the worst-case cycling loss."""
    dep, poly, state, _ = battery_offers(setup, energy_neutral=True)
    if dep is None:
        return
    x = sample_dependency_schedule(dep, np.random.default_rng(seed), extreme=extreme)
    total = x.sum()
    for offer in (dep, poly):
        assert offer.profiles[0].total_energy[0] == 0.0
        problems = check_schedule(offer, schedule_of(offer, x, setup[1]))
        if total >= 0.0:
            assert problems == [], (total, problems)
        elif total < -2 * TOLERANCE_KWH:  # within the checker's tolerance either answer is right
            assert problems != [], total
    if total >= -TOLERANCE_KWH:
        eta_c, eta_d = state.charge_efficiency, state.discharge_efficiency
        worst_loss_per_kwh = 1.0 / eta_d - eta_c  # a kWh taken and given back
        lost = worst_loss_per_kwh * np.abs(x).sum()
        assert stored_trajectory(state, x)[-1] >= state.soc_kwh - lost - TOL


@settings(max_examples=80)
@given(battery_setups(), st.integers(0, 2**32 - 1))
def test_battery_dependency_and_polytope_forms_agree(setup, seed):
    _, now, _, _ = setup
    dep, poly, _, _ = battery_offers(setup)
    if dep is None:
        return
    profile = poly.profiles[0]
    rng = np.random.default_rng(seed)
    for _ in range(20):
        x = rng.uniform(profile.lower_kwh(), profile.upper_kwh())
        if profile.polytope is None:
            violation = 0.0
        else:
            violation = float(np.max(np.asarray(profile.polytope.A) @ x - np.asarray(profile.polytope.b)))
        dep_ok = check_schedule(dep, schedule_of(dep, x, now)) == []
        poly_ok = check_schedule(poly, schedule_of(poly, x, now)) == []
        if violation > 1e-4:  # clearly outside (the forms apply the 1e-6 tolerance differently)
            assert not dep_ok and not poly_ok
        elif violation < -1e-4 or profile.polytope is None:
            assert dep_ok and poly_ok


def test_battery_schedules_outside_the_offer_are_refused():
    now = DAY0 + timedelta(hours=10)
    battery = Battery(capacity_kwh=10.0, soc_kwh=8.0, max_charge_kw=5.0, max_discharge_kw=5.0, soc_max_kwh=9.0)
    ctx = context(now)
    gens = {"battery": BatteryGenerator()}
    for form in ("dependency", "polytope"):
        offer = BatteryGenerator(form=form).generate(battery.state(now), ctx)
        overfill = schedule_of(offer, [1.25] * 16, now)  # 20 kWh into a battery with room for 1
        with pytest.raises(ScheduleRefusedError):
            BuiltInEMS(generators=gens).setpoint(offer, overfill, battery.state(now), now=ctx.first_start)
        drain = schedule_of(offer, [-1.25] * 8 + [0.0] * 8, now)  # 10 kWh out of 8 stored
        with pytest.raises(ScheduleRefusedError):
            BuiltInEMS(generators=gens).check(offer, drain)
        too_short = schedule_of(offer, [0.0] * 3, now)
        with pytest.raises(ScheduleRefusedError, match="16"):
            BuiltInEMS(generators=gens).check(offer, too_short)


def test_lossless_battery_offer_is_exact_and_captures_everything_over_the_horizon():
    now = DAY0
    battery = Battery(
        capacity_kwh=10.0,
        soc_kwh=5.0,
        max_charge_kw=4.0,
        max_discharge_kw=4.0,
        soc_min_kwh=1.0,
        charge_efficiency=1.0,
        discharge_efficiency=1.0,
    )
    ctx, gen = context(now), BatteryGenerator(block_steps=16, energy_neutral=False)
    offer = gen.generate(battery.state(now), ctx)
    full = schedule_of(offer, [1.0] * 5 + [0.0] * 11, now)  # exactly to capacity
    empty = schedule_of(offer, [-1.0] * 4 + [0.0] * 12, now)  # exactly to soc_min
    assert check_schedule(offer, full) == [] and check_schedule(offer, empty) == []
    assert check_schedule(offer, schedule_of(offer, [1.0] * 5 + [0.01] + [0.0] * 10, now)) != []
    neutral = BatteryGenerator(block_steps=16).generate(battery.state(now), ctx)  # the default
    cycle = schedule_of(neutral, [-1.0] * 4 + [1.0] * 4 + [0.0] * 8, now)
    assert check_schedule(neutral, empty) != [] and check_schedule(neutral, cycle) == []
    whole_day = BatteryGenerator(block_steps=200, energy_neutral=False)
    assert whole_day.captured_flexibility(battery.state(now), whole_day.generate(battery.state(now), ctx), ctx) == (
        pytest.approx(1.0)
    )
    assert 0.0 < gen.captured_flexibility(battery.state(now), offer, ctx) < 0.5
    assert gen.captured_flexibility(battery.state(now), None, ctx) == 0.0


def test_lossy_battery_near_its_minimum_keeps_idle_feasible_by_limiting_discharge():
    now = DAY0
    battery = Battery(
        capacity_kwh=10.0, soc_kwh=1.2, max_charge_kw=5.0, max_discharge_kw=5.0, soc_min_kwh=1.0, soc_max_kwh=9.0
    )
    offer = BatteryGenerator().generate(battery.state(now), context(now))
    assert validate_offer(offer, now=now) == []
    assert 0.0 < -offer.profiles[0].lower_kwh().min() < 1.25


def test_battery_ems_clips_to_the_real_state_of_charge_and_reports():
    now = DAY0 + timedelta(hours=10)
    battery = Battery(capacity_kwh=10.0, soc_kwh=3.0, max_charge_kw=5.0, max_discharge_kw=5.0, soc_min_kwh=1.0)
    ctx = context(now)
    offer = BatteryGenerator().generate(battery.state(now), ctx)
    schedule = schedule_of(offer, [-0.9] + [0.0] * 7 + [0.9] + [0.0] * 7, now)  # within the cycling reserve
    assert check_schedule(offer, schedule) == []
    # The battery lost charge since the offer was made (the truth differs from the prediction).
    drained = dataclasses.replace(battery.state(now), soc_kwh=1.5)
    ems = BuiltInEMS(generators={"battery": BatteryGenerator()})
    executed = ems.setpoint(offer, schedule, drained, now=ctx.first_start, device="bat-1")
    assert executed == pytest.approx(-0.5 * 0.95)
    (deviation,) = ems.deviations
    assert deviation.device == "bat-1" and "state of charge" in deviation.reason


def test_battery_physics_clips_and_records_it():
    battery = Battery(capacity_kwh=10.0, soc_kwh=9.5, max_charge_kw=4.0, max_discharge_kw=4.0)
    assert battery.step(DAY0, 3.0, 900) == pytest.approx(0.5 / 0.95)
    assert battery.soc_kwh == pytest.approx(10.0) and battery.history[-1].clipped_kwh == pytest.approx(3 - 0.5 / 0.95)
    assert battery.step(DAY0, None, 900) == 0.0 and battery.history[-1].clipped_kwh == 0.0
    assert battery.step(DAY0, -9.0, 900) == pytest.approx(-1.0) and battery.history[-1].clipped_kwh == 8.0


# -- PV ---------------------------------------------------------------------------------------------
def pv_offer(setup, generator=None):
    pv, now, slice_s, block, available_now, forecast = setup
    ctx = context(now, slice_s)
    state = pv.state(now, available_now, forecast)
    return (generator or PvGenerator(block_steps=block)).generate(state, ctx), state, ctx


def run_pv(pv, now, ctx, offer, schedule, available_now, available):
    twin, ems = copy.deepcopy(pv), BuiltInEMS(generators={"pv": PvGenerator()})
    twin.step(now, None, int(ctx.lead_s), available_now)
    for k in range(len(schedule.energy)):
        t = at(ctx.first_start, k, ctx.slice_s)
        state = twin.state(t, available[k], available[k + 1 :])
        twin.step(t, ems.setpoint(offer, schedule, state, now=t, device="pv"), ctx.slice_s, available[k])
    return twin, ems


@settings(max_examples=80)
@given(pv_setups())
def test_pv_offer_is_valid_and_default_is_full_production(setup):
    pv, now, _, block, available_now, forecast = setup
    offer, state, ctx = pv_offer(setup)
    gen = PvGenerator(block_steps=block)
    assert 0.0 <= gen.captured_flexibility(state, offer, ctx) <= 1.0
    n = min(block, ctx.steps_until(ctx.horizon_end), len(forecast))
    if offer is None:
        assert all(e >= -TOL for e in forecast[:n])
        return
    assert validate_offer(offer, now=now) == []
    profile = offer.profiles[0]
    assert profile.n_steps == n and np.all(profile.upper_kwh() == 0.0)
    assert offer.start_after == offer.start_before == offer.assignment_before == ctx.first_start
    twin = copy.deepcopy(pv)
    twin.step(now, None, int(ctx.lead_s), available_now)
    produced = [twin.step(at(ctx.first_start, k, ctx.slice_s), None, ctx.slice_s, forecast[k]) for k in range(n)]
    assert np.allclose(produced, offer.default_schedule.energy, atol=TOL, rtol=0)


@settings(max_examples=80)
@given(pv_setups(), st.integers(0, 2**32 - 1))
def test_pv_any_schedule_in_the_bounds_never_produces_more_than_available(setup, seed):
    pv, now, _, _, available_now, forecast = setup
    offer, _, ctx = pv_offer(setup)
    if offer is None:
        return
    profile = offer.profiles[0]
    x = np.random.default_rng(seed).uniform(profile.lower_kwh(), profile.upper_kwh())
    schedule = schedule_of(offer, x, now)
    assert check_schedule(offer, schedule) == []
    twin, ems = run_pv(pv, now, ctx, offer, schedule, available_now, forecast)
    assert ems.deviations == []
    steps = twin.history[1:]
    assert all(h.clipped_kwh <= TOL for h in steps)
    assert np.allclose([h.energy_kwh for h in steps], x, atol=TOL, rtol=0)
    assert all(h.available_kwh - TOL <= h.energy_kwh <= TOL for h in steps)


def test_pv_schedules_outside_the_offer_are_refused():
    now = DAY0 + timedelta(hours=10)
    pv = PvSystem(kwp=8.0, inverter_kw=6.0)
    forecast = [pv.available_kwh(900.0, 900)] * 16
    ctx = context(now)
    offer = PvGenerator().generate(pv.state(now, forecast[0], forecast), ctx)
    assert offer.default_schedule.energy == pytest.approx([-1.5] * 16)  # the inverter caps 6.12 kW at 6 kW
    ems = BuiltInEMS(generators={"pv": PvGenerator()})
    too_much = schedule_of(offer, [-2.0] * 16, now)
    with pytest.raises(ScheduleRefusedError, match="slice"):
        ems.setpoint(offer, too_much, pv.state(ctx.first_start, forecast[0], forecast), now=ctx.first_start)
    consuming = schedule_of(offer, [0.5] + [0.0] * 15, now)
    with pytest.raises(ScheduleRefusedError):
        ems.check(offer, consuming)


def test_pv_ems_clips_to_what_is_available_when_a_cloud_passes():
    now = DAY0 + timedelta(hours=10)
    pv = PvSystem(kwp=8.0, inverter_kw=8.0)
    forecast = [-1.5] * 16
    ctx = context(now)
    offer = PvGenerator().generate(pv.state(now, -1.5, forecast), ctx)
    cloudy = [-0.4, *forecast[1:]]
    twin, ems = run_pv(pv, now, ctx, offer, offer.default_schedule, -1.5, cloudy)
    (deviation,) = ems.deviations
    assert (
        deviation.device == "pv" and deviation.executed_kwh == pytest.approx(-0.4) and "available" in deviation.reason
    )
    assert twin.history[1].energy_kwh == pytest.approx(-0.4) and twin.history[1].clipped_kwh == 0.0


def test_pv_night_gives_no_offer_and_captured_flexibility_counts_the_horizon():
    now = DAY0
    pv = PvSystem(kwp=5.0, inverter_kw=5.0)
    ctx, gen = context(now), PvGenerator(block_steps=4)
    night = pv.state(now, 0.0, [0.0] * 8)
    assert gen.generate(night, ctx) is None and gen.captured_flexibility(night, None, ctx) == 1.0
    day = pv.state(now, 0.0, [-1.0] * 8)
    offer = gen.generate(day, ctx)
    assert gen.captured_flexibility(day, offer, ctx) == pytest.approx(0.5)
    assert PvGenerator(block_steps=8).captured_flexibility(day, offer, ctx) == pytest.approx(0.5)
    assert gen.captured_flexibility(day, None, ctx) == 0.0
    direct = GenerationContext(now=now, issuer="p1", location=LOCATION, mode=Mode.DIRECT, price_eur_per_kwh=0.08)
    assert gen.generate(day, direct).price.per_kwh_deviation == 0.08


def test_pv_physics_curtails_and_clips():
    pv = PvSystem(kwp=5.0, inverter_kw=4.0)
    assert pv.available_kwh(1000.0, 3600) == pytest.approx(-4.0)  # 4.25 kW capped by the inverter
    assert pv.step(DAY0, None, 900, -0.8) == -0.8
    assert pv.step(DAY0, -0.3, 900, -0.8) == -0.3 and pv.history[-1].curtailed_kwh == pytest.approx(0.5)
    assert pv.step(DAY0, -2.0, 900, -0.8) == -0.8 and pv.history[-1].clipped_kwh == pytest.approx(1.2)


# -- registry and states -------------------------------------------------------------------------------
def test_registry_and_bad_inputs():
    assert isinstance(generator_for("battery", form="polytope"), BatteryGenerator)
    assert generator_for("pv", block_steps=8).block_steps == 8
    with pytest.raises(GenerationError, match="form must be one of"):
        BatteryGenerator(form="lp")  # type: ignore[arg-type]
    with pytest.raises(StateError, match="soc_kwh"):
        BatteryState(10.0, 9.9, 1.0, 9.0, 5.0, 5.0)
    with pytest.raises(StateError, match=r"forecast_kwh\[1\]"):
        PvState(5.0, 5.0, 0.0, (-1.0, 0.5))
    with pytest.raises(GenerationError, match="BatteryState"):
        BatteryGenerator().generate(PvState(5.0, 5.0, 0.0, ()), context(DAY0))

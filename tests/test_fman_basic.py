"""The Flex-Offer Manager: aggregation, disaggregation, HiGHS planning and the manager service."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import (
    Conditional,
    DefaultSchedule,
    FlexOffer,
    Location,
    Mode,
    OfferState,
    Price,
    Profile,
    Schedule,
    Slice,
    check_schedule,
    expand_conditional,
)
from atp.fman import (
    AggregationParams,
    FlexOfferManager,
    PriceSeries,
    UnknownObjectiveError,
    aggregate_start_aligned,
    build_problem,
    disaggregate,
    extract_schedules,
    solve_highs,
)
from atp.interface import OPERATOR, InProcessClient, OfferStore
from tests.strategies import aggregate_energy, cases, rebase

T0 = datetime(2026, 3, 2, tzinfo=UTC)


# -- helpers ---------------------------------------------------------------------------------
@st.composite
def delegated_offers(
    draw: st.DrawFn, *, max_size: int = 8, spread_h: int = 12, implicit: bool | None = None
) -> list[FlexOffer]:
    """Valid delegated offers with ids, their earliest starts within `spread_h` hours of T0."""
    n = draw(st.integers(1, max_size))
    out = []
    for i in range(n):
        case = draw(cases(conditional=draw(st.booleans()), implicit=implicit))
        offer = rebase(case.offer, T0 + timedelta(hours=draw(st.integers(0, spread_h))))
        out.append(dataclasses.replace(offer, mode=Mode.DELEGATED, id=f"fo-{i:04d}"))
    return out


params_strategy = st.builds(
    AggregationParams,
    start_tolerance_s=st.sampled_from([0, 900, 3600, 86_400]),
    max_time_flex_loss_s=st.sampled_from([None, 0, 3600, 86_400]),
    max_group_size=st.integers(1, 6),
    min_box_share=st.sampled_from([None, 0.9]),
)


def _prices(seed: int, *, days: int = 4, slice_s: int = 900) -> PriceSeries:
    rng = np.random.default_rng(seed)
    n = days * 86_400 // slice_s
    return PriceSeries(T0 - timedelta(days=1), slice_s, np.round(rng.normal(0.2, 0.15, n), 4))


def _random_aggregate_schedule(agg, rng: np.random.Generator) -> Schedule:
    shift = int(rng.integers(0, agg.flexibility_steps + 1))
    energy = aggregate_energy(agg, rng)
    start = agg.earliest + timedelta(seconds=shift * agg.slice_s)
    return Schedule(agg.id, start, 0, tuple(float(v) for v in energy))


def _check_disaggregation(agg, schedule: Schedule, now: datetime) -> None:
    members = disaggregate(agg, schedule, assigned_at=now)
    assert [s.flex_offer_id for s in members] == list(agg.offer.members)
    total = np.zeros(agg.n_steps)
    shift = (schedule.start - agg.earliest) // timedelta(seconds=agg.slice_s)
    for member, ms in zip(agg.members, members, strict=True):
        assert check_schedule(member.offer, ms, now=now) == [], (member.offer_id, ms)
        assert ms.start == member.earliest + timedelta(seconds=shift * agg.slice_s)
        total[member.offset_steps : member.offset_steps + member.n_steps] += ms.energy
    assert np.abs(total - np.asarray(schedule.energy)).max() <= 1e-6


def _ev_offer(issuer: str, start_after: datetime, *, flex_h: int = 12, cp: str = "cp-1") -> FlexOffer:
    """An EV charge: 4 quarter-hours of up to 2.75 kWh, 8-11 kWh in all, default at once at full power."""
    return FlexOffer(
        issuer=issuer,
        mode=Mode.DELEGATED,
        device="ev",
        profiles=(Profile(slices=(Slice(4, (0.0, 2.75)),), total_energy=(8.0, 11.0)),),
        location=Location(meter_id=f"M-{issuer}", congestion_point=cp),
        assignment_before=start_after,
        start_after=start_after,
        start_before=start_after + timedelta(hours=flex_h),
        default_schedule=DefaultSchedule(start_after, 0, (2.75,) * 4),
    )


def _day_night_prices(days: int = 3) -> PriceSeries:
    """0.30 EUR/kWh 17:00-23:00, 0.10 EUR/kWh 00:00-06:00, 0.20 otherwise (hourly)."""
    hours = np.arange(days * 24) % 24
    values = np.where((hours >= 17) & (hours < 23), 0.30, np.where(hours < 6, 0.10, 0.20))
    return PriceSeries(T0, 3600, values)


# -- aggregation -----------------------------------------------------------------------------
@settings(max_examples=50)
@given(delegated_offers(max_size=10), params_strategy, st.integers(-2, 8))
def test_aggregation_keeps_every_offer_exactly_once(offers, params, now_h):
    now = T0 + timedelta(hours=now_h)
    result = aggregate_start_aligned(offers, now=now, params=params, issuer="fman-t")
    members = [m for agg in result for m in agg.offer.members]
    left = [u.offer_id for u in result.unaggregated]
    assert sorted(members + left) == sorted(o.id for o in offers)
    assert all(u.reason for u in result.unaggregated)
    for agg in result:
        assert agg.offer.issuer == "fman-t"
        assert len(agg.members) <= params.max_group_size
        assert len({(m.offer.slice_s, m.offer.location.congestion_point) for m in agg.members}) == 1
        starts = [m.earliest for m in agg.members]
        assert (max(starts) - min(starts)).total_seconds() <= params.start_tolerance_s
        assert agg.offer.start_after == min(starts)
        assert agg.flexibility_steps == min(m.flexibility_steps for m in agg.members)
        assert agg.time_flex_loss_steps == sum(m.flexibility_steps - agg.flexibility_steps for m in agg.members)
        assert agg.energy_flex_loss_kwh >= -1e-9


@settings(max_examples=40)
@given(delegated_offers(max_size=8), params_strategy, st.integers(-2, 4), st.integers(0, 2**32 - 1))
def test_disaggregation_is_feasible_and_sums_to_the_aggregate(offers, params, now_h, seed):
    now = T0 + timedelta(hours=now_h)
    rng = np.random.default_rng(seed)
    result = aggregate_start_aligned(offers, now=now, params=params)
    originals = {o.id: o for o in offers}
    for agg in result:
        for member in agg.members:
            original = originals[member.offer_id]
            # non-conditional members are the original offers; conditional ones their expansion
            expanded = expand_conditional(original, now=now)
            assert member.offer == dataclasses.replace(expanded, assignment_before=original.assignment_before)
        schedule = _random_aggregate_schedule(agg, rng)
        assert check_schedule(agg.offer, schedule, now=now) == []
        _check_disaggregation(agg, schedule, now)
        if agg.offer.default_schedule is not None:
            _check_disaggregation(agg, Schedule(agg.id, **_default_fields(agg)), now)


def _default_fields(agg) -> dict:
    d = agg.offer.default_schedule
    return {"start": d.start, "profile": d.profile, "energy": d.energy}


# -- planning --------------------------------------------------------------------------------
@settings(max_examples=40)
@given(delegated_offers(max_size=8, spread_h=20), params_strategy, st.integers(0, 2**32 - 1))
def test_planned_schedules_are_feasible(offers, params, seed):
    now = T0 - timedelta(minutes=7)
    prices = _prices(seed)
    result = aggregate_start_aligned(offers, now=now, params=params)
    for slice_s in sorted({a.slice_s for a in result}):
        aggs = [a for a in result if a.slice_s == slice_s]
        problem = build_problem(aggs, prices, now=now, horizon_steps=96 * 900 // slice_s, slice_s=slice_s)
        solution = solve_highs(problem)
        if problem.n_aggregates == 0:  # nothing fits: every aggregate runs its default
            assert not solution.ok and solution.fallback_reason
            continue
        assert solution.ok, solution.fallback_reason
        planned = extract_schedules(problem, solution, aggs, now=now)
        assert len(planned) == problem.n_aggregates
        assert {a.id for a, _ in planned} | {i for i, _ in problem.left_out} == {a.id for a in aggs}
        for agg, schedule in planned:
            assert schedule.start >= problem.horizon_start
            assert schedule.end(slice_s) <= problem.horizon_end
            assert check_schedule(agg.offer, schedule, now=now) == []
            _check_disaggregation(agg, schedule, now)


def _brute_force_eur(problem) -> float:
    """Enumerate every combination of shifts; per shift the box LP is closed-form."""
    per_aggregate = []
    for g in range(problem.n_aggregates):
        lower, upper = problem.bounds(g)
        costs = []
        for s in range(int(problem.n_shifts[g])):
            t0 = int(problem.first_start_step[g]) + s
            p = problem.prices_eur_per_kwh[t0 : t0 + len(lower)]
            costs.append(float(p @ np.where(p > 0, lower, upper)))
        per_aggregate.append(costs)
    return min(sum(combo) for combo in itertools.product(*per_aggregate))


@settings(max_examples=40)
@given(delegated_offers(max_size=4, spread_h=3, implicit=False), st.integers(0, 2**32 - 1))
def test_highs_plan_equals_brute_force_optimum(offers, seed):
    now = T0
    # boxes only (min_box_share=None): the brute force below knows per-step bounds, not joint rows
    # (tests/test_fman_joint_rows.py checks plans with rows against an independent solver)
    params = AggregationParams(start_tolerance_s=0, max_time_flex_loss_s=0, max_group_size=2, min_box_share=None)
    result = aggregate_start_aligned(offers, now=now, params=params)
    aggs = [a for a in result if a.slice_s == result[0].slice_s][:3] if len(result) else []
    prices = _prices(seed, slice_s=aggs[0].slice_s if aggs else 900)
    problem = build_problem(aggs, prices, now=now, horizon_steps=24)
    solution = solve_highs(problem)
    if problem.n_aggregates == 0:
        assert solution.ok == (not problem.left_out)
        return
    assert solution.ok, solution.fallback_reason
    best = _brute_force_eur(problem)
    assert solution.objective_eur == pytest.approx(best, rel=1e-6, abs=1e-6)
    assert solution.mip_gap is not None and solution.mip_gap <= 1e-6


def test_zero_horizon_falls_back_to_defaults_with_a_reason():
    now = T0 + timedelta(hours=16)
    offers = [dataclasses.replace(_ev_offer(f"foa-{i}", T0 + timedelta(hours=18)), id=f"fo-{i}") for i in range(3)]
    result = aggregate_start_aligned(offers, now=now)
    problem = build_problem(list(result), _day_night_prices(), now=now, horizon_steps=0)
    assert problem.n_steps == 0 and problem.left_out
    solution = solve_highs(problem)
    assert not solution.ok
    assert "horizon" in solution.fallback_reason
    planned = extract_schedules(problem, solution, list(result), now=now)
    assert [s.start for _, s in planned] == [a.offer.default_schedule.start for a in result]


def test_time_limit_without_solution_or_bad_prices_never_raise():
    now = T0 + timedelta(hours=16)
    offers = [dataclasses.replace(_ev_offer("foa-1", T0 + timedelta(hours=18)), id="fo-1")]
    result = aggregate_start_aligned(offers, now=now)
    # prices on a 1200 s grid cannot be put on the offers' 900 s grid
    odd = PriceSeries(T0, 1200, np.full(200, 0.2))
    problem = build_problem(list(result), odd, now=now, horizon_steps=96)
    solution = solve_highs(problem)
    assert not solution.ok and "1200" in solution.fallback_reason
    # no time to solve: defaults, with the reason
    problem = build_problem(list(result), _day_night_prices(), now=now, horizon_steps=96)
    rushed = solve_highs(problem, time_limit_s=0.0)
    assert rushed.ok or "time limit" in rushed.fallback_reason


def test_unknown_objective_is_refused_with_the_known_names():
    with pytest.raises(UnknownObjectiveError, match="least_cost"):
        build_problem([], _day_night_prices(), now=T0, horizon_steps=4, objective="max_profit")


def test_prices_as_array_and_pandas_series_agree():
    pd = pytest.importorskip("pandas")
    now = T0 + timedelta(hours=16)
    offers = [dataclasses.replace(_ev_offer("foa-1", T0 + timedelta(hours=18)), id="fo-1")]
    aggs = list(aggregate_start_aligned(offers, now=now))
    prices = _day_night_prices()
    series = pd.Series(prices.values_eur_per_kwh, index=pd.date_range(T0, periods=prices.n_steps, freq="1h", tz="UTC"))
    a = solve_highs(build_problem(aggs, series, now=now, horizon_steps=96))
    b = solve_highs(
        build_problem(aggs, prices.values_eur_per_kwh, now=now, horizon_steps=96, prices_start=T0, prices_slice_s=3600)
    )
    assert a.objective_eur == b.objective_eur
    assert list(a.start_step) == list(b.start_step)


# -- the manager -----------------------------------------------------------------------------
def _store(now: datetime) -> OfferStore:
    return OfferStore("fman-1", clock=lambda: now)


def test_least_cost_moves_an_ev_to_the_cheap_night_hours():
    now = T0 + timedelta(hours=16)
    store = _store(now)
    client = InProcessClient(store, "foa-ev")
    offer = client.submit(_ev_offer("foa-ev", T0 + timedelta(hours=18)))
    manager = FlexOfferManager(store, name="fman-1", params=AggregationParams())
    result = manager.plan(now, _day_night_prices())
    assert result.n_assigned == 1 and result.fallback_reason is None
    got = client.get(offer.id)
    assert got.state is OfferState.ASSIGNED
    assert check_schedule(got, got.schedule) == []
    start = got.schedule.start
    assert T0 + timedelta(days=1) <= start and got.schedule.end(900) <= T0 + timedelta(days=1, hours=6)
    assert sum(got.schedule.energy) == pytest.approx(8.0)
    assert result.objective_eur <= result.baseline_cost_eur
    assert result.objective_eur == pytest.approx(0.8)
    assert result.baseline_cost_eur == pytest.approx(11.0 * 0.30)
    assert result.planner and result.planner_version and result.objective == "least_cost"


def test_manager_end_to_end_with_in_process_clients():
    now = T0 + timedelta(hours=16)
    store = _store(now)
    clients = {f"foa-{i}": InProcessClient(store, f"foa-{i}") for i in range(6)}
    mine: dict[str, list[str]] = {name: [] for name in clients}
    for i, (name, client) in enumerate(clients.items()):
        for k in range(3):
            start = T0 + timedelta(hours=17, minutes=15 * (i + k))
            mine[name].append(client.submit(_ev_offer(name, start, cp=f"cp-{i % 2}")).id)
    # a conditional (two-mode) offer: planned on its expansion, assigned as submitted
    cond = dataclasses.replace(
        _ev_offer("foa-0", T0 + timedelta(hours=19)),
        conditional=Conditional(prior_s=1800, prior_portion=0.5, after_s=2700, after_portion=1.0),
    )
    mine["foa-0"].append(clients["foa-0"].submit(cond).id)
    # a direct offer: this FMAN trades on no market, so its first round rejects it, with the reason
    direct = dataclasses.replace(
        _ev_offer("foa-1", T0 + timedelta(hours=18)), mode=Mode.DIRECT, price=Price(per_kwh_deviation=0.05)
    )
    direct_id = clients["foa-1"].submit(direct).id

    manager = FlexOfferManager(store, name="fman-1", params=AggregationParams(), horizon_steps=96)
    result = manager.plan(now, _day_night_prices())
    assert result.fallback_reason is None, result.fallback_reason
    assert result.n_offers == 19 and result.n_assigned == 19 and not result.not_planned
    assert result.objective_eur <= result.baseline_cost_eur + 1e-9
    assert result.build_s >= 0 and result.solve_s >= 0
    for name, client in clients.items():
        for offer_id in mine[name]:
            got = client.get(offer_id)
            assert got.state is OfferState.ASSIGNED
            assert got.schedule.assigned_at == now
            assert check_schedule(got, got.schedule) == []
    assert store.get(OPERATOR, direct_id).state is OfferState.REJECTED
    assert [r.offer_id for r in result.rejected] == [direct_id] and "bids into no market" in result.rejected[0].reason
    assert "bids into no market" in store.problems_of(direct_id)[0].message

    # rolling planning: a later round never touches what is assigned
    before = {i: store.get(OPERATOR, i).schedule for ids in mine.values() for i in ids}
    again = manager.plan(now + timedelta(minutes=15), _day_night_prices())
    assert again.n_offers == 0 and again.n_assigned == 0
    assert {i: store.get(OPERATOR, i).schedule for i in before} == before


def test_manager_keeps_defaults_and_lists_reasons_when_nothing_can_be_planned():
    now = T0 + timedelta(hours=16)
    store = _store(now)
    client = InProcessClient(store, "foa-1")
    offer_id = client.submit(_ev_offer("foa-1", T0 + timedelta(hours=18))).id
    manager = FlexOfferManager(store, name="fman-1", params=AggregationParams(), horizon_steps=0)
    result = manager.plan(now, _day_night_prices())
    assert result.n_assigned == 0
    assert result.fallback_reason and "horizon" in result.fallback_reason
    assert [n.offer_id for n in result.not_planned] == [offer_id]
    assert client.get(offer_id).state is OfferState.ACCEPTED


@settings(max_examples=25)
@given(delegated_offers(max_size=8, spread_h=20, implicit=False), st.integers(0, 2**32 - 1))
def test_manager_assigns_random_offers_feasibly_and_deterministically(offers, seed):
    now = T0 - timedelta(minutes=7)
    prices = _prices(seed)

    def run() -> tuple[object, dict[str, FlexOffer]]:
        store = _store(now)
        ids = {}
        for offer in offers:
            submitted = InProcessClient(store, offer.issuer).submit(dataclasses.replace(offer, id=None))
            ids[offer.id] = submitted.id
        result = FlexOfferManager(store, name="fman-1", params=AggregationParams()).plan(now, prices)
        return result, {k: store.get(OPERATOR, v) for k, v in ids.items()}

    result, stored = run()
    not_planned = {n.offer_id for n in result.not_planned}
    for got in stored.values():
        if got.state is OfferState.ASSIGNED:
            assert check_schedule(got, got.schedule) == []
        else:
            assert got.id in not_planned
    assert result.n_assigned + len(not_planned) == len(offers)
    result2, stored2 = run()
    assert [s.schedule for s in stored.values()] == [s.schedule for s in stored2.values()]
    assert result.objective_eur == result2.objective_eur

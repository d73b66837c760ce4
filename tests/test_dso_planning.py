"""Grid-aware planning in the FMAN: capacity rows per congestion point, tariffs per point, soft rows.

Capacities and tariffs a DSO publishes enter `build_problem(..., capacity=, tariff=)` and both
models; problems without them build exactly the models they built before (bitwise).
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.errors import ValidationError
from atp.flexoffer import DefaultSchedule, FlexOffer, Location, Mode, Profile, Slice
from atp.fman import AggregationParams, FlexOfferManager, PlanningProblem, PriceSeries, build_problem, solve_highs
from atp.fman.aggregation import aggregate_start_aligned
from atp.fman.objectives import solve_objective
from atp.fman.planning import (
    CapacityRows,
    GridCapacity,
    _new_highs,
    build_model,
    build_step_model,
    capacity_excess_kwh,
    capacity_penalty_eur,
    plan_cost_eur,
    residual_capacity,
)
from atp.interface import InProcessClient, OfferStore
from tests.strategies import random_planning_problem

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _problem(seed: int, n_aggregates: int = 6, n_steps: int = 16) -> PlanningProblem:
    """Random box aggregates (some with one start, some with negative ranges) on a horizon."""
    return random_planning_problem(
        seed, n_aggregates, n_steps, max_length=5, shift_share=0.7, lowest_kwh=-1.0, start=T0
    )


def _with_grid(problem: PlanningProblem, seed: int) -> PlanningProblem:
    """The problem with two random capacities (one weighted, tiered) and a tariff per aggregate."""
    rng = np.random.default_rng(seed + 1)
    g, t = problem.n_aggregates, problem.n_steps
    weight = (rng.random(g) < 0.7) * rng.uniform(0.5, 1.5, g)
    kwh = np.where(rng.random(t) < 0.6, rng.uniform(-1.0, 3.0, t), np.inf)
    rows = (
        CapacityRows("trafo", weight, kwh, rng.choice([1.0, 3.0], t), [np.inf, 0.3][seed % 2]),
        CapacityRows("feeder", (weight > 0) * 1.0, kwh + 1.0),
    )
    return dataclasses.replace(
        problem, capacity=rows, tariff_eur_per_kwh=rng.uniform(0.0, 0.3, (g, t)), capacity_penalty_eur_per_kwh=0.5
    )


def _yz_optimum(problem: PlanningProblem) -> float:
    """Cost plus penalty of the y/z MILP's optimum (HiGHS, branch and bound to optimality)."""
    model = build_model(problem)
    h = _new_highs()
    h.setOptionValue("threads", 1)
    h.passModel(model.lp)
    h.run()
    col = np.asarray(h.getSolution().col_value)
    starts = np.zeros(problem.n_aggregates, dtype=np.int64)
    energy = np.zeros(len(problem.lower_kwh))
    for g in range(problem.n_aggregates):
        s = int(np.argmax(col[model.y_offsets[g] : model.y_offsets[g + 1]]))
        n = problem.profile_steps(g)
        z0 = model.z_col0 + int(model.z_offsets[g]) + s * n
        o = int(problem.profile_offsets[g])
        energy[o : o + n] = col[z0 : z0 + n]
        starts[g] = problem.first_start_step[g] + s
    return _total(problem, starts, energy)


def _total(problem: PlanningProblem, starts, energy) -> float:
    prices = np.asarray(problem.prices_eur_per_kwh)
    return plan_cost_eur(problem, prices, np.asarray(starts), np.asarray(energy)) + capacity_penalty_eur(
        problem, np.asarray(starts), np.asarray(energy)
    )


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_capacity_and_tariffs_plan_the_optimum_of_both_models(seed):
    """With exact starts the step model plans the y/z model's optimum of cost + tiered penalty;
    `solve_objective` (max_profit, the same objective) agrees; the dive is never better."""
    problem = _with_grid(_problem(seed), seed)
    optimum = _yz_optimum(problem)
    for warm in (True, False):
        exact = solve_highs(problem, warm_start=warm, exact_starts=True)
        assert exact.ok
        assert _total(problem, exact.start_step, exact.energy_kwh) == pytest.approx(optimum, abs=1e-6)
    other = solve_objective(problem, "max_profit")
    assert _total(problem, other.start_step, other.energy_kwh) == pytest.approx(optimum, abs=1e-6)
    dived = solve_highs(problem)
    assert dived.ok and _total(problem, dived.start_step, dived.energy_kwh) >= optimum - 1e-6
    lower, upper = np.asarray(problem.lower_kwh), np.asarray(problem.upper_kwh)
    assert np.all(dived.energy_kwh >= lower - 1e-9) and np.all(dived.energy_kwh <= upper + 1e-9)
    assert dived.capacity_excess_kwh == pytest.approx(capacity_excess_kwh(problem, dived.start_step, dived.energy_kwh))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_problems_without_grid_terms_build_bitwise_the_same_models(seed):
    """A capacity at no aggregate's point and a tariff of another point leave no trace."""
    offers = [_offer(f"fo-{i}", "cp-a", T0 + timedelta(minutes=15 * i), seed + i) for i in range(4)]
    aggs = list(aggregate_start_aligned(offers, now=T0, params=AggregationParams(max_group_size=1)))
    prices = PriceSeries(T0, 900, np.random.default_rng(seed).uniform(0.05, 0.3, 96))
    plain = build_problem(aggs, prices, now=T0, horizon_steps=24)
    elsewhere = GridCapacity("cp-b", T0, 900, np.full(24, 1.0), {"cp-b": 1.0})
    other = build_problem(aggs, prices, now=T0, horizon_steps=24, capacity=[elsewhere], tariff={"cp-b": prices})
    assert other.capacity == () and other.tariff_eur_per_kwh is None
    for build in (build_model, lambda p: build_step_model(p, energy_rows=False), build_step_model):
        a, b = build(plain).lp, build(other).lp
        for name in ("col_cost_", "col_lower_", "col_upper_", "row_lower_", "row_upper_"):
            assert np.array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))
        for name in ("start_", "index_", "value_"):
            assert np.array_equal(np.asarray(getattr(a.a_matrix_, name)), np.asarray(getattr(b.a_matrix_, name)))
    x, y = solve_highs(plain), solve_highs(other)
    assert np.array_equal(x.energy_kwh, y.energy_kwh) and np.array_equal(x.start_step, y.start_step)


def _offer(name: str, point: str, start: datetime, seed: int, *, steps: int = 4, flex_h: int = 4) -> FlexOffer:
    """A delegated box offer at a congestion point, its start free over `flex_h` hours."""
    rng = np.random.default_rng(seed)
    hi = float(np.round(rng.uniform(1.0, 3.0), 2))
    return FlexOffer(
        issuer=f"p-{name}",
        mode=Mode.DELEGATED,
        profiles=(Profile(slices=(Slice(steps, (hi, hi)),)),),
        id=name,
        location=Location(meter_id=f"M-{name}", congestion_point=point),
        created_at=start - timedelta(minutes=15),
        start_after=start,
        start_before=start + timedelta(hours=flex_h),
        default_schedule=DefaultSchedule(start, 0, (hi,) * steps),
    )


def _alone(offers: list[FlexOffer]) -> list:
    """One aggregate per offer, as the FMAN builds them a step before their earliest start."""
    return list(
        aggregate_start_aligned(offers, now=T0 - timedelta(minutes=15), params=AggregationParams(max_group_size=1))
    )


def test_a_capacity_holds_its_point_and_leaves_the_others():
    """Rigid loads at point A avoid the steps A's capacity closes; those at B go where it is cheapest."""
    offers = [_offer(f"a{i}", "A", T0, i) for i in range(3)] + [_offer(f"b{i}", "B", T0, 10 + i) for i in range(3)]
    aggs = list(
        aggregate_start_aligned(offers, now=T0 - timedelta(minutes=15), params=AggregationParams(max_group_size=1))
    )
    cheap = np.full(96, 0.3)
    cheap[8:12] = 0.05  # everybody wants steps 8-11
    prices = PriceSeries(T0, 900, cheap)
    closed = np.full(24, np.inf)
    closed[6:14] = 0.0  # A may draw nothing in steps 6-13
    cap = GridCapacity("A", T0, 900, closed, {"A": 1.0})
    problem = build_problem(aggs, prices, now=T0, horizon_steps=24, capacity=[cap])
    solution = solve_highs(problem)
    assert solution.ok and solution.capacity_excess_kwh == pytest.approx(0.0, abs=1e-9)
    for g, agg_id in enumerate(problem.aggregate_ids):
        start = int(solution.start_step[g])
        steps = set(range(start, start + problem.profile_steps(g)))
        if agg_id.startswith("A") or problem.capacity[0].weight[g]:
            assert not steps & set(range(6, 14))
        else:
            assert steps == set(range(8, 12))


def test_a_capacity_that_cannot_be_met_still_gives_a_plan():
    """Soft rows: a negative capacity everywhere plans every aggregate and reports the excess."""
    offers = [_offer(f"a{i}", "A", T0, i) for i in range(3)]
    aggs = list(
        aggregate_start_aligned(offers, now=T0 - timedelta(minutes=15), params=AggregationParams(max_group_size=1))
    )
    prices = PriceSeries(T0, 900, np.full(96, 0.1))
    cap = GridCapacity("A", T0, 900, np.full(24, -5.0), {"A": 1.0}, tier_kwh=1.0)
    problem = build_problem(aggs, prices, now=T0, horizon_steps=24, capacity=[cap])
    solution = solve_highs(problem)
    assert solution.ok and len(solution.start_step) == 3
    assert solution.capacity_excess_kwh > 0
    # spread, not stacked: the tiers make no two rigid loads share a step while others are free
    starts = sorted(int(s) for s in solution.start_step)
    assert all(b - a >= 4 for a, b in itertools.pairwise(starts))


def test_a_tariff_per_point_moves_that_points_aggregates_only():
    offers = [_offer("a0", "A", T0, 1), _offer("b0", "B", T0, 2)]
    aggs = list(
        aggregate_start_aligned(offers, now=T0 - timedelta(minutes=15), params=AggregationParams(max_group_size=1))
    )
    base = np.full(96, 0.2)
    base[0:4] = 0.1  # cheapest first
    prices = PriceSeries(T0, 900, base)
    tariff = np.zeros(96)
    tariff[0:8] = 0.5
    problem = build_problem(aggs, prices, now=T0, horizon_steps=24, tariff={"A": PriceSeries(T0, 900, tariff)})
    solution = solve_highs(problem)
    start = dict(zip(problem.aggregate_ids, solution.start_step.tolist(), strict=True))
    a = next(i for i in start if "a0" in problem_members(aggs, i))
    b = next(i for i in start if "b0" in problem_members(aggs, i))
    assert start[b] == 0 and start[a] >= 8  # A waits for its tariff to end, B takes the cheap steps
    prices_on = np.asarray(problem.prices_eur_per_kwh)
    assert solution.objective_eur == pytest.approx(
        plan_cost_eur(problem, prices_on, solution.start_step, solution.energy_kwh)
    )


def problem_members(aggs, agg_id: str) -> set[str]:
    return {m.offer_id for a in aggs if a.id == agg_id for m in a.members}


def test_residual_capacity_takes_what_committed_schedules_draw():
    cap = GridCapacity("trafo", T0, 900, np.full(8, 10.0), {"A": 1.0, "B": 2.0})
    left = residual_capacity(
        [cap],
        [
            ("A", T0 + timedelta(minutes=30), 900, (1.0, 2.0)),
            ("B", T0, 900, (1.0,)),
            ("C", T0, 900, (5.0,)),  # not covered
            (None, T0, 900, (5.0,)),
            ("A", T0 + timedelta(hours=1), 1800, (4.0,)),  # a 30-minute step over two 15-minute ones
        ],
    )[0]
    np.testing.assert_allclose(left.kwh, [8.0, 10.0, 9.0, 8.0, 8.0, 8.0, 10.0, 10.0])
    assert left.weights == cap.weights and left.name == "trafo"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kwh": [1.0, np.nan]}, "kwh must be numbers"),
        ({"weights": {}}, "weights must name"),
        ({"weights": {"A": -1.0}}, "must be finite and not negative"),
        ({"slice_s": 0}, "slice_s"),
        ({"penalty_weight": [1.0]}, "penalty_weight"),
        ({"tier_kwh": 0.0}, "tier_kwh"),
    ],
)
def test_bad_capacities_are_refused_with_a_sentence(kwargs, match):
    args = {"name": "trafo", "start": T0, "slice_s": 900, "kwh": [1.0, 2.0], "weights": {"A": 1.0}} | kwargs
    with pytest.raises(ValidationError, match=match):
        GridCapacity(**args)


def test_the_fman_plans_within_the_capacity_less_what_it_assigned_before():
    """`FlexOfferManager.plan(..., capacity=)`: a second round keeps the first round's schedules
    out of the capacity it plans its new offers in."""
    store = OfferStore("fman")
    fman = FlexOfferManager(store, name="agg", params=AggregationParams(max_group_size=1), horizon_steps=24)
    prices = PriceSeries(T0 - timedelta(hours=1), 900, np.full(200, 0.1))
    cap = GridCapacity("A", T0, 900, np.full(30, 4.0), {"A": 1.0})
    first = _offer("x0", "A", T0 + timedelta(minutes=30), 3, steps=2, flex_h=2)
    InProcessClient(store, first.issuer).submit(dataclasses.replace(first, id=None))
    r1 = fman.plan(T0, prices, capacity=[cap])
    assert r1.n_assigned == 1 and not r1.fallback_reason
    placed = r1.schedules[0]
    second = _offer("x1", "A", T0 + timedelta(minutes=30), 4, steps=2, flex_h=2)
    InProcessClient(store, second.issuer).submit(dataclasses.replace(second, id=None))
    r2 = fman.plan(T0 + timedelta(minutes=15), prices, capacity=[cap])
    assert r2.n_assigned == 1
    new = r2.schedules[0]
    per_step = np.zeros(30)
    for s in (placed, new):
        k = int((s.start - T0).total_seconds() // 900)
        per_step[k : k + len(s.energy)] += s.energy
    assert per_step.max() <= 4.0 + 1e-9 or r2.solutions[0].capacity_excess_kwh > 0
    if max(placed.energy) + max(new.energy) > 4.0:  # they cannot share a step: they do not
        k1 = int((placed.start - T0).total_seconds() // 900)
        k2 = int((new.start - T0).total_seconds() // 900)
        assert abs(k1 - k2) >= 2
    assert len(store.records()) == 2

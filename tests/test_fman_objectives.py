"""Planning objectives of the FMAN: imbalance balancing, peak shaving and maximum profit."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.optimize import linprog

from atp.flexoffer import DefaultSchedule, FlexOffer, Location, Mode, Profile, Slice, check_schedule
from atp.fman import (
    AggregationParams,
    PlanningProblem,
    PriceSeries,
    aggregate_start_aligned,
    build_problem,
    disaggregate,
    extract_schedules,
    solve_highs,
)
from atp.fman.errors import FmanError, UnknownObjectiveError
from atp.fman.objectives import MAX_PROFIT, OBJECTIVES, SeriesError, evaluate_objective, solve_objective

T0 = datetime(2026, 3, 2, tzinfo=UTC)


# -- helpers ---------------------------------------------------------------------------------
def _ro(a, dtype=float) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.flags.writeable = False
    return a


def _random_problem(rng: np.random.Generator, *, n_steps: int = 6) -> PlanningProblem:
    """2-3 small boxes (some producing) with 1-3 shifts each on a 6-step horizon."""
    g_count = int(rng.integers(2, 4))
    first, shifts, offsets, lowers, uppers = [], [], [0], [], []
    for _ in range(g_count):
        n = int(rng.integers(1, 4))
        s = int(rng.integers(1, 4))
        s = min(s, n_steps - n + 1)
        f = int(rng.integers(0, n_steps - n - s + 2))
        a = np.round(rng.uniform(-3, 3, n), 2)
        b = np.round(rng.uniform(-3, 3, n), 2)
        first.append(f)
        shifts.append(s)
        offsets.append(offsets[-1] + n)
        lowers.append(np.minimum(a, b))
        uppers.append(np.maximum(a, b))
    return PlanningProblem(
        horizon_start=T0,
        slice_s=900,
        n_steps=n_steps,
        prices_eur_per_kwh=_ro(np.round(rng.normal(0.2, 0.15, n_steps), 3)),
        objective="least_cost",
        aggregate_ids=tuple(f"agg-{g}" for g in range(g_count)),
        first_start_step=_ro(first, np.int64),
        n_shifts=_ro(shifts, np.int64),
        profile_offsets=_ro(offsets, np.int64),
        lower_kwh=_ro(np.concatenate(lowers)),
        upper_kwh=_ro(np.concatenate(uppers)),
    )


def _brute_force(problem: PlanningProblem, objective: str, series: dict[str, np.ndarray]) -> float:
    """Optimum over every combination of shifts, each with its inner LP solved by scipy."""
    t_count, n_x = problem.n_steps, len(problem.lower_kwh)
    bounds_x = list(zip(problem.lower_kwh, problem.upper_kwh, strict=True))
    best = np.inf
    for combo in itertools.product(*(range(int(s)) for s in problem.n_shifts)):
        a_e = np.zeros((t_count, n_x))  # step energy = a_e @ x
        for g, s in enumerate(combo):
            o = int(problem.profile_offsets[g])
            for k in range(problem.profile_steps(g)):
                a_e[int(problem.first_start_step[g]) + s + k, o + k] = 1.0
        if objective in ("balance_imbalance", "follow_market"):
            c = np.concatenate((np.zeros(n_x), np.ones(2 * t_count)))
            a_eq = np.hstack((a_e, -np.eye(t_count), np.eye(t_count)))
            if objective == "follow_market":
                b_eq = series["market_kwh"]
            else:
                b_eq = series["target_kwh"] - series.get("other_kwh", np.zeros(t_count))
            res = linprog(c, A_eq=a_eq, b_eq=b_eq, bounds=bounds_x + [(0, None)] * (2 * t_count), method="highs")
        elif objective == "peak_shaving":
            c = np.concatenate((np.zeros(n_x), [1.0]))
            a_ub = np.hstack((a_e, -np.ones((t_count, 1))))
            res = linprog(c, A_ub=a_ub, b_ub=-series["base_kwh"], bounds=[*bounds_x, (None, None)], method="highs")
        else:
            res = linprog(problem.prices_eur_per_kwh @ a_e, bounds=bounds_x, method="highs")
        assert res.status == 0
        best = min(best, float(res.fun))
    return best


def _series_for(objective: str, rng: np.random.Generator, n_steps: int) -> dict[str, np.ndarray]:
    if objective == "balance_imbalance":
        return {
            "target_kwh": np.round(rng.uniform(-4, 4, n_steps), 2),
            "other_kwh": np.round(rng.uniform(-1, 1, n_steps), 2),
        }
    if objective == "follow_market":
        return {"market_kwh": np.round(rng.uniform(-3, 5, n_steps), 2)}
    if objective == "peak_shaving":
        return {"base_kwh": np.round(rng.uniform(0, 5, n_steps), 2)}
    return {}


def _ev_offer(name: str, start_after: datetime, *, flex_h: int = 8) -> FlexOffer:
    """An EV charge: 4 quarter-hours of up to 2.75 kWh, 8-11 kWh in all."""
    return FlexOffer(
        id=f"fo-{name}",
        issuer=name,
        mode=Mode.DELEGATED,
        device="ev",
        profiles=(Profile(slices=(Slice(4, (0.0, 2.75)),), total_energy=(8.0, 11.0)),),
        location=Location(meter_id=f"M-{name}", congestion_point="cp-1"),
        assignment_before=start_after,
        start_after=start_after,
        start_before=start_after + timedelta(hours=flex_h),
        default_schedule=DefaultSchedule(start_after, 0, (2.75,) * 4),
    )


def _pv_offer(name: str, start_after: datetime) -> FlexOffer:
    """A curtailable producer: 4 quarter-hours of -2 to -0.5 kWh, start free over 4 hours."""
    return FlexOffer(
        id=f"fo-{name}",
        issuer=name,
        mode=Mode.DELEGATED,
        device="pv",
        profiles=(Profile(slices=(Slice(4, (-2.0, -0.5)),)),),
        location=Location(meter_id=f"M-{name}", congestion_point="cp-1"),
        assignment_before=start_after,
        start_after=start_after,
        start_before=start_after + timedelta(hours=4),
        default_schedule=DefaultSchedule(start_after, 0, (-2.0,) * 4),
    )


def _site(offers: list[FlexOffer], prices: np.ndarray, *, group_size: int = 2):
    """Aggregates of `offers` (at most `group_size` per aggregate) and their planning problem."""
    params = AggregationParams(start_tolerance_s=3600, max_group_size=group_size)
    aggs = list(aggregate_start_aligned(offers, now=T0, params=params, issuer="fman-t"))
    problem = build_problem(aggs, PriceSeries(T0, 900, prices), now=T0, horizon_steps=len(prices))
    assert problem.n_aggregates == len(aggs) and not problem.left_out
    return aggs, problem


def _check_disaggregates(problem, solution, aggs) -> None:
    """Every planned aggregate schedule disaggregates into feasible member schedules that sum up."""
    planned = extract_schedules(problem, solution, aggs, now=T0)
    assert len(planned) == len(aggs)
    for agg, schedule in planned:
        members = disaggregate(agg, schedule, assigned_at=T0)
        total = np.zeros(agg.n_steps)
        for member, ms in zip(agg.members, members, strict=True):
            assert check_schedule(member.offer, ms, now=T0) == [], (member.offer_id, ms)
            total[member.offset_steps : member.offset_steps + member.n_steps] += ms.energy
        assert np.abs(total - np.asarray(schedule.energy)).max() <= 1e-6


# -- brute-force equivalence -----------------------------------------------------------------
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("seed", range(12))
def test_highs_optimum_equals_brute_force(objective, seed):
    rng = np.random.default_rng(seed)
    problem = _random_problem(rng)
    series = _series_for(objective, rng, problem.n_steps)
    solution = solve_objective(problem, objective, series=series)
    assert solution.ok, solution.fallback_reason
    assert (solution.objective, solution.objective_version) == (objective, OBJECTIVES[objective].version)
    got = evaluate_objective(problem, objective, solution.step_energy_kwh, series=series)
    assert got == pytest.approx(_brute_force(problem, objective, series), abs=1e-4)
    # the plan respects every aggregate's shifts and bounds
    for g in range(problem.n_aggregates):
        s = solution.start_step[g] - problem.first_start_step[g]
        assert 0 <= s < problem.n_shifts[g]
        lo, hi = problem.bounds(g)
        o, p = problem.profile_offsets[g], problem.profile_offsets[g + 1]
        assert np.all(solution.energy_kwh[o:p] >= lo - 1e-9) and np.all(solution.energy_kwh[o:p] <= hi + 1e-9)
    assert solution.build_s >= 0 and solution.solve_s >= 0


def test_max_profit_is_least_cost_with_signed_prices():
    rng = np.random.default_rng(7)
    for _ in range(5):
        problem = _random_problem(rng)
        profit = solve_objective(problem, "max_profit")
        cost = solve_highs(problem)
        assert profit.objective_eur == pytest.approx(cost.objective_eur, abs=1e-9)
    # a producer earns at the dearest hours: production is placed where the price is highest
    prices = np.full(24, 0.1)
    prices[10:14] = 0.5
    aggs, problem = _site([_pv_offer("pv1", T0)], prices)
    solution = solve_objective(problem, "max_profit")
    assert solution.start_step[0] == 10
    assert solution.objective_eur == pytest.approx(-0.5 * 8.0)
    _check_disaggregates(problem, solution, aggs)


# -- hand-made cases -------------------------------------------------------------------------
def test_peak_shaving_lowers_the_peak_versus_least_cost():
    # cheap energy in the evening, exactly when the base load peaks
    n = 48
    prices = np.full(n, 0.30)
    prices[16:24] = 0.05
    base = np.full(n, 1.0)
    base[16:24] = 6.0
    offers = [_ev_offer(f"ev{i}", T0 + timedelta(hours=1), flex_h=8) for i in range(4)]
    aggs, problem = _site(offers, prices)
    cheap = solve_highs(problem)
    shaved = solve_objective(problem, "peak_shaving", series={"base_kwh": base})
    assert cheap.ok and shaved.ok
    peak_cheap = evaluate_objective(problem, "peak_shaving", cheap.step_energy_kwh, series={"base_kwh": base})
    peak_shaved = evaluate_objective(problem, "peak_shaving", shaved.step_energy_kwh, series={"base_kwh": base})
    assert peak_shaved < peak_cheap - 1.0
    assert peak_shaved == pytest.approx(6.0)  # the EVs fit outside the base peak
    _check_disaggregates(problem, shaved, aggs)


def test_balance_imbalance_tracks_the_target_better_than_least_cost():
    n = 48
    prices = np.full(n, 0.20)
    prices[4:8] = 0.05  # least cost charges early
    target = np.zeros(n)
    target[30:34] = 5.5  # the BRP is long at 07:30-08:30: absorb it
    offers = [_ev_offer(f"ev{i}", T0, flex_h=10) for i in range(2)]
    aggs, problem = _site(offers, prices)
    cheap = solve_highs(problem)
    balanced = solve_objective(problem, "balance_imbalance", series={"target_kwh": target})
    assert cheap.ok and balanced.ok
    dev = {
        name: evaluate_objective(problem, "balance_imbalance", s.step_energy_kwh, series={"target_kwh": target})
        for name, s in (
            (
                "cheap",
                cheap,
            ),
            ("balanced", balanced),
        )
    }
    assert dev["balanced"] < dev["cheap"] - 1.0
    # two EVs of at most 2.75 kWh per step and 8-11 kWh in all cover 4 x 5.5 = 22 kWh exactly
    assert dev["balanced"] == pytest.approx(0.0, abs=1e-6)
    _check_disaggregates(problem, balanced, aggs)


# -- errors, empty problems and fallbacks ----------------------------------------------------
def test_unknown_objective_and_bad_series_raise():
    problem = _random_problem(np.random.default_rng(0))
    with pytest.raises(UnknownObjectiveError, match="peak_shaving"):
        solve_objective(problem, "min_regret")
    with pytest.raises(SeriesError, match="base_kwh"):
        solve_objective(problem, "peak_shaving", series={})
    with pytest.raises(SeriesError, match="6 steps"):
        solve_objective(problem, "balance_imbalance", series={"target_kwh": np.zeros(5)})
    with pytest.raises(SeriesError, match="finite"):
        solve_objective(problem, "peak_shaving", series={"base_kwh": np.full(6, np.nan)})
    assert issubclass(SeriesError, FmanError)


def test_max_profit_as_a_linear_objective_matches():
    """MAX_PROFIT, registered in a private copy of the registry, plans like solve_objective."""
    import atp.fman.planning as planning

    saved = dict(planning._OBJECTIVES)
    try:
        planning.register_objective(MAX_PROFIT)
        aggs = list(aggregate_start_aligned([_pv_offer("pv1", T0)], now=T0, issuer="fman-t"))
        prices = PriceSeries(T0, 900, np.linspace(0.1, 0.3, 24))
        problem = build_problem(aggs, prices, now=T0, horizon_steps=24, objective="max_profit")
        linear = solve_highs(problem)
        milp = solve_objective(problem, "max_profit")
        assert linear.objective == "max_profit"
        assert linear.objective_eur == pytest.approx(milp.objective_eur)
    finally:
        planning._OBJECTIVES.clear()
        planning._OBJECTIVES.update(saved)


def test_infeasible_problem_falls_back_with_a_reason():
    problem = _random_problem(np.random.default_rng(1))
    lower = np.array(problem.upper_kwh) + 1.0  # lower above upper: no schedule exists
    bad = PlanningProblem(**{**problem.__dict__, "lower_kwh": _ro(lower)})
    solution = solve_objective(bad, "peak_shaving", series={"base_kwh": np.zeros(6)})
    assert not solution.ok and solution.fallback_reason
    assert solution.objective == "peak_shaving"
    assert np.all(solution.start_step == -1)


def test_empty_problem():
    problem = build_problem([], PriceSeries(T0, 900, np.full(8, 0.1)), now=T0, horizon_steps=8)
    solution = solve_objective(problem, "balance_imbalance", series={"target_kwh": np.ones(8)})
    assert solution.ok and solution.status == "Empty"
    assert solution.step_energy_kwh.shape == (8,)


@pytest.mark.parametrize("objective", ["balance_imbalance", "follow_market", "peak_shaving"])
def test_zero_time_limit_still_gives_a_feasible_plan(objective):
    """The greedy starting point is a feasible incumbent: a time limit never leaves no plan."""
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        problem = _random_problem(rng)
        series = _series_for(objective, rng, problem.n_steps)
        solution = solve_objective(problem, objective, series=series, time_limit_s=0.0)
        assert solution.ok, solution.fallback_reason
        step = np.zeros(problem.n_steps)
        for g in range(problem.n_aggregates):
            s = solution.start_step[g] - problem.first_start_step[g]
            assert 0 <= s < problem.n_shifts[g]
            lo, hi = problem.bounds(g)
            o, p = problem.profile_offsets[g], problem.profile_offsets[g + 1]
            assert np.all(solution.energy_kwh[o:p] >= lo - 1e-9) and np.all(solution.energy_kwh[o:p] <= hi + 1e-9)
            step[solution.start_step[g] : solution.start_step[g] + p - o] += solution.energy_kwh[o:p]
        assert np.allclose(step, solution.step_energy_kwh)

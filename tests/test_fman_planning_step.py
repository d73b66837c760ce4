"""The compact step formulation of planning: same optimum as the y/z model and as brute force."""

from __future__ import annotations

from datetime import UTC, datetime

import highspy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.fman import PlanningProblem, build_model, build_step_model, solve_highs
from atp.fman.planning import _new_highs
from tests.strategies import random_planning_problem

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _problem(seed: int, n_aggregates: int, n_steps: int = 24) -> PlanningProblem:
    """Random aggregates (some with one start, some with empty or negative ranges) on a horizon."""
    return random_planning_problem(seed, n_aggregates, n_steps, start=T0)


def _brute_force_eur(problem: PlanningProblem) -> float:
    """Least cost by enumeration: aggregates are independent under a linear step cost."""
    total = 0.0
    c = problem.prices_eur_per_kwh
    for g in range(problem.n_aggregates):
        lo, hi = problem.bounds(g)
        costs = []
        for s in range(int(problem.n_shifts[g])):
            t = int(problem.first_start_step[g]) + s
            window = c[t : t + len(lo)]
            costs.append(float(np.minimum(window * lo, window * hi).sum()))
        total += min(costs)
    return total


def _lp_optimum(lp: highspy.HighsLp, *, relax: bool) -> float:
    h = _new_highs()
    h.setOptionValue("threads", 1)
    h.setOptionValue("mip_rel_gap", 0.0)
    if relax:
        lp.integrality_ = [highspy.HighsVarType.kContinuous] * lp.num_col_
    h.passModel(lp)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return float(h.getInfo().objective_function_value)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.booleans())
def test_step_model_plans_the_brute_force_optimum_with_feasible_schedules(seed, n_aggregates, warm_start):
    problem = _problem(seed, n_aggregates)
    solution = solve_highs(problem, warm_start=warm_start)
    assert solution.ok
    assert solution.objective_eur == pytest.approx(_brute_force_eur(problem), abs=1e-6)
    step_energy = np.zeros(problem.n_steps)
    for g in range(problem.n_aggregates):
        lo, hi = problem.bounds(g)
        o, p = problem.profile_offsets[g], problem.profile_offsets[g + 1]
        e = solution.energy_kwh[o:p]
        assert np.all(e >= lo) and np.all(e <= hi)
        shift = int(solution.start_step[g]) - int(problem.first_start_step[g])
        assert 0 <= shift < problem.n_shifts[g]
        step_energy[solution.start_step[g] : solution.start_step[g] + len(e)] += e
    assert np.allclose(step_energy, solution.step_energy_kwh, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8))
def test_step_model_with_and_without_energy_rows_matches_the_yz_model(seed, n_aggregates):
    problem = _problem(seed, n_aggregates, n_steps=16)
    expected = _brute_force_eur(problem)
    with_rows = build_step_model(problem, energy_rows=True)
    assert with_rows.e_offset is not None and with_rows.n_cols == with_rows.e_offset + problem.n_steps
    assert build_step_model(problem, energy_rows=False).e_offset is None
    assert _lp_optimum(with_rows.lp, relax=False) == pytest.approx(expected, abs=1e-6)
    assert _lp_optimum(build_step_model(problem, energy_rows=False).lp, relax=False) == pytest.approx(
        expected, abs=1e-6
    )
    # same LP relaxation as the y/z (convex hull) model
    relaxed_step = _lp_optimum(build_step_model(problem, energy_rows=True).lp, relax=True)
    relaxed_yz = _lp_optimum(build_model(problem).lp, relax=True)
    assert relaxed_step == pytest.approx(relaxed_yz, abs=1e-6)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_warm_start_leaves_a_usable_plan_without_time_to_solve(seed):
    problem = _problem(seed, 12)
    rushed = solve_highs(problem, time_limit_s=0.0)
    assert rushed.ok, rushed.fallback_reason
    assert rushed.objective_eur == pytest.approx(_brute_force_eur(problem), abs=1e-6)

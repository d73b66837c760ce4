"""Planning of aggregates: a frozen problem, a HiGHS MILP built as sparse matrices, schedules.

The stages stay apart (house style):

1. `build_problem(aggregates, prices, now=, horizon_steps=)` -> `PlanningProblem`: plain numpy
   data (horizon, prices, per aggregate its earliest start step, number of allowed shifts,
   per-step bounds and joint rows); aggregates that do not fit the horizon are left out with a
   reason (module `planning_problem`, with the prices and the objective registry);
2. `build_step_model(problem)` -> `StepMilpModel` (what `solve_highs` solves) or
   `build_model(problem)` -> `MilpModel` (the y/z model other objectives extend): the
   column-wise sparse matrix for highspy, built with numpy, no modelling layer (module
   `planning_models`);
3. `solve_highs(problem, time_limit_s=, mip_rel_gap=)` -> `PlanSolution` (build and solve
   timed apart; a failed solve falls back to default schedules and says why);
4. `extract_schedules(problem, solution, aggregates, now=)` -> one schedule per aggregate.

Both MILPs have binary y[g,s] = aggregate g starts at its s-th allowed shift (exactly one per
aggregate). The y/z model (`build_model`) adds continuous z[g,s,k] with lower_k * y[g,s] <=
z[g,s,k] <= upper_k * y[g,s] (two rows per z) and energy e_t = sum of z[g,s,k] with start_g +
s + k = t (one row per step): O(shifts x steps) columns and rows per aggregate. The step model
(`build_step_model`) writes aggregate g's energy at step j of its span as sum_s lower[j-s] *
y[g,s] + v[g,j] with 0 <= v[g,j] <= sum_s (upper - lower)[j-s] * y[g,s]: O(shifts + steps)
columns and rows per aggregate, and the same projection on (y, energy), i.e. the same convex
hull of each aggregate's disjunction, so the LP relaxation is as tight (tests check both
against brute force). `solve_highs` puts the linear objective's cost per step straight on y
and v, so no row is shared between aggregates. `python -m benchmarks.fman`, 1 000 aggregates x
96 steps: 13.5 s with the y/z model, 0.8 s with the step model; 10 000 aggregates: about 10 s
to optimality (a busy machine). The objective is linear in the energy per step and chosen by
name from a registry (`least_cost` now: minimise sum price_t * e_t).

Joint rows: an aggregate that keeps a member's total-energy, polytope or dependency
constraints carries them as rows lo <= a @ x <= hi over its profile vector x
(`Aggregate.joint`, `PlanningProblem.joint`). The y/z model writes them per shift, lo * y[g,s]
<= a @ z[g,s,:] <= hi * y[g,s]. The step model puts them on v when they hold at any start
(one allowed start: a @ (lower + v) in [lo, hi]; a total-energy row c * sum(x): c * (sum(lower)
+ sum_j v[g,j]) in [lo, hi]) and adds z columns, per shift as in the y/z model, only for an
aggregate with several starts and another row. Every solution meets the rows. `solve_highs`
finds the cheapest start of such an aggregate on its own (exact: closed form for total energy,
one LP over all its starts otherwise; a linear objective leaves aggregates independent) and
fixes its y there, since the rows on v relax weakly. Rows that no vector within the bounds
meets fall back with the aggregate named, and a vector off its rows by more than the solver's
tolerances is recomputed at its start (`_respect_rows`). Warm starts and `extract_schedules`
meet them too (the default schedule where nothing else does).

Grid-aware planning (a DSO's `GridCapacity` per congestion point and step, a tariff per point;
`build_problem(..., capacity=, tariff=)`): both models add one soft row per capacity and step,
sum of the weighted energy of the aggregates at its points - excess <= capacity, the excess in
columns per tier of a rising penalty (`EXCESS_TIERS`, `DEFAULT_CAPACITY_PENALTY_EUR_PER_KWH` per
kWh, times the step's penalty weight), so a plan always exists; a point's tariff is added to the
cost of its aggregates' energy. The rows couple the aggregates they hold: `solve_highs` then
chooses their starts by a dive on the LP relaxation (`atp.fman.planning_capacity`) and plans
every energy exactly for those starts. A problem without capacity and tariff is built and
solved exactly as before (tests/test_dso_planning.py checks it bitwise).

Determinism: one thread and a fixed random seed; same input, same output.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import highspy
import numpy as np

from atp.flexoffer import Schedule
from atp.fman.aggregation import Aggregate, JointRows
from atp.fman.planning_capacity import (
    _dive,
    _energy_by_aggregate,
    _fix_starts,
    _step_energy,
    capacity_excess_kwh,
    capacity_penalty_eur,
    plan_cost_eur,
)
from atp.fman.planning_models import (
    CapacityLayout,
    MilpModel,
    StepMilpModel,
    build_model,
    build_step_model,
)
from atp.fman.planning_models import _highs_lp as _highs_lp
from atp.fman.planning_models import _new_highs as _new_highs
from atp.fman.planning_models import _ragged as _ragged
from atp.fman.planning_problem import _OBJECTIVES as _OBJECTIVES
from atp.fman.planning_problem import (
    DEFAULT_CAPACITY_PENALTY_EUR_PER_KWH,
    EXCESS_TIERS,
    CapacityRows,
    GridCapacity,
    Objective,
    PlanningProblem,
    PriceSeries,
    as_price_series,
    build_problem,
    get_objective,
    objective_names,
    published_capacity,
    register_objective,
    residual_capacity,
    schedule_cost_eur,
    total_energy_rows,
)
from atp.fman.planning_problem import _ro as _ro

__all__ = [
    "DEFAULT_CAPACITY_PENALTY_EUR_PER_KWH",
    "EXCESS_TIERS",
    "CapacityLayout",
    "CapacityRows",
    "GridCapacity",
    "MilpModel",
    "Objective",
    "PlanSolution",
    "PlanningProblem",
    "PriceSeries",
    "StepMilpModel",
    "as_price_series",
    "build_model",
    "build_problem",
    "build_step_model",
    "capacity_excess_kwh",
    "capacity_penalty_eur",
    "empty_plan",
    "extract_schedules",
    "get_objective",
    "objective_names",
    "plan_cost_eur",
    "published_capacity",
    "register_objective",
    "residual_capacity",
    "schedule_cost_eur",
    "solve_highs",
]

# -- energy under joint rows -----------------------------------------------------------------
_ROW_TOL_KWH = 1e-9
"""A planned energy vector that breaks a joint row by more than this is recomputed."""
_ACCEPT_TOL_KWH = 1e-7
"""A recomputed vector must meet its rows within this (well inside TOLERANCE_KWH)."""


def _total_interval(rows: JointRows) -> tuple[float, float] | None:
    """[L, H] with: rows all of the form c * sum(x) in [lo, hi] <=> L <= sum(x) <= H; None when no
    sum meets them."""
    c = rows.a[:, 0] if rows.a.shape[1] else np.zeros(rows.n_rows)
    lo_sum, hi_sum = -np.inf, np.inf
    for ci, lo, hi in zip(c, rows.lo, rows.hi, strict=True):
        if ci == 0.0:
            if lo > _ROW_TOL_KWH or hi < -_ROW_TOL_KWH:
                return None
            continue
        a, b = (lo / ci, hi / ci) if ci > 0 else (hi / ci, lo / ci)
        lo_sum, hi_sum = max(lo_sum, a), min(hi_sum, b)
    if lo_sum > hi_sum + _ROW_TOL_KWH:
        return None
    return float(lo_sum), float(max(hi_sum, lo_sum))


def _fit_sum(
    x: np.ndarray, lower: np.ndarray, upper: np.ndarray, key: np.ndarray, lo_sum: float, hi_sum: float
) -> np.ndarray:
    """`x` (one vector per row, within the bounds) with each row's sum moved into [lo_sum,
    hi_sum]: raising steps in ascending order of `key` (same shape as x), or lowering them in
    descending order, each as far as its bound allows. For min key @ x this is the LP optimum
    from x = the box optimum (a fractional knapsack); every way of moving the sum costs the same
    in L1 distance from a clipped target."""
    x = np.array(x, dtype=float)
    total = x.sum(axis=1)
    up = np.maximum(lo_sum - total, 0.0)
    if np.any(up > 0.0):
        order = np.argsort(key, axis=1, kind="stable")
        room = np.take_along_axis(np.broadcast_to(upper, x.shape) - x, order, axis=1)
        take = np.clip(up[:, None] - (np.cumsum(room, axis=1) - room), 0.0, room)
        np.put_along_axis(x, order, np.take_along_axis(x, order, axis=1) + take, axis=1)
    down = np.maximum(total - hi_sum, 0.0)
    if np.any(down > 0.0):
        order = np.argsort(-key, axis=1, kind="stable")
        room = np.take_along_axis(x - np.broadcast_to(lower, x.shape), order, axis=1)
        take = np.clip(down[:, None] - (np.cumsum(room, axis=1) - room), 0.0, room)
        np.put_along_axis(x, order, np.take_along_axis(x, order, axis=1) - take, axis=1)
    return x


def _solve_lp(
    c: np.ndarray,
    col_lower: np.ndarray,
    col_upper: np.ndarray,
    row_lower: np.ndarray,
    row_upper: np.ndarray,
    col: np.ndarray,
    row: np.ndarray,
    val: np.ndarray,
) -> np.ndarray | None:
    """Column values of the optimum of a small LP given by (column, row, value) entries sorted by
    column, or None when HiGHS finds none."""
    inf = highspy.kHighsInf
    start = np.concatenate(([0], np.cumsum(np.bincount(col, minlength=len(c))))).astype(np.int32)
    lp = _highs_lp(
        c,
        col_lower,
        col_upper,
        np.where(np.isfinite(row_lower), row_lower, -inf),
        np.where(np.isfinite(row_upper), row_upper, inf),
        start,
        row,
        val,
        n_int=0,
    )
    h = _new_highs()
    for name, value in (("threads", 1), ("primal_feasibility_tolerance", 1e-10), ("presolve", "on")):
        h.setOptionValue(name, value)
    if h.passModel(lp) == highspy.HighsStatus.kError or h.run() == highspy.HighsStatus.kError:
        return None
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return np.asarray(h.getSolution().col_value, dtype=float)


def _rows_lp(
    lower: np.ndarray,
    upper: np.ndarray,
    rows: JointRows,
    *,
    cost: np.ndarray | None = None,
    near: np.ndarray | None = None,
) -> np.ndarray | None:
    """Small HiGHS LPs over energy vectors within the bounds that meet `rows`: per row of `cost`
    (one block each, all in one LP: the blocks do not interact) the vector of least cost, or
    the one nearest `near` in L1 (columns t >= |x - near|); None when no vector meets the rows."""
    inf = highspy.kHighsInf
    n, m = len(lower), rows.n_rows
    kk, ii = np.nonzero(rows.a.T)  # per column k its rows i, in column order
    if near is None:
        cost = np.atleast_2d(np.asarray(cost, dtype=float))
        blocks = len(cost)
        b = np.repeat(np.arange(blocks, dtype=np.int64), len(kk))
        x = _solve_lp(
            cost.reshape(-1),
            np.tile(lower, blocks),
            np.tile(upper, blocks),
            np.tile(rows.lo, blocks),
            np.tile(rows.hi, blocks),
            b * n + np.tile(kk, blocks),
            b * m + np.tile(ii, blocks),
            np.tile(rows.a[ii, kk], blocks),
        )
        if x is None:
            return None
        x = np.clip(x.reshape(blocks, n), lower, upper)
        return x if not any(rows.violations(v, _ACCEPT_TOL_KWH).size for v in x) else None
    # columns x then t; rows: a @ x in [lo, hi], x - t <= near (row m + k), x + t >= near (m + n + k)
    k = np.arange(n, dtype=np.int64)
    col = np.concatenate((kk, k, k, n + k, n + k))
    row = np.concatenate((ii, m + k, m + n + k, m + k, m + n + k))
    val = np.concatenate((rows.a[ii, kk], np.ones(n), np.ones(n), -np.ones(n), np.ones(n)))
    order = np.lexsort((row, col))
    x = _solve_lp(
        np.concatenate((np.zeros(n), np.ones(n))),
        np.concatenate((lower, np.zeros(n))),
        np.concatenate((upper, np.full(n, inf))),
        np.concatenate((rows.lo, np.full(n, -inf), near)),
        np.concatenate((rows.hi, near, np.full(n, inf))),
        col[order],
        row[order],
        val[order],
    )
    if x is None:
        return None
    x = np.clip(x[:n], lower, upper)
    return x if not rows.violations(x, _ACCEPT_TOL_KWH).size else None


def _cheapest_energy(lower: np.ndarray, upper: np.ndarray, rows: JointRows, cost: np.ndarray) -> np.ndarray | None:
    """Per row of `cost` (EUR/kWh of each profile step, one row per candidate start) the
    cheapest energy vector within the bounds that meets `rows` (exact: closed form for
    total-energy rows, else one LP with a block per row); None when no vector meets them."""
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    cost = np.atleast_2d(np.asarray(cost, dtype=float))
    if np.any(lower > upper + _ROW_TOL_KWH):
        return None
    upper = np.maximum(upper, lower)
    if total_energy_rows(rows).all():
        interval = _total_interval(rows)
        if interval is None or lower.sum() > interval[1] + _ROW_TOL_KWH or upper.sum() < interval[0] - _ROW_TOL_KWH:
            return None
        return _fit_sum(np.where(cost < 0.0, upper, lower), lower, upper, cost, *interval)
    return _rows_lp(lower, upper, rows, cost=cost)


def _nearest_energy(
    lower: np.ndarray, upper: np.ndarray, rows: JointRows, target: np.ndarray, key: np.ndarray | None = None
) -> np.ndarray | None:
    """An energy vector within the bounds that meets `rows`, at the least L1 distance from
    `target`; for total-energy rows the sum is moved in the order of `key` (see `_fit_sum`;
    default: profile order). None when no vector meets the rows."""
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if np.any(lower > upper + _ROW_TOL_KWH):
        return None
    upper = np.maximum(upper, lower)
    x = np.clip(np.asarray(target, dtype=float), lower, upper)
    if total_energy_rows(rows).all():
        interval = _total_interval(rows)
        if interval is None or lower.sum() > interval[1] + _ROW_TOL_KWH or upper.sum() < interval[0] - _ROW_TOL_KWH:
            return None
        order = np.zeros(len(x)) if key is None else np.asarray(key, dtype=float)
        return _fit_sum(x[None, :], lower, upper, order[None, :], *interval)[0]
    if not rows.violations(x, _ROW_TOL_KWH).size:
        return x
    return _rows_lp(lower, upper, rows, near=x)


def joint_infeasibility(problem: PlanningProblem) -> str | None:
    """Why the problem has no plan because of joint rows (the first aggregate whose rows no
    energy vector within its per-step bounds meets), or None. The rows are over the profile
    vector, so this does not depend on the start."""
    for g in problem.joint_aggregates:
        lower, upper = problem.bounds(g)
        if _cheapest_energy(lower, upper, problem.joint[g], np.zeros((1, len(lower)))) is None:
            return _infeasible_reason(problem, g)
    return None


def _infeasible_reason(problem: PlanningProblem, g: int) -> str:
    rows = problem.joint[g]
    return (
        f"aggregate {problem.aggregate_ids[g]}: no energy vector within its per-step bounds meets its "
        f"{rows.n_rows} joint rows; the offers run their defaults"
    )


def _meets_rows(rows: JointRows | None, energy: Sequence[float]) -> bool:
    """Whether `energy` (a profile vector) meets `rows` (None: no rows)."""
    if rows is None:
        return True
    x = np.asarray(energy, dtype=float)
    return len(x) == rows.a.shape[1] and not rows.violations(x).size


def _joint_choices(problem: PlanningProblem, step_cost: np.ndarray) -> dict[int, tuple[int, np.ndarray]] | str:
    """Per aggregate with joint rows, its cheapest (shift, energy) under `step_cost` on its own,
    or why it has none. Exact: the cheapest vector of every shift (`_cheapest_energy`), then the
    cheapest shift; on ties the one whose energy comes earliest in its profile (a plan does not
    open with idle steps it could skip), then the first."""
    out: dict[int, tuple[int, np.ndarray]] = {}
    for g in problem.joint_aggregates:
        lower, upper = (np.asarray(x, dtype=float) for x in problem.bounds(g))
        n, s_count = len(lower), int(problem.n_shifts[g])
        t0 = int(problem.first_start_step[g])
        windows = problem.aggregate_cost(step_cost, g)[t0 + np.arange(s_count)[:, None] + np.arange(n)[None, :]]
        x = _cheapest_energy(lower, upper, problem.joint[g], windows)
        if x is None:
            return _infeasible_reason(problem, g)
        cost = (windows * x).sum(axis=1)
        tied = cost <= cost.min() + 1e-12 * max(1.0, abs(float(cost.min())))
        lateness = np.where(tied, (np.abs(x) * np.arange(n)).sum(axis=1), np.inf)
        s = int(np.argmin(lateness))
        out[g] = (s, x[s])
    return out


def _respect_rows(
    problem: PlanningProblem, energy: np.ndarray, starts: np.ndarray, cost: np.ndarray | None
) -> tuple[np.ndarray, bool] | str:
    """`energy` (layout of problem.lower_kwh) with every aggregate's vector that breaks its joint
    rows by more than _ROW_TOL_KWH (solver tolerances, integrality) recomputed at its start: the
    cheapest under `cost` per horizon step (exact for a linear objective), or without `cost` the
    nearest in L1. Returns (energy, whether any changed), or why a vector cannot be fixed."""
    changed = False
    for g in problem.joint_aggregates:
        rows = problem.joint[g]
        o, p = int(problem.profile_offsets[g]), int(problem.profile_offsets[g + 1])
        if not rows.violations(energy[o:p], _ROW_TOL_KWH).size:
            continue
        lower, upper = problem.bounds(g)
        if cost is not None:
            own = problem.aggregate_cost(cost, g)
            fixed = _cheapest_energy(lower, upper, rows, own[int(starts[g]) : int(starts[g]) + p - o])
            x = None if fixed is None else fixed[0]
        else:
            x = _nearest_energy(lower, upper, rows, energy[o:p])
        if x is None or rows.violations(x, _ACCEPT_TOL_KWH).size:
            return f"the plan of aggregate {problem.aggregate_ids[g]} cannot be brought within its joint rows"
        energy[o:p] = x
        changed = True
    return energy, changed


# -- solve -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PlanSolution:
    """The outcome of one solve.

    `start_step[g]` is the horizon step at which aggregate g starts (-1 without a solution);
    `energy_kwh` holds its energy per step in the layout of `problem.lower_kwh`;
    `step_energy_kwh` the summed energy per horizon step. `fallback_reason` is None when the
    schedules are usable, else why every aggregate runs its default. `capacity_excess_kwh`:
    the kWh by which the plan exceeds the problem's capacity rows, summed over rows (0 without
    capacity, or when the plan keeps every capacity).
    """

    status: str
    objective: str
    objective_version: str
    solver: str
    objective_eur: float | None
    mip_gap: float | None
    build_s: float
    solve_s: float
    start_step: np.ndarray = field(repr=False)
    energy_kwh: np.ndarray = field(repr=False)
    step_energy_kwh: np.ndarray = field(repr=False)
    fallback_reason: str | None = None
    capacity_excess_kwh: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the solution's schedules can be used."""
        return self.fallback_reason is None


def _run(h: Any) -> Any:
    """`h.run()`, and once more without the start when the solution HiGHS hands back does not
    have the objective value it reports. Seen with highspy 1.16: a MIP that presolve reduces to
    an LP, given a feasible but not optimal start, reports the optimum's objective and returns
    the start; the second run (after `clearSolver`) returns the optimum."""
    status = h.run()
    if status == highspy.HighsStatus.kError or int(h.getInfo().primal_solution_status) != 2:
        return status
    lp = h.getLp()
    value = float(np.asarray(lp.col_cost_) @ np.asarray(h.getSolution().col_value)) + float(lp.offset_)
    reported = float(h.getInfo().objective_function_value)
    if abs(value - reported) <= 1e-7 * max(1.0, abs(reported)):
        return status
    h.clearSolver()
    return h.run()


def _solver_name() -> str:
    try:
        return f"HiGHS (highspy {importlib.metadata.version('highspy')})"
    except importlib.metadata.PackageNotFoundError:
        return "HiGHS"


def empty_plan(problem: PlanningProblem, *, objective: tuple[str, str] | None = None) -> PlanSolution:
    """The answer for a problem without aggregates: `Empty`, or a fallback naming why the
    aggregates were left out of the horizon; `objective` = (name, version) as in `_fallback`."""
    if problem.left_out:
        first_id, first_reason = problem.left_out[0]
        return _fallback(
            problem,
            "Empty",
            f"no aggregate fits the planning horizon of {problem.n_steps} steps from "
            f"{problem.horizon_start.isoformat()} ({len(problem.left_out)} left out; {first_id}: {first_reason})",
            objective=objective,
        )
    name, version = objective or (get_objective(problem.objective).name, get_objective(problem.objective).version)
    return PlanSolution(
        status="Empty",
        objective=name,
        objective_version=version,
        solver=_solver_name(),
        objective_eur=0.0,
        mip_gap=0.0,
        build_s=0.0,
        solve_s=0.0,
        start_step=_ro(np.zeros(0), np.int64),
        energy_kwh=_ro(np.zeros(0)),
        step_energy_kwh=_ro(np.zeros(problem.n_steps)),
    )


def _fallback(
    problem: PlanningProblem,
    status: str,
    reason: str,
    build_s: float = 0.0,
    solve_s: float = 0.0,
    *,
    objective: tuple[str, str] | None = None,
) -> PlanSolution:
    """A solution that assigns nothing (defaults run), with the reason; `objective` = (name,
    version) when it is not the problem's registered objective."""
    name, version = objective or (get_objective(problem.objective).name, get_objective(problem.objective).version)
    return PlanSolution(
        status=status,
        objective=name,
        objective_version=version,
        solver=_solver_name(),
        objective_eur=None,
        mip_gap=None,
        build_s=build_s,
        solve_s=solve_s,
        start_step=_ro(np.full(problem.n_aggregates, -1), np.int64),
        energy_kwh=_ro(np.zeros(len(problem.lower_kwh))),
        step_energy_kwh=_ro(np.zeros(problem.n_steps)),
        fallback_reason=reason,
    )


def _step_model_schedules(
    problem: PlanningProblem, model: StepMilpModel, col: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start step per aggregate, energy in the layout of problem.lower_kwh, energy per horizon
    step) of a solution of the step model: the shift with the largest y (the first on ties),
    and per step lower + v clipped into the bounds."""
    shifts = problem.n_shifts.astype(np.int64)
    y_owner, _ = _ragged(shifts)
    y = col[: int(model.y_offsets[-1])]
    best = np.lexsort((-y, y_owner))[model.y_offsets[:-1]]
    s = best - model.y_offsets[:-1]
    starts = problem.first_start_step.astype(np.int64) + s
    n_g = np.diff(problem.profile_offsets).astype(np.int64)
    g_of, k_of = _ragged(n_g)
    pos = model.span_offsets[g_of] + s[g_of] + k_of
    vc = model.v_col[pos]
    flexible = np.where(vc >= 0, col[np.maximum(vc, 0)], 0.0)
    lower, upper = np.asarray(problem.lower_kwh, dtype=float), np.asarray(problem.upper_kwh, dtype=float)
    energy = np.clip(lower + flexible, lower, upper)
    step_energy = np.bincount(starts[g_of] + k_of, weights=energy, minlength=problem.n_steps)
    return starts, energy, step_energy[: problem.n_steps]


def _separable_start(
    problem: PlanningProblem, model: StepMilpModel, joint: dict[int, tuple[int, np.ndarray]] | None = None
) -> np.ndarray:
    """A start for HiGHS (all columns of a step model without energy rows): each aggregate at the
    shift of least cost under the objective's step cost, each step at its lower or upper bound,
    whichever is cheaper. The aggregates do not interact under a linear step cost, so this
    is an optimal plan; HiGHS still proves it (its bound) and keeps it under a time limit.
    Aggregates with joint rows take their (shift, energy) from `joint` (`_joint_choices`,
    optimal too)."""
    step_cost = np.asarray(get_objective(problem.objective).step_cost(problem), dtype=float)
    shifts = problem.n_shifts.astype(np.int64)
    n_g = np.diff(problem.profile_offsets).astype(np.int64)
    first = problem.first_start_step.astype(np.int64)
    g_of, within = _ragged(shifts * n_g)
    s_of = within // n_g[g_of]
    k_of = within - s_of * n_g[g_of]
    step = problem.profile_offsets[g_of] + k_of
    lo = np.asarray(problem.lower_kwh, dtype=float)[step]
    wd = np.maximum(np.asarray(problem.upper_kwh, dtype=float)[step] - lo, 0.0)
    c = step_cost[first[g_of] + s_of + k_of]
    if problem.tariff_eur_per_kwh is not None:
        c = c + problem.tariff_eur_per_kwh[g_of, first[g_of] + s_of + k_of]
    y_col = model.y_offsets[g_of] + s_of
    n_y = int(model.y_offsets[-1])
    y_cost = np.bincount(y_col, weights=c * lo + np.minimum(0.0, c * wd), minlength=n_y)
    y_owner, _ = _ragged(shifts)
    best = np.lexsort((y_cost, y_owner))[model.y_offsets[:-1]]
    col = np.zeros(model.n_cols)
    col[best] = 1.0
    chosen = s_of == (best - model.y_offsets[:-1])[g_of]
    take_upper = chosen & (c * wd < 0.0)
    vc = model.v_col[model.span_offsets[g_of[take_upper]] + s_of[take_upper] + k_of[take_upper]]
    col[vc] = wd[take_upper]
    for g, (s, x) in (joint or {}).items():
        n = len(x)
        col[model.y_offsets[g] : model.y_offsets[g + 1]] = 0.0
        col[model.y_offsets[g] + s] = 1.0
        span = model.v_col[model.span_offsets[g] : model.span_offsets[g + 1]]
        col[span[span >= 0]] = 0.0
        vc = span[s : s + n]
        lower = np.asarray(problem.bounds(g)[0], dtype=float)
        col[vc[vc >= 0]] = (x - lower)[vc >= 0]
        if model.z_col is not None and model.z_col[g] >= 0:
            z0 = int(model.z_col[g])
            col[z0 : z0 + int(problem.n_shifts[g]) * n] = 0.0
            col[z0 + s * n : z0 + (s + 1) * n] = x
    if model.capacity is not None:  # the slack that makes this start feasible for the capacity rows
        starts, energy, _ = _step_model_schedules(problem, model, col)
        layout = model.capacity
        col[layout.slack0 : layout.slack0 + layout.n_slack] = layout.slack(
            problem, _energy_by_aggregate(problem, starts, energy)
        )
    return col


def solve_highs(
    problem: PlanningProblem,
    *,
    time_limit_s: float = 30.0,
    mip_rel_gap: float = 1e-6,
    random_seed: int = 0,
    warm_start: bool = True,
    exact_starts: bool = False,
) -> PlanSolution:
    """Solve the problem's MILP (the step model) with HiGHS (one thread, fixed seed). With
    `warm_start`, HiGHS starts from the plan of `_separable_start`, so that a time limit still
    leaves that plan. Never raises for a failed solve: it falls back to default schedules with
    the reason. Joint rows that no energy vector within its bounds meets fall back before any
    solve (status "Infeasible", the aggregate named). An aggregate with joint rows starts at its
    cheapest shift, found exactly on its own (`_joint_choices`; the objective is linear, so the
    aggregates do not interact): its y is fixed there, which spares HiGHS the weak relaxation
    of those rows, and it runs that exact plan. A planned vector that breaks its rows by more
    than the solver's tolerances is recomputed at its start (cheapest, exact).

    With capacity rows the aggregates they hold share them: their starts come from a dive on
    the LP relaxation (`_dive`, deterministic, close to the optimum), HiGHS then plans every
    energy (and the other aggregates' starts) exactly for them; `exact_starts` lets HiGHS's
    branch and bound choose those starts too (optimal, but seconds per round on the world's
    problems)."""
    obj = get_objective(problem.objective)
    if problem.n_aggregates == 0:
        return empty_plan(problem)
    t0 = time.perf_counter()
    joint = None
    if problem.joint:
        choices = _joint_choices(problem, np.asarray(obj.step_cost(problem), dtype=float))
        if isinstance(choices, str):
            return _fallback(problem, "Infeasible", choices, time.perf_counter() - t0)
        joint = choices
    model = build_step_model(problem, energy_rows=False)
    # an aggregate under a capacity row shares it with others: HiGHS chooses its start too
    own = joint if not (joint and problem.capacity) else {g: c for g, c in joint.items() if not problem.coupled[g]}
    if own:
        # a linear objective leaves the aggregates independent: each one with joint rows starts
        # at its own exact cheapest shift, and HiGHS keeps only its energy to find
        _fix_starts(model, {g: s for g, (s, _) in own.items()})
    dived = None
    if problem.capacity and not exact_starts:
        shifts, dived = _dive(problem, model)
        _fix_starts(model, shifts)
    h = _new_highs()
    for name, value in (
        ("time_limit", float(time_limit_s)),
        ("mip_rel_gap", float(mip_rel_gap)),
        ("random_seed", int(random_seed)),
        ("threads", 1),
        ("presolve", "on"),
    ):
        h.setOptionValue(name, value)
    pass_status = h.passModel(model.lp)
    if pass_status != highspy.HighsStatus.kError and warm_start:
        start = highspy.HighsSolution()
        start.col_value = _separable_start(problem, model, joint) if dived is None else dived
        start.value_valid = True
        h.setSolution(start)
    build_s = time.perf_counter() - t0
    if pass_status == highspy.HighsStatus.kError:
        return _fallback(problem, "Not solved", "HiGHS refused the model (passModel failed)", build_s)
    t1 = time.perf_counter()
    run_status = _run(h) if problem.joint or problem.capacity else h.run()
    solve_s = time.perf_counter() - t1
    status = h.getModelStatus()
    status_text = h.modelStatusToString(status)
    info = h.getInfo()
    has_solution = int(info.primal_solution_status) == 2
    if run_status == highspy.HighsStatus.kError:
        return _fallback(problem, status_text, f"HiGHS failed ({status_text})", build_s, solve_s)
    if status != highspy.HighsModelStatus.kOptimal and not (
        has_solution and status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit)
    ):
        what = "no solution within the time limit" if status == highspy.HighsModelStatus.kTimeLimit else status_text
        return _fallback(problem, status_text, f"HiGHS found {what}; the offers run their defaults", build_s, solve_s)
    col = np.asarray(h.getSolution().col_value, dtype=float)
    starts, energy, step_energy = _step_model_schedules(problem, model, col)
    if joint:
        # an aggregate with joint rows runs its own exact plan at the shift its y is fixed to:
        # the same cost as HiGHS's energy there, and the same choice among equal ones every time
        for g, (s, x) in (own or {}).items():
            if int(starts[g]) == int(problem.first_start_step[g]) + s:
                energy[int(problem.profile_offsets[g]) : int(problem.profile_offsets[g + 1])] = x
        fixed = _respect_rows(problem, energy, starts, np.asarray(obj.step_cost(problem), dtype=float))
        if isinstance(fixed, str):
            return _fallback(problem, status_text, fixed, build_s, solve_s)
        energy = fixed[0]
        step_energy = _step_energy(problem, starts, energy)
    if problem.tariff_eur_per_kwh is None:
        objective_eur = float(obj.step_cost(problem) @ step_energy)
    else:
        objective_eur = plan_cost_eur(problem, np.asarray(obj.step_cost(problem), dtype=float), starts, energy)
    gap = float(info.mip_gap) if np.isfinite(info.mip_gap) else None
    return PlanSolution(
        status=status_text,
        objective=obj.name,
        objective_version=obj.version,
        solver=_solver_name(),
        objective_eur=objective_eur,
        mip_gap=gap,
        build_s=build_s,
        solve_s=solve_s,
        start_step=_ro(starts, np.int64),
        energy_kwh=_ro(energy),
        step_energy_kwh=_ro(step_energy),
        capacity_excess_kwh=capacity_excess_kwh(problem, starts, energy),
    )


# -- extract ---------------------------------------------------------------------------------
def extract_schedules(
    problem: PlanningProblem, solution: PlanSolution, aggregates: Sequence[Aggregate], *, now: datetime
) -> list[tuple[Aggregate, Schedule]]:
    """Each planned aggregate with its schedule (assigned_at = now), in problem order;
    aggregates left out of the problem are not listed (they run their defaults).

    After a fallback (`solution.ok` is False), every aggregate of `aggregates` that has a
    default schedule comes with that default instead. No schedule breaks its aggregate's joint
    rows: a planned vector that does (not one of `solve_highs` or `solve_objective`, which meet
    them) is replaced by the default, and a default that does is left out (the members run
    their own defaults).
    """
    if not solution.ok:
        return [(a, d) for a in aggregates if (d := _default_schedule(a, a.joint, now)) is not None]
    by_id = {a.id: a for a in aggregates}
    out = []
    for g, agg_id in enumerate(problem.aggregate_ids):
        a = by_id[agg_id]
        o, p = int(problem.profile_offsets[g]), int(problem.profile_offsets[g + 1])
        energy = tuple(float(x) for x in solution.energy_kwh[o:p])
        rows = problem.joint_rows(g)
        if not _meets_rows(rows, energy):
            d = _default_schedule(a, rows, now)
            if d is not None:
                out.append((a, d))
            continue
        out.append((a, Schedule(agg_id, problem.time_of(int(solution.start_step[g])), 0, energy, assigned_at=now)))
    return out


def _default_schedule(a: Aggregate, rows: JointRows | None, now: datetime) -> Schedule | None:
    """The aggregate's default schedule (assigned_at = now), or None without one or when it
    breaks the joint rows (of a default's profile 0, the one the rows are over)."""
    d = a.offer.default_schedule
    if d is None or (rows is not None and (d.profile != 0 or not _meets_rows(rows, d.energy))):
        return None
    return Schedule(a.id, d.start, d.profile, tuple(d.energy), assigned_at=now)

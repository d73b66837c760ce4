"""Planning objectives beyond least cost: imbalance balancing, peak shaving and maximum profit.

Each objective is a MILP on top of the same `PlanningProblem` and the same y/z/e model as
`planning.build_model` (binary start choice y[g,s], energies z[g,s,k], energy per horizon step
e[t]); this module adds its own columns and rows after the base model is passed to HiGHS:

- `balance_imbalance`: minimise sum_t |e_t + other_t - target_t|, where `target_kwh[t]` is the
  BRP's forecast imbalance the portfolio should absorb (positive: the BRP is long, the
  portfolio should consume that much) and `other_kwh[t]` (optional, default 0) the energy of
  the rest of the portfolio. Linearised with d+_t, d-_t >= 0 and one row per step
  e_t - d+_t + d-_t = target_t - other_t; the objective is sum_t (d+_t + d-_t).
- `follow_market`: deliver what the markets cleared: minimise sum_t |e_t - market_t|, where
  `market_kwh[t]` is the portfolio's energy as committed by market results (its baseline plus
  the cleared deviations, F2.FMAN2 "follow market results"); same linearisation as
  `balance_imbalance` with target = market and no other energy.
- `peak_shaving`: minimise the peak of e_t + base_t, where `base_kwh[t]` is the non-flexible
  load at the site or congestion point. One free column `peak`, one row per step
  e_t - peak <= -base_t.
- `max_profit`: maximise revenue at spot prices for offers that produce (negative energy) and
  minimise cost for consumption. With signed energies this is exactly least cost:
  min sum_t price_t * e_t (a negative optimum is a profit). `MAX_PROFIT` is the same objective
  as a linear `planning.Objective`; importing this module does not register it (the planning
  registry is global), `register_objective(MAX_PROFIT)` makes `build_problem` and
  `solve_highs` accept the name too.

`balance_imbalance` and `peak_shaving` add a tie-break `TIE_BREAK_WEIGHT * price_t * e_t` so
that among equally good plans the cheaper one is chosen. Their own measure (kWh) is given by
`evaluate_objective`; `PlanSolution.objective_eur` is, for every objective here, the energy
cost at the problem's prices. The problem's own `objective` field is not used by
`solve_objective`: the objective is the one named in the call.

Build (base model, extra columns and rows) and solve are timed apart; a failed solve falls back
to default schedules and says why (`PlanSolution.fallback_reason`), like `solve_highs`.

Aggregates with joint rows (`PlanningProblem.joint`) have them in the base model, per shift;
rows that no energy vector within the bounds meets fall back before the solve (status
"Infeasible", the aggregate named), and the greedy start meets them (see `_greedy_start`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import highspy
import numpy as np

from atp.fman.errors import FmanError, UnknownObjectiveError
from atp.fman.planning import (
    MilpModel,
    Objective,
    PlanningProblem,
    PlanSolution,
    _nearest_energy,
    _new_highs,
    _respect_rows,
    _run,
    _solver_name,
    build_model,
    capacity_excess_kwh,
    empty_plan,
    joint_infeasibility,
    plan_cost_eur,
)
from atp.fman.planning import (
    _fallback as _planning_fallback,
)

__all__ = [
    "MAX_PROFIT",
    "OBJECTIVES",
    "TIE_BREAK_WEIGHT",
    "ObjectiveSpec",
    "SeriesError",
    "evaluate_objective",
    "solve_objective",
]

TIE_BREAK_WEIGHT = 1e-6
"""Weight of the energy cost (EUR) added to the kWh measure of balance and peak objectives."""


class SeriesError(FmanError):
    """A series an objective needs (target, base load) is missing or not on the horizon."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """A MILP planning objective: name, version (recorded with every solution), what it does,
    the series it needs and those it may use (names of `series` keys, arrays in kWh per
    horizon step), and the unit of its own measure (`evaluate_objective`)."""

    name: str
    version: str
    description: str
    required_series: tuple[str, ...] = ()
    optional_series: tuple[str, ...] = ()
    unit: str = "EUR"


MAX_PROFIT = Objective(
    name="max_profit",
    version="1.0",
    description=(
        "maximise revenue for production and minimise cost for consumption at spot prices: "
        "min sum(price_t * energy_t) with signed energy (the same optimum as least_cost)"
    ),
    step_cost=lambda problem: problem.prices_eur_per_kwh,
)
"""Maximum profit as a linear planning objective, for `register_objective` (not registered here)."""

OBJECTIVES: Mapping[str, ObjectiveSpec] = MappingProxyType(
    {
        "balance_imbalance": ObjectiveSpec(
            name="balance_imbalance",
            version="1.0",
            description="minimise sum_t |energy_t + other_t - target_t| (absorb the BRP's forecast imbalance)",
            required_series=("target_kwh",),
            optional_series=("other_kwh",),
            unit="kWh",
        ),
        "follow_market": ObjectiveSpec(
            name="follow_market",
            version="1.0",
            description="minimise sum_t |energy_t - market_t| (deliver the energy the market results commit to)",
            required_series=("market_kwh",),
            unit="kWh",
        ),
        "peak_shaving": ObjectiveSpec(
            name="peak_shaving",
            version="1.0",
            description="minimise max_t (energy_t + base_t) at the site or congestion point",
            required_series=("base_kwh",),
            unit="kWh",
        ),
        "max_profit": ObjectiveSpec(
            name=MAX_PROFIT.name,
            version=MAX_PROFIT.version,
            description=MAX_PROFIT.description,
            unit="EUR",
        ),
    }
)
"""The objectives `solve_objective` knows, by name."""


_DEVIATION = frozenset({"balance_imbalance", "follow_market"})
"""Objectives that minimise the absolute deviation from a wanted energy per step."""


def _wanted_kwh(spec: ObjectiveSpec, data: dict[str, np.ndarray]) -> np.ndarray:
    """The portfolio energy per step a deviation objective aims at."""
    if spec.name == "follow_market":
        return data["market_kwh"]
    return data["target_kwh"] - data["other_kwh"]


def _spec(name: str) -> ObjectiveSpec:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise UnknownObjectiveError(
            f"no MILP planning objective {name!r}; known: {', '.join(sorted(OBJECTIVES))}"
        ) from None


def _series(problem: PlanningProblem, spec: ObjectiveSpec, series: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The objective's series as float arrays of the horizon's length (optional ones default to 0)."""
    out: dict[str, np.ndarray] = {}
    for key in spec.required_series + spec.optional_series:
        if key not in series:
            if key in spec.required_series:
                raise SeriesError(
                    f"objective {spec.name!r} needs series[{key!r}]: kWh per step for the "
                    f"{problem.n_steps} horizon steps from {problem.horizon_start.isoformat()}"
                )
            out[key] = np.zeros(problem.n_steps)
            continue
        values = np.asarray(series[key], dtype=float).reshape(-1)
        if len(values) != problem.n_steps:
            raise SeriesError(
                f"series[{key!r}] has {len(values)} values; the horizon has {problem.n_steps} steps of "
                f"{problem.slice_s} s from {problem.horizon_start.isoformat()}"
            )
        if not np.all(np.isfinite(values)):
            raise SeriesError(f"series[{key!r}] must be finite numbers (kWh per step); found NaN or infinity")
        out[key] = values
    return out


def evaluate_objective(
    problem: PlanningProblem, objective: str, step_energy_kwh: np.ndarray, *, series: Mapping[str, Any]
) -> float:
    """The objective's own measure (without tie-break) for energy `step_energy_kwh` per horizon
    step: kWh of deviation, peak kWh, or EUR of cost (negative: profit)."""
    spec = _spec(objective)
    data = _series(problem, spec, series)
    e = np.asarray(step_energy_kwh, dtype=float)
    if spec.name in _DEVIATION:
        return float(np.abs(e - _wanted_kwh(spec, data)).sum())
    if spec.name == "peak_shaving":
        return float((e + data["base_kwh"]).max()) if problem.n_steps else 0.0
    return float(problem.prices_eur_per_kwh @ e)


def _add_terms(
    h: Any, model: MilpModel, problem: PlanningProblem, spec: ObjectiveSpec, data: dict[str, np.ndarray]
) -> bool:
    """Add the objective's columns and rows to the base model already passed to `h`; False when
    HiGHS refuses them."""
    statuses = []
    t_count = problem.n_steps
    e_cols = model.e_offset + np.arange(t_count, dtype=np.int32)
    n0 = model.n_cols
    inf = highspy.kHighsInf
    no_nz = (0, np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
    if spec.name in _DEVIATION:
        # columns n0 + t: d+_t, n0 + T + t: d-_t
        statuses.append(
            h.addCols(2 * t_count, np.ones(2 * t_count), np.zeros(2 * t_count), np.full(2 * t_count, inf), *no_nz)
        )
        rhs = _wanted_kwh(spec, data)
        index = np.stack((e_cols, n0 + np.arange(t_count), n0 + t_count + np.arange(t_count)), axis=1)
        values = np.tile([1.0, -1.0, 1.0], (t_count, 1))
        starts = np.arange(0, 3 * t_count, 3, dtype=np.int32)
        statuses.append(
            h.addRows(t_count, rhs, rhs, 3 * t_count, starts, index.reshape(-1).astype(np.int32), values.reshape(-1))
        )
    elif spec.name == "peak_shaving":
        statuses.append(h.addCols(1, np.ones(1), np.full(1, -inf), np.full(1, inf), *no_nz))
        index = np.stack((e_cols, np.full(t_count, n0)), axis=1)
        values = np.tile([1.0, -1.0], (t_count, 1))
        starts = np.arange(0, 2 * t_count, 2, dtype=np.int32)
        statuses.append(
            h.addRows(
                t_count,
                np.full(t_count, -inf),
                -data["base_kwh"],
                2 * t_count,
                starts,
                index.reshape(-1).astype(np.int32),
                values.reshape(-1),
            )
        )
    return all(s != highspy.HighsStatus.kError for s in statuses)


def _greedy_start(
    problem: PlanningProblem, model: MilpModel, spec: ObjectiveSpec, data: dict[str, np.ndarray]
) -> np.ndarray | None:
    """A feasible starting point (all columns, extra ones included) for HiGHS, so that a time
    limit still leaves a usable plan: aggregates in turn take the shift (and energies within
    their bounds) that serve the objective best given those placed before.

    An aggregate with joint rows takes, at each shift, the vector nearest the box choice that
    meets them (`_nearest_energy`: for total energy, the sum moved in profile order for the
    deviation objectives and where the load is least for peak shaving; one small LP otherwise);
    with rows that depend on the start and several starts, only at the shift the box choice
    prefers (one LP). None when some aggregate has no vector that meets its rows (then HiGHS
    starts without it)."""
    t_count = problem.n_steps
    step_energy = np.zeros(t_count)
    n_extra = 2 * t_count if spec.name in _DEVIATION else 1
    wanted = _wanted_kwh(spec, data) if spec.name in _DEVIATION else np.zeros(t_count)
    col = np.zeros(model.n_cols + n_extra)
    by_aggregate = np.zeros((problem.n_aggregates, t_count)) if model.capacity is not None else None
    for g in range(problem.n_aggregates):
        lower, upper = problem.bounds(g)
        rows = problem.joint_rows(g)
        each_shift = rows is not None and not problem.shifted_rows(g)
        n = len(lower)
        best_score, best_s, best_x = np.inf, 0, lower
        for s in range(int(problem.n_shifts[g])):
            t0 = int(problem.first_start_step[g]) + s
            window = slice(t0, t0 + n)
            if spec.name in _DEVIATION:
                want = wanted[window] - step_energy[window]
                x = np.clip(want, lower, upper)
                key = None  # for a total-energy row, every way of moving the sum costs the same
            else:
                x = lower.copy()
                key = step_energy[window] + data["base_kwh"][window]  # raise where the load is least
            if each_shift:
                x = _nearest_energy(lower, upper, rows, x, key)
                if x is None:
                    return None
            if spec.name in _DEVIATION:
                score = float(np.abs(want - x).sum() - np.abs(want).sum())
            else:
                score = float((step_energy[window] + data["base_kwh"][window] + x).max())
            if score < best_score - 1e-12:
                best_score, best_s, best_x = score, s, x
        s, x = best_s, best_x
        if rows is not None and not each_shift:
            x = _nearest_energy(lower, upper, rows, x)
            if x is None:
                return None
        t0 = int(problem.first_start_step[g]) + s
        step_energy[t0 : t0 + n] += x
        if model.capacity is not None:
            by_aggregate[g, t0 : t0 + n] = x
        col[model.y_offsets[g] + s] = 1.0
        z0 = model.z_col0 + int(model.z_offsets[g]) + s * n
        col[z0 : z0 + n] = x
    col[model.e_offset : model.e_offset + t_count] = step_energy
    if model.capacity is not None:  # the slack that makes the start feasible for the capacity rows
        layout = model.capacity
        col[layout.slack0 : layout.slack0 + layout.n_slack] = layout.slack(problem, by_aggregate)
    if spec.name in _DEVIATION:
        residual = step_energy - wanted
        col[model.n_cols : model.n_cols + t_count] = np.maximum(residual, 0.0)
        col[model.n_cols + t_count :] = np.maximum(-residual, 0.0)
    else:
        col[model.n_cols] = float((step_energy + data["base_kwh"]).max()) if t_count else 0.0
    return col


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


def _fallback(
    problem: PlanningProblem, spec: ObjectiveSpec, status: str, reason: str, build_s: float, solve_s: float
) -> PlanSolution:
    return _planning_fallback(problem, status, reason, build_s, solve_s, objective=(spec.name, spec.version))


def solve_objective(
    problem: PlanningProblem,
    objective: str,
    *,
    series: Mapping[str, Any] | None = None,
    time_limit_s: float = 30.0,
    mip_rel_gap: float = 1e-6,
    random_seed: int = 0,
) -> PlanSolution:
    """Plan the problem for the objective named `objective` (a key of `OBJECTIVES`) with HiGHS
    (one thread, fixed seed); `series` holds the arrays it needs (kWh per horizon step).

    Raises UnknownObjectiveError for an unknown name and SeriesError for missing or misaligned
    series; never raises for a failed solve: it falls back to default schedules with the reason.
    `objective_eur` of the result is the energy cost at the problem's prices.
    """
    spec = _spec(objective)
    data = _series(problem, spec, series or {})
    if problem.n_aggregates == 0:
        return empty_plan(problem, objective=(spec.name, spec.version))
    t0 = time.perf_counter()
    if problem.joint:
        reason = joint_infeasibility(problem)
        if reason is not None:
            return _fallback(problem, spec, "Infeasible", reason, time.perf_counter() - t0, 0.0)
    model = build_model(problem)
    prices = np.asarray(problem.prices_eur_per_kwh, dtype=float)
    weight = 1.0 if spec.name == "max_profit" else TIE_BREAK_WEIGHT
    cost = np.array(model.lp.col_cost_, dtype=float)  # the points' tariffs on z, the capacity penalty on its slack
    cost[: model.e_offset] *= weight
    cost[model.e_offset : model.e_offset + problem.n_steps] = weight * prices
    model.lp.col_cost_ = cost
    h = _new_highs()
    for name, value in (
        ("time_limit", float(time_limit_s)),
        ("mip_rel_gap", float(mip_rel_gap)),
        ("random_seed", int(random_seed)),
        ("threads", 1),
        ("presolve", "on"),
    ):
        h.setOptionValue(name, value)
    if problem.joint:
        # the tie-break costs (TIE_BREAK_WEIGHT * price, about 1e-7) sit at HiGHS's dual
        # feasibility tolerance; with joint rows, presolve then on rare problems (2 in 5 000
        # random ones) cut off the optimum and reported a worse plan as optimal
        h.setOptionValue("dual_feasibility_tolerance", 1e-10)
    if h.passModel(model.lp) == highspy.HighsStatus.kError:
        return _fallback(
            problem, spec, "Not solved", "HiGHS refused the model (passModel failed)", time.perf_counter() - t0, 0.0
        )
    if not _add_terms(h, model, problem, spec, data):
        return _fallback(
            problem, spec, "Not solved", "HiGHS refused the objective's rows or columns", time.perf_counter() - t0, 0.0
        )
    warm = None if spec.name == "max_profit" else _greedy_start(problem, model, spec, data)
    if warm is not None:
        start = highspy.HighsSolution()
        start.col_value = warm
        start.value_valid = True
        h.setSolution(start)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    run_status = _run(h)
    solve_s = time.perf_counter() - t1
    status = h.getModelStatus()
    status_text = h.modelStatusToString(status)
    info = h.getInfo()
    has_solution = int(info.primal_solution_status) == 2
    if run_status == highspy.HighsStatus.kError:
        return _fallback(problem, spec, status_text, f"HiGHS failed ({status_text})", build_s, solve_s)
    if status != highspy.HighsModelStatus.kOptimal and not (
        has_solution and status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit)
    ):
        what = "no solution within the time limit" if status == highspy.HighsModelStatus.kTimeLimit else status_text
        return _fallback(
            problem, spec, status_text, f"HiGHS found {what}; the offers run their defaults", build_s, solve_s
        )
    col = np.asarray(h.getSolution().col_value, dtype=float)
    starts = np.zeros(problem.n_aggregates, dtype=np.int64)
    energy = np.zeros(len(problem.lower_kwh))
    step_energy = np.zeros(problem.n_steps)
    for g in range(problem.n_aggregates):
        s = int(np.argmax(col[model.y_offsets[g] : model.y_offsets[g + 1]]))
        n = problem.profile_steps(g)
        z0 = model.z_col0 + int(model.z_offsets[g]) + s * n
        lower, upper = problem.bounds(g)
        e = np.clip(col[z0 : z0 + n], lower, upper)
        o = int(problem.profile_offsets[g])
        energy[o : o + n] = e
        starts[g] = int(problem.first_start_step[g]) + s
        step_energy[starts[g] : starts[g] + n] += e
    if problem.joint:
        # solver tolerances: a vector off its joint rows is recomputed at its start, the
        # cheapest for max_profit (exact), else the nearest one
        fixed = _respect_rows(problem, energy, starts, prices if spec.name == "max_profit" else None)
        if isinstance(fixed, str):
            return _fallback(problem, spec, status_text, fixed, build_s, solve_s)
        energy, changed = fixed
        if changed:
            step_energy = np.zeros(problem.n_steps)
            for g in range(problem.n_aggregates):
                o, p = int(problem.profile_offsets[g]), int(problem.profile_offsets[g + 1])
                step_energy[starts[g] : starts[g] + p - o] += energy[o:p]
    gap = float(info.mip_gap) if np.isfinite(info.mip_gap) else None
    objective_eur = float(prices @ step_energy)
    if problem.tariff_eur_per_kwh is not None:
        objective_eur = plan_cost_eur(problem, prices, starts, energy)
    return PlanSolution(
        status=status_text,
        objective=spec.name,
        objective_version=spec.version,
        solver=_solver_name(),
        objective_eur=objective_eur,
        mip_gap=gap,
        build_s=build_s,
        solve_s=solve_s,
        start_step=_ro(starts),
        energy_kwh=_ro(energy),
        step_energy_kwh=_ro(step_energy),
        capacity_excess_kwh=capacity_excess_kwh(problem, starts, energy),
    )

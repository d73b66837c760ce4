"""Planning with a DSO's capacity rows: the plan's cost and penalty, and the dive that chooses the
starts of the aggregates the rows couple (`atp.fman.planning.solve_highs` uses it; the problem
data is `atp.fman.planning_problem`, the rows in the models `atp.fman.planning_models`).
"""

from __future__ import annotations

import highspy
import numpy as np

from atp.fman.planning_models import StepMilpModel, _new_highs, _ragged
from atp.fman.planning_problem import PlanningProblem

__all__ = ["capacity_excess_kwh", "capacity_penalty_eur", "plan_cost_eur"]


def _step_energy(problem: PlanningProblem, starts: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Energy per horizon step of the aggregates' energies (layout of problem.lower_kwh) at their starts."""
    g_of, k_of = _ragged(np.diff(problem.profile_offsets).astype(np.int64))
    return np.bincount(starts[g_of] + k_of, weights=energy, minlength=problem.n_steps)[: problem.n_steps]


def _energy_by_aggregate(problem: PlanningProblem, starts: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Energy per aggregate and horizon step (n_aggregates, n_steps) of energies in the layout
    of problem.lower_kwh at their starts."""
    g_of, k_of = _ragged(np.diff(problem.profile_offsets).astype(np.int64))
    out = np.zeros((problem.n_aggregates, problem.n_steps))
    t = starts[g_of] + k_of
    inside = (t >= 0) & (t < problem.n_steps)
    np.add.at(out, (g_of[inside], t[inside]), energy[inside])
    return out


def plan_cost_eur(problem: PlanningProblem, step_cost: np.ndarray, starts: np.ndarray, energy: np.ndarray) -> float:
    """The plan's cost: energy at the objective's step cost plus each aggregate's tariff."""
    step_energy = _step_energy(problem, starts, energy)
    cost = float(step_cost @ step_energy)
    if problem.tariff_eur_per_kwh is not None:
        cost += float((problem.tariff_eur_per_kwh * _energy_by_aggregate(problem, starts, energy)).sum())
    return cost


def capacity_penalty_eur(problem: PlanningProblem, starts: np.ndarray, energy: np.ndarray) -> float:
    """What a plan pays for exceeding the problem's capacity rows (their tiers and weights,
    `CapacityRows.excess_cost`), over the steps some aggregate under a capacity may draw in."""
    total = 0.0
    for cap, steps, over in _overshoot(problem, starts, energy):
        total += sum(cap.excess_cost(t, over[i]) for i, t in enumerate(steps))
    return total * float(problem.capacity_penalty_eur_per_kwh)


def _overshoot(problem: PlanningProblem, starts: np.ndarray, energy: np.ndarray) -> list:
    """Per capacity row set: (the rows, the steps some aggregate under it may draw in, the
    plan's weighted energy minus the capacity there; negative where it keeps within)."""
    if not problem.capacity:
        return []
    by_g = _energy_by_aggregate(problem, starts, energy)
    out = []
    for cap, reach in zip(problem.capacity, _capacity_reach(problem), strict=True):
        steps = np.flatnonzero(reach)
        out.append((cap, steps, (cap.weight @ by_g)[steps] - cap.kwh[steps]))
    return out


def _capacity_reach(problem: PlanningProblem) -> list[np.ndarray]:
    """Per capacity, the steps with a finite capacity that some aggregate under it may draw in."""
    n_g = np.diff(problem.profile_offsets).astype(np.int64)
    first = problem.first_start_step.astype(np.int64)
    last = first + problem.n_shifts.astype(np.int64) + n_g - 1  # one past the span
    t = np.arange(problem.n_steps)
    out = []
    for cap in problem.capacity:
        held = cap.weight != 0.0
        reach = ((t[None, :] >= first[held, None]) & (t[None, :] < last[held, None])).any(axis=0)
        out.append(reach & np.isfinite(cap.kwh))
    return out


def capacity_excess_kwh(problem: PlanningProblem, starts: np.ndarray, energy: np.ndarray) -> float:
    """kWh by which a plan exceeds the problem's capacity rows, summed over rows and steps:
    the steps that some aggregate under the capacity may draw in (a capacity no aggregate can
    reach is not the plan's to keep)."""
    return float(sum(np.maximum(over, 0.0).sum() for _, _, over in _overshoot(problem, starts, energy)))


def _fix_starts(model: StepMilpModel, shifts: dict[int, int]) -> None:
    """Fix aggregate g's start to its shift `shifts[g]` in the model (y bounds)."""
    if not shifts:
        return
    col_lower, col_upper = np.array(model.lp.col_lower_), np.array(model.lp.col_upper_)
    for g, s in shifts.items():
        y0, y1 = int(model.y_offsets[g]), int(model.y_offsets[g + 1])
        col_lower[y0:y1] = 0.0
        col_upper[y0:y1] = 0.0
        col_lower[y0 + s] = col_upper[y0 + s] = 1.0
    model.lp.col_lower_ = col_lower
    model.lp.col_upper_ = col_upper


_DIVE_TOL = 1e-6


def _dive(problem: PlanningProblem, model: StepMilpModel) -> tuple[dict[int, int], np.ndarray]:
    """The starts of the aggregates that capacity rows couple, by diving on the LP relaxation:
    solve it, fix the undecided coupled aggregate whose largest y is largest at that shift, solve
    again, until every coupled aggregate is decided. Returns (aggregate -> shift index, the last
    LP solution: a start for HiGHS). Capacity rows make the starts a real scheduling problem
    (rigid EV blocks under a shared limit); proving its optimum took HiGHS seconds per round,
    while the dive takes a few LP solves (warm, dual simplex) and comes within a few tenths of a
    percent of it on the rounds measured; it is deterministic (no time limit decides)."""
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = model.lp.num_col_, model.lp.num_row_
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = model.lp.col_cost_, model.lp.col_lower_, model.lp.col_upper_
    lp.row_lower_, lp.row_upper_ = model.lp.row_lower_, model.lp.row_upper_
    lp.a_matrix_ = model.lp.a_matrix_
    h = _new_highs()
    h.setOptionValue("threads", 1)
    h.setOptionValue("random_seed", 0)
    h.passModel(lp)
    yo = model.y_offsets
    candidates = [g for g in np.flatnonzero(problem.coupled & (problem.n_shifts > 1)).tolist()]
    col_lower = np.asarray(model.lp.col_lower_)
    candidates = [g for g in candidates if col_lower[yo[g] : yo[g + 1]].max() < 0.5]  # not fixed already
    shifts: dict[int, int] = {}
    col = np.zeros(model.n_cols)
    while True:
        h.run()
        col = np.asarray(h.getSolution().col_value, dtype=float)
        best, pick = -1.0, -1
        for g in candidates:
            if g in shifts:
                continue
            top = float(col[yo[g] : yo[g + 1]].max())
            if top >= 1.0 - _DIVE_TOL:
                continue
            if top > best:
                best, pick = top, g
        if pick < 0:
            break
        s = int(np.argmax(col[yo[pick] : yo[pick + 1]]))
        shifts[pick] = s
        idx = np.arange(yo[pick], yo[pick + 1], dtype=np.int32)
        lo = np.zeros(len(idx))
        lo[s] = 1.0
        h.changeColsBounds(len(idx), idx, lo, lo.copy())
    for g in candidates:  # decided by the LP itself
        if g not in shifts:
            shifts[g] = int(np.argmax(col[yo[g] : yo[g + 1]]))
    return shifts, col

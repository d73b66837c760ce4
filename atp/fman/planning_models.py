"""The HiGHS models of a planning problem, as column-wise sparse matrices built with numpy: the
y/z model (`build_model`, which `atp.fman.objectives` extends) and the compact step model
(`build_step_model`, which `solve_highs` solves). `atp.fman.planning` explains both and
re-exports this module.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np

from atp.fman.aggregation import JointRows
from atp.fman.planning_problem import CapacityRows, PlanningProblem, _ro, get_objective

__all__ = ["CapacityLayout", "MilpModel", "StepMilpModel", "build_model", "build_step_model"]


_BANNER_LOCK = threading.Lock()
_banner_done = False


def _new_highs() -> Any:
    """A silent Highs instance. HiGHS prints its banner on the first `Highs()` of a process,
    before `output_flag=False` can apply, so that first construction runs with fd 1 muted."""
    global _banner_done
    with _BANNER_LOCK:
        if _banner_done:
            h = highspy.Highs()
        else:
            sys.stdout.flush()
            try:
                saved = os.dup(1)
            except OSError:  # no stdout to protect
                saved = -1
            if saved < 0:
                h = highspy.Highs()
            else:
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, 1)
                    h = highspy.Highs()
                finally:
                    os.dup2(saved, 1)
                    os.close(saved)
                    os.close(devnull)
            _banner_done = True
    h.setOptionValue("output_flag", False)
    return h


# -- capacity rows ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CapacityLayout:
    """Where a model keeps the problem's capacity rows: row r (from `row0`) is capacity
    `which[r]` at horizon step `step[r]`; its excess tiers (`CapacityRows.excess_tiers`) are
    columns `slack0 + r * n_tiers + k`, bounded by the tiers' widths."""

    row0: int
    slack0: int
    n_tiers: int
    which: np.ndarray
    step: np.ndarray

    @property
    def n_rows(self) -> int:
        """Number of capacity rows."""
        return len(self.which)

    @property
    def n_slack(self) -> int:
        """Number of excess columns."""
        return self.n_rows * self.n_tiers

    def slack(self, problem: PlanningProblem, step_energy_of: np.ndarray) -> np.ndarray:
        """The excess columns for energies `step_energy_of[g, t]` (aggregate, step): each row's
        excess over its capacity, filled into its tiers in order."""
        out = np.zeros(self.n_slack)
        for r, (c, t) in enumerate(zip(self.which.tolist(), self.step.tolist(), strict=True)):
            cap = problem.capacity[c]
            left = max(float(cap.weight @ step_energy_of[:, t]) - float(cap.kwh[t]), 0.0)
            for k, (width, _) in enumerate(_tiers(cap, t, self.n_tiers)):
                take = min(left, width)
                out[r * self.n_tiers + k] = take
                left -= take
        return out


def _tiers(cap: CapacityRows, t: int, n_tiers: int) -> list[tuple[float, float]]:
    """The row's excess tiers at step t padded to `n_tiers` with empty ones (the last stays unbounded)."""
    tiers = list(cap.excess_tiers(t))
    last = tiers.pop()
    while len(tiers) < n_tiers - 1:
        tiers.append((0.0, last[1]))
    return [*tiers, last]


def _capacity_entries(
    problem: PlanningProblem, g: np.ndarray, t: np.ndarray, col: np.ndarray, coef: np.ndarray, *, row0: int, col0: int
) -> tuple[CapacityLayout, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The soft capacity rows `sum_g w[g] * energy_g,t - sum_k excess_k <= kwh[t]` from energy
    entries: the energy of aggregate g[i] at step t[i] holds coef[i] * column col[i]. Rows (from
    row0) only where a capacity is finite and some entry falls; its excess columns (from col0)
    per tier. Returns (layout, rows, columns, values, row upper bounds, excess column upper
    bounds, excess costs)."""
    n_tiers = max((len(c.excess_tiers(0)) for c in problem.capacity), default=1)
    keys_c: list[np.ndarray] = []
    keys_t: list[np.ndarray] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for c, cap in enumerate(problem.capacity):
        w = cap.weight[g]
        sel = (w != 0.0) & np.isfinite(cap.kwh[t]) & (coef != 0.0)
        steps = np.unique(t[sel])
        keys_c.append(np.full(len(steps), c, dtype=np.int64))
        keys_t.append(steps)
        parts.append((np.searchsorted(steps, t[sel]), col[sel], w[sel] * coef[sel]))
    which = np.concatenate(keys_c) if keys_c else np.zeros(0, np.int64)
    step = np.concatenate(keys_t) if keys_t else np.zeros(0, np.int64)
    first = np.concatenate(([0], np.cumsum([len(k) for k in keys_t]))).astype(np.int64)
    rows = [row0 + first[c] + local for c, (local, _, _) in enumerate(parts)]
    cols = [cc for _, cc, _ in parts]
    vals = [v for _, _, v in parts]
    n = len(which)
    rows.append(row0 + np.repeat(np.arange(n, dtype=np.int64), n_tiers))
    cols.append(col0 + np.arange(n * n_tiers, dtype=np.int64))
    vals.append(-np.ones(n * n_tiers))
    upper = np.array([problem.capacity[c].kwh[k] for c, k in zip(which, step, strict=True)], dtype=float)
    pairs = zip(which.tolist(), step.tolist(), strict=True)
    tiers = [tier for c, k in pairs for tier in _tiers(problem.capacity[c], k, n_tiers)]
    widths = np.array([w for w, _ in tiers], dtype=float)
    costs = float(problem.capacity_penalty_eur_per_kwh) * np.array([slope for _, slope in tiers], dtype=float)
    layout = CapacityLayout(
        row0=row0, slack0=col0, n_tiers=n_tiers, which=_ro(which, np.int64), step=_ro(step, np.int64)
    )
    return (
        layout,
        np.concatenate(rows).astype(np.int64),
        np.concatenate(cols).astype(np.int64),
        np.concatenate(vals).astype(float),
        upper,
        widths,
        costs,
    )


# -- the MILP --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MilpModel:
    """The MILP as a highspy HighsLp; columns are y (per aggregate and shift), then z (per
    aggregate, shift and step), then e (per horizon step)."""

    lp: Any
    y_offsets: np.ndarray
    z_offsets: np.ndarray
    z_col0: int
    e_offset: int
    n_rows: int
    capacity: CapacityLayout | None = None

    @property
    def n_cols(self) -> int:
        """Number of variables."""
        return int(self.lp.num_col_)


def _highs_lp(
    cost: np.ndarray,
    col_lower: np.ndarray,
    col_upper: np.ndarray,
    row_lower: np.ndarray,
    row_upper: np.ndarray,
    start: np.ndarray,
    index: np.ndarray,
    values: np.ndarray,
    *,
    n_int: int,
) -> Any:
    """A column-wise HiGHS model whose first `n_int` columns are integer, the rest continuous."""
    n_cols, n_rows = len(cost), len(row_lower)
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_rows
    lp.col_cost_ = cost
    lp.col_lower_ = col_lower
    lp.col_upper_ = col_upper
    lp.row_lower_ = row_lower
    lp.row_upper_ = row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = n_cols
    lp.a_matrix_.num_row_ = n_rows
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index.astype(np.int32)
    lp.a_matrix_.value_ = values
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n_int + [highspy.HighsVarType.kContinuous] * (n_cols - n_int)
    return lp


def build_model(problem: PlanningProblem) -> MilpModel:
    """The column-wise sparse MILP of the problem, ready for `Highs.passModel`. An aggregate's
    joint rows are written per shift, lo * y[g,s] <= a @ z[g,s,:] <= hi * y[g,s] (one row per
    finite side, one for an equality), after the energy rows: exact for any number of shifts,
    and the convex hull of the disjunction as before."""
    inf = highspy.kHighsInf
    g_count = problem.n_aggregates
    t_count = problem.n_steps
    n_g = np.diff(problem.profile_offsets).astype(np.int64)
    shifts = problem.n_shifts.astype(np.int64)
    y_offsets = np.concatenate(([0], np.cumsum(shifts))).astype(np.int64)
    z_counts = shifts * n_g
    z_offsets = np.concatenate(([0], np.cumsum(z_counts))).astype(np.int64)
    n_y, n_z = int(y_offsets[-1]), int(z_offsets[-1])
    e0 = n_y + n_z
    n_cols = e0 + t_count
    link0 = g_count
    energy0 = g_count + 2 * n_z
    n_rows = energy0 + t_count

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    z_lo = np.zeros(n_z)
    z_hi = np.zeros(n_z)
    z_step = np.zeros(n_z, dtype=np.int64)  # horizon step of each z
    z_owner = np.zeros(n_z, dtype=np.int64)
    for g in range(g_count):
        n, s_count = int(n_g[g]), int(shifts[g])
        lower, upper = problem.bounds(g)
        y_cols = y_offsets[g] + np.arange(s_count)
        # exactly one start per aggregate
        rows.append(np.full(s_count, g))
        cols.append(y_cols)
        vals.append(np.ones(s_count))
        # z[g, s, k], global index zi; its rows: 2*zi (>= lower*y), 2*zi+1 (<= upper*y)
        s_idx = np.repeat(np.arange(s_count), n)
        k_idx = np.tile(np.arange(n), s_count)
        zi = z_offsets[g] + np.arange(s_count * n)
        lo_k, hi_k = lower[k_idx], upper[k_idx]
        z_lo[zi] = np.minimum(lo_k, 0.0)
        z_hi[zi] = np.maximum(hi_k, 0.0)
        z_cols = n_y + zi
        low_rows = link0 + 2 * zi
        up_rows = low_rows + 1
        t_rows = energy0 + problem.first_start_step[g] + s_idx + k_idx
        z_step[zi] = t_rows - energy0
        z_owner[zi] = g
        rows += [low_rows, up_rows, t_rows]
        cols += [z_cols, z_cols, z_cols]
        vals += [np.ones(len(zi)), np.ones(len(zi)), -np.ones(len(zi))]
        y_of_z = y_offsets[g] + s_idx
        nz_lo = lo_k != 0.0
        nz_hi = hi_k != 0.0
        rows += [low_rows[nz_lo], up_rows[nz_hi]]
        cols += [y_of_z[nz_lo], y_of_z[nz_hi]]
        vals += [-lo_k[nz_lo], -hi_k[nz_hi]]
    rows.append(energy0 + np.arange(t_count))
    cols.append(e0 + np.arange(t_count))
    vals.append(np.ones(t_count))
    # joint rows, per shift: lo * y[g,s] <= a @ z[g,s,:] <= hi * y[g,s], after the energy rows
    joint_lower: list[np.ndarray] = []
    joint_upper: list[np.ndarray] = []
    joint0 = n_rows
    for g in problem.joint_aggregates:
        jr, jc, jv, jl, ju = _per_shift_rows(
            problem.joint[g],
            int(n_g[g]),
            int(shifts[g]),
            z0=n_y + int(z_offsets[g]),
            y0=int(y_offsets[g]),
            row0=n_rows,
        )
        rows.append(jr)
        cols.append(jc)
        vals.append(jv)
        joint_lower.append(jl)
        joint_upper.append(ju)
        n_rows += len(jl)
    # capacity rows on z (after all others), their slack columns after e
    layout = None
    if problem.capacity:
        layout, cr, cc, cv, cap_upper, cap_width, cap_cost = _capacity_entries(
            problem, z_owner, z_step, n_y + np.arange(n_z, dtype=np.int64), np.ones(n_z), row0=n_rows, col0=n_cols
        )
        rows.append(cr)
        cols.append(cc)
        vals.append(cv)
        n_rows += layout.n_rows
        n_cols += layout.n_slack

    r = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols).astype(np.int64) if cols else np.zeros(0, np.int64)
    v = np.concatenate(vals).astype(float) if vals else np.zeros(0)
    order = np.lexsort((r, c))
    r, c, v = r[order], c[order], v[order]
    start = np.concatenate(([0], np.cumsum(np.bincount(c, minlength=n_cols)))).astype(np.int32)

    row_lower = np.empty(n_rows)
    row_upper = np.empty(n_rows)
    row_lower[:g_count] = 1.0
    row_upper[:g_count] = 1.0
    row_lower[link0:energy0:2] = 0.0
    row_upper[link0:energy0:2] = inf
    row_lower[link0 + 1 : energy0 : 2] = -inf
    row_upper[link0 + 1 : energy0 : 2] = 0.0
    row_lower[energy0:joint0] = 0.0
    row_upper[energy0:joint0] = 0.0
    cap0 = n_rows - (layout.n_rows if layout is not None else 0)
    if joint_lower:
        row_lower[joint0:cap0] = np.concatenate(joint_lower)
        row_upper[joint0:cap0] = np.concatenate(joint_upper)

    cost = np.zeros(n_cols)
    cost[e0 : e0 + t_count] = get_objective(problem.objective).step_cost(problem)
    col_lower = np.concatenate((np.zeros(n_y), z_lo, np.full(t_count, -inf)))
    col_upper = np.concatenate((np.ones(n_y), z_hi, np.full(t_count, inf)))
    if problem.tariff_eur_per_kwh is not None:
        cost[n_y : n_y + n_z] = problem.tariff_eur_per_kwh[z_owner, z_step]  # the points' tariffs on z
    if layout is not None:
        row_lower[cap0:] = -inf
        row_upper[cap0:] = cap_upper
        cost[n_cols - layout.n_slack :] = cap_cost
        col_lower = np.concatenate((col_lower, np.zeros(layout.n_slack)))
        col_upper = np.concatenate((col_upper, np.where(np.isfinite(cap_width), cap_width, inf)))

    lp = _highs_lp(cost, col_lower, col_upper, row_lower, row_upper, start, r, v, n_int=n_y)
    return MilpModel(
        lp=lp,
        y_offsets=_ro(y_offsets, np.int64),
        z_offsets=_ro(z_offsets, np.int64),
        z_col0=n_y,
        e_offset=e0,
        n_rows=n_rows,
        capacity=layout,
    )


def _sides(rows: JointRows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The finite sides of the rows: (row index i, bound b, row lower, row upper) per side, such
    that the side reads a[i] @ x - b * y in [row lower, row upper] (one side for an equality)."""
    inf = highspy.kHighsInf
    lo, hi = rows.lo, rows.hi
    eq = np.isfinite(lo) & (lo == hi)
    low = np.isfinite(lo) & ~eq
    up = np.isfinite(hi) & ~eq
    i = np.concatenate((np.flatnonzero(eq), np.flatnonzero(low), np.flatnonzero(up)))
    b = np.concatenate((lo[eq], lo[low], hi[up]))
    n_eq, n_low, n_up = int(eq.sum()), int(low.sum()), int(up.sum())
    row_lower = np.concatenate((np.zeros(n_eq + n_low), np.full(n_up, -inf)))
    row_upper = np.concatenate((np.zeros(n_eq), np.full(n_low, inf), np.zeros(n_up)))
    return i, b, row_lower, row_upper


def _per_shift_rows(
    rows: JointRows, n: int, s_count: int, *, z0: int, y0: int, row0: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) entries and (lower, upper) bounds of the rows lo * y[s] <= a @ z[s,:]
    <= hi * y[s] for every shift s, with z[s,k] in column z0 + s*n + k and y[s] in column y0 + s;
    rows from row0 on, shift by shift."""
    i, b, row_lower, row_upper = _sides(rows)
    m = len(i)
    a = rows.a[i]
    side, k = np.nonzero(a)
    s = np.repeat(np.arange(s_count, dtype=np.int64), len(side))
    r_z = row0 + s * m + np.tile(side, s_count)
    c_z = z0 + s * n + np.tile(k, s_count)
    v_z = np.tile(a[side, k], s_count)
    b_sides = np.flatnonzero(b != 0.0)
    s = np.repeat(np.arange(s_count, dtype=np.int64), len(b_sides))
    r_y = row0 + s * m + np.tile(b_sides, s_count)
    v_y = -np.tile(b[b_sides], s_count)
    return (
        np.concatenate((r_z, r_y)).astype(np.int64),
        np.concatenate((c_z, y0 + s)).astype(np.int64),
        np.concatenate((v_z, v_y)),
        np.tile(row_lower, s_count),
        np.tile(row_upper, s_count),
    )


@dataclass
class _Extra:
    """Entries, rows and columns that joint rows add to the step model."""

    rows: list[np.ndarray]
    cols: list[np.ndarray]
    vals: list[np.ndarray]
    row_lower: list[np.ndarray]
    row_upper: list[np.ndarray]
    col_lower: list[np.ndarray]
    col_upper: list[np.ndarray]
    n_rows: int = 0
    n_cols: int = 0

    def add(self, r: np.ndarray, c: np.ndarray, v: np.ndarray) -> None:
        self.rows.append(np.asarray(r, dtype=np.int64))
        self.cols.append(np.asarray(c, dtype=np.int64))
        self.vals.append(np.asarray(v, dtype=float))

    def add_rows(self, lower: np.ndarray, upper: np.ndarray) -> int:
        """Append rows with these bounds; returns the first one's index (relative)."""
        first = self.n_rows
        self.row_lower.append(np.asarray(lower, dtype=float))
        self.row_upper.append(np.asarray(upper, dtype=float))
        self.n_rows += len(lower)
        return first


def _step_joint_rows(
    problem: PlanningProblem,
    y_offsets: np.ndarray,
    span_offsets: np.ndarray,
    v_col: np.ndarray,
    *,
    row0: int,
    col0: int,
) -> tuple[_Extra, np.ndarray]:
    """The joint rows of the step model (rows from row0, columns from col0) and, per aggregate,
    the column of its z[g,0,0] (-1: none). See `build_step_model`."""
    inf = highspy.kHighsInf
    extra = _Extra([], [], [], [], [], [], [])
    z_start = np.full(problem.n_aggregates, -1, dtype=np.int64)
    for g in problem.joint_aggregates:
        rows = problem.joint[g]
        n, s_count = problem.profile_steps(g), int(problem.n_shifts[g])
        lower, upper = (np.asarray(x, dtype=float) for x in problem.bounds(g))
        span = s_count + n - 1
        vc = v_col[span_offsets[g] : span_offsets[g] + span]
        y0 = int(y_offsets[g])
        if not problem.shifted_rows(g):
            # energy = lower + v at one shift; sum(energy) = sum(lower) + sum(v) at any shift
            if s_count == 1:
                coef, const = rows.a, rows.a @ lower
            else:
                coef = np.repeat(rows.a[:, :1], span, axis=1)
                const = rows.a[:, 0] * lower.sum()
            keep = np.flatnonzero(np.isfinite(rows.lo) | np.isfinite(rows.hi))
            has = np.flatnonzero(vc >= 0)
            sub = coef[np.ix_(keep, has)]
            ri, ji = np.nonzero(sub)
            first = row0 + extra.add_rows(rows.lo[keep] - const[keep], rows.hi[keep] - const[keep])
            extra.add(first + ri, vc[has[ji]], sub[ri, ji])
            continue
        # several shifts and a row that depends on the start: z[g,s,k] = energy at step k if
        # the profile starts at shift s, else 0, tied to v; the rows hold per shift
        z0 = col0 + extra.n_cols
        z_start[g] = z0
        n_z = s_count * n
        extra.n_cols += n_z
        u = np.maximum(upper, lower)
        extra.col_lower.append(np.minimum(np.tile(lower, s_count), 0.0))
        extra.col_upper.append(np.maximum(np.tile(u, s_count), 0.0))
        s_idx = np.repeat(np.arange(s_count, dtype=np.int64), n)
        k_idx = np.tile(np.arange(n, dtype=np.int64), s_count)
        z_cols = z0 + np.arange(n_z, dtype=np.int64)
        y_of_z = y0 + s_idx
        lo_k, hi_k = lower[k_idx], u[k_idx]
        # z - lower * y >= 0 and z - upper * y <= 0
        low0 = row0 + extra.add_rows(np.zeros(n_z), np.full(n_z, inf))
        up0 = row0 + extra.add_rows(np.full(n_z, -inf), np.zeros(n_z))
        nz_lo, nz_hi = lo_k != 0.0, hi_k != 0.0
        extra.add(low0 + np.arange(n_z), z_cols, np.ones(n_z))
        extra.add(up0 + np.arange(n_z), z_cols, np.ones(n_z))
        extra.add(low0 + np.flatnonzero(nz_lo), y_of_z[nz_lo], -lo_k[nz_lo])
        extra.add(up0 + np.flatnonzero(nz_hi), y_of_z[nz_hi], -hi_k[nz_hi])
        # per span step j: sum_{s+k=j} z[s,k] - sum_s lower[j-s] * y[s] - v[j] = 0
        link0 = row0 + extra.add_rows(np.zeros(span), np.zeros(span))
        j = s_idx + k_idx
        extra.add(link0 + j, z_cols, np.ones(n_z))
        extra.add(link0 + j[nz_lo], y_of_z[nz_lo], -lo_k[nz_lo])
        has = np.flatnonzero(vc >= 0)
        extra.add(link0 + has, vc[has], -np.ones(len(has)))
        jr, jc, jv, jl, ju = _per_shift_rows(rows, n, s_count, z0=z0, y0=y0, row0=row0 + extra.n_rows)
        extra.add_rows(jl, ju)
        extra.add(jr, jc, jv)
    return extra, z_start


@dataclass(frozen=True, eq=False)
class StepMilpModel:
    """The compact MILP `solve_highs` solves, as a highspy HighsLp. Columns: y (per aggregate and
    shift, as in MilpModel), then v (flexible energy per aggregate and step of its span, only
    where some shift has a non-empty range there), then, with energy rows, e (per horizon step,
    from column `e_offset`; None without them).

    Aggregate g's span is horizon steps first_start_step[g] + j, j = 0 .. n_shifts[g] +
    n_steps[g] - 2; `v_col[span_offsets[g] + j]` is the column of v[g, j] (-1: none). An
    aggregate whose joint rows must be written per shift has columns z[g,s,k] after all others,
    `z_col[g] + s * n_steps[g] + k` (`z_col[g]` = -1: none; None: no aggregate has them).
    """

    lp: Any
    y_offsets: np.ndarray
    span_offsets: np.ndarray
    v_col: np.ndarray
    e_offset: int | None
    n_rows: int
    z_col: np.ndarray | None = None
    capacity: CapacityLayout | None = None

    @property
    def n_cols(self) -> int:
        """Number of variables."""
        return int(self.lp.num_col_)


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, index within owner) of 0..counts[i]-1 for every i, concatenated."""
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    return owner, np.arange(int(counts.sum()), dtype=np.int64) - starts[owner]


def build_step_model(problem: PlanningProblem, *, energy_rows: bool = True) -> StepMilpModel:
    """The compact MILP of the problem, with the same LP relaxation as `build_model`'s.

    Aggregate g has binaries y[g,s] (one start, sum_s y = 1) and, per step j of its span, its
    energy there is sum_s lower[j-s] * y[g,s] + v[g,j] with 0 <= v[g,j] <= sum_s (upper[j-s] -
    lower[j-s]) * y[g,s] (one row per v; the sums run over the shifts whose profile covers j).
    With y binary this is exactly "the profile starts at shift s and each step's energy lies in
    its bounds"; projected on (y, energy) it is the same convex hull as the y/z formulation of
    `build_model`, with O(shifts + steps) columns per aggregate instead of O(shifts x steps).
    Aggregates with one allowed start need no row at all: y is fixed to 1 and v is bounded by
    the step's range. With `energy_rows`, columns e_t and rows e_t = sum of the energies at t
    carry the objective (for objectives that add rows on e); without, the objective's cost per
    step is put on y and v directly (cost of y[g,s] = sum_k cost_t * lower[k] at t = its step),
    which leaves no row shared between aggregates: the model of a linear objective falls apart
    into one small block per aggregate. Built with numpy over all (aggregate, shift, step)
    triples at once.

    Joint rows lo <= a @ x <= hi of aggregate g (x: its energy at its profile steps) come after
    all other rows. With one allowed start they go onto v: lo - a @ lower <= a @ v <= hi - a @
    lower. A row c * sum(x) (all coefficients equal) holds at any start, as c * sum_j v[g,j] in
    [lo, hi] - c * sum(lower). Any other row of an aggregate with several starts is written per
    shift on columns z[g,s,k] (after all others, `StepMilpModel.z_col`) as in `build_model`, with
    one row per span step tying them to the energy (sum_{s+k=j} z[g,s,k] = sum_s lower[j-s] *
    y[g,s] + v[g,j]). With y binary every solution's energy meets the rows; the LP relaxation
    of the v rows is weaker than build_model's per-shift rows.
    """
    inf = highspy.kHighsInf
    g_count, t_count = problem.n_aggregates, problem.n_steps
    n_g = np.diff(problem.profile_offsets).astype(np.int64)
    shifts = problem.n_shifts.astype(np.int64)
    first = problem.first_start_step.astype(np.int64)
    y_offsets = np.concatenate(([0], np.cumsum(shifts))).astype(np.int64)
    n_y = int(y_offsets[-1])
    span = shifts + n_g - 1
    span_offsets = np.concatenate(([0], np.cumsum(span))).astype(np.int64)
    lower = np.asarray(problem.lower_kwh, dtype=float)
    width = np.maximum(np.asarray(problem.upper_kwh, dtype=float) - lower, 0.0)

    # every (aggregate, shift, step) triple
    g_of, within = _ragged(shifts * n_g)
    s_of = within // n_g[g_of]
    k_of = within - s_of * n_g[g_of]
    pos = span_offsets[g_of] + s_of + k_of  # position of the triple's step in the spans
    step = problem.profile_offsets[g_of] + k_of
    lo, wd = lower[step], width[step]
    y_col = y_offsets[g_of] + s_of
    # v columns where some covering shift has a range; bound = the largest such range
    v_hi = np.zeros(int(span_offsets[-1]))
    np.maximum.at(v_hi, pos, wd)
    has_v = v_hi > 0.0
    n_v = int(has_v.sum())
    v_col = np.full(len(v_hi), -1, dtype=np.int64)
    v_col[has_v] = n_y + np.arange(n_v)
    e0 = n_y + n_v
    t_used = t_count if energy_rows else 0
    n_cols = e0 + t_used
    # rows: one per aggregate, one per v of an aggregate with several shifts, one per step
    fixed = shifts[np.repeat(np.arange(g_count), span)] == 1  # per span position
    v_row_needed = has_v & ~fixed
    v_row = np.full(len(v_hi), -1, dtype=np.int64)
    n_vrows = int(v_row_needed.sum())
    v_row[v_row_needed] = g_count + np.arange(n_vrows)
    energy0 = g_count + n_vrows
    n_rows = energy0 + t_used
    span_g, span_j = _ragged(span)
    t_of_pos = first[span_g] + span_j
    extra, z_col = _step_joint_rows(problem, y_offsets, span_offsets, v_col, row0=n_rows, col0=n_cols)
    n_rows += extra.n_rows
    n_cols += extra.n_cols

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    # sum_s y[g,s] = 1
    yg, _ = _ragged(shifts)
    rows.append(yg)
    cols.append(np.arange(n_y, dtype=np.int64))
    vals.append(np.ones(n_y))
    # v[g,j] - sum_s width * y[g,s] <= 0
    in_row = v_row[pos] >= 0
    sel = in_row & (wd > 0.0)
    rows += [v_row[v_row_needed], v_row[pos[sel]]]
    cols += [v_col[v_row_needed], y_col[sel]]
    vals += [np.ones(n_vrows), -wd[sel]]
    step_cost = np.asarray(get_objective(problem.objective).step_cost(problem), dtype=float)
    tariff = problem.tariff_eur_per_kwh
    cost = np.zeros(n_cols)
    if energy_rows:
        # e_t - sum lower * y - sum v = 0
        sel = lo != 0.0
        rows += [energy0 + t_of_pos[pos[sel]], energy0 + t_of_pos[has_v], energy0 + np.arange(t_count)]
        cols += [y_col[sel], v_col[has_v], e0 + np.arange(t_count)]
        vals += [-lo[sel], -np.ones(n_v), np.ones(t_count)]
        cost[e0 : e0 + t_count] = step_cost
        if tariff is not None:  # the points' tariffs are the aggregates' own: on y and v
            cost[:n_y] = np.bincount(y_col, weights=tariff[g_of, t_of_pos[pos]] * lo, minlength=n_y)
            cost[n_y:e0] = tariff[span_g[has_v], t_of_pos[has_v]]
    elif tariff is None:
        cost[:n_y] = np.bincount(y_col, weights=step_cost[t_of_pos[pos]] * lo, minlength=n_y)
        cost[n_y:e0] = step_cost[t_of_pos[has_v]]
    else:
        t_y = t_of_pos[pos]
        cost[:n_y] = np.bincount(y_col, weights=(step_cost[t_y] + tariff[g_of, t_y]) * lo, minlength=n_y)
        cost[n_y:e0] = step_cost[t_of_pos[has_v]] + tariff[span_g[has_v], t_of_pos[has_v]]

    rows += extra.rows
    cols += extra.cols
    vals += extra.vals
    layout = None
    if problem.capacity:
        # the energy of g at t: lower * y[g,s] over the covering shifts, plus v[g,j]
        layout, cr, cc, cv, cap_upper, cap_width, cap_cost = _capacity_entries(
            problem,
            np.concatenate((g_of, span_g[has_v])),
            np.concatenate((t_of_pos[pos], t_of_pos[has_v])),
            np.concatenate((y_col, v_col[has_v])),
            np.concatenate((lo, np.ones(n_v))),
            row0=n_rows,
            col0=n_cols,
        )
        rows.append(cr)
        cols.append(cc)
        vals.append(cv)
        n_rows += layout.n_rows
        n_cols += layout.n_slack
        cost = np.concatenate((cost, cap_cost))
    r = np.concatenate(rows).astype(np.int64)
    c = np.concatenate(cols).astype(np.int64)
    v = np.concatenate(vals).astype(float)
    order = np.argsort(c * n_rows + r)
    r, c, v = r[order], c[order], v[order]
    start = np.concatenate(([0], np.cumsum(np.bincount(c, minlength=n_cols)))).astype(np.int32)

    row_lower = np.concatenate((np.ones(g_count), np.full(n_vrows, -inf), np.zeros(t_used), *extra.row_lower))
    row_upper = np.concatenate((np.ones(g_count), np.zeros(n_vrows), np.zeros(t_used), *extra.row_upper))
    y_fixed = np.repeat(shifts == 1, shifts)
    col_lower = np.concatenate((y_fixed.astype(float), np.zeros(n_v), np.full(t_used, -inf), *extra.col_lower))
    col_upper = np.concatenate((np.ones(n_y), v_hi[has_v], np.full(t_used, inf), *extra.col_upper))
    if layout is not None:
        row_lower = np.concatenate((row_lower, np.full(layout.n_rows, -inf)))
        row_upper = np.concatenate((row_upper, cap_upper))
        col_lower = np.concatenate((col_lower, np.zeros(layout.n_slack)))
        col_upper = np.concatenate((col_upper, np.where(np.isfinite(cap_width), cap_width, inf)))

    lp = _highs_lp(cost, col_lower, col_upper, row_lower, row_upper, start, r, v, n_int=n_y)
    return StepMilpModel(
        lp=lp,
        y_offsets=_ro(y_offsets, np.int64),
        span_offsets=_ro(span_offsets, np.int64),
        v_col=_ro(v_col, np.int64),
        e_offset=e0 if energy_rows else None,
        n_rows=n_rows,
        z_col=_ro(z_col, np.int64) if problem.joint else None,
        capacity=layout,
    )

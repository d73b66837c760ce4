"""Planning of aggregates: a frozen problem, a HiGHS MILP built as sparse matrices, schedules.

The stages stay apart (house style):

1. `build_problem(aggregates, prices, now=, horizon_steps=)` -> `PlanningProblem`: plain numpy
   data (horizon, prices, per aggregate its earliest start step, number of allowed shifts and
   per-step bounds); aggregates that do not fit the horizon are left out with a reason;
2. `build_step_model(problem)` -> `StepMilpModel` (what `solve_highs` solves) or
   `build_model(problem)` -> `MilpModel` (the y/z model other objectives extend): the
   column-wise sparse matrix for highspy, built with numpy, no modelling layer;
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
to optimality (a busy machine). The objective is linear in the energy per step and chosen by name from a registry
(`least_cost` now: minimise sum price_t * e_t).

Determinism: one thread and a fixed random seed; same input, same output.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import highspy
import numpy as np

from atp.flexoffer import Schedule
from atp.fman.aggregation import Aggregate, ceil_to_grid
from atp.fman.errors import PriceError, UnknownObjectiveError

__all__ = [
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
    "empty_plan",
    "extract_schedules",
    "get_objective",
    "objective_names",
    "register_objective",
    "schedule_cost_eur",
    "solve_highs",
]


# -- prices ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PriceSeries:
    """Energy prices: `values_eur_per_kwh[i]` holds over [start + i*slice_s, start + (i+1)*slice_s)."""

    start: datetime
    slice_s: int
    values_eur_per_kwh: np.ndarray

    def __post_init__(self) -> None:
        values = np.array(self.values_eur_per_kwh, dtype=float).reshape(-1)
        if not np.all(np.isfinite(values)):
            raise PriceError("prices must be finite numbers (EUR/kWh); found NaN or infinity")
        if self.slice_s <= 0:
            raise PriceError(f"slice_s(={self.slice_s}) of the prices must be positive (e.g. 900 or 3600)")
        if self.start.tzinfo is None:
            raise PriceError("the prices' start must be timezone-aware (e.g. UTC)")
        values.flags.writeable = False
        object.__setattr__(self, "values_eur_per_kwh", values)

    @property
    def n_steps(self) -> int:
        """Number of price steps."""
        return len(self.values_eur_per_kwh)

    @property
    def end(self) -> datetime:
        """End of the last price step."""
        return self.start + timedelta(seconds=self.slice_s * self.n_steps)

    @classmethod
    def from_pandas(cls, series: Any, *, slice_s: int | None = None) -> PriceSeries:
        """From a pandas Series of EUR/kWh on a regular, timezone-aware DatetimeIndex."""
        index = series.index
        if len(index) == 0:
            raise PriceError("the price series is empty")
        times = [t.to_pydatetime() for t in index]
        if times[0].tzinfo is None:
            raise PriceError("the price series' index must be timezone-aware (e.g. tz='UTC')")
        if slice_s is None:
            if len(times) < 2:
                raise PriceError("a price series of one value needs slice_s (e.g. slice_s=3600)")
            slice_s = round((times[1] - times[0]).total_seconds())
        steps = np.diff([t.timestamp() for t in times])
        if np.any(steps != slice_s):
            raise PriceError(f"the price series' index must be regular with a step of {slice_s} s")
        return cls(times[0], int(slice_s), np.asarray(series.to_numpy(), dtype=float))

    def on_grid(self, slice_s: int) -> PriceSeries:
        """The prices on a `slice_s` grid: repeated onto a finer grid, averaged onto a coarser
        one (the mean price of a step, for energy spread evenly over it)."""
        if slice_s == self.slice_s:
            return self
        if self.slice_s % slice_s == 0:
            return PriceSeries(self.start, slice_s, np.repeat(self.values_eur_per_kwh, self.slice_s // slice_s))
        if slice_s % self.slice_s == 0:
            if self.start.timestamp() % slice_s:
                raise PriceError(
                    f"prices starting at {self.start.isoformat()} cannot be averaged onto the {slice_s} s grid"
                )
            r = slice_s // self.slice_s
            n = self.n_steps // r
            return PriceSeries(self.start, slice_s, self.values_eur_per_kwh[: n * r].reshape(n, r).mean(axis=1))
        raise PriceError(
            f"prices on a {self.slice_s} s grid cannot be put on a {slice_s} s grid (neither divides the other)"
        )

    def cost_eur(self, start: datetime, energy_kwh: Sequence[float] | np.ndarray) -> float | None:
        """Cost of `energy_kwh` per step from `start` on this grid, or None where a step has no price."""
        offset_s = (start - self.start).total_seconds()
        if offset_s % self.slice_s:
            return None
        i0 = int(offset_s // self.slice_s)
        energy = np.asarray(energy_kwh, dtype=float)
        if i0 < 0 or i0 + len(energy) > self.n_steps:
            return None
        return float(self.values_eur_per_kwh[i0 : i0 + len(energy)] @ energy)


def as_price_series(prices: Any, *, start: datetime | None = None, slice_s: int | None = None) -> PriceSeries:
    """A PriceSeries from a PriceSeries, a pandas Series (DatetimeIndex), or an array with `start`
    and `slice_s`."""
    if isinstance(prices, PriceSeries):
        return prices
    if hasattr(prices, "index") and hasattr(prices, "to_numpy"):
        return PriceSeries.from_pandas(prices, slice_s=slice_s)
    if start is None or slice_s is None:
        raise PriceError("prices given as an array need start= and slice_s= (e.g. slice_s=900)")
    return PriceSeries(start, slice_s, np.asarray(prices, dtype=float))


def schedule_cost_eur(prices: PriceSeries, start: datetime, energy_kwh: Sequence[float], slice_s: int) -> float | None:
    """Cost in EUR of a schedule on a `slice_s` grid, or None where prices do not cover it."""
    try:
        on_grid = prices.on_grid(slice_s)
    except PriceError:
        return None
    return on_grid.cost_eur(start, energy_kwh)


# -- the problem -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PlanningProblem:
    """Plain data of one planning problem on one `slice_s` grid (numpy arrays, read-only).

    Aggregate g has `n_shifts[g]` allowed starts, the first at horizon step
    `first_start_step[g]`; its per-step bounds are `lower_kwh[o:p]`, `upper_kwh[o:p]` with
    `o, p = profile_offsets[g], profile_offsets[g + 1]`. `left_out` lists (aggregate id, reason)
    of aggregates that do not fit (they run their defaults).
    """

    horizon_start: datetime
    slice_s: int
    n_steps: int
    prices_eur_per_kwh: np.ndarray
    objective: str
    aggregate_ids: tuple[str, ...]
    first_start_step: np.ndarray
    n_shifts: np.ndarray
    profile_offsets: np.ndarray
    lower_kwh: np.ndarray
    upper_kwh: np.ndarray
    left_out: tuple[tuple[str, str], ...] = ()
    note: str | None = None

    @property
    def n_aggregates(self) -> int:
        """Number of aggregates in the problem (those left out excluded)."""
        return len(self.aggregate_ids)

    @property
    def horizon_end(self) -> datetime:
        """End of the last horizon step."""
        return self.horizon_start + timedelta(seconds=self.slice_s * self.n_steps)

    def profile_steps(self, g: int) -> int:
        """Number of steps of aggregate g's profile."""
        return int(self.profile_offsets[g + 1] - self.profile_offsets[g])

    def bounds(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-step (lower, upper) kWh of aggregate g."""
        o, p = self.profile_offsets[g], self.profile_offsets[g + 1]
        return self.lower_kwh[o:p], self.upper_kwh[o:p]

    def time_of(self, step: int) -> datetime:
        """Start time of horizon step `step`."""
        return self.horizon_start + timedelta(seconds=self.slice_s * int(step))


def _ro(a: Any, dtype: Any = float) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.flags.writeable = False
    return a


def build_problem(
    aggregates: Sequence[Aggregate],
    prices: Any,
    *,
    now: datetime,
    horizon_steps: int,
    objective: str = "least_cost",
    slice_s: int | None = None,
    prices_start: datetime | None = None,
    prices_slice_s: int | None = None,
) -> PlanningProblem:
    """The planning problem of `aggregates` over `horizon_steps` steps from the first grid time
    at or after `now` (and at or after the first price).

    `prices`: a PriceSeries, a pandas Series on a DatetimeIndex, or an array with `prices_start`
    and `prices_slice_s`; they are put on the problem's grid (`slice_s`, default: the first
    aggregate's) and the horizon ends where they end. Aggregates on another grid, or whose
    allowed starts all leave the horizon, are left out with the reason. Raises
    UnknownObjectiveError for an objective name that is not registered.
    """
    get_objective(objective)
    series = as_price_series(prices, start=prices_start, slice_s=prices_slice_s)
    grid_s = slice_s or (aggregates[0].slice_s if aggregates else series.slice_s)
    note = None
    try:
        on_grid = series.on_grid(grid_s)
    except PriceError as e:
        on_grid, note = None, str(e)
    if on_grid is not None:
        horizon_start = ceil_to_grid(max(now, on_grid.start), grid_s)
        first_price = round((horizon_start - on_grid.start).total_seconds() / grid_s)
        n_steps = max(0, min(int(horizon_steps), on_grid.n_steps - first_price))
        step_prices = on_grid.values_eur_per_kwh[first_price : first_price + n_steps]
    else:
        horizon_start, n_steps, step_prices = ceil_to_grid(now, grid_s), 0, np.zeros(0)
    ids: list[str] = []
    first: list[int] = []
    shifts: list[int] = []
    offsets = [0]
    lowers: list[np.ndarray] = []
    uppers: list[np.ndarray] = []
    left_out: list[tuple[str, str]] = []
    horizon_end = horizon_start + timedelta(seconds=grid_s * n_steps)
    for a in aggregates:
        if a.slice_s != grid_s:
            left_out.append((a.id, f"its {a.slice_s} s steps are not the problem's {grid_s} s grid"))
            continue
        if note is not None:
            left_out.append((a.id, note))
            continue
        e = round((a.earliest - horizon_start).total_seconds() / grid_s)
        lo_shift = max(0, -e)
        hi_shift = min(a.flexibility_steps, n_steps - a.n_steps - e)
        if hi_shift < lo_shift:
            latest = a.earliest + timedelta(seconds=grid_s * a.flexibility_steps)
            left_out.append(
                (
                    a.id,
                    f"its {a.n_steps} steps starting between {a.earliest.isoformat()} and {latest.isoformat()} "
                    f"do not fit the horizon [{horizon_start.isoformat()}, {horizon_end.isoformat()})",
                )
            )
            continue
        ids.append(a.id)
        first.append(e + lo_shift)
        shifts.append(hi_shift - lo_shift + 1)
        offsets.append(offsets[-1] + a.n_steps)
        lowers.append(a.lower_kwh)
        uppers.append(a.upper_kwh)
    return PlanningProblem(
        horizon_start=horizon_start,
        slice_s=grid_s,
        n_steps=n_steps,
        prices_eur_per_kwh=_ro(step_prices),
        objective=objective,
        aggregate_ids=tuple(ids),
        first_start_step=_ro(first, np.int64),
        n_shifts=_ro(shifts, np.int64),
        profile_offsets=_ro(offsets, np.int64),
        lower_kwh=_ro(np.concatenate(lowers) if lowers else np.zeros(0)),
        upper_kwh=_ro(np.concatenate(uppers) if uppers else np.zeros(0)),
        left_out=tuple(left_out),
        note=note,
    )


# -- objectives ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    """A planning objective, linear in the energy per horizon step: `step_cost(problem)` gives
    the cost in EUR per kWh of each horizon step; the planner minimises sum cost_t * e_t."""

    name: str
    version: str
    description: str
    step_cost: Callable[[PlanningProblem], np.ndarray]


_OBJECTIVES: dict[str, Objective] = {}


def register_objective(objective: Objective) -> Objective:
    """Register (or replace) an objective under its name; returns it."""
    _OBJECTIVES[objective.name] = objective
    return objective


def get_objective(name: str) -> Objective:
    """The registered objective called `name`; UnknownObjectiveError lists the known ones."""
    try:
        return _OBJECTIVES[name]
    except KeyError:
        raise UnknownObjectiveError(
            f"no planning objective {name!r}; registered: {', '.join(sorted(_OBJECTIVES))}"
        ) from None


def objective_names() -> tuple[str, ...]:
    """Names of the registered objectives."""
    return tuple(sorted(_OBJECTIVES))


register_objective(
    Objective(
        name="least_cost",
        version="1.0",
        description="minimise the energy cost sum(price_t * energy_t) at the given prices",
        step_cost=lambda problem: problem.prices_eur_per_kwh,
    )
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
    """The column-wise sparse MILP of the problem, ready for `Highs.passModel`."""
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
    row_lower[energy0:] = 0.0
    row_upper[energy0:] = 0.0

    cost = np.zeros(n_cols)
    cost[e0:] = get_objective(problem.objective).step_cost(problem)
    col_lower = np.concatenate((np.zeros(n_y), z_lo, np.full(t_count, -inf)))
    col_upper = np.concatenate((np.ones(n_y), z_hi, np.full(t_count, inf)))

    lp = _highs_lp(cost, col_lower, col_upper, row_lower, row_upper, start, r, v, n_int=n_y)
    return MilpModel(
        lp=lp,
        y_offsets=_ro(y_offsets, np.int64),
        z_offsets=_ro(z_offsets, np.int64),
        z_col0=n_y,
        e_offset=e0,
        n_rows=n_rows,
    )


@dataclass(frozen=True, eq=False)
class StepMilpModel:
    """The compact MILP `solve_highs` solves, as a highspy HighsLp. Columns: y (per aggregate and
    shift, as in MilpModel), then v (flexible energy per aggregate and step of its span, only
    where some shift has a non-empty range there), then, with energy rows, e (per horizon step,
    from column `e_offset`; None without them).

    Aggregate g's span is horizon steps first_start_step[g] + j, j = 0 .. n_shifts[g] +
    n_steps[g] - 2; `v_col[span_offsets[g] + j]` is the column of v[g, j] (-1: none).
    """

    lp: Any
    y_offsets: np.ndarray
    span_offsets: np.ndarray
    v_col: np.ndarray
    e_offset: int | None
    n_rows: int

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
    cost = np.zeros(n_cols)
    if energy_rows:
        # e_t - sum lower * y - sum v = 0
        sel = lo != 0.0
        rows += [energy0 + t_of_pos[pos[sel]], energy0 + t_of_pos[has_v], energy0 + np.arange(t_count)]
        cols += [y_col[sel], v_col[has_v], e0 + np.arange(t_count)]
        vals += [-lo[sel], -np.ones(n_v), np.ones(t_count)]
        cost[e0:] = step_cost
    else:
        cost[:n_y] = np.bincount(y_col, weights=step_cost[t_of_pos[pos]] * lo, minlength=n_y)
        cost[n_y:e0] = step_cost[t_of_pos[has_v]]

    r = np.concatenate(rows).astype(np.int64)
    c = np.concatenate(cols).astype(np.int64)
    v = np.concatenate(vals).astype(float)
    order = np.argsort(c * n_rows + r)
    r, c, v = r[order], c[order], v[order]
    start = np.concatenate(([0], np.cumsum(np.bincount(c, minlength=n_cols)))).astype(np.int32)

    row_lower = np.concatenate((np.ones(g_count), np.full(n_vrows, -inf), np.zeros(t_used)))
    row_upper = np.concatenate((np.ones(g_count), np.zeros(n_vrows), np.zeros(t_used)))
    y_fixed = np.repeat(shifts == 1, shifts)
    col_lower = np.concatenate((y_fixed.astype(float), np.zeros(n_v), np.full(t_used, -inf)))
    col_upper = np.concatenate((np.ones(n_y), v_hi[has_v], np.full(t_used, inf)))

    lp = _highs_lp(cost, col_lower, col_upper, row_lower, row_upper, start, r, v, n_int=n_y)
    return StepMilpModel(
        lp=lp,
        y_offsets=_ro(y_offsets, np.int64),
        span_offsets=_ro(span_offsets, np.int64),
        v_col=_ro(v_col, np.int64),
        e_offset=e0 if energy_rows else None,
        n_rows=n_rows,
    )


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


# -- solve -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PlanSolution:
    """The outcome of one solve.

    `start_step[g]` is the horizon step at which aggregate g starts (-1 without a solution);
    `energy_kwh` holds its energy per step in the layout of `problem.lower_kwh`;
    `step_energy_kwh` the summed energy per horizon step. `fallback_reason` is None when the
    schedules are usable, else why every aggregate runs its default.
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

    @property
    def ok(self) -> bool:
        """True when the solution's schedules can be used."""
        return self.fallback_reason is None


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


def _separable_start(problem: PlanningProblem, model: StepMilpModel) -> np.ndarray:
    """A start for HiGHS (all columns of a step model without energy rows): each aggregate at the
    shift of least cost under the objective's step cost, each step at its lower or upper bound,
    whichever is cheaper. The aggregates do not interact under a linear step cost, so this
    is an optimal plan; HiGHS still proves it (its bound) and keeps it under a time limit."""
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
    return col


def solve_highs(
    problem: PlanningProblem,
    *,
    time_limit_s: float = 30.0,
    mip_rel_gap: float = 1e-6,
    random_seed: int = 0,
    warm_start: bool = True,
) -> PlanSolution:
    """Solve the problem's MILP (the step model) with HiGHS (one thread, fixed seed). With
    `warm_start`, HiGHS starts from the plan of `_separable_start`, so that a time limit still
    leaves that plan. Never raises for a failed solve: it falls back to default schedules with
    the reason."""
    obj = get_objective(problem.objective)
    if problem.n_aggregates == 0:
        return empty_plan(problem)
    t0 = time.perf_counter()
    model = build_step_model(problem, energy_rows=False)
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
        start.col_value = _separable_start(problem, model)
        start.value_valid = True
        h.setSolution(start)
    build_s = time.perf_counter() - t0
    if pass_status == highspy.HighsStatus.kError:
        return _fallback(problem, "Not solved", "HiGHS refused the model (passModel failed)", build_s)
    t1 = time.perf_counter()
    run_status = h.run()
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
    objective_eur = float(obj.step_cost(problem) @ step_energy)
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
    )


# -- extract ---------------------------------------------------------------------------------
def extract_schedules(
    problem: PlanningProblem, solution: PlanSolution, aggregates: Sequence[Aggregate], *, now: datetime
) -> list[tuple[Aggregate, Schedule]]:
    """Each planned aggregate with its schedule (assigned_at = now), in problem order;
    aggregates left out of the problem are not listed (they run their defaults).

    After a fallback (`solution.ok` is False), every aggregate of `aggregates` that has a
    default schedule comes with that default instead.
    """
    if not solution.ok:
        out = []
        for a in aggregates:
            d = a.offer.default_schedule
            if d is not None:
                out.append((a, Schedule(a.id, d.start, d.profile, tuple(d.energy), assigned_at=now)))
        return out
    by_id = {a.id: a for a in aggregates}
    out = []
    for g, agg_id in enumerate(problem.aggregate_ids):
        a = by_id[agg_id]
        o, p = int(problem.profile_offsets[g]), int(problem.profile_offsets[g + 1])
        energy = tuple(float(x) for x in solution.energy_kwh[o:p])
        out.append((a, Schedule(agg_id, problem.time_of(int(solution.start_step[g])), 0, energy, assigned_at=now)))
    return out

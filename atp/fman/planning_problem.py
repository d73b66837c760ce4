"""The planning problem: prices on the planning grid, the frozen problem data and the registry
of linear objectives (`atp.fman.planning` explains the models built on it and re-exports all
of this).

`build_problem` carries each aggregate's `JointRows` (rows `lo <= a @ x <= hi` over its profile
vector x, besides its per-step bounds) into `PlanningProblem.joint`, as read-only arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from atp.errors import ValidationError
from atp.fman.aggregation import Aggregate, JointRows, ceil_to_grid
from atp.fman.errors import PriceError, UnknownObjectiveError

__all__ = [
    "Objective",
    "PlanningProblem",
    "PriceSeries",
    "as_price_series",
    "build_problem",
    "get_objective",
    "objective_names",
    "register_objective",
    "schedule_cost_eur",
    "total_energy_rows",
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

    `joint`: empty (no aggregate has joint rows), or one entry per aggregate, aligned with
    `aggregate_ids`: its `JointRows` over its profile vector (energy at its profile steps from
    its chosen start; `a` has `profile_steps(g)` columns) or None. Every plan meets them.
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
    joint: tuple[JointRows | None, ...] = ()

    def __post_init__(self) -> None:
        if not self.joint:
            object.__setattr__(self, "joint", ())
            return
        if len(self.joint) != len(self.aggregate_ids):
            raise ValidationError(
                f"joint has {len(self.joint)} entries; it needs one per aggregate ({len(self.aggregate_ids)}) or none"
            )
        joint = []
        for g, rows in enumerate(self.joint):
            checked = None if rows is None else _read_only_rows(rows, self.profile_steps(g))
            if isinstance(checked, str):
                raise ValidationError(f"joint rows of aggregate {self.aggregate_ids[g]!r}: {checked}")
            joint.append(checked)
        object.__setattr__(self, "joint", tuple(joint) if any(r is not None for r in joint) else ())

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

    def joint_rows(self, g: int) -> JointRows | None:
        """Aggregate g's joint rows (None: its per-step bounds are all its constraints)."""
        return self.joint[g] if self.joint else None

    @property
    def joint_aggregates(self) -> tuple[int, ...]:
        """Indices of the aggregates with joint rows."""
        return tuple(g for g, rows in enumerate(self.joint) if rows is not None)

    def shifted_rows(self, g: int) -> bool:
        """Whether aggregate g has several allowed starts and a joint row that is not a multiple
        of its total energy: such rows must be written per shift."""
        rows = self.joint_rows(g)
        return rows is not None and int(self.n_shifts[g]) > 1 and not bool(total_energy_rows(rows).all())


def total_energy_rows(rows: JointRows) -> np.ndarray:
    """Per row, whether all its coefficients are equal (c * sum(x)): such a row does not depend on
    where the profile starts."""
    a = rows.a
    return np.all(a == a[:, :1], axis=1) if a.shape[1] else np.ones(a.shape[0], dtype=bool)


def _read_only_rows(rows: JointRows, n_steps: int) -> JointRows | str:
    """`rows` as float read-only arrays (`a` two-dimensional), or why they do not fit a profile of
    `n_steps` steps."""
    a = np.array(rows.a, dtype=float)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    lo = np.array(rows.lo, dtype=float).reshape(-1)
    hi = np.array(rows.hi, dtype=float).reshape(-1)
    if a.ndim != 2 or a.shape[1] != n_steps:
        return f"`a` has shape {a.shape}; it needs one column per profile step ({n_steps})"
    if len(lo) != a.shape[0] or len(hi) != a.shape[0]:
        return f"{a.shape[0]} rows but {len(lo)} lower and {len(hi)} upper bounds"
    if not np.all(np.isfinite(a)) or np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        return "coefficients must be finite and bounds not NaN"
    if np.any(lo == np.inf) or np.any(hi == -np.inf):
        return "a lower bound of +inf or an upper bound of -inf"
    for x in (a, lo, hi):
        x.flags.writeable = False
    return JointRows(a, lo, hi)


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
    allowed starts all leave the horizon, or whose joint rows do not fit their profile, are
    left out with the reason; the others' joint rows go into `PlanningProblem.joint`. Raises
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
    joint: list[JointRows | None] = []
    horizon_end = horizon_start + timedelta(seconds=grid_s * n_steps)
    for a in aggregates:
        if a.slice_s != grid_s:
            left_out.append((a.id, f"its {a.slice_s} s steps are not the problem's {grid_s} s grid"))
            continue
        if note is not None:
            left_out.append((a.id, note))
            continue
        rows = None if a.joint is None else _read_only_rows(a.joint, a.n_steps)
        if isinstance(rows, str):
            left_out.append((a.id, f"its joint rows do not fit its profile: {rows}"))
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
        joint.append(rows)
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
        joint=tuple(joint) if any(rows is not None for rows in joint) else (),
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

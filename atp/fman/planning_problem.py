"""The planning problem: prices on the planning grid, the frozen problem data and the registry
of linear objectives (`atp.fman.planning` explains the models built on it and re-exports all
of this).

`build_problem` carries each aggregate's `JointRows` (rows `lo <= a @ x <= hi` over its profile
vector x, besides its per-step bounds) into `PlanningProblem.joint`, as read-only arrays.

Grid-aware planning: a DSO may publish what a portfolio may draw at its congestion points
(`GridCapacity`: per step, a weighted sum of the energy of the aggregates at some points at most
so many kWh) and a grid tariff per congestion point (a PriceSeries per point, EUR/kWh added to
the prices of the aggregates located there). `build_problem(..., capacity=, tariff=)` puts them
on the horizon as `PlanningProblem.capacity` (`CapacityRows`) and `PlanningProblem.tariff_eur_per_kwh`
(per aggregate and step). Capacity rows are soft: the planner may exceed a row by s >= 0 kWh at
`capacity_penalty_eur_per_kwh` per kWh, so a plan exists even when the capacity cannot be met
(the non-flexible load alone above the limit, or aggregates that must draw their lower bounds).
Without capacity and tariff the problem, its models and its plans are what they were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from atp.errors import ValidationError
from atp.fman.aggregation import Aggregate, JointRows, ceil_to_grid
from atp.fman.errors import PriceError, UnknownObjectiveError
from atp.interface.capacity import CapacityPoint, PublishedCapacity, capacity_limits

__all__ = [
    "DEFAULT_CAPACITY_PENALTY_EUR_PER_KWH",
    "EXCESS_TIERS",
    "CapacityRows",
    "GridCapacity",
    "Objective",
    "PlanningProblem",
    "PriceSeries",
    "as_price_series",
    "build_problem",
    "get_objective",
    "objective_names",
    "published_capacity",
    "register_objective",
    "residual_capacity",
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


# -- grid capacity ---------------------------------------------------------------------------
DEFAULT_CAPACITY_PENALTY_EUR_PER_KWH = 10.0
"""Cost of one kWh over a published capacity: far above any energy price or grid tariff, so a
plan exceeds a capacity only where no feasible plan keeps it (the rows are soft, see the module
docstring)."""


@dataclass(frozen=True, eq=False)
class GridCapacity:
    """What a DSO lets a portfolio draw at congestion points, per step from `start`.

    Over step i (`[start + i*slice_s, start + (i+1)*slice_s)`), the energy of the aggregates
    located at each congestion point p of `weights` (`offer.location.congestion_point`), times
    `weights[p]`, summed over the points, is at most `kwh[i]` (+inf: no limit in that step; a
    negative value asks the portfolio to inject). A feeder's own limit has one point of weight
    1; a transformer behind several feeders covers all of them, each weighted by how much one
    kWh there loads the transformer relative to the others (its sensitivity).

    How a plan pays for exceeding it (`CapacityRows`): `penalty_weight[i]` (default 1) scales
    the penalty in step i (a DSO marks with a weight above 1 the steps where an excess would
    make an overload the grid would not have without flexibility); `tier_kwh` (default: none)
    makes the penalty rise with the excess in a step (`EXCESS_TIERS`), so an excess that cannot
    be avoided is spread over steps rather than stacked where energy is cheapest.
    """

    name: str
    start: datetime
    slice_s: int
    kwh: np.ndarray
    weights: Mapping[str, float]
    penalty_weight: np.ndarray | None = None
    tier_kwh: float | None = None

    def __post_init__(self) -> None:
        kwh = np.array(self.kwh, dtype=float).reshape(-1)
        if self.slice_s <= 0:
            raise ValidationError(f"capacity {self.name!r}: slice_s(={self.slice_s}) must be positive")
        if self.start.tzinfo is None:
            raise ValidationError(f"capacity {self.name!r}: start must be timezone-aware (e.g. UTC)")
        if np.any(np.isnan(kwh)) or np.any(kwh == -np.inf):
            raise ValidationError(f"capacity {self.name!r}: kwh must be numbers or +inf, not NaN or -inf")
        weights = {str(p): float(w) for p, w in dict(self.weights).items()}
        if not weights:
            raise ValidationError(f"capacity {self.name!r}: weights must name at least one congestion point")
        bad = [p for p, w in weights.items() if not (np.isfinite(w) and w >= 0.0)]
        if bad:
            raise ValidationError(f"capacity {self.name!r}: weights of {bad} must be finite and not negative")
        kwh.flags.writeable = False
        object.__setattr__(self, "kwh", kwh)
        object.__setattr__(self, "weights", weights)
        if self.penalty_weight is not None:
            pw = np.array(self.penalty_weight, dtype=float).reshape(-1)
            if len(pw) != len(kwh) or not np.all(np.isfinite(pw)) or np.any(pw <= 0):
                raise ValidationError(
                    f"capacity {self.name!r}: penalty_weight needs one positive number per step ({len(kwh)})"
                )
            pw.flags.writeable = False
            object.__setattr__(self, "penalty_weight", pw)
        if self.tier_kwh is not None and not (np.isfinite(self.tier_kwh) and self.tier_kwh > 0):
            raise ValidationError(f"capacity {self.name!r}: tier_kwh(={self.tier_kwh}) must be a positive number")

    def as_published(self) -> PublishedCapacity:
        """This capacity as a DSO publishes it through the exchange interface (`PUT
        /capacity/{name}`; +inf, no limit, is null on the wire); `published_capacity` reads it back."""
        return PublishedCapacity(
            name=self.name,
            start=self.start,
            slice_s=self.slice_s,
            kwh=tuple(None if v == np.inf else float(v) for v in self.kwh),
            points=tuple(CapacityPoint(p, w) for p, w in self.weights.items()),
            penalty_weight=None if self.penalty_weight is None else tuple(map(float, self.penalty_weight)),
            tier_kwh=self.tier_kwh,
        )

    def on_horizon(self, horizon_start: datetime, slice_s: int, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """The capacity per horizon step (+inf where the series does not reach) and its penalty
        weight per step (1 there)."""
        if slice_s != self.slice_s:
            raise ValidationError(
                f"capacity {self.name!r}: its {self.slice_s} s steps are not the plan's {slice_s} s grid"
            )
        out = np.full(n_steps, np.inf)
        weight = np.ones(n_steps)
        offset = round((horizon_start - self.start).total_seconds() / slice_s)
        lo, hi = max(0, offset), min(len(self.kwh), offset + n_steps)
        if lo < hi:
            out[lo - offset : hi - offset] = self.kwh[lo:hi]
            if self.penalty_weight is not None:
                weight[lo - offset : hi - offset] = self.penalty_weight[lo:hi]
        return out, weight


def published_capacity(published: PublishedCapacity) -> GridCapacity:
    """The planner's `GridCapacity` of a capacity a DSO published through the exchange interface
    (`PUT /capacity/{name}`; a step without a limit, null on the wire, is +inf)."""
    return GridCapacity(
        name=f"{published.publisher}/{published.name}" if published.publisher else published.name,
        start=published.start,
        slice_s=published.slice_s,
        kwh=np.array(capacity_limits(published)),
        weights=published.weights,
        penalty_weight=None if published.penalty_weight is None else np.array(published.penalty_weight),
        tier_kwh=published.tier_kwh,
    )


def residual_capacity(
    capacity: Sequence[GridCapacity], committed: Iterable[tuple[str | None, datetime, int, Sequence[float]]]
) -> tuple[GridCapacity, ...]:
    """The capacity left once `committed` energy is drawn: each (congestion point, start, slice_s,
    energy per step) takes its weighted energy from every capacity that covers its point, step
    by step (a step of another length takes its share of the overlap). The FMAN plans its
    open aggregates within what its assigned and defaulted offers leave."""
    left = [np.array(c.kwh, dtype=float) for c in capacity]
    for point, start, slice_s, energy in committed:
        if point is None:
            continue
        e = np.asarray(energy, dtype=float)
        for c, kwh in zip(capacity, left, strict=True):
            w = c.weights.get(point)
            if not w or not len(e):
                continue
            first_s = (start - c.start).total_seconds()
            if slice_s == c.slice_s and first_s % c.slice_s == 0:
                i0 = int(first_s // c.slice_s)
                lo, hi = max(0, i0), min(len(kwh), i0 + len(e))
                if lo < hi:
                    kwh[lo:hi] -= w * e[lo - i0 : hi - i0]
                continue
            for j, x in enumerate(e):  # another grid: spread each step over the steps it overlaps
                a = first_s + j * slice_s
                for i in range(max(0, int(a // c.slice_s)), min(len(kwh), int(-(-(a + slice_s) // c.slice_s)))):
                    overlap = min(a + slice_s, (i + 1) * c.slice_s) - max(a, i * c.slice_s)
                    if overlap > 0:
                        kwh[i] -= w * x * overlap / slice_s
    return tuple(dataclasses.replace(c, kwh=kwh) for c, kwh in zip(capacity, left, strict=True))


EXCESS_TIERS = ((1.0, 1.0), (2.0, 2.0), (np.inf, 4.0))
"""The rising penalty of an excess in one step, with a capacity's `tier_kwh` = u: (width in units
of u, slope): the first u kWh of the portfolio's own excess cost the penalty (times the step's
weight), the next 2u twice that, the rest four times, so a plan spreads an excess it cannot
avoid instead of stacking it where energy is cheapest. Before them, the excess the portfolio
cannot avoid by drawing nothing (a negative capacity: the rest of the load alone is over the
limit) costs the plain penalty: it is the same whatever the plan does, and a battery that
injects there still earns the penalty back."""


@dataclass(frozen=True, eq=False)
class CapacityRows:
    """One capacity on a problem's horizon: per step t, sum_g weight[g] * energy of aggregate g
    at t <= kwh[t] + excess_t (+inf: no row at t). The excess costs the problem's penalty per
    kWh: what drawing nothing cannot avoid (max(0, -kwh[t])) at the plain penalty, the rest
    times `penalty_weight[t]`, rising in `EXCESS_TIERS` of `tier_kwh` (flat when +inf)."""

    name: str
    weight: np.ndarray  # (n_aggregates,), 0 where the aggregate is not at a covered point
    kwh: np.ndarray  # (n_steps,)
    penalty_weight: np.ndarray | None = None  # (n_steps,), None: 1
    tier_kwh: float = np.inf

    def excess_tiers(self, t: int) -> tuple[tuple[float, float], ...]:
        """(width kWh, cost per kWh in units of the penalty) of the excess tiers at step t, in
        order; the last one is unbounded."""
        w = 1.0 if self.penalty_weight is None else float(self.penalty_weight[t])
        if not np.isfinite(self.tier_kwh):
            return ((np.inf, w),)
        unavoidable = max(0.0, -float(self.kwh[t]))
        return ((unavoidable, 1.0), *((width * self.tier_kwh, slope * w) for width, slope in EXCESS_TIERS))

    def excess_cost(self, t: int, excess_kwh: float) -> float:
        """The cost of `excess_kwh` over the capacity at step t, in units of the penalty."""
        cost, left = 0.0, max(float(excess_kwh), 0.0)
        for width, slope in self.excess_tiers(t):
            take = min(left, width)
            cost += take * slope
            left -= take
        return cost


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

    `capacity`: soft rows shared between aggregates (`CapacityRows`, weights per aggregate,
    kWh per horizon step), each kWh over them costing `capacity_penalty_eur_per_kwh`;
    `tariff_eur_per_kwh`: None, or per aggregate and horizon step a cost added to the
    objective's step cost (the grid tariff of the aggregate's congestion point).
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
    capacity: tuple[CapacityRows, ...] = ()
    capacity_penalty_eur_per_kwh: float = DEFAULT_CAPACITY_PENALTY_EUR_PER_KWH
    tariff_eur_per_kwh: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._check_grid_terms()
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

    def _check_grid_terms(self) -> None:
        """Capacity rows and tariffs as read-only arrays of the problem's shape."""
        n_g, n_t = len(self.aggregate_ids), int(self.n_steps)
        rows = []
        for c in self.capacity:
            weight = np.array(c.weight, dtype=float).reshape(-1)
            kwh = np.array(c.kwh, dtype=float).reshape(-1)
            if len(weight) != n_g or len(kwh) != n_t:
                raise ValidationError(
                    f"capacity {c.name!r}: {len(weight)} weights and {len(kwh)} steps; the problem has "
                    f"{n_g} aggregates and {n_t} steps"
                )
            if np.any(np.isnan(kwh)) or np.any(kwh == -np.inf) or not np.all(np.isfinite(weight)):
                raise ValidationError(f"capacity {c.name!r}: kwh must be numbers or +inf and weights finite")
            pw = None if c.penalty_weight is None else _ro(np.array(c.penalty_weight, dtype=float).reshape(-1))
            if pw is not None and (len(pw) != n_t or not np.all(np.isfinite(pw)) or np.any(pw <= 0)):
                raise ValidationError(f"capacity {c.name!r}: penalty_weight needs one positive number per step")
            if not (c.tier_kwh > 0):
                raise ValidationError(f"capacity {c.name!r}: tier_kwh(={c.tier_kwh}) must be positive")
            rows.append(CapacityRows(c.name, _ro(weight), _ro(kwh), pw, float(c.tier_kwh)))
        object.__setattr__(self, "capacity", tuple(rows))
        if not (np.isfinite(self.capacity_penalty_eur_per_kwh) and self.capacity_penalty_eur_per_kwh > 0):
            raise ValidationError(
                f"capacity_penalty_eur_per_kwh(={self.capacity_penalty_eur_per_kwh}) must be a positive number"
            )
        if self.tariff_eur_per_kwh is not None:
            tariff = np.array(self.tariff_eur_per_kwh, dtype=float)
            if tariff.shape != (n_g, n_t) or not np.all(np.isfinite(tariff)):
                raise ValidationError(
                    f"tariff_eur_per_kwh must be finite with shape ({n_g}, {n_t}) (aggregates, steps), "
                    f"not {tariff.shape}"
                )
            object.__setattr__(self, "tariff_eur_per_kwh", _ro(tariff))

    @property
    def coupled(self) -> np.ndarray:
        """Per aggregate, whether a capacity row holds it (then it does not plan alone)."""
        out = np.zeros(len(self.aggregate_ids), dtype=bool)
        for c in self.capacity:
            out |= c.weight != 0.0
        return out

    def aggregate_cost(self, step_cost: np.ndarray, g: int) -> np.ndarray:
        """Cost per horizon step of aggregate g's energy: `step_cost` plus its tariff."""
        return step_cost if self.tariff_eur_per_kwh is None else step_cost + self.tariff_eur_per_kwh[g]

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
    capacity: Sequence[GridCapacity] | None = None,
    tariff: Mapping[str, Any] | None = None,
    capacity_penalty_eur_per_kwh: float = DEFAULT_CAPACITY_PENALTY_EUR_PER_KWH,
) -> PlanningProblem:
    """The planning problem of `aggregates` over `horizon_steps` steps from the first grid time
    at or after `now` (and at or after the first price).

    `capacity`: the DSO's `GridCapacity` limits, soft rows over the aggregates at their points
    (on the problem's grid; +inf where a limit does not reach); `tariff`: per congestion point
    a price series (PriceSeries or pandas Series, EUR/kWh, 0 where it does not reach) added to
    the prices of the aggregates located there. Aggregates without a congestion point get
    neither. Both None (or empty): the problem is exactly what it was without them.

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
    points: list[str | None] = []
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
        points.append(_point(a))
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
        capacity=_capacity_rows(capacity or (), points, horizon_start, grid_s, n_steps),
        capacity_penalty_eur_per_kwh=capacity_penalty_eur_per_kwh,
        tariff_eur_per_kwh=_tariff_matrix(tariff or {}, points, horizon_start, grid_s, n_steps),
    )


def _point(a: Aggregate) -> str | None:
    """The congestion point an aggregate is located at (None: none)."""
    return a.offer.location.congestion_point if a.offer.location is not None else None


def _capacity_rows(
    capacity: Sequence[GridCapacity], points: list[str | None], start: datetime, slice_s: int, n_steps: int
) -> tuple[CapacityRows, ...]:
    """The capacities that hold some aggregate of the problem in some step, on its horizon."""
    rows = []
    for c in capacity:
        weight = np.array([c.weights.get(p, 0.0) if p is not None else 0.0 for p in points], dtype=float)
        kwh, penalty_weight = c.on_horizon(start, slice_s, n_steps)
        if np.any(weight != 0.0) and np.any(np.isfinite(kwh)):
            tier = np.inf if c.tier_kwh is None else float(c.tier_kwh)
            rows.append(CapacityRows(c.name, weight, kwh, None if c.penalty_weight is None else penalty_weight, tier))
    return tuple(rows)


def _tariff_matrix(
    tariff: Mapping[str, Any], points: list[str | None], start: datetime, slice_s: int, n_steps: int
) -> np.ndarray | None:
    """Per aggregate and horizon step the tariff of its congestion point (None: no aggregate has one)."""
    if not tariff or not any(p in tariff for p in points if p is not None):
        return None
    on_horizon: dict[str, np.ndarray] = {}
    for point, values in tariff.items():
        series = as_price_series(values).on_grid(slice_s)
        out = np.zeros(n_steps)
        offset = round((start - series.start).total_seconds() / slice_s)
        lo, hi = max(0, offset), min(series.n_steps, offset + n_steps)
        if lo < hi:
            out[lo - offset : hi - offset] = series.values_eur_per_kwh[lo:hi]
        on_horizon[point] = out
    zero = np.zeros(n_steps)
    return np.array([on_horizon.get(p, zero) if p is not None else zero for p in points]).reshape(len(points), n_steps)


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

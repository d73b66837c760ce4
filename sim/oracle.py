"""The oracle: the least overload energy the offered flexibility can reach, with perfect foresight.

Question: of the overload energy a run shows without flexibility, how much could flexibility
remove at best? The oracle answers it once per scenario and seed, in the `no_flex` run (its
devices are the uncontrolled twins every strategy is measured against), and every strategy's
`relief_share` is measured against it (reports/compare.py):

    relief_share = (overload without flexibility - with the strategy) / (without - oracle)

Flexibility: the twins' offers. `collect_twin_flexibility(world)` (at build, before the run)
steps a copy of every flexible device uncontrolled through the run and, at every step where its
FOA would make an offer in the reporting window (`DeviceKind.wants_offer`), asks a copy of its
generator for it: the offers the FOAs would issue if every device ran as its twin. A device's
offer whose span (earliest start to latest end) overlaps its previous one is left out (the
FOA would have replaced a not yet started one; so the oracle keeps the first). Delegated and
direct prosumers' offers alike: the oracle is the central optimiser over all of them.

The optimisation (`oracle_bound`): one LP with HiGHS over the counted steps (window and tail),
every offer at once, with perfect foresight of everything else (non-flexible load, PV, the
devices' energy outside their offers, as in the no_flex run):

- each offer's energy per step from its default's profile: per-step bounds and its joint rows
  (total energy, polytope, dependency: `atp.flexoffer.rows`); with one allowed start those are
  plain columns and rows; a rigid profile (lower = upper) with several starts is a convex
  combination of its shifted copies; a uniform slice whose only joint rows are total energy
  (an EV) may draw anywhere within its plug-in window, each step within the slice's bounds;
  anything else is the convex hull of its shifts (y/z). Start choices are relaxed (the LP of a
  MILP): the oracle is a bound, and an EV that could pause its charging is the twin's own
  flexibility;
- the grid linearised at an operating point (`sim.grid.linear`: branch loadings as linear
  functions of each load row's active power, numerical sensitivities from the AC power flow,
  one power flow per load row and step), the overload per branch and step
  `o >= rating * dt * (loading - limit) / 100`, `o >= 0` (exactly the KPI's overload energy);
- objective: the overload energy (nothing else: among plans of equal overload HiGHS returns
  one, deterministically).

Cutting planes: in radial LV grids supplying load the loadings are convex functions of the
loads (voltages fall, currents rise faster than the load), so every tangent plane lies below
them. The LP starts with the planes at the no_flex operating point; each round runs the AC power
flow at the LP's plan, adds the planes there and solves again (Kelley's method). The LP's
value is then a lower bound of the least overload the relaxed offers can reach on the
linearised-convex grid, and the AC overload of its plan is an energy that the plan does reach:
`oracle.lp_overload_energy_kwh` and `oracle.overload_energy_kwh` (the figure `relief_share`
uses: measured the way every run's overload is), their difference `linearisation_gap_kwh` says
how close the linear model is to the AC power flow at the end; `first_gap_kwh` how close the
planes at no_flex alone were. Measured on `esr_congested` (one day, seed 42): see
scenarios/esr/README.md.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import highspy
import numpy as np

from atp.flexoffer import FlexOffer, expand_conditional
from atp.flexoffer.rows import joint_rows
from atp.fman.aggregation import ceil_to_grid, floor_to_grid
from atp.fman.planning import _new_highs
from atp.foa.errors import FoaError
from sim.grid import branch_loadings, branch_ratings_kva, loading_sensitivities, overload_kw

__all__ = [
    "OracleResult",
    "TwinFlexibility",
    "TwinOffer",
    "collect_twin_flexibility",
    "energy_not_delivered_kwh",
    "oracle_bound",
    "oracle_section",
]

OVERLOAD_KW = 1e-3
"""The oracle's overload hours count steps with more than this over a limit (its plan runs
branches exactly at their limits, where solver tolerances leave microwatts)."""
NEAR_PERCENT = 5.0
"""After the first round, planes are added only for branches and steps whose loading at the plan
is within this many points of the limit (or over it)."""


@dataclass(frozen=True)
class TwinOffer:
    """One offer the FOA of `prosumer` would make for its device of type index `device`."""

    prosumer: int
    device: int
    offer: FlexOffer


@dataclass(frozen=True, eq=False)
class TwinFlexibility:
    """The twins' offers over the reporting window and the twins' energy per step, prosumer and
    device type (what the no_flex run meters)."""

    offers: tuple[TwinOffer, ...]
    twin_kwh: np.ndarray


def collect_twin_flexibility(world: Any) -> TwinFlexibility:
    """The offers every flexible device's FOA would make if it ran as its twin (module docstring).

    Call it on a freshly built world, before it runs: it steps copies of the devices."""
    prosumers = world.prosumers
    devices = [{lt: copy.deepcopy(d) for lt, d in p.devices.items()} for p in prosumers]
    generators = [{lt: copy.deepcopy(p.foa.generators[lt]) for lt in p.devices} for p in prosumers]
    types = world.device_types
    twin = np.zeros((world.n_steps, len(prosumers), len(types)))
    offers: list[TwinOffer] = []
    span_end: dict[tuple[int, int], datetime] = {}
    for k in range(world.n_steps):
        env = world.env_at(k)
        if world.periods[k] == "window":
            for i, p in enumerate(prosumers):
                for lt, device in devices[i].items():
                    ctx = p.offer_context(lt, device, env)
                    if ctx is None:
                        continue
                    try:
                        offer = generators[i][lt].generate(p.kinds[lt].state(device, env), ctx)
                    except FoaError:  # the FOA makes no offer either: the device runs uncontrolled
                        continue
                    if offer is None:
                        continue
                    offer = dataclasses.replace(offer, id=f"twin-{len(offers) + 1:05d}")
                    window = offer.window(offer.created_at)
                    first, end = window.earliest, _latest_end(offer)
                    d = types.index(lt)
                    if first is None or end is None or ((i, d) in span_end and first < span_end[(i, d)]):
                        continue
                    span_end[(i, d)] = end
                    offers.append(TwinOffer(i, d, offer))
        for i, p in enumerate(prosumers):
            for lt, device in devices[i].items():
                twin[k, i, types.index(lt)] = p.kinds[lt].step(device, None, env)
    return TwinFlexibility(tuple(offers), twin)


def _latest_end(offer: FlexOffer) -> datetime | None:
    """When the offer's operation ends at the latest (its latest start plus its longest profile)."""
    latest = offer.window(offer.created_at).latest
    if latest is None:
        return None
    steps = max(p.n_steps for p in offer.profiles)
    return latest + timedelta(seconds=steps * offer.slice_s)


@dataclass(frozen=True)
class OracleResult:
    """What the oracle found (module docstring); energies in kWh over the counted steps."""

    overload_energy_kwh: float  # AC power flow on the oracle's plan: the bound relief_share uses
    lp_overload_energy_kwh: float  # the LP's value (below the AC one when loadings are convex)
    no_flex_overload_energy_kwh: float  # AC power flow at the anchor (the twins): the no_flex run's
    overload_hours: float
    max_line_loading_percent: float
    max_trafo_loading_percent: float
    offers: int
    offers_used: int
    energy_moved_kwh: float  # half the sum over steps and load rows of |plan - twin|
    rounds: int
    first_gap_kwh: float  # AC minus LP after the first round (planes at no_flex only)
    linearisation_gap_kwh: float  # AC minus LP at the end
    solve_s: float  # wall time (reported, never asserted)

    def as_dict(self) -> dict[str, float | int]:
        """The result as kpi.json numbers."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


# -- the offers as LP blocks ----------------------------------------------------------------------
@dataclass
class _Lp:
    """Columns and rows added so far: bounds, costs and (row, column, value) entries."""

    col_lower: list[np.ndarray] = dataclasses.field(default_factory=list)
    col_upper: list[np.ndarray] = dataclasses.field(default_factory=list)
    cost: list[np.ndarray] = dataclasses.field(default_factory=list)
    row_lower: list[np.ndarray] = dataclasses.field(default_factory=list)
    row_upper: list[np.ndarray] = dataclasses.field(default_factory=list)
    entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(default_factory=list)
    n_cols: int = 0
    n_rows: int = 0

    def cols(self, lower: np.ndarray, upper: np.ndarray, cost: np.ndarray | None = None) -> int:
        lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        self.col_lower.append(lower)
        self.col_upper.append(upper)
        self.cost.append(np.zeros(len(lower)) if cost is None else np.asarray(cost, dtype=float))
        first = self.n_cols
        self.n_cols += len(lower)
        return first

    def rows(self, lower: np.ndarray, upper: np.ndarray) -> int:
        lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        self.row_lower.append(np.where(np.isfinite(lower), lower, -highspy.kHighsInf))
        self.row_upper.append(np.where(np.isfinite(upper), upper, highspy.kHighsInf))
        first = self.n_rows
        self.n_rows += len(lower)
        return first

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        self.entries.append((np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.asarray(vals, float)))


def _offer_block(
    lp: _Lp, offer: FlexOffer, t0: datetime, n_steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int] | None:
    """Add one offer's columns and rows; returns (step, column, coefficient) of its energy per
    step (energy at step t = sum of coef * column over its entries at t) and its span [lo, hi),
    or None when it cannot start within the steps."""
    slice_s = offer.slice_s
    created = offer.created_at or t0
    expanded = expand_conditional(offer, now=created) if offer.conditional is not None else offer
    default = expanded.default_schedule
    p = default.profile if default is not None and 0 <= default.profile < len(expanded.profiles) else 0
    profile = expanded.profiles[p]
    window = expanded.window(created)
    if window.earliest is None or window.latest is None:
        return None
    earliest = max(ceil_to_grid(window.earliest, slice_s), ceil_to_grid(created, slice_s))
    latest = floor_to_grid(window.latest, slice_s)
    n = profile.n_steps
    e = round((earliest - t0).total_seconds() / slice_s)
    flex = round((latest - earliest).total_seconds() / slice_s)
    s_lo, s_hi = max(0, -e), min(flex, n_steps - n - e)
    if s_hi < s_lo or n == 0:
        return None
    first, shifts = e + s_lo, s_hi - s_lo + 1
    lower, upper = profile.lower_kwh().astype(float), np.maximum(profile.upper_kwh(), profile.lower_kwh()).astype(float)
    rows = joint_rows(profile)
    if rows is None:  # a dependency that is not convex: the offer keeps its default
        if default is None:
            return None
        x = np.asarray(default.energy, dtype=float)
        k = round((default.start - t0).total_seconds() / slice_s)
        steps = k + np.arange(len(x))
        inside = (steps >= 0) & (steps < n_steps)
        c = lp.cols(x[inside], x[inside])
        return (
            steps[inside],
            c + np.arange(int(inside.sum())),
            np.ones(int(inside.sum())),
            first,
            first + shifts + n - 1,
        )
    a, lo, hi = rows
    span = shifts + n - 1
    if shifts == 1:
        c = lp.cols(lower, upper)
        if len(a):
            r = lp.rows(lo, hi)
            ri, ki = np.nonzero(a)
            lp.add(r + ri, c + ki, a[ri, ki])
        return first + np.arange(n), c + np.arange(n), np.ones(n), first, first + n
    # several starts: y[s] in [0, 1], sum y = 1
    y = lp.cols(np.zeros(shifts), np.ones(shifts))
    r = lp.rows(np.ones(1), np.ones(1))
    lp.add(np.full(shifts, r), y + np.arange(shifts), np.ones(shifts))
    s_idx = np.repeat(np.arange(shifts), n)
    k_idx = np.tile(np.arange(n), shifts)
    j_idx = s_idx + k_idx  # the span step of (shift, profile step)
    if np.all(upper == lower) and (len(a) == 0 or not len(_broken(a, lo, hi, lower))):
        # rigid: the energy at t is sum_s lower[t - s] * y[s]
        nz = lower[k_idx] != 0.0
        return first + (s_idx + k_idx)[nz], (y + s_idx)[nz], lower[k_idx][nz], first, first + span
    if not len(a) or bool(np.all(a == a[:, :1])):
        # a box, or a total energy only (an EV): the planner's step model (atp.fman.planning_models): the
        # energy at span step j is sum_s lower[j - s] * y[s] + v[j] with 0 <= v[j] <= sum_s
        # (upper - lower)[j - s] * y[s], the total on that energy
        width = upper - lower
        v = lp.cols(np.zeros(span), np.full(span, max(float(width.max()), 0.0)))
        rv = lp.rows(np.full(span, -np.inf), np.zeros(span))
        wide = width[k_idx] > 0
        lp.add(rv + np.arange(span), v + np.arange(span), np.ones(span))
        lp.add(rv + j_idx[wide], (y + s_idx)[wide], -width[k_idx][wide])
        rt = lp.rows(lo, hi) if len(a) else 0
        for i, c in enumerate(a[:, 0]):
            lp.add(np.full(span, rt + i), v + np.arange(span), np.full(span, c))
            lp.add(np.full(shifts, rt + i), y + np.arange(shifts), np.full(shifts, c * lower.sum()))
        low = lower[k_idx] != 0.0
        steps = np.concatenate((first + np.arange(span), first + j_idx[low]))
        cols = np.concatenate((v + np.arange(span), (y + s_idx)[low]))
        return steps, cols, np.concatenate((np.ones(span), lower[k_idx][low])), first, first + span
    # the convex hull of the shifts: z[s, k] in [lower_k y_s, upper_k y_s], rows per shift
    nz_count = shifts * n
    z = lp.cols(np.minimum(np.tile(lower, shifts), 0.0), np.maximum(np.tile(upper, shifts), 0.0))
    r_lo = lp.rows(np.zeros(nz_count), np.full(nz_count, np.inf))
    r_hi = lp.rows(np.full(nz_count, -np.inf), np.zeros(nz_count))
    zi = np.arange(nz_count)
    lp.add(
        np.concatenate((r_lo + zi, r_lo + zi)),
        np.concatenate((z + zi, y + s_idx)),
        np.concatenate((np.ones(nz_count), -lower[k_idx])),
    )
    lp.add(
        np.concatenate((r_hi + zi, r_hi + zi)),
        np.concatenate((z + zi, y + s_idx)),
        np.concatenate((np.ones(nz_count), -upper[k_idx])),
    )
    if len(a):
        for side, bound in ((0, lo), (1, hi)):
            finite = np.flatnonzero(np.isfinite(bound))
            if not len(finite):
                continue
            m = len(finite)
            rr = lp.rows(
                np.zeros(m * shifts) if side == 0 else np.full(m * shifts, -np.inf),
                np.full(m * shifts, np.inf) if side == 0 else np.zeros(m * shifts),
            )
            sub = a[finite]
            ri, ki = np.nonzero(sub)
            for s in range(shifts):
                lp.add(rr + s * m + ri, z + s * n + ki, sub[ri, ki])
                lp.add(rr + s * m + np.arange(m), np.full(m, y + s), -bound[finite])
    return first + s_idx + k_idx, z + zi, np.ones(nz_count), first, first + span


def _broken(a: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray) -> np.ndarray:
    ax = a @ x
    return np.flatnonzero((ax < lo - 1e-9) | (ax > hi + 1e-9))


# -- the bound ------------------------------------------------------------------------------------
def _highs_of(lp: _Lp) -> Any:
    """A HiGHS instance holding the LP built so far (one thread, deterministic)."""
    rows = np.concatenate([r for r, _, _ in lp.entries])
    cols = np.concatenate([c for _, c, _ in lp.entries])
    vals = np.concatenate([v for _, _, v in lp.entries])
    order = np.lexsort((rows, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    model = highspy.HighsLp()
    model.num_col_, model.num_row_ = lp.n_cols, lp.n_rows
    model.col_cost_ = np.concatenate(lp.cost)
    inf = highspy.kHighsInf
    lower, upper = np.concatenate(lp.col_lower), np.concatenate(lp.col_upper)
    model.col_lower_ = np.where(np.isfinite(lower), lower, -inf)
    model.col_upper_ = np.where(np.isfinite(upper), upper, inf)
    model.row_lower_ = np.concatenate(lp.row_lower)
    model.row_upper_ = np.concatenate(lp.row_upper)
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.num_col_ = lp.n_cols
    model.a_matrix_.num_row_ = lp.n_rows
    model.a_matrix_.start_ = np.concatenate(([0], np.cumsum(np.bincount(cols, minlength=lp.n_cols)))).astype(np.int32)
    model.a_matrix_.index_ = rows.astype(np.int32)
    model.a_matrix_.value_ = vals
    h = _new_highs()
    for name, value in (("threads", 1), ("random_seed", 0), ("presolve", "on")):
        h.setOptionValue(name, value)
    h.passModel(model)
    return h


def _overload(world: Any, load_p: np.ndarray, sgen_p: np.ndarray) -> tuple[float, Any]:
    """Overload energy (kWh, as the KPI counts it) and the AC flows of loads `load_p` per step."""
    flows = world.power_flow.run(load_p, load_p * world.grid.tan_phi, sgen_p, remember=False)
    line_kw, trafo_kw = overload_kw(world.grid, flows, world.grid_limits)
    return float((line_kw.sum() + trafo_kw.sum()) * world.slice_s / 3600.0), flows


def oracle_bound(
    world: Any, flexibility: TwinFlexibility, *, rounds: int = 5, tol_share: float = 0.01, sensitivity_steps: int = 1
) -> OracleResult:
    """The least overload energy over the counted steps that the twins' offers can reach with
    perfect foresight (module docstring), on a world that has run (its no_flex flows are the
    first operating point). `rounds` of cutting planes at most, fewer once the AC overload of
    the plan is within `tol_share` of the LP's; sensitivities every `sensitivity_steps` steps
    (held in between)."""
    began = time.perf_counter()
    grid, limits = world.grid, world.grid_limits
    w0 = world.window.start
    n_t = world.n_steps - w0
    dt_h = world.slice_s / 3600.0
    to_mw = 1.0 / (1000.0 * dt_h)
    t0 = world.start + timedelta(seconds=w0 * world.slice_s)
    load_p0, _, sgen_p = (np.asarray(a[w0:], dtype=float) for a in world.grid_injections_mw)
    n_l = grid.n_loads
    lp = _Lp()
    entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    anchor = np.zeros((n_t, n_l))  # the twins' energy over the offers' spans, per step and load row
    used = 0
    for item in flexibility.offers:
        block = _offer_block(lp, item.offer, t0, n_t)
        if block is None:
            continue
        steps, cols, coef, lo, hi = block
        j = int(grid.prosumer_load[item.prosumer])
        entries.append((steps * n_l + j, cols, coef))
        span = np.arange(max(lo, 0), min(hi, n_t))
        np.add.at(anchor, (span, j), flexibility.twin_kwh[w0 + span, item.prosumer, item.device])
        used += 1
    n_d = n_t * n_l
    d0 = lp.cols(np.full(n_d, -np.inf), np.full(n_d, np.inf))
    r = lp.rows(np.zeros(n_d), np.zeros(n_d))
    lp.add(r + np.arange(n_d), d0 + np.arange(n_d), np.ones(n_d))
    for idx, cols, coef in entries:
        lp.add(r + idx, cols, -coef)
    # the most the offers can put at each step and load row (to skip rows that cannot overload)
    col_lower, col_upper = np.concatenate(lp.col_lower), np.concatenate(lp.col_upper)
    d_max = np.zeros(n_d)
    for idx, cols, coef in entries:
        np.add.at(d_max, idx, np.where(coef > 0, coef * col_upper[cols], coef * col_lower[cols]))
    d_max = d_max.reshape(n_t, n_l)
    h = _highs_of(lp)
    ratings = branch_ratings_kva(grid)
    per_pct = ratings / 100.0 * dt_h  # kWh of overload per percent of loading over one step
    limit = limits.max_loading_percent
    o_col: dict[tuple[int, int], int] = {}
    n_cols = lp.n_cols
    d = anchor.copy()
    first_overload, first_flows = _overload(world, load_p0, sgen_p)
    best = (first_overload, d, first_flows)  # the twins' own plan: the oracle is never worse
    lp_value, first_gap, done = 0.0, np.nan, 0
    groups = np.eye(n_l)
    sampled = np.arange(0, n_t, max(1, sensitivity_steps))
    for done in range(1, rounds + 1):
        load_p = load_p0 + (d - anchor) * to_mw
        _, loading, sens = loading_sensitivities(
            grid, world.power_flow, load_p[sampled], load_p[sampled] * grid.tan_phi, sgen_p[sampled], groups
        )
        held = np.searchsorted(sampled, np.arange(n_t), side="right") - 1
        flows_now = world.power_flow.run(load_p, load_p * grid.tan_phi, sgen_p, remember=False)
        loading = branch_loadings(flows_now)
        s_kwh = sens[held] * to_mw  # percent per kWh, (n_t, n_branches, n_loads)
        reach = np.nan_to_num(loading, nan=0.0) + np.einsum(
            "tbj,tj->tb", np.maximum(s_kwh, 0.0), np.maximum(d_max - d, 0.0)
        )
        rows_here = np.isfinite(loading) & (reach > limit - 1e-9)
        if done > 1:  # later planes only where the plan came near the limit: elsewhere the first ones hold
            rows_here &= loading > limit - NEAR_PERCENT
        candidates = np.argwhere(rows_here)
        new = [(int(t), int(b)) for t, b in candidates if (int(t), int(b)) not in o_col]
        if new:
            h.addCols(
                len(new),
                np.ones(len(new)),
                np.zeros(len(new)),
                np.full(len(new), highspy.kHighsInf),
                0,
                np.zeros(0, np.int32),
                np.zeros(0, np.int32),
                np.zeros(0),
            )
            for q, key in enumerate(new):
                o_col[key] = n_cols + q
            n_cols += len(new)
        starts, index, values, lower = [], [], [], []
        pos = 0
        for t, b in candidates:
            t, b = int(t), int(b)
            s = s_kwh[t, b]
            nz = np.flatnonzero(np.abs(s) > 1e-3 * max(float(np.abs(s).max()), 1e-12))
            c = per_pct[b]
            starts.append(pos)
            index.append(np.concatenate(([o_col[(t, b)]], d0 + t * n_l + nz)))
            values.append(np.concatenate(([1.0], -c * s[nz])))
            lower.append(c * (loading[t, b] - s @ d[t] - limit))
            pos += 1 + len(nz)
        if starts:
            idx = np.concatenate(index).astype(np.int32)
            h.addRows(
                len(starts),
                np.array(lower),
                np.full(len(starts), highspy.kHighsInf),
                len(idx),
                np.array(starts, dtype=np.int32),
                idx,
                np.concatenate(values),
            )
        h.run()
        col = np.asarray(h.getSolution().col_value, dtype=float)
        o_idx = np.fromiter(o_col.values(), dtype=np.int64, count=len(o_col))
        lp_value = float(col[o_idx].sum()) if len(o_idx) else 0.0
        d = col[d0 : d0 + n_d].reshape(n_t, n_l)
        ac, flows = _overload(world, load_p0 + (d - anchor) * to_mw, sgen_p)
        if done == 1:
            first_gap = ac - lp_value
        if ac < best[0]:
            best = (ac, d.copy(), flows)
        if ac - lp_value <= tol_share * max(ac, 1.0):
            break
    ac, d_best, flows = best
    line_kw, trafo_kw = overload_kw(grid, flows, limits)
    # the plan runs branches at their limit exactly: an hour counts from a watt over it
    overloaded = (line_kw.sum(axis=1) + trafo_kw.sum(axis=1)) > OVERLOAD_KW
    return OracleResult(
        overload_energy_kwh=ac,
        lp_overload_energy_kwh=lp_value,
        no_flex_overload_energy_kwh=first_overload,
        overload_hours=float(overloaded.sum() * dt_h),
        max_line_loading_percent=float(np.nanmax(flows.line_loading_percent))
        if flows.line_loading_percent.size
        else 0.0,
        max_trafo_loading_percent=float(np.nanmax(flows.trafo_loading_percent))
        if flows.trafo_loading_percent.size
        else 0.0,
        offers=len(flexibility.offers),
        offers_used=used,
        energy_moved_kwh=float(np.abs(d_best - anchor).sum() / 2.0),
        rounds=done,
        first_gap_kwh=float(first_gap),
        linearisation_gap_kwh=float(ac - lp_value),
        solve_s=time.perf_counter() - began,
    )


def oracle_section(world: Any, flexibility: TwinFlexibility | None) -> dict[str, Any] | None:
    """kpi.json's `grid.oracle` of a no_flex run (None without the twins' flexibility)."""
    if flexibility is None:
        return None
    return oracle_bound(world, flexibility).as_dict()


def energy_not_delivered_kwh(world: Any) -> float:
    """What the flexible devices drew less than their twins over the counted steps, summed over
    the devices whose twin consumed (a device that drew more counts 0): heat, charge or
    programmes a strategy did not deliver (batteries, whose twins draw nothing, do not count;
    a shift inside the counted steps is not a loss)."""
    c = world.counted
    twin = world.counterfactual_kwh[c].sum(axis=0)
    metered = world.metered_kwh[c].sum(axis=0)
    return float(np.where(twin > 0, np.maximum(twin - metered, 0.0), 0.0).sum())

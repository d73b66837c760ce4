"""What a portfolio may draw at each congestion point: the DSO's published capacity.

The DSO forecasts the site's load over the coming steps with the portfolio's flexible energy
where it is expected (`x0[t, f]`, kWh per step at feeder f: the planned or default schedules of
the aggregator's offers, the devices' uncontrolled baseline elsewhere) and everything else at
its forecast. At that operating point it has each branch's loading `L[t, b]` and, from the
linearised grid (`sim.grid.linear`), its sensitivity `S[t, b, f]` (percent per MW) to feeder
f's flexible load. Keeping branch b at or below `limit` (the loading limit less the DSO's
safety margin) then reads, with x the portfolio's energy per feeder and step,

    sum_f S[t, b, f] * x[t, f] / (1000 * dt_h) <= limit - L[t, b] + sum_f S[t, b, f] * x0[t, f] / (1000 * dt_h)

which `headroom_capacity` turns into `GridCapacity` rows for the FMAN (atp.fman):

- per feeder, its lines: only that feeder's load moves them (the others by voltage only), so
  the row is `x[t, f] <= capacity`, the tightest of its lines (one `GridCapacity` per feeder,
  named after it);
- per transformer, the feeders behind it: one row over all of them, each weighted by its
  sensitivity relative to their mean (a kWh at the end of a long feeder loads the transformer
  more: losses and lower voltage), the mean's per-step value in the capacity (named after the
  busbar's congestion point).

A branch none of whose sensitivities is positive (not converged, or no load behind it) gives no
row. A capacity may be negative where the rest of the load alone is over the limit: the FMAN's
rows are soft and it draws as little as it can there. Capacities cover thermal loading only
(the overload the KPIs count), not voltage.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from atp.fman.planning import GridCapacity
from sim.grid.linear import branch_ratings_kva
from sim.grid.model import SiteGrid
from sim.grid.powerflow import PowerFlow

__all__ = ["NEW_OVERLOAD_WEIGHT", "SECANT_MW", "TIER_PERCENT", "headroom_capacity", "transformer_capacity_exact"]

_MIN_SENSITIVITY = 1e-3  # percent per MW below which a branch is taken as not moved by a feeder
NEW_OVERLOAD_WEIGHT = 10.0
"""Default penalty weight of an excess in a step where the grid would be within its limit with
the portfolio uncontrolled: there an excess makes an overload that flexibility created, so the
FMAN would rather exceed where the grid is overloaded anyway."""
SECANT_MW = 0.02
"""The perturbation per feeder for the DSO's sensitivities (`loading_sensitivities(delta_mw=)`):
the size of a few devices, so the slope is a secant over what a plan adds, steeper than the
tangent where loadings grow faster than the load."""
TIER_PERCENT = 2.5
"""Width of the first excess tier (`GridCapacity.tier_kwh`), in percent of the branch's rating
over one step: an excess beyond it costs more, so the unavoidable excess is spread."""


def headroom_capacity(
    grid: SiteGrid,
    *,
    start: datetime,
    slice_s: int,
    loadings: np.ndarray,
    sensitivities: np.ndarray,
    portfolio_kwh: np.ndarray,
    limit_percent: float,
    margin_percent: float = 0.0,
    uncontrolled_kwh: np.ndarray | None = None,
    new_overload_weight: float = NEW_OVERLOAD_WEIGHT,
    converged: np.ndarray | None = None,
) -> tuple[GridCapacity, ...]:
    """The capacities (module docstring) over the steps of `loadings` (n_steps, n_branches: lines,
    then transformers), with `sensitivities` (n_steps, n_branches, n_feeders, percent per MW) and
    the portfolio's expected energy `portfolio_kwh` (n_steps, n_feeders), keeping the loadings
    `margin_percent` below `limit_percent`.

    Each capacity's `penalty_weight` is `new_overload_weight` in the steps where the portfolio
    drawing `uncontrolled_kwh` (n_steps, n_feeders: what its devices would draw without the
    ATP; default `portfolio_kwh`) keeps the branch within `limit_percent`, 1 elsewhere; its
    `tier_kwh` is `TIER_PERCENT` of the branch's rating. A step whose forecast did not converge
    (`converged` False) gets capacity 0: the grid is in trouble there."""
    n_t = len(portfolio_kwh)
    n_line = len(grid.net.line)
    to_kwh = 1000.0 * slice_s / 3600.0  # MW over one step in kWh
    per_kwh = sensitivities / to_kwh  # percent per kWh of the step
    ok = np.ones(n_t, dtype=bool) if converged is None else np.asarray(converged, dtype=bool)
    uncontrolled = portfolio_kwh if uncontrolled_kwh is None else uncontrolled_kwh
    loadings = np.nan_to_num(loadings, nan=limit_percent)
    room = limit_percent - margin_percent - loadings  # per branch and step, percent, at the forecast
    ratings = branch_ratings_kva(grid) * slice_s / 3600.0  # kWh per step at 100 %
    out: list[GridCapacity] = []

    def publish(name: str, cap: np.ndarray, margin_kwh: np.ndarray, unc: np.ndarray, weights: dict, rating: float):
        cap = np.where(ok, cap, 0.0)
        fine = ok & (cap + margin_kwh >= unc)  # within the limit with the portfolio uncontrolled
        out.append(
            GridCapacity(
                name,
                start,
                slice_s,
                cap,
                weights,
                penalty_weight=np.where(fine, new_overload_weight, 1.0),
                tier_kwh=TIER_PERCENT / 100.0 * rating,
            )
        )

    for f, point in enumerate(grid.feeders):
        lines = np.flatnonzero(grid.line_feeder[:n_line] == f) if len(grid.line_feeder) else np.zeros(0, int)
        if not len(lines):
            continue
        s = per_kwh[:, lines, f]
        # a line that more load relieves (PV exports through it): the load first takes the export
        # back, then loads the line the other way; with its rating as the slope (unit power
        # factor) the room is the export plus the limit
        reverse = s <= _MIN_SENSITIVITY / to_kwh
        rating_slope = 100.0 / np.maximum(ratings[lines], 1e-9)
        s = np.where(reverse, rating_slope[None, :], s)
        moved = np.ones_like(s, dtype=bool)
        # the feeder's own expected energy taken out: the others stay at their forecast
        own = np.where(reverse, limit_percent - margin_percent + loadings[:, lines], room[:, lines])
        own = own + s * portfolio_kwh[:, f : f + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            each = np.where(moved, own / np.where(moved, s, 1.0), np.inf)
            margin = np.where(moved, margin_percent / np.where(moved, s, 1.0), 0.0)
        tightest = np.argmin(each, axis=1)
        rows = np.arange(n_t)
        cap, margin_kwh = each[rows, tightest], margin[rows, tightest]
        publish(point, cap, margin_kwh, uncontrolled[:, f], {point: 1.0}, float(ratings[lines].max()))
    for tr in range(loadings.shape[1] - n_line):
        feeders = np.flatnonzero(grid.feeder_trafo == tr)
        if not len(feeders):
            continue
        s = per_kwh[:, n_line + tr, :][:, feeders]
        # exporting through the transformer (more load relieves it): as for a line, the rating's
        # slope and the export plus the limit as room
        reverse = s.mean(axis=1) <= _MIN_SENSITIVITY / to_kwh
        s = np.where(reverse[:, None], 100.0 / max(float(ratings[n_line + tr]), 1e-9), s)
        mean = s.mean(axis=1)
        usable = mean > 0
        forward = usable & ~reverse
        weights = (s[forward] / mean[forward, None]).mean(axis=0) if forward.any() else np.ones(len(feeders))
        base = np.where(reverse, limit_percent - margin_percent + loadings[:, n_line + tr], room[:, n_line + tr])
        own = base + (s * portfolio_kwh[:, feeders]).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cap = np.where(usable, own / np.where(usable, mean, 1.0), np.inf)
            margin_kwh = np.where(usable, margin_percent / np.where(usable, mean, 1.0), 0.0)
        name = grid.busbar_point if tr == 0 else f"{grid.busbar_point}-trafo{tr + 1}"
        publish(
            name,
            cap,
            margin_kwh,
            uncontrolled[:, feeders] @ weights,
            {grid.feeders[f]: float(w) for f, w in zip(feeders, weights, strict=True)},
            float(ratings[n_line + tr]),
        )
    return tuple(out)


def transformer_capacity_exact(
    flow: PowerFlow,
    rest_p_mw: np.ndarray,
    sgen_p_mw: np.ndarray,
    direction_mw: np.ndarray,
    *,
    target_percent: float,
    first_kwh: np.ndarray,
    slice_s: int,
    trafo: int = 0,
    iterations: int = 3,
) -> np.ndarray:
    """The portfolio energy per step (kWh, along `direction_mw`: MW per load row for one kWh of it)
    at which the AC power flow puts transformer `trafo` at `target_percent`, by secant steps from
    the linear estimate `first_kwh`. Loadings are not linear where PV offsets the load (the
    reactive power stays: one more kW at a PV-rich noon adds little apparent power, ten more
    add much more), so the tangent of `headroom_capacity` can promise too much there.

    `rest_p_mw` (n_steps, n_loads) is the load without the portfolio; reactive power follows each
    load row's power factor. A step that does not converge keeps its linear estimate."""
    grid = flow.grid
    rest = np.asarray(rest_p_mw, dtype=float)
    sgen = np.asarray(sgen_p_mw, dtype=float)
    direction = np.asarray(direction_mw, dtype=float)
    n_t = len(rest)

    def loading(x: np.ndarray) -> np.ndarray:
        load = rest + x[:, None] * direction
        flows = flow.run(load, load * grid.tan_phi[None, :], sgen, remember=False)
        return flows.trafo_loading_percent[:, trafo]

    x_a = np.zeros(n_t)
    l_a = loading(x_a)
    x_b = np.where(np.isfinite(first_kwh), np.maximum(first_kwh, 0.0), 0.0) + 1.0
    l_b = loading(x_b)
    for _ in range(iterations):
        ok = np.isfinite(l_a) & np.isfinite(l_b) & (np.abs(l_b - l_a) > 1e-9)
        x_c = np.where(ok, x_b + (target_percent - l_b) * (x_b - x_a) / np.where(ok, l_b - l_a, 1.0), x_b)
        x_a, l_a = x_b, l_b
        x_b, l_b = x_c, loading(x_c)
    done = np.isfinite(l_b)
    return np.where(done, x_b, first_kwh) if n_t else np.zeros(0)

"""Congestion detection: loadings above a limit and voltages outside a band, per element and feeder.

`detect(grid, flows, limits)` flags every line and transformer loaded above
`limits.max_loading_percent` and every bus outside `[vm_min_pu, vm_max_pu]` (EN 50160 allows
+-10 % in LV grids). `overload_kw` turns loadings into the apparent power above the limit
(`(loading - limit) / 100 * rating`); `feeder_excess_kwh` says, per feeder (congestion point)
and step, how much less consumption would relieve it: the worst of

- its most loaded line: `|P| * (1 - limit / loading)` at that line,
- its share of an overloaded upstream transformer: `|P| * (1 - limit / loading)` split over the
  transformer's feeders in proportion to their net consumption,
- its lowest voltage below the band: `(vm_min - vm) / dvm_per_mw` with the feeder's voltage
  sensitivity to its own consumption (`sim.grid.transport.feeder_sensitivities`).

Positive = too much consumption (ask for less); reverse-flow congestion (PV export) gives
negative values (ask for more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.grid.model import SiteGrid
from sim.grid.powerflow import FlowResult

__all__ = ["Congestion", "GridLimits", "detect", "feeder_excess_kwh", "overload_kw", "rating_kva"]


@dataclass(frozen=True)
class GridLimits:
    """What the DSO calls congested: loading above `max_loading_percent`, voltage outside the band."""

    max_loading_percent: float = 100.0
    vm_min_pu: float = 0.9
    vm_max_pu: float = 1.1


@dataclass
class Congestion:
    """Flags per step and element; `congested[t]` is any flag at step t (non-converged steps count)."""

    line_overloaded: np.ndarray  # (T, n_line)
    trafo_overloaded: np.ndarray  # (T, n_trafo)
    voltage_violation: np.ndarray  # (T, n_bus)
    congested: np.ndarray  # (T,)


def detect(flows: FlowResult, limits: GridLimits) -> Congestion:
    """Flag overloaded branches and buses outside the voltage band (NaN, i.e. not converged, flags nothing)."""
    with np.errstate(invalid="ignore"):
        lines = flows.line_loading_percent > limits.max_loading_percent
        trafos = flows.trafo_loading_percent > limits.max_loading_percent
        volts = (flows.vm_pu < limits.vm_min_pu) | (flows.vm_pu > limits.vm_max_pu)
    congested = lines.any(axis=1) | trafos.any(axis=1) | volts.any(axis=1) | ~flows.converged
    return Congestion(lines, trafos, volts, congested)


def rating_kva(grid: SiteGrid) -> tuple[np.ndarray, np.ndarray]:
    """Thermal ratings (kVA) of the lines (at their bus's nominal voltage) and transformers."""
    net = grid.net
    vn = net.bus.vn_kv.to_numpy(float)[net.line.from_bus.to_numpy(int)]
    lines = math.sqrt(3.0) * vn * net.line.max_i_ka.to_numpy(float) * net.line.df.to_numpy(float) * 1000.0
    trafos = net.trafo.sn_mva.to_numpy(float) * net.trafo.df.to_numpy(float) * 1000.0
    return lines, trafos


def overload_kw(grid: SiteGrid, flows: FlowResult, limits: GridLimits) -> tuple[np.ndarray, np.ndarray]:
    """Apparent power above the limit per step and element (kVA, about kW at the LV power factors)."""
    lines, trafos = rating_kva(grid)
    limit = limits.max_loading_percent
    line_kw = np.nan_to_num(np.maximum(flows.line_loading_percent - limit, 0.0)) / 100.0 * lines
    trafo_kw = np.nan_to_num(np.maximum(flows.trafo_loading_percent - limit, 0.0)) / 100.0 * trafos
    return line_kw, trafo_kw


def _relief_kw(p_mw: np.ndarray, loading: np.ndarray, limit: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(loading > limit, 1.0 - limit / loading, 0.0)
    return np.nan_to_num(np.abs(p_mw) * share * 1000.0)


def feeder_excess_kwh(
    grid: SiteGrid,
    flows: FlowResult,
    feeder_net_mw: np.ndarray,
    limits: GridLimits,
    *,
    slice_s: int,
    dvm_per_mw: np.ndarray | None = None,
) -> np.ndarray:
    """Signed energy per step and feeder that would relieve its congestion (module docstring).

    `feeder_net_mw[t, f]` is the feeder's net consumption (loads minus PV) in the same steps.
    """
    n_steps, n_feeders = flows.n_steps, len(grid.feeders)
    dt_h = slice_s / 3600.0
    limit = limits.max_loading_percent
    excess = np.zeros((n_steps, n_feeders))
    sign = np.where(feeder_net_mw >= 0, 1.0, -1.0)
    for f in range(n_feeders):
        lines = np.flatnonzero(grid.line_feeder == f)
        if len(lines):
            loading = np.nan_to_num(flows.line_loading_percent[:, lines], nan=0.0)
            worst = np.argmax(loading, axis=1)
            rows = np.arange(n_steps)
            kw = _relief_kw(flows.line_p_from_mw[rows, lines[worst]], loading[rows, worst], limit)
            excess[:, f] = np.maximum(excess[:, f], kw)
        if dvm_per_mw is not None and dvm_per_mw[f] < 0:
            buses = np.flatnonzero(grid.bus_feeder == f)
            low = np.nan_to_num(np.nanmin(flows.vm_pu[:, buses], axis=1), nan=1.0) if len(buses) else np.ones(n_steps)
            kw = np.maximum(limits.vm_min_pu - low, 0.0) / -dvm_per_mw[f] * 1000.0
            excess[:, f] = np.maximum(excess[:, f], kw)
    for tr in range(flows.trafo_loading_percent.shape[1]):
        feeders = np.flatnonzero(grid.feeder_trafo == tr)
        if not len(feeders):
            continue
        kw = _relief_kw(flows.trafo_p_hv_mw[:, tr], flows.trafo_loading_percent[:, tr], limit)
        direction = np.sign(np.nan_to_num(flows.trafo_p_hv_mw[:, tr]))
        weights = np.maximum(feeder_net_mw[:, feeders] * direction[:, None], 0.0)
        total = weights.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, weights / total, 1.0 / len(feeders))
        excess[:, feeders] = np.maximum(excess[:, feeders], kw[:, None] * share)
    return excess * dt_h * sign

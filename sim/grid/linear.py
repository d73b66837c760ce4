"""The site grid linearised: branch loadings as linear functions of the loads' active power.

`loading_sensitivities(grid, flow, load_p, load_q, sgen_p, groups)` runs the AC power flow at an
operating point (one step of injections) and once more per group of loads, each time adding
`delta_mw` spread over the group's load rows (`groups[g, j]` is load row j's share; reactive
power follows at the row's power factor, as the site's loads do). The differences give, per
branch (lines, then transformers: `branch_ratings_kva`), the loading's change in percent of its
rating per MW drawn by the group. Around the operating point

    loading_b(P) ~ loading_b(P0) + sum_g S[b, g] * (P_g - P0_g)

is the first-order Taylor expansion of the AC power flow (numerical Jacobian; nothing is assumed
about DC flows or losses). It is exact at P0 and close nearby; further away it underestimates a
loading that grows faster than the load (voltages fall, currents rise) and overestimates one that
falls: in radial LV grids supplying load the loadings are convex in the loads, so every such
plane lies below the true loading (sim/oracle.py builds on that and measures the error).

Groups are per load row for the oracle (`np.eye(n_loads)`) and per feeder for the DSO's
published capacity (`feeder_groups`: each feeder's rows weighted by where its flexible load sits).
One power flow per group and step; 119 flows take about 20 ms on ESR's grid.
"""

from __future__ import annotations

import numpy as np

from sim.grid.congestion import rating_kva
from sim.grid.model import SiteGrid
from sim.grid.powerflow import PowerFlow

__all__ = ["DELTA_MW", "branch_loadings", "branch_ratings_kva", "feeder_groups", "loading_sensitivities"]

DELTA_MW = 0.002
"""The perturbation per group (2 kW): large against the solver's tolerance, small against the loads."""


def branch_ratings_kva(grid: SiteGrid) -> np.ndarray:
    """Thermal ratings (kVA) of the branches in `branch_loadings` order: lines, then transformers."""
    lines, trafos = rating_kva(grid)
    return np.concatenate((lines, trafos))


def branch_loadings(flows) -> np.ndarray:
    """Loadings (percent) per step and branch of a FlowResult: lines, then transformers (NaN: not converged)."""
    return np.concatenate((flows.line_loading_percent, flows.trafo_loading_percent), axis=1)


def feeder_groups(grid: SiteGrid, weight_by_load: np.ndarray | None = None) -> np.ndarray:
    """One group per feeder (rows: feeders, columns: load rows), each row's shares summing to 1:
    in proportion to `weight_by_load` (e.g. the flexible energy expected at each load row),
    evenly over the feeder's rows where that is zero or not given. A feeder without loads has
    an all-zero row."""
    feeder_of_load = grid.bus_feeder[grid.load_bus]
    n_f, n_l = len(grid.feeders), grid.n_loads
    weight = np.ones(n_l) if weight_by_load is None else np.maximum(np.asarray(weight_by_load, float), 0.0)
    out = np.zeros((n_f, n_l))
    for f in range(n_f):
        rows = feeder_of_load == f
        w = np.where(rows, weight, 0.0)
        if w.sum() <= 0:
            w = rows.astype(float)
        if w.sum() > 0:
            out[f] = w / w.sum()
    return out


def loading_sensitivities(
    grid: SiteGrid,
    flow: PowerFlow,
    load_p_mw: np.ndarray,
    load_q_mvar: np.ndarray,
    sgen_p_mw: np.ndarray,
    groups: np.ndarray,
    *,
    delta_mw: float = DELTA_MW,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loadings at each operating point and their sensitivities to each group's load.

    The injections have one row per step (n_steps, n_loads). Returns (converged (n_steps,),
    loadings (n_steps, n_branches) in percent, sensitivities (n_steps, n_branches, n_groups)
    in percent per MW). A step whose base or perturbed flow does not converge has zero
    sensitivities (and NaN loadings when its base does not); the warm start of the next actual
    step is kept as it was.
    """
    load_p = np.atleast_2d(np.asarray(load_p_mw, dtype=float))
    load_q = np.atleast_2d(np.asarray(load_q_mvar, dtype=float))
    sgen_p = np.atleast_2d(np.asarray(sgen_p_mw, dtype=float))
    groups = np.atleast_2d(np.asarray(groups, dtype=float))
    n_t, n_g = len(load_p), len(groups)
    n_b = len(flow.grid.net.line) + len(flow.grid.net.trafo)
    dp = delta_mw * groups
    dq = dp * grid.tan_phi[None, :]
    converged = np.zeros(n_t, dtype=bool)
    loadings = np.full((n_t, n_b), np.nan)
    sens = np.zeros((n_t, n_b, n_g))
    for t in range(n_t):
        batch_p = np.vstack((load_p[t], load_p[t] + dp))
        batch_q = np.vstack((load_q[t], load_q[t] + dq))
        batch_s = np.repeat(sgen_p[t][None, :], n_g + 1, axis=0)
        flows = flow.run(batch_p, batch_q, batch_s, remember=False)
        loading = branch_loadings(flows)
        converged[t] = bool(flows.converged[0])
        loadings[t] = loading[0]
        ok = flows.converged[1:] & flows.converged[0]
        sens[t][:, ok] = ((loading[1:][ok] - loading[0]) / delta_mw).T
    return converged, loadings, sens

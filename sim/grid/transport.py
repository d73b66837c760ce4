"""Transport between zones (feeders) from the network: fees from loss sensitivities, capacities from headroom.

For implicit capacity trading (F2.FMAR4) the market needs, for each ordered pair of zones, what
it costs and how much can move from one to the other per step. Zones are the DSO's congestion
points, the feeders of the site grid. At an operating point (one step of injections):

- `feeder_sensitivities` perturbs each feeder's consumption by a small amount, spread evenly
  over its prosumer loads, and measures with the power flow how the grid's losses and the
  feeder's lowest voltage change per MW (numerical sensitivities, one power flow per feeder);
- moving energy from zone A to zone B means A consumes less and B more; the losses change by
  `dloss_B - dloss_A` per MWh moved, which is the fee at the energy price
  (`fee_eur_per_kwh = max(0, dloss_B - dloss_A) * price`, zero when the move reduces losses);
- the capacity is the smaller of B's headroom for more consumption (its lines' rating at the
  loading limit minus their loading, and its voltage above the band's floor divided by its
  voltage sensitivity) and A's room to consume less (its present consumption plus its head
  line's rating in reverse), times the step length. The transformer carries the same total
  and does not limit a transfer between its feeders.

`transport_links` returns them as a DataFrame with columns `from_zone, to_zone,
fee_eur_per_kwh, capacity_kwh` (capacity per step and direction), the fields of the market's
transport links.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.grid.congestion import GridLimits, rating_kva
from sim.grid.model import SiteGrid
from sim.grid.powerflow import FlowResult, PowerFlow

__all__ = ["TRANSPORT_COLUMNS", "FeederSensitivities", "feeder_sensitivities", "transport_links"]

TRANSPORT_COLUMNS = ("from_zone", "to_zone", "fee_eur_per_kwh", "capacity_kwh")
_DELTA_MW = 0.005


@dataclass(frozen=True)
class FeederSensitivities:
    """Per feeder: d(losses)/dP (MW/MW), d(lowest feeder voltage)/dP (pu/MW), at `base`."""

    dloss_per_mw: np.ndarray
    dvm_per_mw: np.ndarray
    base: FlowResult


def _feeder_rows(grid: SiteGrid) -> list[np.ndarray]:
    feeder_of_load = grid.bus_feeder[grid.load_bus]
    return [np.flatnonzero(feeder_of_load == f) for f in range(len(grid.feeders))]


def feeder_sensitivities(
    grid: SiteGrid, flow: PowerFlow, load_p_mw: np.ndarray, load_q_mvar: np.ndarray, sgen_p_mw: np.ndarray
) -> FeederSensitivities:
    """Numerical sensitivities of losses and feeder voltages to each feeder's consumption (one step)."""
    load_p = np.asarray(load_p_mw, float).reshape(-1)
    load_q = np.asarray(load_q_mvar, float).reshape(-1)
    sgen_p = np.asarray(sgen_p_mw, float).reshape(-1)
    rows = _feeder_rows(grid)
    n_f = len(rows)
    batch_p = np.repeat(load_p[None, :], n_f + 1, axis=0)
    batch_q = np.repeat(load_q[None, :], n_f + 1, axis=0)
    for f, r in enumerate(rows):
        if len(r):
            batch_p[f + 1, r] += _DELTA_MW / len(r)
            batch_q[f + 1, r] += _DELTA_MW / len(r) * grid.tan_phi[r]
    flows = flow.run(batch_p, batch_q, np.repeat(sgen_p[None, :], n_f + 1, axis=0), remember=False)
    base = FlowResult(*(getattr(flows, name)[:1] for name in FlowResult.__dataclass_fields__))
    dloss = np.zeros(n_f)
    dvm = np.zeros(n_f)
    for f in range(n_f):
        if not (flows.converged[0] and flows.converged[f + 1]) or not len(rows[f]):
            continue
        dloss[f] = (flows.losses_mw[f + 1] - flows.losses_mw[0]) / _DELTA_MW
        buses = np.flatnonzero(grid.bus_feeder == f)
        dvm[f] = (flows.vm_pu[f + 1, buses].min() - flows.vm_pu[0, buses].min()) / _DELTA_MW
    return FeederSensitivities(dloss, dvm, base)


def transport_links(
    grid: SiteGrid,
    sens: FeederSensitivities,
    limits: GridLimits,
    *,
    slice_s: int,
    price_eur_per_kwh: float,
    feeder_net_mw: np.ndarray,
) -> pd.DataFrame:
    """Links between every ordered pair of feeders at the operating point of `sens.base` (module docstring).

    `feeder_net_mw[f]` is each feeder's net consumption at that point.
    """
    base = sens.base
    n_f = len(grid.feeders)
    dt_h = slice_s / 3600.0
    line_kva, _ = rating_kva(grid)
    limit = limits.max_loading_percent
    up_kw = np.zeros(n_f)  # room for more consumption
    down_kw = np.zeros(n_f)  # room for less consumption
    for f in range(n_f):
        lines = np.flatnonzero(grid.line_feeder == f)
        if not len(lines) or not base.converged[0]:
            continue
        loading = base.line_loading_percent[0, lines]
        up_kw[f] = float(np.min(np.maximum(limit - loading, 0.0) / 100.0 * line_kva[lines]))
        buses = np.flatnonzero(grid.bus_feeder == f)
        if sens.dvm_per_mw[f] < 0 and len(buses):
            v_room = max(float(base.vm_pu[0, buses].min()) - limits.vm_min_pu, 0.0)
            up_kw[f] = min(up_kw[f], v_room / -sens.dvm_per_mw[f] * 1000.0)
        head = lines[np.argmax(line_kva[lines])]
        down_kw[f] = max(float(feeder_net_mw[f]) * 1000.0 + limit / 100.0 * line_kva[head], 0.0)
    rows = []
    for a in range(n_f):
        for b in range(n_f):
            if a == b:
                continue
            fee = max(float(sens.dloss_per_mw[b] - sens.dloss_per_mw[a]), 0.0) * price_eur_per_kwh
            rows.append((grid.feeders[a], grid.feeders[b], round(fee, 6), round(min(up_kw[b], down_kw[a]) * dt_h, 6)))
    return pd.DataFrame(rows, columns=list(TRANSPORT_COLUMNS))

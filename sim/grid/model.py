"""The site grid: the site's pandapower net prepared for the prosumers that live on it.

`build_site_grid(net, prosumer_buses, ...)` turns the network of the site (a SimBench or
pandapower JSON net, `sim.grid.network`) into the grid the world runs its power flows on:

- switches are applied (an open line or transformer switch takes its branch out of service)
  and dropped, bus indices are made continuous (0..n-1), and the object-dtype min/max columns
  that SimBench leaves in its tables are cast to numbers (lightsim2grid needs them finite);
- the network's own loads and PV stand for the customers the site's prosumers represent, so
  they are replaced: each bus that carries prosumers gets one load (their non-flexible plus
  flexible consumption) and one static generator (their PV). Reactive power follows the power
  factor of the loads the network had on that bus (SimBench's per-profile cos phi), PV runs at
  unit power factor;
- the transformer is sized to the site (`transformer_kva`) and the lines' thermal ratings are
  scaled by `line_rating_scale` (reinforced cables where the site has more customers per bus
  than the benchmark net was designed for);
- feeders are found from the topology: the lines that leave a transformer's low-voltage
  busbar and everything behind them. Each feeder is a congestion point of the DSO (F2.FMAR7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.config import ConfigError

__all__ = ["SiteGrid", "build_site_grid"]

_DEFAULT_TAN_PHI = math.tan(math.acos(0.95))  # buses whose network loads carry no reactive power


@dataclass
class SiteGrid:
    """The prepared pandapower net and how the site's prosumers and feeders sit on it.

    `load_bus[j]` is the bus of prosumer load j (also of static generator j); `prosumer_load[i]`
    the load row of prosumer i; `tan_phi[j]` its reactive/active power ratio. `bus_feeder[b]` is
    the feeder index of bus b (-1 on a busbar or the high-voltage side), `line_feeder[l]` that of
    line l; `feeders[f]` the congestion point names; `feeder_trafo[f]` the transformer upstream.
    """

    net: object  # pandapowerNet
    site: str
    load_bus: np.ndarray
    prosumer_load: np.ndarray
    tan_phi: np.ndarray
    bus_feeder: np.ndarray
    line_feeder: np.ndarray
    feeders: tuple[str, ...]
    feeder_trafo: np.ndarray
    busbar_point: str

    @property
    def n_loads(self) -> int:
        return len(self.load_bus)

    def congestion_point_of_bus(self, bus: int) -> str:
        """The congestion point (feeder name, or the busbar's) a bus belongs to."""
        f = int(self.bus_feeder[bus])
        return self.feeders[f] if f >= 0 else self.busbar_point

    def injections_mw(self, load_kwh: np.ndarray, pv_kwh: np.ndarray, slice_s: int) -> tuple[np.ndarray, ...]:
        """Per-prosumer energies over steps (..., n_prosumers) into (load p, load q, sgen p) in MW per load row."""
        to_mw = 3600.0 / slice_s / 1000.0
        shape = (*load_kwh.shape[:-1], self.n_loads)
        load_p = np.zeros(shape)
        pv_p = np.zeros(shape)
        np.add.at(load_p.T, self.prosumer_load, np.moveaxis(load_kwh, -1, 0) * to_mw)
        np.add.at(pv_p.T, self.prosumer_load, np.moveaxis(pv_kwh, -1, 0) * to_mw)
        return load_p, load_p * self.tan_phi, pv_p


def _numeric_limits(net) -> None:
    for table in ("bus", "line", "trafo", "ext_grid", "load", "sgen", "gen", "storage"):
        if table not in net:
            continue
        frame = net[table]
        for col in frame.columns:
            if col.startswith(("min_", "max_")) and frame[col].dtype == object:
                frame[col] = pd.to_numeric(frame[col], errors="coerce")


def _apply_switches(net) -> None:
    if "switch" not in net or not len(net.switch):
        return
    sw = net.switch
    open_lines = sw.loc[(sw.et == "l") & ~sw.closed.astype(bool), "element"].unique()
    open_trafos = sw.loc[(sw.et == "t") & ~sw.closed.astype(bool), "element"].unique()
    net.line.loc[net.line.index.isin(open_lines), "in_service"] = False
    net.trafo.loc[net.trafo.index.isin(open_trafos), "in_service"] = False
    bus_bus = sw[(sw.et == "b") & sw.closed.astype(bool)]
    if len(bus_bus):
        from pandapower.toolbox import fuse_buses

        for _, row in bus_bus.iterrows():
            if row.bus in net.bus.index and row.element in net.bus.index and row.bus != row.element:
                fuse_buses(net, row.bus, row.element)
    net.switch.drop(net.switch.index, inplace=True)


def _feeders(net, site: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray]:
    """Bus -> feeder, line -> feeder, names, upstream trafo per feeder (see module docstring)."""
    n_bus = len(net.bus)
    trafos = net.trafo[net.trafo.in_service.astype(bool)]
    roots = set(int(b) for b in trafos.lv_bus) if len(trafos) else set(int(b) for b in net.ext_grid.bus)
    hv = set(int(b) for b in trafos.hv_bus)
    parent = list(range(n_bus))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    lines = net.line[net.line.in_service.astype(bool)]
    for a, b in zip(lines.from_bus.to_numpy(), lines.to_bus.to_numpy(), strict=True):
        a, b = int(a), int(b)
        if a in roots or b in roots:
            continue
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comp = np.array([find(b) for b in range(n_bus)])
    load_buses = set(int(b) for b in net.load.bus)
    # A component is a feeder when a line joins it to a root and it is on the low-voltage side.
    heads: dict[int, int] = {}
    for a, b in zip(lines.from_bus.to_numpy(), lines.to_bus.to_numpy(), strict=True):
        a, b = int(a), int(b)
        if (a in roots) != (b in roots):
            root, other = (a, b) if a in roots else (b, a)
            heads.setdefault(int(comp[other]), root)
    feeder_comps = sorted(c for c in heads if c not in roots and c not in hv)
    feeder_comps = [c for c in feeder_comps if any(int(comp[b]) == c for b in load_buses)] or feeder_comps
    index = {c: f for f, c in enumerate(feeder_comps)}
    bus_feeder = np.array([index.get(int(c), -1) if b not in roots else -1 for b, c in enumerate(comp)], dtype=int)
    line_feeder = np.full(len(net.line), -1, dtype=int)
    for pos, (a, b) in enumerate(zip(net.line.from_bus.to_numpy(), net.line.to_bus.to_numpy(), strict=True)):
        line_feeder[pos] = max(bus_feeder[int(a)], bus_feeder[int(b)])
    trafo_of_lv = {int(b): pos for pos, b in enumerate(net.trafo.lv_bus.to_numpy())}
    feeder_trafo = np.array([trafo_of_lv.get(heads[c], -1) for c in feeder_comps], dtype=int)
    names = tuple(f"{site}-feeder{f + 1}" for f in range(len(feeder_comps)))
    return bus_feeder, line_feeder, names, feeder_trafo


def build_site_grid(
    net,
    prosumer_buses: np.ndarray,
    *,
    site: str,
    transformer_kva: float | None = None,
    line_rating_scale: float = 1.0,
) -> SiteGrid:
    """Prepare `net` (changed in place) for the prosumers on `prosumer_buses` (original bus indices)."""
    import pandapower
    from pandapower.toolbox import create_continuous_bus_index

    if len(net.ext_grid) == 0:
        raise ConfigError("grid: the network has no external grid (slack) to connect the site to")
    if "trafo3w" in net and len(net.trafo3w):
        raise ConfigError("grid: three-winding transformers are not supported by the fast power flow")
    for table in ("impedance", "ward", "xward", "motor", "asymmetric_load", "dcline", "storage", "gen"):
        if table in net and len(net[table]):
            raise ConfigError(f"grid: the network's {table} elements are not supported by the fast power flow")
    missing = sorted(set(np.unique(prosumer_buses).tolist()) - set(net.bus.index.tolist()))
    if missing:
        raise ConfigError(f"grid: prosumers were placed on buses the network does not have ({missing[:5]})")
    marker = "_prosumer_bus"
    net.bus[marker] = net.bus.index.to_numpy()
    _apply_switches(net)
    _numeric_limits(net)
    old_to_new = dict(zip(net.bus.index.to_numpy(), range(len(net.bus)), strict=True))
    create_continuous_bus_index(net, store_old_index=False)
    buses = np.array([old_to_new[int(b)] for b in prosumer_buses], dtype=int)
    net.bus.drop(columns=[marker], inplace=True)

    # Reactive power ratio per bus from the network's own loads; then the loads are replaced.
    by_bus = net.load.groupby("bus")[["p_mw", "q_mvar"]].sum()
    tan_by_bus = (by_bus.q_mvar / by_bus.p_mw.where(by_bus.p_mw > 0)).dropna().to_dict()
    net.load.drop(net.load.index, inplace=True)
    net.sgen.drop(net.sgen.index, inplace=True)
    load_bus = np.unique(buses)
    for b in load_bus:
        pandapower.create_load(net, int(b), p_mw=0.0, q_mvar=0.0, name=f"prosumers@{int(b)}")
        pandapower.create_sgen(net, int(b), p_mw=0.0, q_mvar=0.0, name=f"pv@{int(b)}", type="PV")
    row_of_bus = {int(b): j for j, b in enumerate(load_bus)}
    prosumer_load = np.array([row_of_bus[int(b)] for b in buses], dtype=int)
    tan_phi = np.array([float(tan_by_bus.get(int(b), _DEFAULT_TAN_PHI)) for b in load_bus])

    if transformer_kva is not None and len(net.trafo):
        if transformer_kva <= 0:
            raise ConfigError(f"grid.transformer_kva: must be positive, not {transformer_kva}")
        net.trafo["sn_mva"] = transformer_kva / 1000.0 / len(net.trafo)
    if line_rating_scale <= 0:
        raise ConfigError(f"grid.line_rating_scale: must be positive, not {line_rating_scale}")
    net.line["max_i_ka"] = net.line["max_i_ka"].astype(float) * line_rating_scale
    for table in ("line", "trafo", "load", "sgen"):
        if "parallel" in net[table] and np.any(net[table]["parallel"].to_numpy() != 1):
            raise ConfigError(f"grid: parallel {table}s (parallel != 1) are not supported by the fast power flow")
    bus_feeder, line_feeder, names, feeder_trafo = _feeders(net, site)
    return SiteGrid(
        net=net,
        site=site,
        load_bus=load_bus,
        prosumer_load=prosumer_load,
        tan_phi=tan_phi,
        bus_feeder=bus_feeder,
        line_feeder=line_feeder,
        feeders=names,
        feeder_trafo=feeder_trafo,
        busbar_point=f"{site}-busbar",
    )

"""The site's grid: network models, prosumer placement, fast power flow, congestion and transport."""

from sim.grid.congestion import Congestion, GridLimits, detect, feeder_excess_kwh, overload_kw, rating_kva
from sim.grid.headroom import headroom_capacity
from sim.grid.linear import branch_loadings, branch_ratings_kva, feeder_groups, loading_sensitivities
from sim.grid.model import SiteGrid, build_site_grid
from sim.grid.network import cache_dir, load_buses, load_network, place_prosumers
from sim.grid.powerflow import FlowResult, PowerFlow, run_pandapower
from sim.grid.transport import TRANSPORT_COLUMNS, FeederSensitivities, feeder_sensitivities, transport_links

__all__ = [
    "TRANSPORT_COLUMNS",
    "Congestion",
    "FeederSensitivities",
    "FlowResult",
    "GridLimits",
    "PowerFlow",
    "SiteGrid",
    "branch_loadings",
    "branch_ratings_kva",
    "build_site_grid",
    "cache_dir",
    "detect",
    "feeder_excess_kwh",
    "feeder_groups",
    "feeder_sensitivities",
    "headroom_capacity",
    "load_buses",
    "load_network",
    "loading_sensitivities",
    "overload_kw",
    "place_prosumers",
    "rating_kva",
    "run_pandapower",
    "transport_links",
]

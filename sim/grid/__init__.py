"""The site's grid: network models and placement of prosumers (power flow arrives with the grid issue)."""

from sim.grid.network import load_buses, load_network, place_prosumers

__all__ = ["load_buses", "load_network", "place_prosumers"]

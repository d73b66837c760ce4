"""The site's grid network and the placement of prosumers on its buses.

`load_network` reads a SimBench code (shipped with the simbench package, nothing is
downloaded) or a pandapower JSON file; `place_prosumers` puts each prosumer on a bus that
already carries load in the network, spreading them over the network's loads in a shuffled
order drawn from the run's seed (deterministic; every existing load bus is used before any
bus gets a second prosumer).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.metadata
import json
import os
from pathlib import Path

import numpy as np

from sim.config import ConfigError, GridConfig

__all__ = ["cache_dir", "load_buses", "load_network", "place_prosumers"]


def cache_dir() -> Path:
    """Where built grids are kept: `goflex-twin/grids` in `$GOFLEX_TWIN_CACHE`, `$XDG_CACHE_HOME` or `~/.cache`.

    SimBench nets built from the package's tables and the site grids that run folders refer to
    by hash (`sim.outputs.resolve_grid_net`) live here; deleting the folder only costs rebuilding.
    """
    root = os.environ.get("GOFLEX_TWIN_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "goflex-twin" / "grids"


@functools.cache
def _simbench_net(code: str):
    """The SimBench net of `code`, built once and kept as pandapower JSON in the user's cache.

    Building a SimBench net from the package's tables takes 5-15 s; reading the cached JSON
    well under a second. The cache is derived from the installed simbench package only.
    """
    import pandapower

    version = importlib.metadata.version("simbench")
    cached = cache_dir() / f"{code}-simbench{version}.json"
    if cached.is_file():
        try:
            return pandapower.from_json(str(cached))
        except Exception:  # a damaged cache file is rebuilt below
            cached.unlink(missing_ok=True)
    import simbench

    try:
        net = simbench.get_simbench_net(code)
    except Exception as exc:  # simbench raises bare Exceptions for unknown codes
        raise ConfigError(f"grid.code: {code!r} is not a SimBench code that can be loaded ({exc})") from None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.part")
        pandapower.to_json(net, str(tmp))
        os.replace(tmp, cached)
    except OSError:
        pass  # no writable cache: the next run builds the net again
    return net


def load_network(grid: GridConfig):
    """The pandapower net of the site (a deep copy: callers may change it)."""
    if grid.file is not None:
        import pandapower

        try:
            return pandapower.from_json(str(Path(grid.file)))
        except Exception as exc:  # pandapower raises many types for a bad file
            raise ConfigError(f"grid.file: {grid.file} is not a pandapower JSON network ({exc})") from None
    return copy.deepcopy(_simbench_net(grid.code))


def load_buses(grid: GridConfig) -> np.ndarray:
    """The sorted bus indices that carry load in the site's network.

    For a SimBench code the list is kept beside the cached net, so placing prosumers does not
    need pandapower at all once the net has been built once.
    """
    if grid.file is None:
        version = importlib.metadata.version("simbench")
        side = cache_dir() / f"{grid.code}-simbench{version}.loadbuses.json"
        if side.is_file():
            return np.asarray(json.loads(side.read_text()), dtype=int)
    net = load_network(grid)
    buses = np.unique(net.load["bus"].to_numpy()) if len(net.load) else np.unique(net.bus.index.to_numpy())
    if grid.file is None:
        with contextlib.suppress(OSError):  # no writable cache: the next run reads the net again
            side.write_text(json.dumps([int(b) for b in buses]))
    return buses.astype(int)


def place_prosumers(buses: np.ndarray, n_prosumers: int, rng: np.random.Generator) -> np.ndarray:
    """Bus index of each prosumer: the given load buses in a seeded shuffled order, reused cyclically."""
    load_buses = np.asarray(buses, dtype=int)
    if len(load_buses) == 0:
        raise ConfigError("grid: the network has no buses to place prosumers on")
    order = rng.permutation(load_buses)
    return order[np.arange(n_prosumers) % len(order)].astype(int)

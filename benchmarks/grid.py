"""Grid benchmark: ms per power-flow step on each site's grid, fast path against plain pandapower.

    python -m benchmarks.grid [--steps 96] [--sites foss,esr,sww]

For each site the world is built (prosumers placed on the site grid, profiles drawn from the
seed), and the same `--steps` steps of injections (non-flexible load plus every flexible
device run uncontrolled, minus PV) are solved twice:

- fast: `sim.grid.PowerFlow`, the lightsim2grid model kept between steps, only the loads'
  and PV's powers rewritten, warm start from the previous step, one call per step as the
  world makes it (results read back into numpy arrays included);
- plain: `pandapower.runpp` once per step on the same net after writing the same injections
  (numba is not installed here, so pandapower runs its pure-Python Newton-Raphson path).

Prints the one-off conversion time, ms per step of both, the speed-up and the largest voltage
and loading differences between them. Target (issue 7): at least 10x faster than plain runpp.
Timings on a shared machine are noisy; the best of `--repeat` runs is kept.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sim.app import CONFIG_DIR
from sim.config import load_run_config


def _world(site: str, steps: int):
    from sim.world import World

    days = steps * 900 / 86_400
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"scenario={site}", f"sim.days={days}", "dso.strategy=direct_control"])
    return World(load_run_config(OmegaConf.to_container(cfg, resolve=True)))


def _measure(site: str, steps: int, repeat: int) -> dict[str, float | str | int]:
    from sim.grid import PowerFlow, run_pandapower

    world = _world(site, steps)
    grid = world.grid
    load = world.nonflex_kwh + world.dso.expected_flex_kwh.sum(axis=2)
    lp, lq, sp = grid.injections_mw(load, world.pv_kwh, world.slice_s)
    began = time.perf_counter()
    PowerFlow(grid)
    build_ms = (time.perf_counter() - began) * 1000
    fast_s = []
    for _ in range(repeat):
        flow = PowerFlow(grid)
        began = time.perf_counter()
        fast = [flow.run(lp[k], lq[k], sp[k]) for k in range(len(lp))]
        fast_s.append(time.perf_counter() - began)
    plain_s = []
    for _ in range(repeat):
        began = time.perf_counter()
        plain = run_pandapower(grid, lp, lq, sp)
        plain_s.append(time.perf_counter() - began)
    vm = np.vstack([r.vm_pu[0] for r in fast])
    loading = np.vstack([r.line_loading_percent[0] for r in fast])
    fast_ms = min(fast_s) / len(lp) * 1000
    plain_ms = min(plain_s) / len(lp) * 1000
    return {
        "site": site,
        "code": world.config.grid.code,
        "buses": len(grid.net.bus),
        "lines": len(grid.net.line),
        "loads": grid.n_loads,
        "build_ms": build_ms,
        "fast_ms": fast_ms,
        "plain_ms": plain_ms,
        "speedup": plain_ms / fast_ms,
        "dv_pu": float(np.nanmax(np.abs(vm - plain.vm_pu))),
        "dloading": float(np.nanmax(np.abs(loading - plain.line_loading_percent))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--sites", default="foss,esr,sww")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    header = (
        f"{'site':5} {'grid':20} {'buses':>5} {'lines':>5} {'loads':>5} {'convert ms':>10} "
        f"{'fast ms/step':>12} {'runpp ms/step':>13} {'speed-up':>8} {'max dV pu':>10} {'max dload %':>11}"
    )
    print(f"{args.steps} steps of 15 min per site, best of {args.repeat}")
    print(header)
    print("-" * len(header))
    for site in args.sites.split(","):
        r = _measure(site.strip(), args.steps, args.repeat)
        print(
            f"{r['site']:5} {r['code']:20} {r['buses']:5d} {r['lines']:5d} {r['loads']:5d} {r['build_ms']:10.1f} "
            f"{r['fast_ms']:12.3f} {r['plain_ms']:13.2f} {r['speedup']:7.0f}x {r['dv_pu']:10.1e} {r['dloading']:11.1e}"
        )


if __name__ == "__main__":
    main()

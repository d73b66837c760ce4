"""World benchmark: wall time per simulated day of each demo site, and a week of ESR.

    python -m benchmarks.world [--days-week 7] [--sites foss,esr,sww]

Prints, per run: build time (data, grid, agents), run time split into agents (device physics
and metering), ATP (FOA generation, FMAN planning, FMAR clearing, settlement) and grid, the
output time (files and report), simulated days per wall-second, and the world's own overhead
(everything except ATP solves and power flow) as a share of the total.
Target (issue 3): one simulated day of ESR in under 20 s on one core, world overhead under 25 %.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sim.app import CONFIG_DIR
from sim.config import load_run_config


def _config(site: str, days: float):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"scenario={site}", f"sim.days={days}"])
    return load_run_config(OmegaConf.to_container(cfg, resolve=True))


def _measure(site: str, days: float) -> dict[str, float]:
    from reports.report import build_report
    from sim.kpi import compute_kpis
    from sim.outputs import write_outputs
    from sim.world import World

    began = time.perf_counter()
    world = World(_config(site, days))
    build_s = time.perf_counter() - began
    t = time.perf_counter()
    world.run()
    run_s = time.perf_counter() - t
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_outputs(world, Path(tmp), compute_kpis(world))
        build_report(Path(tmp))
    output_s = time.perf_counter() - t
    total = build_s + run_s + output_s
    tm = world.timings
    solver_s = tm.parts.get("fman", 0.0) + tm.parts.get("fmar", 0.0)
    return {
        "build_s": build_s,
        "agents_s": tm.agents_s,
        "atp_s": tm.atp_s,
        "grid_s": tm.grid_s,
        "output_s": output_s,
        "total_s": total,
        "days_per_s": days / total,
        "overhead": (total - solver_s - tm.grid_s) / total,
        "fman_s": tm.parts.get("fman", 0.0),
        "fmar_s": tm.parts.get("fmar", 0.0),
        "foa_s": tm.parts.get("foa", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="foss,esr,sww")
    parser.add_argument("--days-week", type=float, default=7.0, help="length of the long ESR run (0: skip)")
    args = parser.parse_args()
    runs = [(site, 1.0) for site in args.sites.split(",")]
    if args.days_week > 0:
        runs.append(("esr", args.days_week))
    _measure("sww", 0.25)  # warm-up: imports, profile tables, cached grids
    header = (
        f"{'run':<12}{'build s':>9}{'agents s':>10}{'ATP s':>8}{'(FOA':>7}{'FMAN':>7}{'FMAR)':>7}"
        f"{'grid s':>8}{'output s':>10}{'total s':>9}{'days/s':>8}{'overhead':>10}"
    )
    print(header)
    print("-" * len(header))
    for site, days in runs:
        r = _measure(site, days)
        print(
            f"{site + f' {days:g}d':<12}{r['build_s']:>9.2f}{r['agents_s']:>10.2f}{r['atp_s']:>8.2f}"
            f"{r['foa_s']:>7.2f}{r['fman_s']:>7.2f}{r['fmar_s']:>7.2f}{r['grid_s']:>8.2f}{r['output_s']:>10.2f}"
            f"{r['total_s']:>9.2f}{r['days_per_s']:>8.3f}{r['overhead']:>10.0%}"
        )
    print("overhead = share of the total outside ATP solves (FMAN planning, FMAR clearing) and power flow")


if __name__ == "__main__":
    main()

"""Aggregation-loss benchmark: flexibility the FMAN's aggregates lose, boxes only against kept profiles.

    python -m benchmarks.aggregation_loss [--sites foss,esr,sww] [--days 1] [--seed 42]

Runs each site (default config, one day, seed 42) twice through `sim.world.World`:

- `boxes`: `fman.aggregation.min_box_share=null`, every member reduced to an inner box, which
  is exactly what the FMAN did before members could keep their profiles (the same code path);
- `kept`: the default `min_box_share` (0.9): a member whose box would keep less than 90 % of
  its energy flexibility keeps its profile and forms an aggregate of its own.

and prints the `kpi.json` `aggregation` figures of both side by side (`sim.accounting.
aggregation_section`: energy flexibility offered and lost in kWh, time flexibility lost in
steps), per site and per device type, and the planning wall time of both runs.
Target (issue 12): the energy-flexibility loss at least halved on every site, with every
aggregate still disaggregated exactly (the run folder checker verifies that on the default
runs; here every assignment goes through `atp.fman.disaggregate`, which refuses a schedule
that breaks a member's constraints).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sim.app import CONFIG_DIR
from sim.config import load_run_config

__all__ = ["main", "measure_site"]


def _config(site: str, *, days: float, seed: int, boxes: bool):
    overrides = [f"scenario={site}", f"sim.days={days}", f"sim.seed={seed}", "output.report=false"]
    if boxes:
        overrides.append("fman.aggregation.min_box_share=null")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return load_run_config(OmegaConf.to_container(cfg, resolve=True))


def measure_site(site: str, *, days: float, seed: int, boxes: bool) -> tuple[dict[str, Any], float]:
    """One run's `aggregation` section and its FMAN wall seconds."""
    from sim.accounting import aggregation_section
    from sim.world import World

    world = World(_config(site, days=days, seed=seed, boxes=boxes))
    t0 = time.perf_counter()
    world.run()
    wall = time.perf_counter() - t0
    return aggregation_section(world), wall


def _row(label: str, b: dict[str, Any], k: dict[str, Any]) -> str:
    lost_b, lost_k = b["energy_flexibility_lost_kwh"], k["energy_flexibility_lost_kwh"]
    ratio = f"{lost_k / lost_b:6.1%}" if lost_b > 1e-9 else "     -"
    return (
        f"{label:>22} {b['members']:>7} {b['energy_flexibility_offered_kwh']:>10.1f} "
        f"{lost_b:>10.1f} {lost_k:>10.1f} {ratio} "
        f"{b['time_flexibility_lost_steps']:>8} {k['time_flexibility_lost_steps']:>8} {k['members_keeping_profile']:>6}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="foss,esr,sww", help="comma-separated sites (default foss,esr,sww)")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days per run (default 1)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    args = parser.parse_args(argv)
    print(
        f"{'site / device':>22} {'members':>7} {'offered':>10} {'lost box':>10} {'lost kept':>10} {'kept/box':>6} "
        f"{'t-lost b':>8} {'t-lost k':>8} {'alone':>6}"
    )
    print(f"{'':>22} {'':>7} {'kWh':>10} {'kWh':>10} {'kWh':>10} {'':>6} {'steps':>8} {'steps':>8}")
    met = True
    for site in [s.strip() for s in args.sites.split(",") if s.strip()]:
        boxes, wall_b = measure_site(site, days=args.days, seed=args.seed, boxes=True)
        kept, wall_k = measure_site(site, days=args.days, seed=args.seed, boxes=False)
        print(_row(site, boxes, kept))
        for device in sorted(set(boxes["by_device"]) | set(kept["by_device"])):
            b, k = boxes["by_device"].get(device), kept["by_device"].get(device)
            if b is not None and k is not None:
                print(_row(f"{site}: {device}", b, k))
        print(
            f"{'':>22} aggregates: boxes {boxes['aggregates']}, kept {kept['aggregates']}; "
            f"run wall time: boxes {wall_b:.1f} s, kept {wall_k:.1f} s"
        )
        if kept["energy_flexibility_lost_kwh"] > 0.5 * boxes["energy_flexibility_lost_kwh"] + 1e-9:
            met = False
    print(f"target (energy-flexibility loss at least halved on every site): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()

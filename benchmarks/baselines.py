"""Declared-baseline benchmark: per device type, the baseline in force against the uncontrolled twin.

    python -m benchmarks.baselines [--sites foss,esr,sww] [--days 1] [--seed 42]

Runs each site (default config, one day, seed 42) through `sim.world.World`, computes its
`kpi.json` figures with `sim.kpi.compute_kpis` and prints, per device type, what an
uncontrolled twin of the devices drew, the baseline in force (the newest open offer's default
schedule at each step, else the metered energy) and their difference in percent. It reads the
KPIs' `energy.by_device.<type>`: `uncontrolled_kwh` and `baseline_in_force_kwh` where the
world reports them, else `baseline_kwh` (the twin) and `declared_baseline_kwh`.
Target (issue 12): every device type within 10 % of its twin on the default runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sim.app import CONFIG_DIR
from sim.config import load_run_config

__all__ = ["DeviceBaseline", "device_baselines", "main", "measure_site"]

TARGET_SHARE = 0.10


@dataclass(frozen=True)
class DeviceBaseline:
    """One device type of one run: the twin's kWh and the baseline in force's."""

    site: str
    device: str
    twin_kwh: float
    in_force_kwh: float

    @property
    def difference(self) -> float:
        """(in force - twin) / twin; 0 when both are 0."""
        if abs(self.twin_kwh) < 1e-9:
            return 0.0 if abs(self.in_force_kwh) < 1e-9 else float("inf")
        return (self.in_force_kwh - self.twin_kwh) / abs(self.twin_kwh)


def _config(site: str, *, days: float, seed: int):
    overrides = [f"scenario={site}", f"sim.days={days}", f"sim.seed={seed}", "output.report=false"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return load_run_config(OmegaConf.to_container(cfg, resolve=True))


def device_baselines(site: str, kpis: dict[str, Any]) -> list[DeviceBaseline]:
    """The per-device-type figures of one run's KPIs (the newer keys preferred)."""
    rows = []
    for device, figures in sorted(kpis["energy"]["by_device"].items()):
        twin = figures["uncontrolled_kwh"] if "uncontrolled_kwh" in figures else figures["baseline_kwh"]
        if "baseline_in_force_kwh" in figures:
            in_force = figures["baseline_in_force_kwh"]
        else:
            in_force = figures["declared_baseline_kwh"]
        rows.append(DeviceBaseline(site, device, float(twin), float(in_force)))
    return rows


def measure_site(site: str, *, days: float, seed: int) -> list[DeviceBaseline]:
    """Run one site and return its per-device-type baselines."""
    from sim.kpi import compute_kpis
    from sim.world import World

    world = World(_config(site, days=days, seed=seed))
    world.run()
    return device_baselines(site, compute_kpis(world))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="foss,esr,sww", help="comma-separated sites (default foss,esr,sww)")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days per site (default 1)")
    parser.add_argument("--seed", type=int, default=42, help="seed of every run (default 42)")
    args = parser.parse_args(argv)
    print(f"{'site':<5} {'device':<14} {'twin kWh':>10} {'in force kWh':>13} {'diff %':>8}")
    worst = 0.0
    for site in args.sites.split(","):
        for row in measure_site(site.strip(), days=args.days, seed=args.seed):
            worst = max(worst, abs(row.difference))
            print(
                f"{row.site:<5} {row.device:<14} {row.twin_kwh:>10.1f} {row.in_force_kwh:>13.1f} "
                f"{100 * row.difference:>+8.1f}"
            )
    verdict = "met" if worst <= TARGET_SHARE else "not met"
    print(f"largest difference {100 * worst:.1f} % (target: within {100 * TARGET_SHARE:.0f} %: {verdict})")


if __name__ == "__main__":
    main()

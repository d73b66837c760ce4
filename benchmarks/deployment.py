"""The world in process against the world against served receivers (`atp.deployment=services`):
wall time, its parts and the HTTP calls behind them, side by side on the same config and seed.

    python -m benchmarks.deployment                       # sww, one day, seed 42
    python -m benchmarks.deployment --scenario foss --seed 3

Both runs must give the same kpi.json (the command stops otherwise); the table shows where the
served run spends its extra time (each phase's seconds from timings.json) and what it costs per
step. Nothing is asserted on time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sim.app import CONFIG_DIR, run
from sim.config import load_run_config

__all__ = ["main"]


def _config(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return load_run_config(OmegaConf.to_container(cfg, resolve=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="sww")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--days", type=float, default=1.0)
    args = parser.parse_args(argv)
    base = [f"scenario={args.scenario}", f"sim.seed={args.seed}", f"sim.days={args.days}", "output.report=false"]
    rows = {}
    kpis = {}
    with tempfile.TemporaryDirectory() as tmp:
        for deployment in ("in_process", "services"):
            out = Path(tmp) / deployment
            config = _config([*base, f"atp.deployment={deployment}"])
            kpis[deployment] = run(config, out)
            rows[deployment] = json.loads((out / "timings.json").read_text())
            steps = config.n_steps
    if kpis["in_process"] != kpis["services"]:
        print("kpi.json differs between the two deployments: a defect, not a benchmark result")
        return 1
    parts = sorted({p for r in rows.values() for p in r["parts_s"]})
    print(f"{args.scenario}, seed {args.seed}, {args.days:g} day(s): {steps} steps; kpi.json equal in both runs")
    print(f"{'part':<12} {'in process s':>13} {'services s':>11} {'extra ms/step':>14}")
    for part in [*parts, "wall"]:
        a = rows["in_process"]["wall_s"] if part == "wall" else rows["in_process"]["parts_s"].get(part, 0.0)
        b = rows["services"]["wall_s"] if part == "wall" else rows["services"]["parts_s"].get(part, 0.0)
        print(f"{part:<12} {a:>13.1f} {b:>11.1f} {1000 * (b - a) / steps:>14.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

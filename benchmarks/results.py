"""Headline results of run folders side by side: energy against the twins, savings split, margin.

    python -m benchmarks.results RUN_DIR [RUN_DIR ...]

Reads only `timeseries.parquet` and `kpi.json`, and works on run folders of older versions
too (before warm-up and tail existed every step counts; before the ledger the two margins the
folder reports are both shown), so one command prints the before/after table of a change.
Definitions are those of docs/outputs.md (`savings`): shift + volume = total.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd


def _counted(ts: pd.DataFrame) -> pd.DataFrame:
    return ts[ts["period"] != "warmup"] if "period" in ts.columns else ts


def _savings(ts: pd.DataFrame, devices: list[str]) -> tuple[float, float, float]:
    """(total, shift, volume) EUR summed over device types, as sim/accounting.py defines them."""
    price = ts["price_eur_per_kwh"].to_numpy()
    total = shift = volume = 0.0
    for device in devices:
        m = ts[f"{device}_metered_kwh"].to_numpy()
        u = ts[f"{device}_counterfactual_kwh"].to_numpy()
        t = float(price @ (u - m))
        mean_price = float(price @ u / u.sum()) if abs(u.sum()) > 1e-9 else float(price.mean())
        v = float(u.sum() - m.sum()) * mean_price
        total, shift, volume = total + t, shift + t - v, volume + v
    return total, shift, volume


def _share(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.1f} %" if abs(b) > 1e-9 else "n/a"


def summarise(run_dir: Path) -> dict[str, Any]:
    """One row of the table for a run folder."""
    kpis = json.loads((run_dir / "kpi.json").read_text())
    ts = _counted(pd.read_parquet(run_dir / "timeseries.parquet"))
    suffix = "_metered_kwh"
    devices = sorted(c[: -len(suffix)] for c in ts.columns if c.endswith(suffix) and c != "flexible" + suffix)
    metered, twin = float(ts["flexible_metered_kwh"].sum()), float(ts["flexible_counterfactual_kwh"].sum())
    baseline = float(ts["flexible_baseline_kwh"].sum())
    worst = max(
        (
            abs(ts[f"{d}_baseline_kwh"].sum() / ts[f"{d}_counterfactual_kwh"].sum() - 1)
            if abs(ts[f"{d}_counterfactual_kwh"].sum()) > 1e-9
            else 0.0,
            d,
        )
        for d in devices
    )
    ev = "n/a"
    if "ev" in devices:
        ev = _share(float(ts["ev_metered_kwh"].sum()), float(ts["ev_counterfactual_kwh"].sum()))
    total, shift, volume = _savings(ts, devices)
    money = kpis.get("money", {})
    margins = [f"{money['aggregator_margin_eur']:.2f}"] if "aggregator_margin_eur" in money else []
    if not margins:  # before one ledger: the settlement's and the D2.1 KPIs' margins
        margins = [
            f"{kpis['settlement']['margin_eur']:.2f}",
            f"{kpis['fman_kpi']['money']['aggregator_margin_eur']:.2f}",
        ]
    run = kpis["run"]
    return {
        "run": f"{run_dir.name}: {run['scenario']} seed {run['seed']}",
        "metered vs twin": _share(metered, twin),
        "EV vs twin": ev,
        "baseline vs twin": _share(baseline, twin),
        "worst type": f"{worst[1]} {100 * worst[0]:.0f} %",
        "savings EUR": f"{total:.2f}",
        "shift EUR": f"{shift:.2f}",
        "volume EUR": f"{volume:.2f}",
        "margin EUR": " / ".join(margins),
        "steps": len(ts),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    rows = [summarise(d) for d in args.run_dirs]
    frame = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.to_string(index=False))


if __name__ == "__main__":
    main()

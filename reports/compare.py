"""A sweep's comparison: one table (and figure) of the KPIs of every run folder below a sweep folder."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from atp.flexoffer.files import write_atomic
from reports.report import kpi_rows

__all__ = ["build_comparison", "comparison_frame"]

_COLUMNS = (
    "run.scenario",
    "run.seed",
    "run.days",
    "energy.flexible_energy_shifted_kwh",
    "money.flexible_savings_eur",
    "power.site_peak_baseline_kw",
    "power.site_peak_actual_kw",
    "market.cleared_kwh",
    "flexibility.load_adaptability_level_max",
    "comfort.limit_violations.heat_pump",
    "comfort.limit_violations.ev",
    "comfort.ems_deviations",
)


def comparison_frame(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per complete run (a folder with kpi.json) below `sweep_dir`."""
    rows = []
    for kpi_path in sorted(Path(sweep_dir).rglob("kpi.json")):
        flat = dict(kpi_rows(json.loads(kpi_path.read_text())))
        rows.append({"run_dir": str(kpi_path.parent.relative_to(sweep_dir)), **{c: flat.get(c) for c in _COLUMNS}})
    return pd.DataFrame(rows, columns=["run_dir", *_COLUMNS])


def build_comparison(sweep_dir: str | Path) -> Path:
    """Write `comparison.html`, `comparison.csv` and a figure into the sweep folder."""
    sweep_dir = Path(sweep_dir)
    frame = comparison_frame(sweep_dir)
    if frame.empty:
        raise FileNotFoundError(f"{sweep_dir}: no complete runs (no kpi.json below it)")
    write_atomic(sweep_dir / "comparison.csv", frame.to_csv(index=False))
    fig, ax = plt.subplots(figsize=(max(6, len(frame) * 0.9), 3.5))
    ax.bar(range(len(frame)), frame["money.flexible_savings_eur"].astype(float), color="tab:green")
    ax.set_xticks(range(len(frame)), frame["run_dir"], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("flexible load savings, EUR")
    fig.savefig(sweep_dir / "comparison.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    table = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sweep comparison</title></head><body>"
        f"<h1>Sweep comparison: {html.escape(str(sweep_dir))}</h1>"
        "<img src='comparison.png' alt='savings per run'>" + table + "</body></html>\n"
    )
    out = sweep_dir / "comparison.html"
    write_atomic(out, page)
    return out

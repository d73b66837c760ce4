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

__all__ = ["build_comparison", "comparison_frame", "strategy_frame"]

_COLUMNS = (
    "run.scenario",
    "run.dso_strategy",
    "run.seed",
    "run.days",
    "energy.flexible_energy_shifted_kwh",
    "savings.total_eur",
    "savings.shift_eur",
    "savings.volume_eur",
    "power.site_peak_uncontrolled_kw",
    "power.site_peak_actual_kw",
    "market.cleared_kwh",
    "flexibility.load_adaptability_level_max",
    "comfort.by_device.heat_pump.gap",
    "comfort.by_device.ev.gap",
    "comfort.ems_deviations",
    "grid.overload_hours",
    "grid.overload_energy_kwh",
    "grid.max_line_loading_percent",
    "grid.max_trafo_loading_percent",
    "grid.voltage_violation_hours",
    "grid.steps_not_converged",
    "dso.cost_eur",
    "dso.prosumer_rewards_eur",
)
# The DSO strategy comparison (issue 7): one row per strategy, in this order.
_STRATEGY_COLUMNS = {
    "grid.overload_hours": "overload h",
    "grid.overload_energy_kwh": "overload kWh",
    "grid.max_line_loading_percent": "max line loading %",
    "grid.max_trafo_loading_percent": "max trafo loading %",
    "grid.voltage_violation_hours": "voltage violation h",
    "energy.flexible_energy_shifted_kwh": "flexible energy shifted kWh",
    "dso.cost_eur": "DSO cost EUR",
    "dso.prosumer_rewards_eur": "prosumer rewards EUR",
}


def strategy_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The sweep's runs grouped by scenario and DSO strategy (mean over seeds), the strategy KPIs only."""
    if frame.empty or frame["run.dso_strategy"].isna().all():
        return pd.DataFrame()
    cols = [c for c in _STRATEGY_COLUMNS if c in frame]
    grouped = frame.groupby(["run.scenario", "run.dso_strategy"], sort=False)[cols].mean(numeric_only=True)
    return grouped.rename(columns=_STRATEGY_COLUMNS).reset_index()


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
    fig, axes = plt.subplots(1, 2, figsize=(max(9, len(frame) * 1.6), 3.5))
    ax = axes[0]
    ax.bar(range(len(frame)), frame["savings.total_eur"].astype(float), color="tab:green")
    ax.set_xticks(range(len(frame)), frame["run_dir"], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("flexible load savings, EUR")
    ax = axes[1]
    ax.bar(range(len(frame)), frame["grid.overload_energy_kwh"].astype(float).fillna(0.0), color="tab:red")
    ax.set_xticks(range(len(frame)), frame["run_dir"], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("grid overload energy, kWh")
    fig.savefig(sweep_dir / "comparison.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    table = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    strategies = strategy_frame(frame)
    strategy_html = ""
    if len(strategies) > 1:
        write_atomic(sweep_dir / "strategies.csv", strategies.to_csv(index=False))
        strategy_html = (
            "<h2>DSO strategies</h2><p>Mean over the seeds of each scenario and strategy "
            "(KPI definitions: docs/outputs.md).</p>"
            + strategies.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
        )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sweep comparison</title></head><body>"
        f"<h1>Sweep comparison: {html.escape(str(sweep_dir))}</h1>"
        "<img src='comparison.png' alt='savings and overload energy per run'>"
        + strategy_html
        + "<h2>All runs</h2>"
        + table
        + "</body></html>\n"
    )
    out = sweep_dir / "comparison.html"
    write_atomic(out, page)
    return out

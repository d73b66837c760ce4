"""One run's report: figures from timeseries.parquet, market.parquet and grid.parquet, KPIs from kpi.json.

`build_report(run_dir)` writes `report.html` and `figures/*.png` into the run folder; the page
links its figures relatively, so the folder can be moved or archived whole.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from atp.flexoffer.files import write_atomic
from reports.accounts import accounting_html

__all__ = ["build_report", "kpi_rows"]


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)


def _figures(run_dir: Path, ts: pd.DataFrame) -> list[tuple[str, str]]:
    slice_h = (ts["time"].iloc[1] - ts["time"].iloc[0]).total_seconds() / 3600 if len(ts) > 1 else 0.25
    figs: list[tuple[str, str]] = []
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.plot(ts["time"], ts["site_net_counterfactual_kwh"] / slice_h, label="site net load, without ATP", color="0.55")
    ax.plot(ts["time"], ts["site_net_kwh"] / slice_h, label="site net load, metered", color="tab:blue")
    ax.plot(ts["time"], -ts["pv_kwh"] / slice_h, label="PV", color="tab:orange", lw=0.8)
    ax.set_ylabel("kW")
    ax.legend(loc="upper left", fontsize=8)
    ax2 = ax.twinx()
    ax2.step(ts["time"], ts["price_eur_per_kwh"], where="post", color="tab:red", lw=0.8)
    ax2.set_ylabel("day-ahead EUR/kWh", color="tab:red")
    ax.set_title("Site load and day-ahead price")
    _save(fig, run_dir / "figures" / "site_load.png")
    figs.append(("figures/site_load.png", "Site net load (baseline and metered), PV and day-ahead price"))

    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(ts["time"], ts["flexible_counterfactual_kwh"] / slice_h, label="without ATP (uncontrolled)", color="0.55")
    ax.plot(
        ts["time"],
        ts["flexible_baseline_kwh"] / slice_h,
        label="baselines in force (declared default schedules)",
        color="0.75",
        ls=":",
    )
    ax.plot(ts["time"], ts["flexible_scheduled_kwh"] / slice_h, label="scheduled", color="tab:green", ls="--")
    ax.plot(ts["time"], ts["flexible_metered_kwh"] / slice_h, label="metered", color="tab:blue")
    ax.set_ylabel("kW")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Flexible load: baseline, scheduled, metered")
    _save(fig, run_dir / "figures" / "flexible_load.png")
    figs.append(("figures/flexible_load.png", "Flexible devices: what the plans asked and what ran"))

    fig, ax = plt.subplots(figsize=(10, 3.0))
    ax.bar(ts["time"], ts["brp_imbalance_kwh"], width=slice_h / 24 * 0.9, color="0.7", label="BRP imbalance forecast")
    ax.plot(ts["time"], ts["market_cleared_kwh"], color="tab:purple", label="cleared in the FMAR (abs)")
    ax.set_ylabel("kWh per step")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Flexibility market")
    _save(fig, run_dir / "figures" / "market.png")
    figs.append(("figures/market.png", "Requested and cleared flexibility"))
    return figs


def _grid_figures(run_dir: Path, grid: pd.DataFrame, kpis: dict[str, Any]) -> list[tuple[str, str]]:
    """Loadings and voltages per step from grid.parquet, with the limits the DSO works to."""
    if grid.empty:
        return []
    branches = grid[grid.element != "bus"]
    buses = grid[grid.element == "bus"]
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.4), sharex=True)
    ax = axes[0]
    trafo = branches[branches.element == "trafo"].groupby("time")["loading_percent"].max()
    lines = branches[branches.element == "line"].groupby("time")["loading_percent"].max()
    ax.plot(trafo.index, trafo.to_numpy(), label="transformer", color="tab:red")
    ax.plot(lines.index, lines.to_numpy(), label="most loaded line", color="tab:blue")
    ax.axhline(100.0, color="0.3", ls="--", lw=0.8, label="limit")
    failed = grid[~grid.converged].time.unique()
    for t in failed:
        ax.axvline(t, color="k", lw=0.6, alpha=0.5)
    ax.set_ylabel("loading, %")
    ax.legend(loc="upper left", fontsize=8)
    strategy = kpis.get("dso", {}).get("strategy", "?")
    ax.set_title(
        f"Grid loading (DSO strategy: {strategy})" + (f"; {len(failed)} steps did not converge" if len(failed) else "")
    )
    ax = axes[1]
    vm = buses.groupby("time")["vm_pu"].agg(["min", "max"])
    ax.plot(vm.index, vm["min"].to_numpy(), color="tab:purple", label="lowest bus voltage")
    ax.plot(vm.index, vm["max"].to_numpy(), color="tab:orange", label="highest bus voltage")
    ax.axhline(0.9, color="0.3", ls="--", lw=0.8)
    ax.axhline(1.1, color="0.3", ls="--", lw=0.8)
    ax.set_ylabel("voltage, pu")
    ax.legend(loc="lower left", fontsize=8)
    _save(fig, run_dir / "figures" / "grid.png")
    figs = [
        (
            "figures/grid.png",
            "Transformer and line loading, bus voltages per step (power flow on the metered injections)",
        )
    ]

    per_line = branches[branches.element == "line"].pivot_table(
        index="index", columns="time", values="loading_percent", aggfunc="max"
    )
    if len(per_line):
        fig, ax = plt.subplots(figsize=(10, 3.6))
        image = ax.imshow(per_line.to_numpy(), aspect="auto", cmap="magma_r", vmin=0, vmax=max(120.0, 1.0))
        ax.set_ylabel("line")
        ax.set_xlabel("step")
        fig.colorbar(image, ax=ax, label="loading, %")
        ax.set_title("Line loading per step")
        _save(fig, run_dir / "figures" / "grid_lines.png")
        figs.append(("figures/grid_lines.png", "Loading of every line per step"))
    return figs


def kpi_rows(kpis: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten the KPI dict into (dotted name, value) rows; long lists are summarised."""
    rows: list[tuple[str, Any]] = []
    for key, value in kpis.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(kpi_rows(value, prefix=f"{name}."))
        elif isinstance(value, list) and len(value) > 6:
            numbers = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
            if len(numbers) == len(value):
                rows.append((name, f"{len(value)} values, max {max(numbers, default=0):.4g}"))
            else:
                rows.append((name, f"{len(value)} values: {', '.join(map(str, value[:3]))}, ..."))
        else:
            rows.append((name, value))
    return rows


def build_report(run_dir: str | Path) -> Path:
    """Write `report.html` (and its figures) for a finished run folder; returns its path."""
    run_dir = Path(run_dir)
    kpi_path = run_dir / "kpi.json"
    if not kpi_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no kpi.json; the run is incomplete or this is not a run folder")
    kpis = json.loads(kpi_path.read_text())
    ts = pd.read_parquet(run_dir / "timeseries.parquet")
    figs = _figures(run_dir, ts)
    if (run_dir / "grid.parquet").is_file():
        figs += _grid_figures(run_dir, pd.read_parquet(run_dir / "grid.parquet"), kpis)
    run = kpis.get("run", {})
    title = f"GOFLEX twin run: {run.get('scenario', '?')} from {run.get('start', '?')}, {run.get('days', '?')} days"
    table = "\n".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(value))}</td></tr>" for name, value in kpi_rows(kpis)
    )
    images = "\n".join(
        f'<figure><img src="{src}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}</figcaption></figure>'
        for src, cap in figs
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td{{padding:2px 10px}}
tr:nth-child(even){{background:#f3f3f3}}img{{max-width:100%}}th{{text-align:left;padding:2px 10px}}
.note{{color:#555;font-size:90%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Files of this run: flexoffers.jsonl, aggregates.jsonl, schedules.jsonl, ledger.parquet,
measurements.parquet, timeseries.parquet, market.parquet, grid.parquet, grid_injections.parquet,
grid_forecast.parquet, grid_net.ref.json,
transport.parquet, kpi.json (formats: docs/outputs.md).</p>
{accounting_html(kpis, run_dir)}
{images}
<h2>All KPIs</h2><table>{table}</table></body></html>
"""
    out = run_dir / "report.html"
    write_atomic(out, page)
    return out

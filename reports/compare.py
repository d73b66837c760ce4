"""A sweep's comparison: one table (and figure) of the KPIs of every run folder below a sweep folder.

A sweep over `dso.strategy` also gets the DSO strategy table (`strategy_frame`, written as
`strategies.csv`): per scenario and strategy, the mean over seeds of overload energy and hours,
`relief_share`, the DSO's cost per kWh relieved, prosumer rewards, energy not delivered and the
steps a strategy overloads that were within limits without flexibility, and one `oracle` row per
scenario (sim/oracle.py). Per run, against the `no_flex` run of the same scenario, seed, start
and length:

- `relief_share` = (no_flex overload kWh - the run's) / (no_flex overload kWh - the oracle's),
  the oracle's bound coming from the no_flex run's kpi.json (`grid.oracle`): 1 reaches the
  bound, 0 is no better than no flexibility, negative is worse;
- `DSO cost per kWh relieved` = the run's `dso.cost_eur` / (no_flex - run overload kWh), empty
  when nothing is relieved;
- `new overload steps`: steps of the counted period (grid.parquet) where some line or the
  transformer is over its limit in the run and none is in the no_flex run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from atp.flexoffer.files import write_atomic
from reports.report import kpi_rows
from sim.config import DSO_STRATEGIES

__all__ = ["build_comparison", "comparison_frame", "strategy_frame"]

_COLUMNS = (
    "run.scenario",
    "run.dso_strategy",
    "run.seed",
    "run.days",
    "run.start",
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
    "grid.oracle.overload_energy_kwh",
    "grid.oracle.overload_hours",
    "grid.oracle.max_line_loading_percent",
    "grid.oracle.max_trafo_loading_percent",
    "grid.oracle.lp_overload_energy_kwh",
    "dso.cost_eur",
    "dso.prosumer_rewards_eur",
    "dso.energy_not_delivered_kwh",
)
_RUN_KEY = ["run.scenario", "run.seed", "run.start", "run.days"]  # what a strategy is compared within
# The DSO strategy comparison (issue 13): one row per scenario and strategy (and the oracle), in this order.
_STRATEGY_COLUMNS = {
    "grid.overload_energy_kwh": "overload kWh",
    "grid.overload_hours": "overload h",
    "relief_share": "relief_share",
    "new_overload_steps": "new overload steps",
    "dso.cost_eur": "DSO cost EUR",
    "dso_cost_per_kwh_relieved": "DSO cost per kWh relieved EUR",
    "dso.prosumer_rewards_eur": "prosumer rewards EUR",
    "dso.energy_not_delivered_kwh": "energy not delivered kWh",
    "grid.max_line_loading_percent": "max line loading %",
    "grid.max_trafo_loading_percent": "max trafo loading %",
    "grid.voltage_violation_hours": "voltage violation h",
    "energy.flexible_energy_shifted_kwh": "flexible energy shifted kWh",
}
_ORACLE = "oracle"


def _with_relief(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run, relief_share and the DSO's cost per kWh relieved against the no_flex run (and
    oracle) of the same scenario, seed, start and length (module docstring); NaN without one."""
    out = frame.copy()
    out["relief_share"] = np.nan
    out["dso_cost_per_kwh_relieved"] = np.nan
    keys = [k for k in _RUN_KEY if k in out]
    base = out[out["run.dso_strategy"] == "no_flex"]
    for _, ref in base.iterrows():
        same = np.ones(len(out), dtype=bool)
        for k in keys:
            same &= (out[k] == ref[k]).to_numpy() | (out[k].isna() & pd.isna(ref[k])).to_numpy()
        no_flex = float(ref["grid.overload_energy_kwh"])
        relieved = no_flex - out.loc[same, "grid.overload_energy_kwh"].astype(float)
        oracle = ref.get("grid.oracle.overload_energy_kwh")
        if oracle is not None and not pd.isna(oracle) and no_flex - float(oracle) > 1e-9:
            out.loc[same, "relief_share"] = relieved / (no_flex - float(oracle))
        cost = out.loc[same, "dso.cost_eur"].astype(float)
        out.loc[same, "dso_cost_per_kwh_relieved"] = (cost / relieved).where(relieved > 1e-9)
    return out


def strategy_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The sweep's runs grouped by scenario and DSO strategy (mean over seeds), the strategy KPIs
    only, with an `oracle` row per scenario whose no_flex runs carry the bound (module docstring)."""
    if frame.empty or frame["run.dso_strategy"].isna().all():
        return pd.DataFrame()
    runs = _with_relief(frame)
    if "new_overload_steps" not in runs:
        runs["new_overload_steps"] = np.nan
    oracle = runs[runs["run.dso_strategy"].eq("no_flex") & runs["grid.oracle.overload_energy_kwh"].notna()].copy()
    if len(oracle):
        oracle["run.dso_strategy"] = _ORACLE
        for name in ("overload_energy_kwh", "overload_hours", "max_line_loading_percent", "max_trafo_loading_percent"):
            oracle[f"grid.{name}"] = oracle[f"grid.oracle.{name}"]
        oracle["relief_share"] = 1.0
        for col in ("dso.cost_eur", "dso_cost_per_kwh_relieved", "dso.prosumer_rewards_eur", "new_overload_steps"):
            oracle[col] = np.nan
        oracle["dso.energy_not_delivered_kwh"] = np.nan
        oracle["grid.voltage_violation_hours"] = np.nan
        oracle["energy.flexible_energy_shifted_kwh"] = np.nan
        runs = pd.concat([runs, oracle], ignore_index=True)
    cols = [c for c in _STRATEGY_COLUMNS if c in runs]
    numeric = runs[cols].apply(pd.to_numeric, errors="coerce")
    numeric[["run.scenario", "run.dso_strategy"]] = runs[["run.scenario", "run.dso_strategy"]]
    grouped = numeric.groupby(["run.scenario", "run.dso_strategy"], sort=False)[cols].mean().reset_index()
    order = {name: i for i, name in enumerate([*DSO_STRATEGIES, _ORACLE])}
    rank = grouped["run.dso_strategy"].map(order).fillna(len(order))
    grouped = grouped.assign(_rank=rank).sort_values(["run.scenario", "_rank"], kind="stable").drop(columns="_rank")
    return grouped.rename(columns=_STRATEGY_COLUMNS).reset_index(drop=True)


def _overloaded_steps(run_dir: Path) -> pd.Series | None:
    """Per counted step of a run folder's grid.parquet, whether a line or transformer is over its limit."""
    path = run_dir / "grid.parquet"
    if not path.is_file():
        return None
    grid = pd.read_parquet(path, columns=["time", "element", "overloaded"])
    branches = grid[grid.element.isin(["line", "trafo"])]
    return branches.groupby("time").overloaded.any()


def _new_overload_steps(frame: pd.DataFrame, sweep_dir: Path) -> pd.Series:
    """Per run, the steps over a limit whose no_flex counterpart (module docstring) is within them."""
    out = pd.Series(np.nan, index=frame.index)
    keys = [k for k in _RUN_KEY if k in frame]
    counted = {}
    for i, row in frame.iterrows():
        kpi = json.loads((sweep_dir / row["run_dir"] / "kpi.json").read_text())
        counted[i] = kpi.get("grid", {}).get("steps")
    base = frame[frame["run.dso_strategy"] == "no_flex"]
    for _, ref in base.iterrows():
        ref_steps = _overloaded_steps(sweep_dir / ref["run_dir"])
        if ref_steps is None:
            continue
        for i, row in frame.iterrows():
            if any(not (row[k] == ref[k] or (pd.isna(row[k]) and pd.isna(ref[k]))) for k in keys):
                continue
            steps = _overloaded_steps(sweep_dir / row["run_dir"])
            if steps is None:
                continue
            n = counted.get(i)
            both = pd.concat([ref_steps, steps], axis=1, keys=["ref", "run"]).fillna(False).iloc[-n:] if n else None
            if both is not None:
                out[i] = int((both["run"] & ~both["ref"]).sum())
    return out


def comparison_frame(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per complete run (a folder with kpi.json) below `sweep_dir`, with its
    `new_overload_steps` against the no_flex run of the same scenario and seed (module docstring)."""
    rows = []
    for kpi_path in sorted(Path(sweep_dir).rglob("kpi.json")):
        flat = dict(kpi_rows(json.loads(kpi_path.read_text())))
        rows.append({"run_dir": str(kpi_path.parent.relative_to(sweep_dir)), **{c: flat.get(c) for c in _COLUMNS}})
    frame = pd.DataFrame(rows, columns=["run_dir", *_COLUMNS])
    if len(frame) and "no_flex" in set(frame["run.dso_strategy"].dropna()):
        frame["new_overload_steps"] = _new_overload_steps(frame, Path(sweep_dir))
    return frame


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
            "<h2>DSO strategies</h2><p>Mean over the seeds of each scenario and strategy; relief_share "
            "against the oracle's bound (the least overload the offered flexibility can reach; KPI "
            "definitions: docs/outputs.md).</p>"
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


def main(argv: list[str] | None = None) -> int:
    """`python -m reports.compare SWEEP_DIR`: print the sweep's DSO strategy table (and rewrite
    the comparison: comparison.html, comparison.csv, strategies.csv)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m reports.compare SWEEP_DIR", file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    if not Path(args[0]).is_dir():
        print(f"{args[0]}: no such sweep folder", file=sys.stderr)
        return 2
    build_comparison(args[0])
    table = strategy_frame(comparison_frame(args[0]))
    if table.empty:
        print(f"{args[0]}: no DSO strategies to compare (run a sweep over dso.strategy)")
        return 0
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 3):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

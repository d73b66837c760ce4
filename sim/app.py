"""`goflex-twin`: the Hydra app that simulates one demo site (or a sweep) with the ATP in the loop.

    goflex-twin scenario=foss                      one run, folder under outputs/
    goflex-twin scenario=esr sim.days=7 sim.seed=3
    goflex-twin -m scenario=foss,esr,sww           a sweep, with a comparison report

A wrong value stops the run before it starts with one sentence naming the key (exit code 2),
and the run folder Hydra made for it is removed again. The configs are the package `scenarios`
(installed with the code), so the command runs from any folder.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from atp.errors import AtpError
from atp.flexoffer.files import write_atomic
from sim.config import ConfigError, RunConfig, load_run_config
from sim.sources import SourceError

__all__ = ["CONFIG_DIR", "CONFIG_PACKAGE", "main", "run"]

CONFIG_PACKAGE = "scenarios"
CONFIG_DIR = str(importlib.resources.files(CONFIG_PACKAGE))  # for hydra.initialize_config_dir (tests, benchmarks)


def _progress_bar(config: RunConfig, setting: Any):
    enabled = sys.stderr.isatty() if str(setting) == "auto" else bool(setting)
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=config.n_steps, desc=f"{config.site.name} steps", unit="step", mininterval=0.5, delay=2.0)


def run(config: RunConfig, out_dir: Path, *, progress: Any = False) -> dict[str, Any]:
    """Simulate, then write the run folder; returns the KPIs."""
    from reports.report import build_report
    from sim.kpi import compute_kpis
    from sim.outputs import write_outputs
    from sim.world import World

    began = time.perf_counter()
    world = World(config, run_dir=out_dir)
    bar = _progress_bar(config, progress)
    try:
        world.run(progress=(lambda k: bar.update(1)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
        world.close()  # served receivers (atp.deployment=services): stopped, their stores read back
    after_s: dict[str, float] = {}
    t = time.perf_counter()
    kpis = compute_kpis(world)
    after_s["kpi"] = time.perf_counter() - t
    t = time.perf_counter()
    write_outputs(world, out_dir, kpis)
    after_s["outputs"] = time.perf_counter() - t
    t = time.perf_counter()
    if config.report:
        build_report(out_dir)
    after_s["report"] = time.perf_counter() - t
    timings = world.timings.summary(wall_s=time.perf_counter() - began, after_s=after_s)
    write_atomic(out_dir / "timings.json", json.dumps(timings, indent=2, sort_keys=True) + "\n")
    return kpis


def _summary(kpis: dict[str, Any], out_dir: Path, report: bool) -> str:
    e, sv, m, p, mk = kpis["energy"], kpis["savings"], kpis["money"], kpis["power"], kpis["market"]
    run = kpis["run"]
    comfort = ", ".join(
        f"{device} {v['violations']}" + (f" ({v['gap']:.1f} {v['unit']})" if "unit" in v else "")
        for device, v in kpis["comfort"]["by_device"].items()
    )
    lines = [
        f"GOFLEX twin: {run['scenario']} from {run['start']}, {run['days']} day(s) "
        f"(+{run['warmup_s'] / 3600:g} h warm-up, +{run['tail_s'] / 3600:g} h tail counted), seed {run['seed']}",
        f"  offers {kpis['offers']['total']} ({kpis['offers']['by_state']['settled']} settled, "
        f"{kpis['offers']['unfinished_at_end']} unfinished); FMAN rounds {kpis['fman']['planning_rounds']}, "
        f"schedules assigned {kpis['fman']['assigned']}",
        f"  flexible energy {e['flexible_metered_kwh']:.1f} kWh (uncontrolled {e['flexible_uncontrolled_kwh']:.1f}, "
        f"baseline in force {e['flexible_baseline_in_force_kwh']:.1f}); "
        f"shifted {e['flexible_energy_shifted_kwh']:.1f} kWh",
        f"  savings {sv['total_eur']:.2f} EUR = shift {sv['shift_eur']:.2f} + volume {sv['volume_eur']:.2f} "
        f"({sv['volume_kwh']:.1f} kWh not drawn)",
        f"  site peak {p['site_peak_actual_kw']:.1f} kW (uncontrolled {p['site_peak_uncontrolled_kw']:.1f} kW)",
        f"  market: cleared {mk['cleared_kwh']:.1f} of {mk['requested_kwh']:.1f} kWh requested, "
        f"{mk['awards']} awards, buyers paid {m['market_buyers_pay_eur']:.2f} EUR; on delivery: "
        f"{mk['delivered_kwh']:.1f} of {mk['awarded_kwh']:.1f} kWh awarded delivered, shortfall "
        f"{mk['shortfall_kwh']:.1f} kWh, penalties {m['market_shortfall_penalties_eur']:.2f} EUR",
        f"  comfort violations: {comfort}; {kpis['comfort']['ems_deviations']} EMS overrides",
        f"  run folder: {out_dir}",
    ]
    if report:
        lines.append(f"  report: {out_dir / 'report.html'}")
    return "\n".join(lines)


_HYDRA_FILES = frozenset({"config.yaml", "hydra.yaml", "overrides.yaml"})


def _rmdir_upwards(folder: Path, *, stop: Path) -> None:
    """Remove `folder` and its parents while they are empty and strictly inside `stop`."""
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:  # not empty (another run's folder), or not ours to remove
            return
        folder = folder.parent


def _remove_unstarted_run_folder() -> None:
    """Remove the folder Hydra made for a run refused before it started, if it holds only Hydra's files.

    That is the `.hydra/` copy of the config and the (empty) job log; then its parents that are
    left empty below the working directory (`outputs/<site>/`), and a sweep folder left with
    nothing but `multirun.yaml`.
    """
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    log = out_dir / f"{hc.job.name}.log"
    subdir = out_dir / hc.output_subdir if hc.output_subdir else None
    if not out_dir.is_dir():
        return
    entries = list(out_dir.iterdir())
    for entry in entries:
        if entry == log and entry.is_file() and entry.stat().st_size == 0:
            continue
        if entry == subdir and entry.is_dir() and {p.name for p in entry.iterdir()} <= _HYDRA_FILES:
            continue
        return  # something else is in there: keep the folder
    for entry in entries:
        if entry.is_dir():
            for p in entry.iterdir():
                p.unlink()
            entry.rmdir()
        else:
            entry.unlink()
    out_dir.rmdir()
    cwd = Path.cwd().resolve()
    _rmdir_upwards(out_dir.resolve().parent, stop=cwd)
    sweep_dir = (cwd / hc.sweep.dir).resolve()
    if hc.mode == RunMode.MULTIRUN and [p.name for p in sweep_dir.iterdir()] == ["multirun.yaml"]:
        (sweep_dir / "multirun.yaml").unlink()
        sweep_dir.rmdir()
        _rmdir_upwards(sweep_dir.parent, stop=cwd)


@hydra.main(config_path=f"pkg://{CONFIG_PACKAGE}", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        config = load_run_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except ConfigError as exc:
        with contextlib.suppress(OSError):  # a folder that cannot be removed is left, the error still stands
            _remove_unstarted_run_folder()
        print(f"goflex-twin: {exc}", file=sys.stderr)
        sys.exit(2)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        kpis = run(config, out_dir, progress=cfg.output.progress)
    except (ConfigError, SourceError, AtpError) as exc:
        print(f"goflex-twin: {exc}", file=sys.stderr)
        sys.exit(1)
    print(_summary(kpis, out_dir, config.report))


def main() -> None:
    """Console entry point."""
    _hydra_main()


if __name__ == "__main__":
    main()

"""Run outputs: the files of one run's folder (docs/outputs.md describes each).

Every file is written through a temporary name and renamed into place, and `kpi.json` is
written last, so an interrupted run leaves no file that looks complete but is not: a run folder
without `kpi.json` is incomplete.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atp.flexoffer import encode
from atp.flexoffer.files import write_atomic
from atp.fmar import results_frame
from sim.world import World

_MEASUREMENT_COLUMNS = (
    "time",
    "prosumer",
    "meter_id",
    "bus",
    "mode",
    "device",
    "flex_offer_id",
    "energy_kwh",
    "baseline_kwh",
    "scheduled_kwh",
    "setpoint_kwh",
)

__all__ = ["OUTPUT_FILES", "measurements_frame", "timeseries_frame", "write_outputs"]

OUTPUT_FILES = (
    "flexoffers.jsonl",
    "schedules.jsonl",
    "measurements.parquet",
    "timeseries.parquet",
    "market.parquet",
    "kpi.json",
)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.part")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def timeseries_frame(world: World) -> pd.DataFrame:
    """Per step: site energies (kWh), price, weather."""
    n = world.n_steps
    metered = world.metered_kwh.sum(axis=1)
    frame = pd.DataFrame(
        {
            "time": world.times,
            "nonflexible_kwh": world.nonflex_kwh.sum(axis=1),
            "pv_kwh": world.pv_kwh.sum(axis=1),
            "flexible_counterfactual_kwh": world.counterfactual_kwh.sum(axis=(1, 2)),
            "flexible_baseline_kwh": world.baseline_kwh.sum(axis=(1, 2)),
            "flexible_scheduled_kwh": world.scheduled_kwh.sum(axis=(1, 2)),
            "flexible_metered_kwh": metered.sum(axis=1),
        }
    )
    for d, device in enumerate(world.device_types):
        frame[f"{device}_metered_kwh"] = metered[:, d]
        frame[f"{device}_counterfactual_kwh"] = world.counterfactual_kwh[:, :, d].sum(axis=1)
        frame[f"{device}_baseline_kwh"] = world.baseline_kwh[:, :, d].sum(axis=1)
    frame["site_net_kwh"] = frame["nonflexible_kwh"] - frame["pv_kwh"] + frame["flexible_metered_kwh"]
    frame["site_net_counterfactual_kwh"] = (
        frame["nonflexible_kwh"] - frame["pv_kwh"] + frame["flexible_counterfactual_kwh"]
    )
    frame["price_eur_per_kwh"] = world.prices.to_numpy(dtype=float)[:n]
    frame["temp_c"] = world.weather["temp_c"].to_numpy(dtype=float)[:n]
    frame["ghi_w_per_m2"] = world.weather["ghi_w_per_m2"].to_numpy(dtype=float)[:n]
    frame["brp_imbalance_kwh"] = world.brp.imbalance_kwh
    frame["market_requested_kwh"] = world.market_operator.requested_kwh
    frame["market_cleared_kwh"] = world.market_operator.cleared_kwh
    return frame


def measurements_frame(world: World) -> pd.DataFrame:
    """One row per prosumer, device and step: metered, baseline, scheduled and setpoint kWh."""
    n_steps = world.n_steps
    pairs = [
        (i, d)
        for i, p in enumerate(world.prosumers)
        for d, device in enumerate(world.device_types)
        if device in p.devices
    ]
    if not pairs:
        return pd.DataFrame(columns=list(_MEASUREMENT_COLUMNS))
    idx_i = np.repeat([i for i, _ in pairs], n_steps)
    idx_d = np.repeat([d for _, d in pairs], n_steps)
    idx_k = np.tile(np.arange(n_steps), len(pairs))
    prosumers = world.prosumers
    frame = pd.DataFrame(
        {
            "time": world.times[idx_k],
            "prosumer": np.array([p.name for p in prosumers], dtype=object)[idx_i],
            "meter_id": np.array([p.meter_id for p in prosumers], dtype=object)[idx_i],
            "bus": np.array([p.bus for p in prosumers])[idx_i],
            "mode": np.array([p.mode.value for p in prosumers], dtype=object)[idx_i],
            "device": np.array(world.device_types, dtype=object)[idx_d],
            "flex_offer_id": world.offer_ids[idx_k, idx_i, idx_d],
            "energy_kwh": world.metered_kwh[idx_k, idx_i, idx_d],
            "counterfactual_kwh": world.counterfactual_kwh[idx_k, idx_i, idx_d],
            "baseline_kwh": world.baseline_kwh[idx_k, idx_i, idx_d],
            "scheduled_kwh": world.scheduled_kwh[idx_k, idx_i, idx_d],
            "setpoint_kwh": world.setpoint_kwh[idx_k, idx_i, idx_d],
        }
    )
    return frame


def _jsonl(items: list[Any]) -> str:
    buffer = io.StringIO()
    for item in items:
        buffer.write(json.dumps(item, allow_nan=False, sort_keys=False))
        buffer.write("\n")
    return buffer.getvalue()


def write_outputs(world: World, out_dir: Path, kpis: dict[str, Any]) -> list[Path]:
    """Write the run's files into `out_dir`; returns their paths (kpi.json last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    offers, schedules = [], []
    for store in (world.aggregator.store, world.market_operator.market.store):
        for record in store.records():
            offers.append(encode(record.view()))
            if record.schedule is not None:
                schedules.append(encode(record.schedule))
    written = []
    write_atomic(out_dir / "flexoffers.jsonl", _jsonl(offers))
    write_atomic(out_dir / "schedules.jsonl", _jsonl(schedules))
    written += [out_dir / "flexoffers.jsonl", out_dir / "schedules.jsonl"]
    _write_parquet(measurements_frame(world), out_dir / "measurements.parquet")
    _write_parquet(timeseries_frame(world), out_dir / "timeseries.parquet")
    _write_parquet(results_frame(world.market_operator.market.results), out_dir / "market.parquet")
    written += [out_dir / n for n in ("measurements.parquet", "timeseries.parquet", "market.parquet")]
    write_atomic(out_dir / "kpi.json", json.dumps(kpis, indent=2, sort_keys=True, allow_nan=False) + "\n")
    written.append(out_dir / "kpi.json")
    return written

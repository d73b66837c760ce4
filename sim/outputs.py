"""Run outputs: the files of one run's folder (docs/outputs.md describes each).

Every file is written through a temporary name and renamed into place, and `kpi.json` is
written last, so an interrupted run leaves no file that looks complete but is not: a run folder
without `kpi.json` is incomplete.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atp.flexoffer import FlexOffer, encode
from atp.flexoffer.files import write_atomic
from atp.fmar import results_frame
from sim.grid import TRANSPORT_COLUMNS, cache_dir, detect
from sim.ledger import build_ledger, deliveries_frame, settle_run
from sim.world import World

_MEASUREMENT_COLUMNS = (
    "time",
    "period",
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

__all__ = [
    "GRID_NET_REF",
    "OUTPUT_FILES",
    "aggregate_offers",
    "grid_forecast_frame",
    "grid_frame",
    "grid_injections_frame",
    "measurements_frame",
    "resolve_grid_net",
    "timeseries_frame",
    "transport_frame",
    "write_outputs",
]

GRID_NET_REF = "grid_net.ref.json"  # the site grid's hash and where the shared copy is (resolve_grid_net)

OUTPUT_FILES = (
    "flexoffers.jsonl",
    "aggregates.jsonl",
    "schedules.jsonl",
    "measurements.parquet",
    "timeseries.parquet",
    "market.parquet",
    "grid.parquet",
    "grid_injections.parquet",
    "grid_forecast.parquet",
    GRID_NET_REF,
    "transport.parquet",
    "ledger.parquet",
    "deliveries.parquet",
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
            "period": world.periods,
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
            "period": world.periods[idx_k],
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


def grid_frame(world: World) -> pd.DataFrame:
    """One row per step and grid element (bus, line, transformer): loading, voltage, flags."""
    grid, flows = world.grid, world.flows
    flags = detect(flows, world.grid_limits)
    net = grid.net
    n = world.n_steps
    parts = []
    line_cp = [grid.feeders[f] if f >= 0 else grid.busbar_point for f in grid.line_feeder]
    bus_cp = [grid.congestion_point_of_bus(b) for b in range(len(net.bus))]
    trafo_cp = [grid.busbar_point] * len(net.trafo)
    tables = (
        ("bus", net.bus, bus_cp, None, flows.vm_pu, None, flags.voltage_violation),
        ("line", net.line, line_cp, flows.line_loading_percent, None, flows.line_p_from_mw, flags.line_overloaded),
        ("trafo", net.trafo, trafo_cp, flows.trafo_loading_percent, None, flows.trafo_p_hv_mw, flags.trafo_overloaded),
    )
    for element, table, cps, loading, vm, p_mw, flag in tables:
        m = len(table)
        if m == 0:
            continue
        k = np.repeat(np.arange(n), m)
        e = np.tile(np.arange(m), n)
        nan = np.full(n * m, np.nan)
        parts.append(
            pd.DataFrame(
                {
                    "time": world.times[k],
                    "element": element,
                    "index": table.index.to_numpy()[e],
                    "name": table["name"].astype(str).to_numpy()[e],
                    "congestion_point": np.asarray(cps, dtype=object)[e],
                    "loading_percent": loading.reshape(-1) if loading is not None else nan,
                    "vm_pu": vm.reshape(-1) if vm is not None else nan,
                    "p_mw": p_mw.reshape(-1) if p_mw is not None else nan,
                    "overloaded": flag.reshape(-1) if element != "bus" else False,
                    "voltage_violation": flag.reshape(-1) if element == "bus" else False,
                    "converged": flows.converged[k],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def grid_injections_frame(world: World) -> pd.DataFrame:
    """The power flow's inputs: per step and prosumer load row (`grid_net.json` load/sgen index), MW."""
    grid = world.grid
    n, m = world.n_steps, grid.n_loads
    k = np.repeat(np.arange(n), m)
    j = np.tile(np.arange(m), n)
    load_p, load_q, sgen_p = world.grid_injections_mw
    return pd.DataFrame(
        {
            "time": world.times[k],
            "load": grid.net.load.index.to_numpy()[j],
            "sgen": grid.net.sgen.index.to_numpy()[j],
            "bus": grid.load_bus[j],
            "load_p_mw": load_p.reshape(-1),
            "load_q_mvar": load_q.reshape(-1),
            "sgen_p_mw": sgen_p.reshape(-1),
        }
    )


def grid_forecast_frame(world: World) -> pd.DataFrame:
    """The DSO's forecasts: per forecast run, step and feeder, the energy that would relieve it."""
    rows = []
    feeders = np.asarray(world.grid.feeders, dtype=object)
    for run in world.dso.forecasts:
        n, m = run.excess_kwh.shape
        if m == 0:
            continue
        k = np.repeat(np.arange(n), m)
        f = np.tile(np.arange(m), n)
        rows.append(
            pd.DataFrame(
                {
                    "forecast_time": pd.Timestamp(run.made_at),
                    "time": world.times[run.first + k],
                    "congestion_point": feeders[f],
                    "net_mw": run.feeder_net_mw.reshape(-1),
                    "excess_kwh": run.excess_kwh.reshape(-1),
                    "trafo_loading_percent": np.nanmax(run.flows.trafo_loading_percent, axis=1, initial=0.0)[k],
                    "converged": run.flows.converged[k],
                }
            )
        )
    columns = [
        "forecast_time",
        "time",
        "congestion_point",
        "net_mw",
        "excess_kwh",
        "trafo_loading_percent",
        "converged",
    ]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def transport_frame(world: World) -> pd.DataFrame:
    """Transport links between feeders derived at each DSO forecast (`forecast_time` first)."""
    frames = [links.assign(forecast_time=pd.Timestamp(t)) for t, links in world.dso.transport]
    columns = ["forecast_time", *TRANSPORT_COLUMNS]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _jsonl(items: list[Any]) -> str:
    buffer = io.StringIO()
    for item in items:
        buffer.write(json.dumps(item, allow_nan=False, sort_keys=False))
        buffer.write("\n")
    return buffer.getvalue()


def _net_json(world: World) -> str:
    """The site grid as pandapower JSON, injections zeroed (they are in grid_injections.parquet)."""
    import pandapower

    net = world.grid.net
    saved = net.load.p_mw.copy(), net.load.q_mvar.copy(), net.sgen.p_mw.copy()
    net.load["p_mw"], net.load["q_mvar"], net.sgen["p_mw"] = 0.0, 0.0, 0.0
    try:
        return pandapower.to_json(net)
    finally:
        net.load["p_mw"], net.load["q_mvar"], net.sgen["p_mw"] = saved


_GRID_NET_HOW = (
    "pandapower JSON of the site grid (injections zeroed; they are in grid_injections.parquet), written once "
    "into the goflex-twin cache under its SHA-256 and shared by every run on the same grid. "
    "sim.outputs.resolve_grid_net(run_dir) finds it (this folder's grid_net.json, then `path`, then "
    "`file_name` in the current cache) and checks the hash. If it is gone, run the same config again "
    "(.hydra/overrides.yaml): it writes the same file."
)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_grid_net(world: World, out_dir: Path) -> Path:
    """The site grid into the cache once, named by its SHA-256; the run folder gets `grid_net.ref.json`.

    Without a writable cache the net goes into the run folder as `grid_net.json` (the reference
    then points there).
    """
    text = _net_json(world)
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    name = f"net-{digest}.json"
    stored = cache_dir() / name
    try:
        if not (stored.is_file() and stored.stat().st_size == len(data) and _sha256_file(stored) == digest):
            write_atomic(stored, text)
    except OSError:
        stored = out_dir / "grid_net.json"
        write_atomic(stored, text)
    ref = {"sha256": digest, "bytes": len(data), "path": str(stored), "file_name": name, "how": _GRID_NET_HOW}
    write_atomic(out_dir / GRID_NET_REF, json.dumps(ref, indent=2) + "\n")
    return out_dir / GRID_NET_REF


def resolve_grid_net(run_dir: str | Path) -> Path:
    """The path of a run folder's site grid (pandapower JSON), found through `grid_net.ref.json`.

    Looks in the run folder (`grid_net.json`), at the recorded path, then in the current cache
    by file name, and returns the first file whose SHA-256 is the recorded one. A run folder from
    before the cache holds `grid_net.json` and no reference: that file is returned as it is.
    Raises FileNotFoundError (no copy with that hash; the sentence says how to get it back).
    """
    run_dir = Path(run_dir)
    ref_path = run_dir / GRID_NET_REF
    local = run_dir / "grid_net.json"
    if not ref_path.is_file():
        if local.is_file():
            return local
        raise FileNotFoundError(f"{run_dir}: no {GRID_NET_REF} and no grid_net.json; not a complete run folder")
    ref = json.loads(ref_path.read_text(encoding="utf-8"))
    try:
        digest, recorded, name = str(ref["sha256"]), Path(ref["path"]), str(ref["file_name"])
    except (KeyError, TypeError):
        raise FileNotFoundError(f"{ref_path}: needs the keys sha256, path and file_name") from None
    seen: list[str] = []
    for candidate in dict.fromkeys((local, recorded, cache_dir() / name)):
        if not candidate.is_file():
            continue
        if _sha256_file(candidate) == digest:
            return candidate
        seen.append(f"{candidate} (another SHA-256)")
    tried = ", ".join(seen) or f"{recorded} and {cache_dir() / name} do not exist"
    raise FileNotFoundError(
        f"{ref_path}: no copy of the site grid with SHA-256 {digest} ({tried}); "
        "run the same config again (.hydra/overrides.yaml) to write it into the cache"
    )


def aggregate_offers(world: World) -> list[FlexOffer]:
    """Every aggregate the FMAN planned or bid, once per id in order of first use, as a wire
    offer (issuer = the aggregator, `members` = member offer ids) with `schedule` set to the
    schedule its members were disaggregated from (absent when a bid was never awarded)."""
    return world.aggregator.aggregate_offers()


def write_outputs(world: World, out_dir: Path, kpis: dict[str, Any]) -> list[Path]:
    """Write the run's files into `out_dir`; returns their paths (kpi.json last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    offers, schedules = [], []
    for store in (world.aggregator.store, world.market_operator.market.store):
        for record in store.records():
            offers.append(encode(record.view()))
            if record.schedule is not None:
                schedules.append(encode(record.schedule))
    aggregates = aggregate_offers(world)
    schedules += [encode(a.schedule) for a in aggregates if a.schedule is not None]
    written = []
    write_atomic(out_dir / "aggregates.jsonl", _jsonl([encode(a) for a in aggregates]))
    written.append(out_dir / "aggregates.jsonl")
    write_atomic(out_dir / "flexoffers.jsonl", _jsonl(offers))
    write_atomic(out_dir / "schedules.jsonl", _jsonl(schedules))
    written += [out_dir / "flexoffers.jsonl", out_dir / "schedules.jsonl"]
    _write_parquet(measurements_frame(world), out_dir / "measurements.parquet")
    _write_parquet(timeseries_frame(world), out_dir / "timeseries.parquet")
    _write_parquet(results_frame(world.market_operator.market.results), out_dir / "market.parquet")
    written += [out_dir / n for n in ("measurements.parquet", "timeseries.parquet", "market.parquet")]
    _write_parquet(grid_frame(world), out_dir / "grid.parquet")
    _write_parquet(grid_injections_frame(world), out_dir / "grid_injections.parquet")
    _write_parquet(grid_forecast_frame(world), out_dir / "grid_forecast.parquet")
    _write_parquet(transport_frame(world), out_dir / "transport.parquet")
    _write_grid_net(world, out_dir)
    written += [
        out_dir / n
        for n in (
            "grid.parquet",
            "grid_injections.parquet",
            "grid_forecast.parquet",
            "transport.parquet",
            GRID_NET_REF,
        )
    ]
    settlement = settle_run(world, steps=world.counted)
    _write_parquet(build_ledger(world, steps=world.counted, settlement=settlement), out_dir / "ledger.parquet")
    _write_parquet(deliveries_frame(world, settlement.awards), out_dir / "deliveries.parquet")
    written += [out_dir / "ledger.parquet", out_dir / "deliveries.parquet"]
    write_atomic(out_dir / "kpi.json", json.dumps(kpis, indent=2, sort_keys=True, allow_nan=False) + "\n")
    written.append(out_dir / "kpi.json")
    return written

"""The simulated world: short runs of the three demo sites and the checks every run must pass."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from atp.flexoffer import FlexOffer, Schedule, check_schedule, decode
from sim.agents.kinds import HP_BLOCK_STEPS, StepEnv, get_kind
from sim.agents.prosumer import Prosumer
from sim.app import CONFIG_DIR, run
from sim.config import ConfigError, load_run_config
from sim.outputs import OUTPUT_FILES
from sim.world import World

SHORT = ["sim.days=0.5", "sim.start=2026-01-12T06:00:00Z"]  # 48 steps, across the evening peak


def config_for(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return load_run_config(OmegaConf.to_container(cfg, resolve=True))


@pytest.fixture(scope="module", params=["foss", "esr", "sww"])
def site_run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"run-{request.param}")
    kpis = run(config_for(f"scenario={request.param}", *SHORT), out)
    return request.param, out, kpis


def read_jsonl(path: Path, cls):
    objs = []
    for line in path.read_text().splitlines():
        obj, problems = decode(cls, json.loads(line))
        assert problems == [], problems
        objs.append(obj)
    return objs


def test_run_folder_is_complete(site_run):
    _, out, kpis = site_run
    for name in (*OUTPUT_FILES, "report.html", "figures/site_load.png"):
        assert (out / name).is_file(), name
    assert kpis["offers"]["total"] > 0
    assert kpis["fman"]["assigned"] > 0


def test_every_schedule_is_feasible_for_its_offer(site_run):
    _, out, _ = site_run
    offers = {o.id: o for name in ("flexoffers.jsonl", "aggregates.jsonl") for o in read_jsonl(out / name, FlexOffer)}
    schedules = read_jsonl(out / "schedules.jsonl", Schedule)
    assert schedules
    for s in schedules:
        assert check_schedule(offers[s.flex_offer_id], s) == [], s.flex_offer_id
        assert offers[s.flex_offer_id].schedule == s


def test_site_energy_balance_closes(site_run):
    _, out, _ = site_run
    ts = pd.read_parquet(out / "timeseries.parquet")
    m = pd.read_parquet(out / "measurements.parquet")
    flex_per_step = m.groupby("time")["energy_kwh"].sum().reindex(ts["time"], fill_value=0.0).to_numpy()
    np.testing.assert_allclose(flex_per_step, ts["flexible_metered_kwh"], atol=1e-9)
    np.testing.assert_allclose(
        ts["site_net_kwh"], ts["nonflexible_kwh"] - ts["pv_kwh"] + ts["flexible_metered_kwh"], atol=1e-9
    )
    per_device = ts[[c for c in ts.columns if c.endswith("_metered_kwh") and not c.startswith("flexible")]]
    assert per_device.shape[1] >= 2
    np.testing.assert_allclose(ts["flexible_metered_kwh"], per_device.sum(axis=1), atol=1e-9)


def test_market_money_balances(site_run):
    _, out, kpis = site_run
    market = pd.read_parquet(out / "market.parquet")
    money = kpis["money"]
    assert money["market_buyers_pay_eur"] == pytest.approx(
        money["market_sellers_receive_eur"] + money["market_surplus_eur"], abs=0.01
    )
    if len(market):
        assert (market["buyer_pays_eur"] - market["sellers_receive_eur"] - market["surplus_eur"]).abs().max() < 0.01


@pytest.fixture(scope="module")
def sww_world():
    world = World(config_for("scenario=sww", *SHORT))
    world.run()
    return world


def test_metered_energy_equals_device_physics(sww_world):
    world = sww_world
    ev, hp = world.device_types.index("ev"), world.device_types.index("heat_pump")
    for i, p in enumerate(world.prosumers):
        if "ev" in p.devices:
            drawn = np.array([e for _, e, _ in p.devices["ev"].history])
            np.testing.assert_allclose(world.metered_kwh[:, i, ev], drawn, atol=0)
        if "heat_pump" in p.devices:
            drawn = np.array([h.energy_kwh for h in p.devices["heat_pump"].history])
            np.testing.assert_allclose(world.metered_kwh[:, i, hp], drawn, atol=0)
        # The FOA's measurements (sent through the exchange interface) are the meter's readings.
        for d, device in enumerate(world.device_types):
            if device not in p.devices:
                continue
            for k in range(world.n_steps):
                offer_id = world.offer_ids[k, i, d]
                if offer_id is None:
                    continue
                store = world.aggregator.store if p.mode.value == "delegated" else world.market_operator.market.store
                record = next(r for r in store.records() if r.offer.id == offer_id)
                assert record.measurements[world.clock.step_start(k)] == world.metered_kwh[k, i, d]


def test_mesa_collects_every_step_while_simpy_drives_time(sww_world):
    world = sww_world
    assert world.steps == world.n_steps
    model_vars = world.datacollector.get_model_vars_dataframe()
    agent_vars = world.datacollector.get_agenttype_vars_dataframe(Prosumer)
    assert len(model_vars) == world.n_steps
    assert len(agent_vars) == world.n_steps * len(world.prosumers)
    np.testing.assert_allclose(
        model_vars["site_net_kwh"].to_numpy(),
        agent_vars["net_kwh"].groupby(level="Step").sum().to_numpy(),
        atol=1e-9,
    )


def test_same_seed_reproduces_and_another_differs(tmp_path):
    overrides = ("scenario=sww", "sim.days=0.25", "sim.start=2026-01-12T12:00:00Z", "output.report=false")
    run(config_for(*overrides), tmp_path / "a")
    run(config_for(*overrides), tmp_path / "b")
    run(config_for(*overrides, "sim.seed=7"), tmp_path / "c")
    a = (tmp_path / "a" / "kpi.json").read_bytes()
    assert a == (tmp_path / "b" / "kpi.json").read_bytes()
    assert a != (tmp_path / "c" / "kpi.json").read_bytes()
    assert (tmp_path / "a" / "schedules.jsonl").read_bytes() == (tmp_path / "b" / "schedules.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("sim.days=-2", "sim.days"),
        ("sim.slice_s=7000", "sim.slice_s"),
        ("devices.ev.delegated=-1", "devices.ev.delegated"),
        ("scenario.prosumers.direct=-5", "scenario.prosumers.direct"),
        ("sim.start=yesterday", "sim.start"),
        ("+devices.toaster.delegated=1", "devices.toaster"),
        ("+devices.heat_pump.colour=red", "devices.heat_pump.colour"),
        ("devices.freezer.fridge_share=2", "devices.freezer.fridge_share"),
        ("fman.objective=fastest", "fman.objective"),
    ],
)
def test_invalid_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        config_for("scenario=foss", override)


def test_command_line_run_and_bad_input(tmp_path):
    out = tmp_path / "cli-run"
    proc = subprocess.run(
        [sys.executable, "-m", "sim.app", "scenario=sww", "sim.days=0.25", f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "report:" in proc.stdout and (out / "report.html").is_file()
    bad = tmp_path / "bad-run"
    for args in (["scenario=atlantis"], ["sim.days=-1"], ["devices.heat_pump.direct=-3"]):
        proc = subprocess.run(
            [sys.executable, "-m", "sim.app", *args, f"hydra.run.dir={bad}"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr + proc.stdout
        assert not (bad / "kpi.json").exists()
    assert "sim.days" in proc.stderr or "heat_pump" in proc.stderr


def test_sweep_writes_a_comparison_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim.app",
            "-m",
            "scenario=sww",
            "sim.days=0.25",
            "sim.seed=1,2",
            "output.report=false",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(sweep / "comparison.csv")
    assert sorted(table["run.seed"]) == [1, 2]
    assert (sweep / "comparison.html").is_file()


def test_prices_from_a_file_and_hourly_steps(tmp_path):
    times = pd.date_range("2026-01-11T12:00:00Z", periods=72, freq="1h")  # from the warm-up's start
    prices = pd.DataFrame(
        {"time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "price_eur_per_kwh": 0.1 + 0.01 * (times.hour % 5)}
    )
    path = tmp_path / "prices.csv"
    prices.to_csv(path, index=False)
    kpis = run(
        config_for(
            "scenario=sww",
            "sim.days=0.5",
            "sim.slice_s=3600",
            "fman.planning_interval_s=3600",
            f"data.prices_file={path}",
            "output.report=false",
        ),
        tmp_path / "run",
    )
    ts = pd.read_parquet(tmp_path / "run" / "timeseries.parquet")
    assert len(ts) == 36 and (ts["period"] == "window").sum() == 12  # 12 h warm-up, window and tail
    np.testing.assert_allclose(ts["price_eur_per_kwh"], 0.1 + 0.01 * (ts["time"].dt.hour % 5))
    assert kpis["run"]["slice_s"] == 3600


def test_a_prices_file_that_does_not_cover_the_run_is_refused(tmp_path):
    path = tmp_path / "prices.csv"
    pd.DataFrame({"time": ["2026-01-12T00:00:00Z"], "price_eur_per_kwh": [0.1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"prices\.csv"):
        World(config_for("scenario=sww", "sim.days=0.25", f"data.prices_file={path}"))


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), start_hour=st.sampled_from([0, 6, 12, 18]))
def test_any_seed_gives_feasible_schedules_and_a_closed_balance(seed, start_hour):
    world = World(
        config_for("scenario=sww", "sim.days=0.25", f"sim.seed={seed}", f"sim.start=2026-03-02T{start_hour:02d}:00:00Z")
    )
    world.run()
    for store in (world.aggregator.store, world.market_operator.market.store):
        for record in store.records():
            if record.schedule is not None:
                assert check_schedule(record.offer, record.schedule) == []
    net = np.array(world.datacollector.get_model_vars_dataframe()["site_net_kwh"])
    expected = world.nonflex_kwh.sum(axis=1) - world.pv_kwh.sum(axis=1) + world.metered_kwh.sum(axis=(1, 2))
    np.testing.assert_allclose(net, expected, atol=1e-9)


@pytest.mark.parametrize("objective", ["peak_shaving", "balance_imbalance"])
def test_other_fman_objectives_run_in_the_world(objective, tmp_path):
    world = World(config_for("scenario=sww", f"fman={objective}", "sim.days=0.25", "sim.start=2026-01-12T16:00:00Z"))
    world.run()
    plans = world.aggregator.plans
    assert plans and all(p.objective == objective for p in plans)
    assert sum(p.n_assigned for p in plans) > 0
    for record in world.aggregator.store.records():
        if record.schedule is not None:
            assert check_schedule(record.offer, record.schedule) == []


@settings(max_examples=50, deadline=None)
@given(st.integers(0, HP_BLOCK_STEPS - 1), st.integers(1, 6 * HP_BLOCK_STEPS))
def test_block_offers_tile_the_window_in_each_prosumers_phase(phase, n_window):
    """A block kind's offers start at the window's start and at every boundary of the prosumer's
    phase; each covers the steps up to the next one, so they tile the window without gap or overlap."""
    kind = get_kind("heat_pump")
    t0 = datetime(2026, 1, 12, tzinfo=UTC)
    covered = []
    for k in range(n_window):
        env = StepEnv(k, k, t0 + timedelta(minutes=15 * k), 900, 0.0, np.zeros(0), 0.0, np.zeros(0), block_phase=phase)
        if kind.wants_offer(None, env):
            assert not covered or covered[-1] == k  # the previous block ends where this one starts
            steps = kind.offer_horizon_s(env) // 900 - 1  # the offer's first step is k + 1
            assert 1 <= steps <= HP_BLOCK_STEPS and (k + steps - phase) % HP_BLOCK_STEPS == 0
            covered.append(k + steps)
    assert covered[0] == (phase or HP_BLOCK_STEPS)


def test_block_offers_of_a_site_are_staggered(site_run):
    """The heat pumps' block offers do not all start (and so end) at the same steps: the last
    blocks hand the devices back over several steps, not all at once (`block_phase`)."""
    _, out, _ = site_run
    offers = [o for o in read_jsonl(out / "flexoffers.jsonl", FlexOffer) if o.device in ("heat_pump", "water_heater")]
    assert offers
    ends = {o.start_after + timedelta(seconds=o.slice_s * o.profiles[0].n_steps) for o in offers}
    assert len({e.minute + 60 * e.hour for e in ends}) > 4

"""The oracle (sim/oracle.py) and the strategy table (reports/compare.py).

One short no_flex run across an evening peak of the congested ESR grid, shared by the asserts
(module-scoped): the twins' offers, the bound below the no_flex overload, the LP below the AC
power flow of its plan, the kpi.json section; the table's relief_share and oracle row on frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reports.compare import _with_relief, strategy_frame
from sim.kpi import compute_kpis
from sim.oracle import _highs_of, _Lp, _offer_block, oracle_bound
from sim.world import World
from tests.test_grid import config_for

SHORT = ("scenario=esr_congested", "sim.days=0.25", "sim.start=2026-01-12T15:00:00Z", "output.report=false")


@pytest.fixture(scope="module")
def no_flex():
    world = World(config_for(*SHORT, "dso.strategy=no_flex"))
    world.run()
    return world, compute_kpis(world)


def test_the_twins_offers_come_from_the_no_flex_devices(no_flex):
    world, _ = no_flex
    flex = world.twin_flexibility
    assert flex is not None and len(flex.offers) > 50
    # the twins' copies step exactly as the no_flex devices ran
    np.testing.assert_array_equal(flex.twin_kwh, world.metered_kwh)
    window = world.times[world.window]
    assert all(window[0] <= o.offer.created_at <= window[-1] + pd.Timedelta(minutes=15) for o in flex.offers)
    devices = {world.device_types[o.device] for o in flex.offers}
    assert {"ev", "heat_pump", "water_heater"} <= devices
    # and only no_flex runs collect them (once per scenario and seed)
    assert World(config_for(*SHORT, "dso.strategy=aggregator_only")).twin_flexibility is None


def test_the_oracle_is_a_bound_below_no_flexibility(no_flex):
    _, kpis = no_flex
    oracle = kpis["grid"]["oracle"]
    assert oracle["no_flex_overload_energy_kwh"] == pytest.approx(kpis["grid"]["overload_energy_kwh"], rel=1e-9)
    assert 0 <= oracle["overload_energy_kwh"] < 0.8 * kpis["grid"]["overload_energy_kwh"]
    # convex loadings: the planes lie below them, the LP below the AC overload of its plan
    assert oracle["lp_overload_energy_kwh"] <= oracle["overload_energy_kwh"] + 1e-6
    assert oracle["linearisation_gap_kwh"] <= oracle["first_gap_kwh"] + 1e-6
    assert oracle["offers_used"] == oracle["offers"] and oracle["rounds"] >= 1
    assert oracle["energy_moved_kwh"] > 0


def test_more_rounds_do_not_loosen_the_bound(no_flex):
    world, _ = no_flex
    one = oracle_bound(world, world.twin_flexibility, rounds=1)
    three = oracle_bound(world, world.twin_flexibility, rounds=2, tol_share=0.0)
    assert three.lp_overload_energy_kwh >= one.lp_overload_energy_kwh - 1e-6  # more planes, a tighter bound
    assert three.overload_energy_kwh <= one.overload_energy_kwh + 1e-6  # the best plan so far is kept


def test_every_offer_block_holds_its_default_schedule(no_flex):
    """The LP block of an offer (one start, rigid shifts, the step model of an EV, the hull of
    shifts) contains the schedule the offer declares as its default."""
    import highspy

    world, _ = no_flex
    t0 = world.times[world.window.start].to_pydatetime()
    n_t = world.n_steps - world.window.start
    seen: set[str] = set()
    for item in world.twin_flexibility.offers:
        offer = item.offer
        if offer.default_schedule is None or offer.device in seen:
            continue
        seen.add(offer.device)
        lp = _Lp()
        block = _offer_block(lp, offer, t0, n_t)
        assert block is not None, offer.device
        steps, cols, coef, _, _ = block
        d = offer.default_schedule
        k0 = round((d.start - t0).total_seconds() / offer.slice_s)
        target = np.zeros(n_t)
        target[k0 : k0 + len(d.energy)] = d.energy
        used = np.unique(steps)
        row = lp.rows(target[used] - 1e-7, target[used] + 1e-7)  # energy at each step = the default's
        lp.add(row + np.searchsorted(used, steps), cols, coef)
        h = _highs_of(lp)
        h.run()
        assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal, offer.device
    assert {"ev", "heat_pump"} <= seen


def _frame() -> pd.DataFrame:
    rows = []
    for seed, no_flex, oracle in ((1, 100.0, 20.0), (2, 200.0, 100.0)):
        base = {"run.scenario": "s", "run.seed": seed, "run.start": "t", "run.days": 1.0}
        rows.append(
            base
            | {
                "run.dso_strategy": "no_flex",
                "grid.overload_energy_kwh": no_flex,
                "dso.cost_eur": 0.0,
                "grid.oracle.overload_energy_kwh": oracle,
                "grid.oracle.overload_hours": 1.0,
                "grid.oracle.max_line_loading_percent": 100.0,
                "grid.oracle.max_trafo_loading_percent": 100.0,
            }
        )
        rows.append(
            base
            | {
                "run.dso_strategy": "local_market",
                "grid.overload_energy_kwh": no_flex - 40.0,
                "dso.cost_eur": 8.0,
                "grid.oracle.overload_energy_kwh": np.nan,
            }
        )
    return pd.DataFrame(rows)


def test_relief_share_is_measured_against_the_oracle_of_the_same_seed():
    runs = _with_relief(_frame())
    market = runs[runs["run.dso_strategy"] == "local_market"].set_index("run.seed")
    assert market.loc[1, "relief_share"] == pytest.approx(40.0 / 80.0)
    assert market.loc[2, "relief_share"] == pytest.approx(40.0 / 100.0)
    assert market.loc[1, "dso_cost_per_kwh_relieved"] == pytest.approx(8.0 / 40.0)
    table = strategy_frame(_frame()).set_index("run.dso_strategy")
    assert list(table.index) == ["no_flex", "local_market", "oracle"]
    assert table.loc["local_market", "relief_share"] == pytest.approx(0.45)  # the mean over seeds
    assert table.loc["oracle", "overload kWh"] == pytest.approx(60.0)
    assert table.loc["oracle", "relief_share"] == 1.0 and table.loc["no_flex", "relief_share"] == 0.0

"""The run's money ledger (sim/ledger.py): one row per transfer, zero sum to the cent, and every
money figure of kpi.json (money, settlement, fman_kpi) is its ledger sum, on real world runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sim.config import ConfigError
from sim.kpi import compute_kpis
from sim.ledger import LEDGER_COLUMNS, PARTY_ROLES, REASONS, build_ledger, settle_run
from sim.outputs import OUTPUT_FILES, write_outputs
from sim.world import World
from tests.test_world import SHORT, config_for


def _cents(values: pd.Series) -> np.ndarray:
    return np.round(values.to_numpy(dtype=float) * 100).astype(np.int64)


def _c(eur: float) -> int:
    return round(eur * 100)


@pytest.fixture(scope="module", params=["least_cost", "market_bidding"])
def run_folder(request, tmp_path_factory):
    """One site, one day: the world, its kpi.json and its ledger.parquet as written to disk."""
    world = World(config_for("scenario=sww", f"fman={request.param}", "sim.days=1", "output.report=false"))
    world.run()
    out = tmp_path_factory.mktemp(request.param)
    write_outputs(world, out, compute_kpis(world))
    kpis = json.loads((out / "kpi.json").read_text())
    return request.param, world, kpis, pd.read_parquet(out / "ledger.parquet")


def test_the_ledger_is_transfers_in_cents_that_sum_to_zero(run_folder):
    _, world, kpis, ledger = run_folder
    assert "ledger.parquet" in OUTPUT_FILES
    assert tuple(ledger.columns) == LEDGER_COLUMNS
    assert str(ledger["time"].dtype) == "datetime64[ns, UTC]"
    counted = world.times[world.counted]
    assert ledger["time"].min() >= counted[0] and ledger["time"].max() <= world.clock.step_start(world.n_steps)
    cents = _cents(ledger["eur"])
    np.testing.assert_allclose(ledger["eur"].to_numpy() * 100, cents, atol=1e-6)  # whole cents
    assert (cents != 0).all()
    assert set(ledger["reason"]) <= set(REASONS)
    for column in ("payer", "payee"):
        assert set(ledger[column].str.split(":").str[0]) <= set(PARTY_ROLES)
    frame = ledger.assign(cents=cents)
    net = frame.groupby("payee")["cents"].sum().sub(frame.groupby("payer")["cents"].sum(), fill_value=0)
    assert int(net.sum()) == 0
    book = kpis["money"]["ledger"]
    assert book["rows"] == len(ledger) and book["total_eur"] == 0.0
    assert {p: _c(v) for p, v in book["by_party"].items()} == {
        p: int(v) for p, v in net.items() if not p.startswith("prosumer:")
    }
    roles = net.groupby(net.index.str.split(":").str[0]).sum()
    assert {r: _c(v) for r, v in book["by_role"].items()} == {r: int(roles.get(r, 0)) for r in PARTY_ROLES}
    reasons = frame.groupby("reason")["cents"].sum()
    assert {r: _c(v) for r, v in book["by_reason"].items()} == {r: int(reasons.get(r, 0)) for r in REASONS}


def test_settlement_fman_kpi_and_money_read_the_ledger_to_the_cent(run_folder):
    objective, world, kpis, ledger = run_folder
    frame = ledger.assign(cents=_cents(ledger["eur"]))
    aggregator = f"aggregator:{world.aggregator.name}"

    def rows(reason: str, **party: str) -> int:
        chosen = frame["reason"] == reason
        for column, value in party.items():
            chosen &= frame[column] == value
        return int(frame.loc[chosen, "cents"].sum())

    revenue = rows("market_delivery", payee=aggregator) - rows("market_shortfall", payer=aggregator)
    payments = rows("flexibility_payment", payer=aggregator) - rows("penalty", payee=aggregator)
    margin = int(frame.loc[frame["payee"] == aggregator, "cents"].sum()) - int(
        frame.loc[frame["payer"] == aggregator, "cents"].sum()
    )
    settlement, fman, money = kpis["settlement"], kpis["fman_kpi"]["money"], kpis["money"]
    assert margin == revenue - payments
    assert _c(settlement["margin_eur"]) == _c(fman["aggregator_margin_eur"]) == _c(money["aggregator_margin_eur"])
    assert _c(money["aggregator_margin_eur"]) == margin
    assert _c(settlement["market_revenue_eur"]) == _c(fman["market_revenue_eur"]) == revenue
    assert _c(money["aggregator_market_revenue_eur"]) == revenue
    assert _c(settlement["payments_to_prosumers_eur"]) == _c(fman["prosumer_payments_eur"]) == payments
    assert _c(money["payments_to_prosumers_eur"]) == payments
    assert payments > 0  # the FMAN moved energy and the prosumers delivered part of it
    if objective == "market_bidding":
        assert revenue > 0 and world.aggregator.bids_awarded > 0
    else:
        assert revenue == 0
    assert settlement["baseline"] == "in_force"
    assert settlement["bills"] == len(run_settlement_bills(world))


def run_settlement_bills(world: World):
    return settle_run(world, steps=world.counted).settlement.bills


def test_market_money_flows_through_the_fmar_and_keeps_its_surplus_and_penalties(run_folder):
    """Awards settle on delivery: the FMAR pays what was delivered, at most what was awarded,
    buyers pay the same total, and the FMAR keeps the surplus and the shortfall penalties."""
    _, world, kpis, ledger = run_folder
    frame = ledger.assign(cents=_cents(ledger["eur"]))
    by_reason = frame.groupby("reason")["cents"].sum()
    fmar = f"fmar:{world.market_operator.market.name}"
    fmar_net = int(frame.loc[frame["payee"] == fmar, "cents"].sum() - frame.loc[frame["payer"] == fmar, "cents"].sum())
    assert fmar_net == int(by_reason.get("market_surplus", 0)) + int(by_reason.get("market_shortfall", 0))
    assert int(by_reason.get("market_purchase", 0)) == int(by_reason.get("market_delivery", 0))
    results = world.market_operator.market.results
    n_awards = max(sum(len(r.awards) for r in results), 1)
    paid = sum(r.buyer_pays_eur for r in results)
    assert kpis["money"]["market_buyers_pay_eur"] <= paid + 0.005 * n_awards
    assert kpis["money"]["market_sellers_receive_eur"] <= sum(a.price_eur for r in results for a in r.awards) + (
        0.005 * n_awards
    )
    deliveries = frame[frame["reason"] == "market_delivery"]
    shortfalls = frame[frame["reason"] == "market_shortfall"]
    awarded = {a.offer_id for r in results for a in r.awards}
    assert (deliveries["payer"] == fmar).all() and (shortfalls["payee"] == fmar).all()
    assert set(deliveries["award"]) <= awarded and set(shortfalls["award"]) <= awarded
    assert not deliveries["award"].duplicated().any() and not shortfalls["award"].duplicated().any()
    assert frame.loc[~frame["reason"].isin(["market_delivery", "market_shortfall"]), "award"].isna().all()


def test_energy_rows_are_each_prosumers_meter_at_the_day_ahead_price(run_folder):
    _, world, kpis, ledger = run_folder
    c = world.counted
    prices = world.prices.to_numpy(dtype=float)[: world.n_steps][c]
    flexible = world.metered_kwh[c].sum(axis=2)
    other = world.nonflex_kwh[c] - world.pv_kwh[c]
    expected_flexible = int(np.round(flexible * prices[:, None] * 100).sum())
    expected_other = int(np.round(other * prices[:, None] * 100).sum())
    frame = ledger.assign(cents=_cents(ledger["eur"]))
    assert int(frame.loc[frame["reason"] == "energy_flexible", "cents"].sum()) == expected_flexible
    assert int(frame.loc[frame["reason"] == "energy_other", "cents"].sum()) == expected_other
    assert (frame.loc[frame["reason"].str.startswith("energy"), "payee"] == f"brp:{world.brp.name}").all()
    assert _c(kpis["money"]["energy_eur"]) == expected_flexible + expected_other


def test_a_bill_covers_the_steps_its_offer_was_in_force(run_folder):
    """Never a sum over a re-declared offer's whole default: baseline, metered and step count of
    each bill are those of the steps where the world ran that offer."""
    _, world, _, _ = run_folder
    c = world.counted
    ids = world.offer_ids[c]
    bills = run_settlement_bills(world)
    assert bills
    for bill in bills[:: max(len(bills) // 40, 1)]:
        mask = ids == bill.flex_offer_id
        assert bill.covered_steps == int(mask.sum())
        assert bill.baseline_kwh == pytest.approx(float(world.baseline_kwh[c][mask].sum()), abs=1e-9)
        assert bill.metered_kwh == pytest.approx(float(world.metered_kwh[c][mask].sum()), abs=1e-9)


@pytest.mark.parametrize("method", ["twin", "characteristic"])
def test_other_settlement_baselines(method):
    world = World(config_for("scenario=sww", *SHORT, "sim.warmup_s=86400", f"fman.settlement_baseline={method}"))
    world.run()
    run = settle_run(world, steps=world.counted)
    assert run.baseline == method and run.settlement.bills
    c = world.counted
    if method == "twin":
        ids = world.offer_ids[c]
        for bill in run.settlement.bills[:20]:
            mask = ids == bill.flex_offer_id
            assert bill.baseline_kwh == pytest.approx(float(world.counterfactual_kwh[c][mask].sum()), abs=1e-9)
        assert run.submeter is None
    else:
        assert run.submeter is not None and run.submeter.history_days == 1
        with_devices = sum(1 for p in world.prosumers[: world.config.site.delegated] if p.devices)
        assert run.submeter.prosumers == with_devices and 0 <= run.submeter.passed <= with_devices
    ledger = build_ledger(world, steps=c, settlement=run)
    paid = ledger.loc[ledger["reason"] == "flexibility_payment", "eur"].sum()
    assert round(paid * 100) == run.settlement.statement.payments_to_prosumers_cents + sum(
        b.penalty_cents for b in run.settlement.bills
    )


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["fman.settlement_baseline=declared"], ["fman.settlement_baseline", "in_force"]),
        (["fman.settlement_baseline=characteristic"], ["fman.settlement_baseline", "sim.warmup_s"]),
    ],
)
def test_bad_settlement_baselines_name_the_key(overrides, words):
    with pytest.raises(ConfigError) as err:
        config_for("scenario=sww", *overrides)
    for word in words:
        assert word in str(err.value)

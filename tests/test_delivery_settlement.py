"""Market awards settle on delivery (sim/delivery.py, booked by sim/ledger.py).

Unit level: the settlement rule over random awards and meters (delivered within the award and
in its direction, no negative money) and the buyers' shares of a shared seller. World level:
one short congested ESR run with the DSO's local market and the aggregator bidding (so that
direct prosumers and the aggregator both sell, and some awards fall short), shared by every
test: delivered <= awarded per award and step, delivered = what the meters show, the buyers
pay price x delivered to the cent, penalties = rate x shortfall, the ledger sums to zero, the
kpi.json market figures are the sums, and the independent run-folder checker passes.
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import Schedule
from atp.fmar import Award, SessionResult
from sim.config import ConfigError
from sim.delivery import DELIVERY_TOLERANCE_KWH, AwardDelivery, buyer_weights, delivered_part, settle_delivery
from sim.kpi import compute_kpis
from sim.ledger import settle_run
from sim.outputs import write_outputs
from sim.world import World
from tests.test_world import config_for

ROOT = Path(__file__).resolve().parents[1]
RUN = (
    "scenario=esr_congested",
    "dso.strategy=local_market",
    "fman=market_bidding",
    "sim.days=0.25",
    "sim.start=2026-01-12T12:00:00Z",  # the afternoon into the evening peak: congestion and bids
    "output.report=false",
)


# -- the rule ----------------------------------------------------------------------------------
_kwh = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False).map(lambda v: round(v, 4))


@st.composite
def award_and_meter(draw):
    """An award's energies per step and a meter: some steps exact, some short, over or reversed."""
    n = draw(st.integers(1, 12))
    awarded = np.array([draw(st.sampled_from([0.0]) | _kwh) for _ in range(n)])
    measured = np.array([draw(st.sampled_from([a, a / 2, 2 * a, -a, a + 1e-8, 0.0]) | _kwh) for a in awarded.tolist()])
    return awarded, measured


@settings(max_examples=100)
@given(
    award_and_meter(),
    st.floats(min_value=0.0, max_value=0.5, allow_nan=False),
    st.floats(min_value=0.0, max_value=0.5, allow_nan=False),
)
def test_the_rule_caps_delivery_at_the_award_in_its_direction(case, price, rate):
    awarded, measured = case
    settled = settle_delivery(awarded, measured, price_eur_per_kwh=price, penalty_eur_per_kwh=rate)
    d, short = settled.delivered_kwh, settled.shortfall_kwh
    assert (np.abs(d) <= np.abs(awarded)).all()  # capped at the award
    assert (d * awarded >= 0).all() and (d[awarded == 0] == 0).all()  # only in the awarded direction
    assert (short >= 0).all()
    np.testing.assert_allclose(short + np.abs(d), np.abs(awarded), atol=1e-12)
    exact = np.abs(measured - awarded) <= DELIVERY_TOLERANCE_KWH
    np.testing.assert_array_equal(d[exact], awarded[exact])  # a followed schedule is delivered in full
    within = (awarded * measured > 0) & (np.abs(measured) <= np.abs(awarded)) & ~exact
    np.testing.assert_allclose(d[within], measured[within])  # a partial delivery counts what was metered
    assert settled.payment_cents >= 0 and settled.penalty_cents >= 0  # no negative payments
    assert settled.payment_cents == round(price * math.fsum(np.abs(d).tolist()) * 100)
    assert settled.payment_cents <= round(price * math.fsum(np.abs(awarded).tolist()) * 100)
    assert settled.penalty_cents == round(rate * math.fsum(short.tolist()) * 100)
    assert settled.awarded_total_kwh == pytest.approx(settled.delivered_total_kwh + settled.shortfall_total_kwh)


def test_the_rule_refuses_what_it_cannot_settle():
    with pytest.raises(ValueError, match="differ in length"):
        delivered_part([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="penalty_eur_per_kwh"):
        settle_delivery([1.0], [1.0], price_eur_per_kwh=0.1, penalty_eur_per_kwh=-0.1)
    with pytest.raises(ConfigError, match=r"market\.shortfall_penalty_eur_per_kwh"):
        config_for("market.shortfall_penalty_eur_per_kwh=-1")


T0 = datetime(2026, 1, 12, tzinfo=UTC)


def _result(buyer: str, cleared: list[float], awards: tuple[Award, ...], mechanism: str) -> SessionResult:
    n = len(cleared)
    return SessionResult(
        session="s",
        mechanism=mechanism,
        mechanism_version="1",
        buyer=buyer,
        request_id=buyer,
        kind=None,
        gate_closure=None,
        cleared_at=T0,
        start=T0,
        slice_s=900,
        cutoff_eur_per_kwh=0.3,
        requested_kwh=tuple(cleared),
        cleared_kwh=tuple(cleared),
        step_mean_price_eur_per_kwh=(None,) * n,
        step_max_price_eur_per_kwh=(None,) * n,
        n_offers=1,
        n_bids=1,
        awards=awards,
        rejected=(),
        buyer_pays_eur=0.0,
        sellers_receive_eur=0.0,
        surplus_eur=0.0,
    )


@settings(max_examples=60)
@given(
    st.lists(st.lists(st.sampled_from([0.0, 1.0, 2.5, -1.0, -3.0]), min_size=4, max_size=4), min_size=1, max_size=3),
    st.lists(st.sampled_from([0.0, 0.5, -0.5, 1.0]), min_size=4, max_size=4),
    st.sampled_from(["one_sided_pool", "many_to_many"]),
)
def test_buyers_share_a_delivery_by_what_they_cleared_in_its_steps(cleared, deviation, mechanism):
    award = Award("fo-1", "p1", Schedule("fo-1", T0, 0, (0.0,) * 4), tuple(deviation), 0.2, 0.0)
    results = [_result(f"b{n}", c, (award,) if n == 0 else (), mechanism) for n, c in enumerate(cleared)]
    delivery = settle_delivery(deviation, deviation, price_eur_per_kwh=0.2, penalty_eur_per_kwh=0.1)
    settled = AwardDelivery(award, results[0], ("fo-1",), 0, np.asarray(deviation), delivery)
    weights = buyer_weights(results, settled)
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    if mechanism == "one_sided_pool" or not any(deviation):
        assert weights[0] == 1.0  # the award serves the request it is listed with
        return
    volume = np.abs(deviation)
    expected = np.zeros(len(results))
    for t, kwh in enumerate(volume.tolist()):
        same = np.array([abs(c[t]) if np.sign(c[t]) == np.sign(deviation[t]) else 0.0 for c in cleared])
        if kwh and same.sum():
            expected += kwh * same / same.sum()
        elif kwh:
            expected[0] += kwh
    np.testing.assert_allclose(weights, expected / volume.sum())


# -- one world run -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    """The run, its settlement (with every award settled on delivery), ledger, kpi.json and folder."""
    world = World(config_for(*RUN))
    world.run()
    out = tmp_path_factory.mktemp("delivery")
    kpis = compute_kpis(world)
    write_outputs(world, out, kpis)
    run = settle_run(world, steps=world.counted)
    ledger = pd.read_parquet(out / "ledger.parquet")
    return world, run, ledger.assign(cents=np.round(ledger["eur"].to_numpy() * 100).astype(np.int64)), kpis, out


def _rows(ledger: pd.DataFrame, reason: str) -> pd.DataFrame:
    return ledger[ledger["reason"] == reason].set_index("award")


def test_every_award_is_settled_and_both_kinds_of_seller_trade(settled):
    world, run, _, _, _ = settled
    results = world.market_operator.market.results
    assert len(run.awards) == sum(r.n_awards for r in results) > 0
    sellers = {a.award.issuer == world.aggregator.name for a in run.awards}
    assert sellers == {True, False}  # the aggregator's bids and direct prosumers' offers
    assert any(a.delivery.shortfall_total_kwh > 0 for a in run.awards)  # some fall short


def test_delivered_never_exceeds_the_award_in_its_direction(settled):
    _, run, _, _, _ = settled
    for item in run.awards:
        a, d = item.delivery.awarded_kwh, item.delivery.delivered_kwh
        assert (np.abs(d) <= np.abs(a)).all() and (d * a >= 0).all()
        assert item.delivery.delivered_total_kwh <= item.delivery.awarded_total_kwh
        np.testing.assert_allclose(item.delivery.shortfall_kwh, np.abs(a) - np.abs(d), atol=1e-12)


def _net_by_offer_and_step(world: World) -> dict[tuple[str, int], float]:
    """Metered minus baseline in force, summed per covering offer and step (the meters' view)."""
    k, i, d = np.nonzero(world.offer_ids != None)  # noqa: E711
    frame = pd.DataFrame(
        {"offer": world.offer_ids[k, i, d], "k": k, "net": world.metered_kwh[k, i, d] - world.baseline_kwh[k, i, d]}
    )
    return frame.groupby(["offer", "k"])["net"].sum().to_dict()


def test_delivered_is_what_the_meters_show(settled):
    world, run, _, _, _ = settled
    net = _net_by_offer_and_step(world)
    aggregates = [u for u in world.aggregator.aggregates_used if u.bid and u.schedule is not None]
    for item in run.awards:
        offers = [item.award.offer_id]
        if item.award.issuer == world.aggregator.name:
            # The world's own record of the aggregate the award was bid from (same awarded schedule).
            (use,) = [
                u
                for u in aggregates
                if u.schedule.start == item.award.schedule.start and u.schedule.energy == item.award.schedule.energy
            ]
            offers = [m.offer_id for m in use.aggregate.members]
            assert sorted(offers) == sorted(item.offers)
        measured = np.array([sum(net.get((o, k), 0.0) for o in offers) for k in item.steps])
        np.testing.assert_allclose(item.measured_kwh, measured, atol=1e-9)
        np.testing.assert_array_equal(item.delivery.delivered_kwh, delivered_part(item.delivery.awarded_kwh, measured))


def test_buyers_pay_price_times_delivered_to_the_cent(settled):
    world, run, ledger, _, _ = settled
    paid = _rows(ledger, "market_delivery")
    fmar = f"fmar:{world.market_operator.market.name}"
    for item in run.awards:
        cents = round(item.award.price_eur_per_kwh * item.delivery.delivered_total_kwh * 100)
        assert int(paid["cents"].get(item.award.offer_id, 0)) == cents
        assert cents <= round(item.award.price_eur * 100) + 1  # never more than the award (1 cent of rounding)
        if cents:
            row = paid.loc[item.award.offer_id]
            assert row["payer"] == fmar and row["payee"].split(":", 1)[1] == item.award.issuer
    # One-sided pool: each buyer pays the FMAR exactly the delivered payments of its own awards.
    purchases = ledger[ledger["reason"] == "market_purchase"].groupby(["time", "payer"])["cents"].sum()
    expected: dict[tuple[pd.Timestamp, str], int] = {}
    for item in run.awards:
        buyer = item.result.buyer.split("@", 1)[0]
        role = "dso" if buyer == world.dso.name else "brp"
        key = (pd.Timestamp(item.result.start), f"{role}:{buyer}")
        expected[key] = expected.get(key, 0) + item.delivery.payment_cents
    assert {k: v for k, v in expected.items() if v} == {k: int(v) for k, v in purchases.items()}


def test_penalties_are_the_rate_times_the_shortfall(settled):
    world, run, ledger, _, _ = settled
    rate = world.config.market.shortfall_penalty_eur_per_kwh
    assert rate == 0.10  # scenarios/market/one_sided_pool.yaml
    fined = _rows(ledger, "market_shortfall")
    assert len(fined) > 0
    for item in run.awards:
        cents = round(rate * item.delivery.shortfall_total_kwh * 100)
        assert int(fined["cents"].get(item.award.offer_id, 0)) == cents
        if cents:
            row = fined.loc[item.award.offer_id]
            assert row["payer"].split(":", 1)[1] == item.award.issuer
            assert row["payee"] == f"fmar:{world.market_operator.market.name}"


def test_the_ledger_still_sums_to_zero(settled):
    world, run, ledger, kpis, _ = settled
    net = ledger.groupby("payee")["cents"].sum().sub(ledger.groupby("payer")["cents"].sum(), fill_value=0)
    assert int(net.sum()) == 0
    by_reason = ledger.groupby("reason")["cents"].sum()
    assert int(net[f"fmar:{world.market_operator.market.name}"]) == int(by_reason.get("market_surplus", 0)) + int(
        by_reason["market_shortfall"]
    )
    assert int(by_reason["market_purchase"]) == int(by_reason["market_delivery"])
    aggregator = f"aggregator:{world.aggregator.name}"
    revenue = int(ledger.loc[(ledger["reason"] == "market_delivery") & (ledger["payee"] == aggregator), "cents"].sum())
    revenue -= int(
        ledger.loc[(ledger["reason"] == "market_shortfall") & (ledger["payer"] == aggregator), "cents"].sum()
    )
    assert run.settlement.statement.market_revenue_cents == revenue
    assert round(kpis["money"]["aggregator_market_revenue_eur"] * 100) == revenue
    assert round(kpis["money"]["market_shortfall_penalties_eur"] * 100) == int(by_reason["market_shortfall"])


def test_kpi_market_figures_are_the_sums_of_the_deliveries(settled):
    _, run, _, kpis, out = settled
    market = kpis["market"]
    deliveries = pd.read_parquet(out / "deliveries.parquet")
    assert market["awarded_kwh"] == pytest.approx(deliveries["awarded_kwh"].abs().sum(), abs=1e-6)
    assert market["delivered_kwh"] == pytest.approx(deliveries["delivered_kwh"].abs().sum(), abs=1e-6)
    assert market["shortfall_kwh"] == pytest.approx(deliveries["shortfall_kwh"].sum(), abs=1e-6)
    assert market["shortfall_kwh"] == pytest.approx(market["awarded_kwh"] - market["delivered_kwh"], abs=1e-5)
    assert market["awards_with_shortfall"] == sum(1 for a in run.awards if a.delivery.shortfall_total_kwh > 0)
    assert set(deliveries["award"]) == {a.award.offer_id for a in run.awards}
    assert len(deliveries) == sum(len(a.measured_kwh) for a in run.awards)


def test_the_independent_checker_passes_on_the_run(settled):
    *_, out = settled
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "check_run_folder.py"), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   6 awards settled on delivery: " in proc.stdout

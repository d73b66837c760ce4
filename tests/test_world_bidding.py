"""The FMAN trading its portfolio on the FMAR inside the world (fman=market_bidding)."""

from __future__ import annotations

import numpy as np
import pytest

from atp.flexoffer import OfferState, check_schedule
from sim.config import ConfigError
from sim.kpi import compute_kpis
from sim.world import World
from tests.test_world import SHORT, config_for


@pytest.fixture(scope="module")
def bidding_world():
    world = World(config_for("scenario=sww", "fman=market_bidding", *SHORT))
    world.run()
    return world


def test_awarded_bids_reach_the_prosumers_exactly(bidding_world):
    world = bidding_world
    aggregator = world.aggregator
    assert aggregator.bids_made > 0 and aggregator.bids_awarded > 0
    market_store = world.market_operator.market.store
    fman = {r.offer.id: r for r in aggregator.store.records()}
    awarded = [
        r for r in market_store.records() if r.owner == aggregator.name and r.schedule is not None and r.offer.members
    ]
    assert len(awarded) == aggregator.bids_awarded
    for bid in awarded:
        assert check_schedule(bid.offer, bid.schedule) == []
        # The members' assigned schedules sum, step by step, to the awarded aggregate schedule.
        step = bid.offer.slice_s
        total = np.zeros(len(bid.schedule.energy))
        for member_id in bid.offer.members:
            member = fman[member_id]
            assert member.schedule is not None
            assert check_schedule(member.offer, member.schedule) == []
            k0 = int((member.schedule.start - bid.schedule.start).total_seconds() // step)
            assert k0 >= 0 and k0 + len(member.schedule.energy) <= len(total)
            total[k0 : k0 + len(member.schedule.energy)] += member.schedule.energy
        np.testing.assert_allclose(total, bid.schedule.energy, atol=1e-9)


def test_no_member_is_both_bid_and_planned(bidding_world):
    """A member assigned by the market was never also assigned by a planning round (the store
    would refuse a second assignment), and every assigned offer is feasible."""
    world = bidding_world
    planned = {s.flex_offer_id for p in world.aggregator.plans for s in p.schedules}
    market_members = {
        m
        for r in world.market_operator.market.store.records()
        if r.owner == world.aggregator.name and r.schedule is not None
        for m in r.offer.members or ()
    }
    assert market_members and not planned & market_members
    for record in world.aggregator.store.records((OfferState.ASSIGNED, OfferState.EXECUTING, OfferState.SETTLED)):
        if record.schedule is not None:
            assert check_schedule(record.offer, record.schedule) == []


def test_kpis_report_the_aggregators_market_revenue(bidding_world):
    kpis = compute_kpis(bidding_world)
    fman = kpis["fman_kpi"]
    assert fman["market"]["deals"] == bidding_world.aggregator.bids_awarded
    assert fman["money"]["market_revenue_eur"] > 0
    assert fman["money"]["prosumer_payments_eur"] > 0
    assert kpis["money"]["market_buyers_pay_eur"] == pytest.approx(
        kpis["money"]["market_sellers_receive_eur"] + kpis["money"]["market_surplus_eur"], abs=0.01
    )
    assert set(fman["extrapolated"]["projections"]) == {"x10", "x100", "x1000"}  # half a day: flagged


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("fman.bidding.cost_eur_per_kwh=-1", "fman.bidding.cost_eur_per_kwh"),
        ("fman.bidding.max_volume_kwh=0", "fman.bidding.max_volume_kwh"),
        ("fman.bidding.margin_eur_per_kwh=cheap", "fman.bidding.margin_eur_per_kwh"),
    ],
)
def test_bad_bidding_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_for("scenario=sww", "fman=market_bidding", override)


def test_the_run_settles_every_metered_delegated_offer_to_the_cent(bidding_world):
    kpis = compute_kpis(bidding_world)
    settlement = kpis["settlement"]
    metered = [r for r in bidding_world.aggregator.store.records() if r.measurements]
    assert settlement["bills"] == len(metered) > 0
    assert settlement["contract"] == "delegated"
    assert settlement["market_revenue_eur"] == pytest.approx(kpis["fman_kpi"]["money"]["market_revenue_eur"], abs=0.005)
    cents = round(settlement["payments_to_prosumers_eur"] * 100) + round(settlement["margin_eur"] * 100)
    assert cents == round(settlement["market_revenue_eur"] * 100)  # revenue = payments + margin, exactly
    assert settlement["payments_to_prosumers_eur"] > 0  # awarded adaptation was delivered and paid


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("+fman.contract={kind:delegated,activation_eur_per_kwh:-1}", "fman.contract.activation_eur_per_kwh"),
        ("+fman.contract={kind:direct,rate:1}", "fman.contract.rate"),
        ("+fman.contract={kind:lease}", "fman.contract.kind"),
    ],
)
def test_bad_contracts_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_for("scenario=sww", override)

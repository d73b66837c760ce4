"""A DSO's local request at its feeder, as the world posts it: bought from the sellers there.

The DSO's standing request at congestion point cp-1 (less consumption in two congested steps)
goes through the market operator (`sim.agents.market_operator.MarketOperator`, which posts it
as the DSO's `FlexRequest` through the exchange interface in a rolling session) to each
mechanism. A direct seller located at cp-1 whose default consumes in those steps, with room to
consume less, is awarded a reduction there; a cheaper seller at another feeder is not; the
DSO pays, never the other way round. Where nothing can clear, each mechanism says why in the
DSO's own terms: no seller at the feeder, no room to consume less in those steps, or every
seller there above the cut-off (not "no crossing bids" for every case). A request that the DSO
refreshes at every forecast is counted once in the operator's requested volume.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import mesa
import numpy as np
import pytest

from atp.flexoffer import FlexOffer, OfferState, check_schedule
from atp.fmar import FlexOfferMarket
from atp.interface import FlexRequest, InProcessClient, RequestState, cleared_problems
from sim.agents.market_operator import MarketOperator
from tests.http_support import Clock
from tests.test_fmar_pool import STEP, T0, box_offer

MECHANISMS = ("one_sided_pool", "two_sided_pool", "many_to_many")
DSO = "dso-1@cp-1"
CUTOFF = 0.35
N_STEPS = 12  # the run: 12 steps of 15 min from T0
K = 3  # the operator clears at step 3: delivery from step 4 on
CONGESTED = (5, 6)  # steps of the DSO's request
WANT = (-0.6, -0.8)  # less consumption wanted in them (kWh)


def operator(mechanism: str) -> tuple[MarketOperator, FlexOfferMarket, Clock]:
    clock = Clock(T0 + K * STEP)
    market = FlexOfferMarket("fmar", clock=clock, mechanism=mechanism)
    op = MarketOperator(mesa.Model(), market=market, start=T0, slice_s=900, n_steps=N_STEPS, horizon_steps=8)
    return op, market, clock


def dso_request(volume: tuple[float, ...] = WANT, *, first: int = CONGESTED[0]) -> FlexRequest:
    """The DSO's request at cp-1 as `Dso.local_requests` makes it: negative = less consumption."""
    return FlexRequest(
        buyer=DSO,
        start=T0 + first * STEP,
        slice_s=900,
        volume_kwh=volume,
        cutoff_eur_per_kwh=CUTOFF,
        congestion_point="cp-1",
    )


def seller(
    issuer: str, point: str, *, price: float, default: float | list[float] = 1.0, lower: float = 0.0
) -> FlexOffer:
    """A direct offer over steps 4..7 (one step ahead, as direct FOAs send them), at `point`."""
    return box_offer(
        None,
        issuer=issuer,
        congestion_point=point,
        price=price,
        lower=lower,
        upper=2.0,
        default=default,
        start=T0 + (K + 1) * STEP,
        assignment_before=T0 + (K + 1) * STEP,
    )


def clear(op: MarketOperator, clock: Clock, offers: dict[str, FlexOffer]) -> list:
    """Sellers submit through the interface, the DSO's request stands, the operator clears step K."""
    for issuer, offer in offers.items():
        assert InProcessClient(op.market.store, issuer).submit(offer).state is OfferState.ACCEPTED
    op.post(dso_request(), congestion_point="cp-1")
    return op.clear(K, clock.now)


def in_congested(values: tuple[float, ...]) -> np.ndarray:
    """The congested steps' values of a request the operator posted over its session (from K + 1)."""
    return np.asarray(values)[[k - (K + 1) for k in CONGESTED]]


def dso_posted(market: FlexOfferMarket) -> FlexRequest:
    """The DSO's request as the exchange interface holds it (what the DSO reads back)."""
    (posted,) = InProcessClient(market.store, DSO).requests()
    return posted


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_local_request_is_bought_from_the_seller_at_the_feeder(mechanism):
    op, market, clock = operator(mechanism)
    offers = {
        "seller-cp1": seller("seller-cp1", "cp-1", price=0.12),
        "seller-cp2": seller("seller-cp2", "cp-2", price=0.05),  # cheaper, but on another feeder
    }
    clear(op, clock, offers)
    posted = dso_posted(market)
    result = posted.result
    assert posted.state is RequestState.CLEARED and result is not None, posted
    assert posted.congestion_point == "cp-1" and posted.start == T0 + (K + 1) * STEP  # the session's window
    np.testing.assert_allclose(in_congested(posted.volume_kwh), WANT)
    # Bought, in the requested direction, all of it: less consumption in both congested steps.
    assert cleared_problems(posted.volume_kwh, result.cleared_kwh) == []
    np.testing.assert_allclose(in_congested(result.cleared_kwh), WANT, atol=1e-6)
    np.testing.assert_allclose(result.cleared_total_kwh, -sum(WANT), atol=1e-6)
    assert result.reason is None
    # The DSO pays (at most its cut-off), the seller at cp-1 receives; nobody pays the DSO.
    assert result.buyer_pays_eur > 0 and result.sellers_receive_eur > 0
    assert result.buyer_pays_eur <= CUTOFF * result.cleared_total_kwh + 1e-9
    assert result.buyer_pays_eur == pytest.approx(
        result.sellers_receive_eur + result.transport_fees_eur + result.surplus_eur
    )
    assert [a.issuer for a in result.awards] == ["seller-cp1"]
    # The seller's schedule consumes less than its default in exactly those steps, and is feasible.
    (offer,) = InProcessClient(market.store, "seller-cp1").active()
    assert offer.state is OfferState.ASSIGNED
    assert check_schedule(offer, offer.schedule) == []
    deviation = np.subtract(offer.schedule.energy, offer.default_schedule.energy)
    k0 = int((offer.schedule.start - T0) / STEP)
    expected = np.zeros(len(deviation))
    expected[CONGESTED[0] - k0 : CONGESTED[1] - k0 + 1] = WANT
    np.testing.assert_allclose(deviation, expected, atol=1e-6)
    (other,) = InProcessClient(market.store, "seller-cp2").active()
    assert other.schedule is None
    # The operator took what cleared off the DSO's standing volume.
    np.testing.assert_allclose(op.standing[DSO].remaining_kwh[list(CONGESTED)], 0.0, atol=1e-6)
    np.testing.assert_allclose(op.cleared_kwh.sum(), -sum(WANT), atol=1e-6)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_part_of_a_local_request_clears_when_the_seller_has_room_for_part(mechanism):
    op, market, clock = operator(mechanism)
    # The seller consumes 0.3 kWh in the congested steps by default: that is all it can give up.
    default = [1.0, 0.3, 0.3, 1.0]
    clear(op, clock, {"seller-cp1": seller("seller-cp1", "cp-1", price=0.12, default=default)})
    result = dso_posted(market).result
    assert result is not None
    np.testing.assert_allclose(in_congested(result.cleared_kwh), (-0.3, -0.3), atol=1e-6)
    assert result.cleared_total_kwh == pytest.approx(0.6, abs=1e-6)
    assert result.buyer_pays_eur > 0


def reason_of(mechanism: str, offers: dict[str, FlexOffer]) -> str:
    op, market, clock = operator(mechanism)
    clear(op, clock, offers)
    posted = dso_posted(market)
    assert posted.state is RequestState.CLEARED and posted.result is not None
    assert posted.result.cleared_total_kwh == 0 and posted.result.buyer_pays_eur == 0
    assert posted.result.reason is not None
    return posted.result.reason


@pytest.mark.parametrize("mechanism", ("one_sided_pool", "many_to_many"))
def test_no_room_to_consume_less_is_named_as_such(mechanism):
    # At cp-1 the seller's default is already at its lower bound (0 kWh) in the congested steps:
    # it cannot consume less there, at any price.
    default = [1.0, 0.0, 0.0, 1.0]
    reason = reason_of(mechanism, {"seller-cp1": seller("seller-cp1", "cp-1", price=0.10, default=default)})
    assert "requested direction during the requested steps" in reason
    assert "cut-off" not in reason


@pytest.mark.parametrize("mechanism", ("one_sided_pool", "many_to_many"))
def test_no_seller_at_the_feeder_is_named_as_such(mechanism):
    reason = reason_of(mechanism, {"seller-cp2": seller("seller-cp2", "cp-2", price=0.05)})
    assert "cp-1" in reason
    assert "no offer at congestion point" in reason or "no seller at or linked to" in reason


@pytest.mark.parametrize("mechanism", ("one_sided_pool", "many_to_many"))
def test_sellers_above_the_cut_off_are_named_as_such(mechanism):
    reason = reason_of(mechanism, {"seller-cp1": seller("seller-cp1", "cp-1", price=CUTOFF + 0.05)})
    assert "cut-off" in reason and f"{CUTOFF:g}" in reason


def test_a_refreshed_request_is_counted_once_in_the_requested_volume():
    op, _, _ = operator("one_sided_pool")
    op.post(dso_request(), congestion_point="cp-1")
    op.post(dso_request(), congestion_point="cp-1")  # the next forecast: the same congestion
    np.testing.assert_allclose(op.requested_kwh.sum(), -sum(WANT))
    op.post(dso_request((-0.4, -1.0)), congestion_point="cp-1")  # less in one step, more in the other
    np.testing.assert_allclose(op.requested_kwh[list(CONGESTED)], (0.6, 1.0))
    np.testing.assert_allclose(op.standing[DSO].remaining_kwh[list(CONGESTED)], (-0.4, -1.0))


def test_the_seller_delivers_at_the_congested_steps_not_elsewhere():
    """Many-to-many may move an offer in time; a local request is served in its own steps."""
    op, market, clock = operator("many_to_many")
    late: datetime = T0 + (K + 1) * STEP
    offer = seller("seller-cp1", "cp-1", price=0.12)
    offer = dataclasses.replace(offer, start_before=late + 2 * STEP)
    clear(op, clock, {"seller-cp1": offer})
    result = dso_posted(market).result
    assert result is not None and result.cleared_total_kwh > 0
    (award,) = result.awards
    start = int((award.deviation_start - T0) / STEP)
    by_step = dict(enumerate(award.deviation_kwh, start=start))
    for k in CONGESTED:
        assert by_step.get(k, 0.0) < 0  # less consumption where the DSO asked for it

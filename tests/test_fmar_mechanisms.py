"""The many-to-many and two-sided pool mechanisms on Flex-Offers, the calendar and the DOMS interface.

Offers and requests go through the market service (store, sessions, clients); awards are
checked with check_schedule and the per-request money against the market-level clearing.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, time
from zoneinfo import ZoneInfo

import pytest

from atp.flexoffer import OfferState, check_schedule
from atp.fmar import (
    CongestionPoint,
    DomsInterface,
    FlexOfferMarket,
    ManyToMany,
    MarketCalendar,
    MarketError,
    Session,
    SessionKind,
    TransportLink,
    TwoSidedPool,
    create_mechanism,
    mechanism_names,
    open_days,
)
from tests.test_fmar_pool import HOUR, STEP, T0, Clock, box_offer, request


def shiftable(offer_id: str, *, steps_late: int, price: float = 0.05, **kw):
    """A 1-step, fixed-energy offer at T0+1h that may start up to `steps_late` steps later."""
    offer = box_offer(offer_id, lower=1.0, upper=1.0, default=1.0, n_steps=1, price=price, **kw)
    return dataclasses.replace(offer, start_before=T0 + HOUR + steps_late * STEP, assignment_before=T0 + HOUR)


def money_balances(results, clearing) -> None:
    for r in results:
        assert r.buyer_pays_eur == pytest.approx(r.sellers_receive_eur + r.transport_fees_eur + r.surplus_eur)
    assert sum(r.buyer_pays_eur for r in results) == pytest.approx(clearing.buyers_pay_eur)
    assert sum(r.sellers_receive_eur for r in results) == pytest.approx(clearing.sellers_receive_eur)
    assert sum(r.transport_fees_eur for r in results) == pytest.approx(clearing.transport_fees_eur)


def test_registry_and_options():
    assert {"one_sided_pool", "two_sided_pool", "many_to_many"} <= set(mechanism_names())
    m = create_mechanism("many_to_many", pricing="pay_as_bid", max_starts=2)
    assert isinstance(m, ManyToMany) and m.pricing.value == "pay_as_bid" and m.max_starts == 2
    with pytest.raises(MarketError, match="no option 'colour'"):
        create_mechanism("two_sided_pool", colour="red")
    with pytest.raises(MarketError, match="pricing 'vickrey' is not a pricing rule"):
        create_mechanism("many_to_many", pricing="vickrey")


def test_many_to_many_shifts_a_load_to_serve_two_buyers_through_the_service():
    clock = Clock(T0)
    market = FlexOfferMarket("m2m", clock=clock, mechanism=ManyToMany())
    gate = T0 + HOUR - 2 * STEP
    session = market.add_session(Session("id-1", "intraday", gate, T0 + HOUR, T0 + 2 * HOUR))
    foa = market.client("foa-1")
    events = []
    foa.subscribe(events.append)
    offer = foa.submit(dataclasses.replace(shiftable("x", steps_late=3), id=None, created_at=None))
    # The BRP wants less consumption at step 0, the DSO more at step 2: only a shift serves both.
    market.post_request(request([-1.0, 0.0, 0.0, 0.0], cutoff=0.3, id="brp"), session="id-1")
    market.post_request(request([0.0, 0.0, 1.0, 0.0], cutoff=0.3, id="dso"), session="id-1")
    clock.now = gate
    results = market.run_due()
    assert [r.cleared_kwh for r in results] == [(-1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0)]
    (award,) = [a for r in results for a in r.awards]
    assert award.schedule.start == T0 + HOUR + 2 * STEP
    assert award.deviation_kwh == (-1.0, 0.0, 1.0) and award.deviation_start == T0 + HOUR
    got = foa.get(offer.id)
    assert got.state is OfferState.ASSIGNED and check_schedule(got, got.schedule, now=gate) == []
    assert [e.kind for e in events if e.kind == "assigned"] == ["assigned"]
    money_balances(results, market.mechanism.clearings[-1])
    assert market.status()[0]["pricing"] == "uniform" and market.status()[0]["state"] == "cleared"
    assert session in market.sessions


def test_many_to_many_pays_transport_to_a_congestion_point():
    near = box_offer("near", price=0.3, default=1.0, lower=0.0, upper=1.0, congestion_point="cp-1")
    far = box_offer("far", price=0.05, default=1.0, lower=0.0, upper=1.0, congestion_point="cp-2")
    link = TransportLink("cp-2", "cp-1", 0.02, 0.5)
    mechanism = ManyToMany(links=[link], hub_fee_eur_per_kwh=None)
    dso = request([-1.0] * 4, cutoff=0.5, id="dso", congestion_point="cp-1")
    (result,) = mechanism.clear([dso], [near, far], now=T0)
    clearing = mechanism.clearings[-1]
    assert result.cleared_kwh == pytest.approx((-1.0,) * 4)
    assert clearing.flow_kwh.sum() == pytest.approx(2.0)  # 0.5 kWh per step, the capacity
    assert result.transport_fees_eur == pytest.approx(0.04)
    money_balances([result], clearing)
    offers = {"near": near, "far": far}
    for a in result.awards:
        assert check_schedule(offers[a.offer_id], a.schedule, now=T0) == []
        assert a.price_eur >= 0.05 * a.delivered_kwh - 1e-9


def test_two_sided_pool_serves_the_highest_limit_first_at_one_price():
    prices = (0.05, 0.1, 0.2)
    offers = [box_offer(f"o{i}", price=p, default=1.0, lower=0.0, upper=1.0) for i, p in enumerate(prices)]
    brp = request([-1.5] * 4, cutoff=0.3, id="brp")
    other = request([-1.5] * 4, cutoff=0.15, id="other")
    pool = TwoSidedPool()
    results = pool.clear([brp, other], offers, now=T0)
    assert results[0].cleared_kwh == pytest.approx((-1.5,) * 4)
    assert results[1].cleared_kwh == pytest.approx((-0.5,) * 4)  # what is left under its limit
    # The other buyer is the marginal bid: its limit is the one price both pay.
    for r in results:
        assert r.step_mean_price_eur_per_kwh == pytest.approx((0.15,) * 4)
    assert sorted(a.offer_id for r in results for a in r.awards) == ["o0", "o1"]
    money_balances(results, pool.clearings[-1])
    for r in results:
        assert r.buyer_pays_eur <= r.cutoff_eur_per_kwh * r.cleared_total_kwh + 1e-9
        for a in r.awards:
            assert a.price_eur >= 0.05 * a.delivered_kwh - 1e-9
    pab = TwoSidedPool(pricing="pay_as_bid").clear([brp, other], offers, now=T0)
    assert sum(r.surplus_eur for r in pab) > 0


def test_two_sided_pool_keeps_congestion_points_local_and_never_shifts():
    at_cp = box_offer("cp", price=0.05, congestion_point="cp-1")
    loose = box_offer("loose", price=0.01)
    late = shiftable("late", steps_late=3, price=0.01)
    dso = request([-1.0] * 4, cutoff=0.3, id="dso", congestion_point="cp-1")
    results = TwoSidedPool().clear([dso], [at_cp, loose, late], now=T0)
    assert [a.offer_id for a in results[0].awards] == ["cp"]


@pytest.mark.parametrize("mechanism", ["many_to_many", "two_sided_pool"])
def test_no_trade_results_carry_a_reason(mechanism):
    m = create_mechanism(mechanism)
    assert m.clear([], [], now=T0) == []
    (empty,) = m.clear([request([-1.0] * 4)], [], now=T0)
    assert empty.reason is not None and empty.awards == () and empty.cleared_total_kwh == 0
    (dear,) = m.clear([request([-1.0] * 4, cutoff=0.01)], [box_offer("o", price=0.5)], now=T0)
    assert "no crossing" in dear.reason
    (zero,) = m.clear([request([0.0] * 4)], [box_offer("o")], now=T0)
    assert zero.reason.startswith("zero volume")
    outside = request([-1.0] * 4, start=T0 + 5 * HOUR)
    session = Session("s", "intraday", T0, T0 + HOUR, T0 + 2 * HOUR)
    (off,) = m.clear([outside], [box_offer("o")], now=T0, session=session)
    assert "outside" in off.reason
    (late,) = m.clear([request([-1.0] * 4)], [box_offer("o")], now=T0 + 2 * HOUR)
    assert late.reason is not None and late.awards == ()


def test_calendar_lays_out_day_ahead_and_intraday_sessions_in_local_time():
    tz = ZoneInfo("Europe/Berlin")
    cal = MarketCalendar(tz, intraday_gates=(time(8, 0), time(16, 0), time(23, 30)), intraday_lead_s=3600)
    day = date(2026, 3, 3)
    sessions = cal.sessions_for_day(day)
    assert [s.kind for s in sessions] == [SessionKind.DAY_AHEAD, SessionKind.INTRADAY, SessionKind.INTRADAY]
    da, morning, _ = sessions
    assert da.gate_closure.hour == 11 and da.gate_closure.day == 2  # 12:00 CET the day before
    assert da.n_steps == 96 and morning.delivery_start.hour == 8  # 09:00 CET
    market = FlexOfferMarket(clock=Clock(T0))
    assert len(open_days(market, cal, [day, date(2026, 3, 4)])) == 6
    local = cal.local_session("cp-1", now=T0, delivery_start=T0 + HOUR, n_steps=4)
    assert local.kind is SessionKind.LOCAL and local.gate_closure == T0 and local.n_steps == 4


def test_doms_registers_points_lists_prosumers_and_summarises_completed_bids():
    clock = Clock(T0)
    market = FlexOfferMarket(clock=clock, mechanism="many_to_many")
    doms = DomsInterface(market)
    gate = T0 + HOUR - STEP
    market.add_session(Session("local", SessionKind.LOCAL, gate, T0 + HOUR, T0 + 2 * HOUR))
    for issuer, cp in (("foa-1", "cp-1"), ("foa-2", "cp-1"), ("foa-3", "cp-2")):
        client = market.client(issuer)
        client.submit(dataclasses.replace(box_offer(issuer, issuer=issuer, congestion_point=cp), id=None))
    assert doms.relevant_prosumers("cp-1") == ["foa-1", "foa-2"] and doms.relevant_prosumers("cp-9") == []
    point = CongestionPoint("cp-1", "dso-1", T0 + HOUR, 900, (-1.0, -1.0, 0.0, 0.0), 0.4)
    req = doms.register(point)
    assert req.congestion_point == "cp-1" and doms.points == ["cp-1"] and doms.registrations("cp-1") == [point]
    assert doms.completed_bids() == []
    clock.now = gate
    market.run_due()
    (bid,) = doms.completed_bids("cp-1")
    assert bid.cleared_kwh == pytest.approx(2.0) and bid.requested_kwh == pytest.approx(2.0)
    assert {issuer for _, issuer, _, _ in bid.awards} <= {"foa-1", "foa-2"}
    assert math.isclose(sum(kwh for _, _, kwh, _ in bid.awards), 2.0)
    assert doms.completed_bids("cp-2") == []

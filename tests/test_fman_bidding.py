"""FMAN bids into the FMAR: D2.1 3.3.2 ordering, profit filter, and awards disaggregated exactly."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.errors import ValidationError
from atp.flexoffer import (
    DefaultSchedule,
    FlexOffer,
    Location,
    Mode,
    OfferState,
    Price,
    Profile,
    Slice,
    check_schedule,
)
from atp.fman import AggregationParams, Portfolio, PriceSeries
from atp.fman.bidding import BiddingParams, disaggregate_award, plan_bids
from atp.fmar import FlexOfferMarket, Request, Session
from atp.interface import InProcessClient, OfferStore

T0 = datetime(2026, 3, 2, tzinfo=UTC)
STEP = timedelta(minutes=15)
HOUR = timedelta(hours=1)


def _offer(
    offer_id: str,
    *,
    start: datetime = T0 + HOUR,
    default_kwh: float = 2.0,
    lower: float = 0.0,
    upper: float = 3.0,
    price: float | None = None,
    value: float | None = None,
    deadline: datetime | None = None,
    n: int = 4,
) -> FlexOffer:
    return FlexOffer(
        issuer=f"p-{offer_id}",
        id=offer_id,
        mode=Mode.DELEGATED,
        profiles=(Profile(slices=(Slice(duration=n, energy=(lower, upper)),)),),
        start_after=start,
        start_before=start,
        assignment_before=deadline or start - STEP,
        slice_s=900,
        location=Location(meter_id=f"m-{offer_id}", congestion_point="cp-1"),
        default_schedule=DefaultSchedule(start=start, profile=0, energy=(default_kwh,) * n),
        price=None if price is None and value is None else Price(per_kwh_deviation=price, per_kwh=value),
    )


def _aggregates(offers: list[FlexOffer]):
    portfolio = Portfolio(params=AggregationParams(start_tolerance_s=0, max_group_size=1), issuer="agg")
    for o in offers:
        portfolio.put(o)
    return list(portfolio.result(T0))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 0.5), st.booleans()).map(
            lambda t: (round(t[0], 3), round(t[1], 3), t[2])
        ),
        min_size=1,
        max_size=10,
    ),
    st.floats(0.01, 0.6).map(lambda v: round(v, 3)),
)
def test_bids_raise_profit_and_follow_the_d21_order(specs, reference) -> None:
    offers = [
        _offer(
            f"o{i}",
            default_kwh=-2.0 if produce else 2.0,
            lower=-3.0 if produce else 0.0,
            upper=0.0 if produce else 3.0,
            price=price,
            value=value,
        )
        for i, (price, value, produce) in enumerate(specs)
    ]
    aggregates = _aggregates(offers)
    plan = plan_bids(aggregates, reference=reference, next_gate=T0 + STEP, issuer="agg")
    # Every aggregate is bid or held, once.
    assert sorted([b.aggregate.id for b in plan.bids] + [h.aggregate_id for h in plan.held]) == sorted(
        a.id for a in aggregates
    )
    for bid in plan.bids:
        assert bid.price_eur_per_kwh < bid.reference_eur_per_kwh  # only profitable bids
        assert bid.expected_profit_eur > 0
        assert bid.offer.mode is Mode.DIRECT and bid.offer.issuer == "agg"
        assert bid.offer.price.per_kwh_deviation == pytest.approx(bid.price_eur_per_kwh, abs=1e-6)
    for h in plan.held:
        price = next(o.price.per_kwh_deviation for o in offers if (o.id,) == h.members)
        assert price >= reference - 1e-12
    # D2.1 3.3.2: production first, cheapest first; then consumption, dearest first.
    directions = [b.direction for b in plan.bids]
    assert directions == sorted(directions, key=lambda d: d != "production")
    production = [b.price_eur_per_kwh for b in plan.bids if b.direction == "production"]
    assert production == sorted(production)
    values = [b.offer.price.per_kwh or 0.0 for b in plan.bids if b.direction == "consumption"]
    assert values == sorted(values, reverse=True)


def test_held_aggregates_are_postponed_or_rejected_by_deadline_and_volume_is_capped() -> None:
    soon = _offer("soon", price=0.5, deadline=T0 + STEP)
    later = _offer("later", price=0.5, start=T0 + 5 * HOUR, deadline=T0 + 4 * HOUR)
    cheap = [_offer(f"c{i}", price=0.01 * (i + 1), start=T0 + (i + 2) * HOUR) for i in range(3)]
    plan = plan_bids(
        _aggregates([soon, later, *cheap]),
        reference=0.2,
        next_gate=T0 + HOUR,
        issuer="agg",
        params=BiddingParams(max_volume_kwh=25.0),
    )
    assert [b.aggregate.members[0].offer_id for b in plan.bids] == ["c0", "c1"]  # 12 kWh flexible each
    decisions = {h.members[0]: h.decision for h in plan.held}
    assert decisions == {"soon": "rejected", "later": "postponed", "c2": "postponed"}
    assert "used up" in next(h.reason for h in plan.held if h.members == ("c2",))
    assert "no profit" in next(h.reason for h in plan.held if h.members == ("later",))


def test_bad_bidding_params_name_the_field() -> None:
    with pytest.raises(ValidationError, match="cost_eur_per_kwh"):
        BiddingParams(cost_eur_per_kwh=-1.0)
    with pytest.raises(ValidationError, match="max_volume_kwh"):
        BiddingParams(max_volume_kwh=0.0)


def test_fman_bids_clear_in_a_real_market_and_awards_reach_every_member() -> None:
    """Delegated EV-like offers -> FMAN portfolio -> bids in a real FMAR -> a BRP request clears
    -> the FMAN disaggregates the awarded aggregate schedules and assigns every member."""
    fman_store = OfferStore("agg", clock=lambda: T0)
    offers = []
    for i in range(6):
        client = InProcessClient(fman_store, f"p-x{i}")
        offers.append(client.submit(dataclasses.replace(_offer(f"x{i}", default_kwh=2.0 + 0.1 * i), id=None)))
    portfolio = Portfolio(params=AggregationParams(start_tolerance_s=0, max_group_size=3), issuer="agg")
    for o in fman_store.open_offers(now=T0):
        portfolio.put(o)
    aggregates = list(portfolio.result(T0))
    assert len(aggregates) == 2

    market = FlexOfferMarket("fmar", clock=lambda: T0)
    gate = T0 + STEP
    session = market.add_session(Session("da-1", "day_ahead", gate, T0 + HOUR, T0 + 2 * HOUR))
    plan = plan_bids(aggregates, reference=0.3, next_gate=gate, issuer="agg", params=BiddingParams(0.05, 0.01))
    assert len(plan.bids) == 2
    market_client = market.client("agg")
    submitted = {market_client.submit(dataclasses.replace(b.offer, id=None)).id: b for b in plan.bids}
    market.post_request(
        Request(buyer="brp", start=T0 + HOUR, slice_s=900, volume_kwh=(-5.0,) * 4, cutoff_eur_per_kwh=0.25),
        session=session,
    )
    (result,) = market.run_session(session, now=gate)
    assert result.awards and result.cleared_kwh == pytest.approx((-5.0,) * 4)

    assigned = 0
    for award in result.awards:
        bid = submitted[award.offer_id]
        members = disaggregate_award(bid, award.schedule, assigned_at=gate)
        total = np.sum([m.energy for m in members], axis=0)
        assert np.allclose(total, award.schedule.energy, atol=1e-9)
        for m, schedule in zip(bid.aggregate.members, members, strict=True):
            fman_store.assign(m.offer_id, schedule)
            assigned += 1
    for record in fman_store.records():
        if record.state is OfferState.ASSIGNED:
            assert check_schedule(record.offer, record.schedule) == []
    assert assigned == sum(len(submitted[a.offer_id].aggregate.members) for a in result.awards)
    delivered = sum(
        float(np.sum(r.schedule.energy)) - float(np.sum(r.offer.default_schedule.energy))
        for r in fman_store.records()
        if r.state is OfferState.ASSIGNED
    )
    assert delivered == pytest.approx(-20.0, abs=1e-6)


def test_hourly_reference_prices_price_quarter_hour_aggregates() -> None:
    """A served FMAN's price file is hourly (day-ahead); its quarter-hour offers are priced at the
    hour they fall in, as with the same prices repeated per quarter-hour."""
    aggregates = _aggregates([_offer("a", price=0.1), _offer("b", start=T0 + 2 * HOUR + 2 * STEP, price=0.1)])
    hourly = PriceSeries(T0, 3600, [0.05, 0.30, 0.40, 0.10] + [0.2] * 20)
    quarter = PriceSeries(T0, 900, np.repeat(hourly.values_eur_per_kwh, 4))
    by_hour = plan_bids(aggregates, reference=hourly, next_gate=T0 + STEP, issuer="agg")
    by_quarter = plan_bids(aggregates, reference=quarter, next_gate=T0 + STEP, issuer="agg")
    assert [b.reference_eur_per_kwh for b in by_hour.bids] == [b.reference_eur_per_kwh for b in by_quarter.bids]
    assert sorted(b.reference_eur_per_kwh for b in by_hour.bids) == pytest.approx([0.25, 0.30])
    assert by_hour.held == ()

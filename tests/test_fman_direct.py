"""Direct trading through the FMAN (D2.1 F2.1, 3.3.2): small direct prosumers' offers are
aggregated by price band and congestion point, bid into a real FMAR, awarded and assigned to
their members, who are paid their own ask per kWh of deviation; an FMAN that cannot trade a
direct offer rejects it with the reason. Never accepted and ignored."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.errors import InvalidOfferError
from atp.flexoffer import (
    DefaultSchedule,
    FlexOffer,
    Location,
    Mode,
    OfferState,
    Price,
    Profile,
    Schedule,
    Slice,
    check_schedule,
)
from atp.fman import (
    AggregationParams,
    BiddingParams,
    DelegatedContract,
    FlexOfferManager,
    PriceSeries,
    settle,
)
from atp.fman.aggregation import MemberBox, build_aggregate, disaggregate_around_default, price_band
from atp.fman.settlement import DIRECT_MEMBER_CONTRACT, settlement_period
from atp.fmar import FlexOfferMarket, Request, Session
from atp.foa.pricing import Route, RoutedClient, peak_power_kw
from atp.interface import OPERATOR, HttpClient, InProcessClient, OfferStore, create_app
from atp.interface.serve import ServerThread
from sim.config import ConfigError
from sim.world import World
from tests.http_support import TOKEN_OF, TOKENS, Clock, wait_until
from tests.test_world import config_for

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
STEP = timedelta(minutes=15)
HOUR = timedelta(hours=1)
P17 = "foss-p017"
BIDDING = BiddingParams(cost_eur_per_kwh=0.05, margin_eur_per_kwh=0.01)


def direct_offer(
    issuer: str,
    *,
    ask: float | None = 0.12,
    start: datetime = T0 + HOUR,
    n: int = 4,
    lower: float = 0.0,
    upper: float = 3.0,
    default_kwh: float | None = 2.0,
    cp: str | None = "cp-1",
    deadline: datetime | None = None,
    mode: Mode = Mode.DIRECT,
) -> FlexOffer:
    """A box offer of `n` steps at `start` (no time flexibility), its default at `default_kwh`."""
    price = None if mode is Mode.DELEGATED else Price(per_kwh_deviation=ask, per_kwh=None if ask else 0.2)
    return FlexOffer(
        issuer=issuer,
        mode=mode,
        profiles=(Profile(slices=(Slice(duration=n, energy=(lower, upper)),)),),
        start_after=start,
        start_before=start,
        assignment_before=deadline or start,
        slice_s=900,
        location=Location(meter_id=f"M-{issuer}", congestion_point=cp),
        default_schedule=None
        if default_kwh is None
        else DefaultSchedule(start=start, profile=0, energy=(default_kwh,) * n),
        price=price,
    )


def trading_fman(clock, *, params: AggregationParams | None = None, store: OfferStore | None = None):
    """An FMAN trading on a fresh FMAR (one-sided pool), both on `clock`."""
    store = store if store is not None else OfferStore("agg", clock=clock)
    fman = FlexOfferManager(store, name="agg", params=params or AggregationParams(), horizon_steps=32)
    market = FlexOfferMarket("fmar", clock=clock)
    trader = fman.trade_on(market.client("agg"), reference_eur_per_kwh=0.3, params=BIDDING)
    return store, fman, market, trader


def clear(market: FlexOfferMarket, *, start: datetime, volume_kwh: tuple[float, ...], gate: datetime):
    """One session delivering from `start`, the BRP asking `volume_kwh` per step at 0.30 EUR/kWh."""
    end = start + STEP * len(volume_kwh)
    session = market.add_session(Session(f"s-{start:%H%M}", "intraday", gate, start, end))
    market.post_request(
        Request(buyer="brp", start=start, slice_s=900, volume_kwh=volume_kwh, cutoff_eur_per_kwh=0.30),
        session=session,
    )
    return market.run_session(session, now=gate)


def prices() -> PriceSeries:
    values = np.full(400, 0.25)
    values[8:24] = 0.08
    return PriceSeries(T0 - HOUR, 900, values)


# -- end to end, in process ------------------------------------------------------------------
def test_a_direct_offer_is_aggregated_bid_awarded_and_its_member_assigned() -> None:
    clock = Clock(T0)
    store, fman, market, trader = trading_fman(clock)
    asks = {"p0": 0.10, "p1": 0.11, "p2": 0.13, "p3": 0.14}  # one band of 0.05 EUR/kWh: [0.10, 0.15)
    defaults = {"p0": 2.0, "p1": 3.0, "p2": 0.5, "p3": 1.0}  # defaults at different places in their boxes
    ids = {}
    for name, ask in asks.items():
        answer = InProcessClient(store, name).submit(direct_offer(name, ask=ask, default_kwh=defaults[name]))
        assert answer.state is OfferState.ACCEPTED
        ids[name] = answer.id

    bids = trader.bid(T0, next_gate=T0 + STEP)
    ((market_id, bid),) = bids.submitted
    assert set(bid.aggregate.offer.members) == set(ids.values()) and bids.skip == frozenset(ids.values())
    assert bid.price_eur_per_kwh == pytest.approx(0.14 + 0.01)  # the highest ask plus the margin
    assert bid.offer.start_after == bid.offer.start_before == T0 + HOUR  # no time shift for direct members
    plan = fman.plan(T0, prices(), skip=bids.skip)
    assert plan.n_offers == 0 and plan.not_planned == () and plan.rejected == ()

    (result,) = clear(market, start=T0 + HOUR, volume_kwh=(-4.0,) * 4, gate=T0 + STEP / 3)
    (award,) = result.awards
    assert award.offer_id == market_id and trader.bids_awarded == 1 and not trader.bids
    total = np.zeros(4)
    periods = []
    for name, offer_id in ids.items():
        got = store.get(OPERATOR, offer_id)
        assert got.state is OfferState.ASSIGNED and check_schedule(got, got.schedule) == []
        assert np.all(np.asarray(got.schedule.energy) <= defaults[name] + 1e-12)  # each gives less, as the aggregate
        total += got.schedule.energy
        metered = np.asarray(got.schedule.energy)  # the member runs its schedule exactly
        periods.append(
            settlement_period(got, delegated=DelegatedContract(), metered_kwh=metered, schedule=got.schedule)
        )
    np.testing.assert_allclose(total, award.schedule.energy, atol=1e-9)
    settlement = settle(
        periods, period_start=T0 + HOUR, period_steps=4, slice_s=900, market_revenue_eur=award.price_eur
    )
    for bill, (name, offer_id) in zip(settlement.bills, ids.items(), strict=True):
        schedule = store.get(OPERATOR, offer_id).schedule
        own = float(np.abs(np.asarray(schedule.energy) - defaults[name]).sum())
        assert bill.contract_kind == "direct" and bill.delivered_adaptation_kwh == pytest.approx(own)
        assert bill.activation_cents == round(asks[name] * own * 100)  # its own ask x its delivered deviation
    delivered = sum(b.delivered_adaptation_kwh for b in settlement.bills)
    assert delivered == pytest.approx(16.0)  # the members' deviations add up to the award's, without netting
    s = settlement.statement
    assert s.market_revenue_cents == s.payments_to_prosumers_cents + s.margin_cents
    assert s.market_revenue_cents == round(0.15 * 16.0 * 100) and s.margin_cents > 0  # the aggregator keeps the spread


def test_an_fman_that_cannot_trade_direct_offers_refuses_them_at_submission() -> None:
    clock = Clock(T0)
    store = OfferStore("fman", clock=clock)
    FlexOfferManager(store, name="fman", params=AggregationParams())
    client = InProcessClient(store, "p0")
    with pytest.raises(InvalidOfferError) as refused:
        client.submit(direct_offer("p0"))
    (problem,) = refused.value.problems
    assert problem.path == "mode" and "bids into no market" in problem.message
    assert store.records() == []  # refused, not accepted and ignored
    delegated = client.submit(direct_offer("p0", mode=Mode.DELEGATED))  # delegated offers are its trade
    with pytest.raises(InvalidOfferError, match="bids into no market"):  # ... and may not turn direct
        client.update(delegated.id, direct_offer("p0"))
    assert store.get(OPERATOR, delegated.id).mode is Mode.DELEGATED

    # A trading FMAN takes direct offers, but only those it can bid: an ask and a default.
    store, fman, _, trader = trading_fman(clock)
    client = InProcessClient(store, "p1")
    with pytest.raises(InvalidOfferError) as no_default:
        client.submit(direct_offer("p1", default_kwh=None))
    assert no_default.value.problems[0].path == "default_schedule"
    with pytest.raises(InvalidOfferError) as energy_price_only:
        client.submit(direct_offer("p1", ask=None))
    assert energy_price_only.value.problems[0].path == "price.per_kwh_deviation"
    fine = client.submit(direct_offer("p1"))
    assert fine.state is OfferState.ACCEPTED

    # Held while it can trade; once its default operation begins unawarded, it is rejected, with the reason.
    events = []
    client.subscribe(events.append)
    assert trader.bid(T0, next_gate=T0 + STEP).submitted  # bid, but the market never clears
    clock.now = T0 + HOUR
    round_ = trader.bid(T0 + HOUR, next_gate=T0 + HOUR + STEP)
    assert [r.offer_id for r in round_.rejected] == [fine.id] and not round_.submitted
    assert store.get(OPERATOR, fine.id).state is OfferState.REJECTED
    assert "before its default operation began" in store.problems_of(fine.id)[0].message
    assert [e.kind for e in events] == ["rejected"] and fman.rejected == list(round_.rejected)


# -- property: every held offer is in an aggregate or in a reasoned list ----------------------
@st.composite
def offer_mixes(draw: st.DrawFn) -> list[FlexOffer]:
    out = []
    for i in range(draw(st.integers(1, 12))):
        direct = draw(st.booleans())
        start = T0 + STEP * draw(st.integers(1, 8))
        lower = draw(st.sampled_from([0.0, 0.5]))
        upper = lower + draw(st.sampled_from([0.0, 1.0, 2.5]))
        default = draw(st.sampled_from([lower, upper, (lower + upper) / 2]))
        out.append(
            direct_offer(
                f"p{i}",
                mode=Mode.DIRECT if direct else Mode.DELEGATED,
                ask=draw(st.sampled_from([None, 0.06, 0.09, 0.12, 0.18, 0.29, 0.4])),
                start=start,
                n=draw(st.integers(1, 4)),
                lower=lower,
                upper=upper,
                default_kwh=draw(st.sampled_from([default, default, None])) if direct else default,
                cp=draw(st.sampled_from([None, "cp-1", "cp-2"])),
                deadline=T0 + STEP * draw(st.integers(1, int((start - T0) / STEP))),
            )
        )
    return out


@settings(max_examples=25, deadline=None)
@given(offer_mixes(), st.sampled_from([0.05, 0.1, None]))
def test_every_offer_the_fman_holds_is_aggregated_or_listed_with_a_reason(offers, band) -> None:
    clock = Clock(T0)
    store, fman, market, trader = trading_fman(clock, params=AggregationParams(price_band_eur_per_kwh=band))
    refused = {}
    for offer in offers:
        try:
            InProcessClient(store, offer.issuer).submit(offer)
        except InvalidOfferError as exc:  # a direct offer it cannot bid: refused, the problem named
            refused[offer.issuer] = exc.problems
    assert all(p and p[0].message for p in refused.values())
    assert all(o.mode is Mode.DIRECT for o in offers if o.issuer in refused)
    assert len(store.records()) + len(refused) == len(offers)

    # Members of one aggregate share congestion point and price band; it asks their highest ask.
    for agg in fman.portfolio.result(T0):
        cps = {m.offer.location.congestion_point for m in agg.members}
        assert len(cps) == 1 and len({m.offer.mode for m in agg.members}) == 1
        if agg.offer.mode is Mode.DIRECT:
            asks = [m.offer.price.per_kwh_deviation for m in agg.members]
            assert len({price_band(m.offer, band) for m in agg.members}) == 1
            assert agg.offer.price.per_kwh_deviation == max(asks)
            if band is not None:
                assert max(asks) - min(asks) < band

    bids = trader.bid(T0, next_gate=T0 + STEP)
    plan = fman.plan(T0, prices(), skip=bids.skip)
    bid_members = {m.offer_id for _, b in bids.submitted for m in b.aggregate.members}
    postponed = {m for h in bids.plan.postponed for m in h.members}
    not_planned = {n.offer_id for n in plan.not_planned}
    planned = {s.flex_offer_id for s in plan.schedules}
    rejected = {r.offer_id for r in fman.rejected}
    assert all(h.reason for h in bids.plan.held) and all(n.reason for n in plan.not_planned)
    for record in store.records():
        offer_id = record.offer.id
        places = [offer_id in group for group in (bid_members, postponed, not_planned, planned, rejected)]
        if record.state is OfferState.REJECTED:
            assert places == [False, False, False, False, True] and store.problems_of(offer_id)[0].message
        elif record.state is OfferState.ASSIGNED:
            assert places == [False, False, False, True, False] and record.offer.mode is Mode.DELEGATED
        else:  # accepted: bid, postponed by the bidding rule, or not planned with the reason
            assert record.state is OfferState.ACCEPTED and sum(places) == 1 and not places[3] and not places[4]

    # The market clears; every awarded bid's members are assigned feasible schedules summing to it.
    clear(market, start=T0 + STEP, volume_kwh=(-3.0, 2.0, -1.0) * 4, gate=T0 + STEP / 3)
    for market_id, bid in bids.submitted:
        awarded = market.store.get(OPERATOR, market_id)
        if awarded.state is not OfferState.ASSIGNED:
            continue
        total = np.zeros(bid.aggregate.n_steps)
        for m in bid.aggregate.members:
            got = store.get(OPERATOR, m.offer_id)
            assert got.state is OfferState.ASSIGNED and check_schedule(got, got.schedule) == []
            total[m.offset_steps : m.offset_steps + m.n_steps] += got.schedule.energy
        np.testing.assert_allclose(total, awarded.schedule.energy, atol=1e-9)


# -- settlement: each member at its own ask, the aggregator keeps the spread ------------------
@st.composite
def direct_members(draw: st.DrawFn) -> tuple[list[FlexOffer], np.ndarray]:
    n_steps = draw(st.integers(1, 5))
    offers = []
    for i in range(draw(st.integers(1, 6))):
        lower = draw(st.sampled_from([-2.0, 0.0, 0.5]))
        upper = lower + draw(st.sampled_from([0.0, 0.7, 3.0]))
        energy = tuple(draw(st.floats(lower, upper).map(lambda v: round(v, 3))) for _ in range(n_steps))
        offer = direct_offer(f"p{i}", ask=draw(st.sampled_from([0.05, 0.08, 0.1, 0.17])), n=n_steps)
        offer = dataclasses.replace(
            offer,
            id=f"fo-{i}",
            profiles=(Profile(slices=(Slice(duration=n_steps, energy=(lower, upper)),)),),
            default_schedule=DefaultSchedule(start=T0 + HOUR, profile=0, energy=energy),
        )
        offers.append(offer)
    lam = np.array([draw(st.floats(0.0, 1.0)) for _ in range(n_steps)])
    return offers, lam


@settings(max_examples=100, deadline=None)
@given(direct_members())
def test_members_are_paid_their_own_ask_and_the_aggregators_money_balances(case) -> None:
    offers, lam = case
    boxes = [
        MemberBox(
            offer=o,
            profile=0,
            offset_steps=0,
            earliest=o.start_after,
            flexibility_steps=0,
            lower_kwh=o.profiles[0].lower_kwh(),
            upper_kwh=o.profiles[0].upper_kwh(),
        )
        for o in offers
    ]
    agg = build_aggregate(boxes, issuer="agg", agg_id="agg-1", now=T0)
    top = max(o.price.per_kwh_deviation for o in offers)
    assert agg.offer.price.per_kwh_deviation == top and agg.offer.default_schedule is not None
    energy = agg.lower_kwh + lam * (agg.upper_kwh - agg.lower_kwh)  # whatever the market awards
    award = Schedule(flex_offer_id="agg-1", start=T0 + HOUR, profile=0, energy=tuple(energy))
    members = disaggregate_around_default(agg, award, assigned_at=T0)
    n = agg.n_steps
    base = np.asarray(agg.offer.default_schedule.energy)
    deviation = energy - base
    np.testing.assert_allclose(np.sum([m.energy for m in members], axis=0), energy, atol=1e-9)
    periods = []
    for offer, schedule in zip(offers, members, strict=True):
        assert check_schedule(offer, schedule) == []
        own = np.asarray(schedule.energy) - np.asarray(offer.default_schedule.energy)
        assert np.all(own * deviation >= -1e-12)  # in the aggregate's direction, step by step
        periods.append(
            settlement_period(
                offer, delegated=DelegatedContract(), metered_kwh=np.asarray(schedule.energy), schedule=schedule
            )
        )
    price = top + BIDDING.margin_eur_per_kwh
    revenue = round(price * float(np.abs(deviation).sum()), 2)  # pay-as-bid for the aggregate's deviation
    result = settle(periods, period_start=T0 + HOUR, period_steps=n, slice_s=900, market_revenue_eur=revenue)
    for offer, schedule, bill in zip(offers, members, result.bills, strict=True):
        own = float(np.abs(np.asarray(schedule.energy) - np.asarray(offer.default_schedule.energy)).sum())
        assert bill.contract_kind == DIRECT_MEMBER_CONTRACT.kind
        assert bill.delivered_adaptation_kwh == pytest.approx(own, abs=1e-9)
        assert bill.activation_cents == round(offer.price.per_kwh_deviation * bill.delivered_adaptation_kwh * 100)
    s = result.statement
    assert s.market_revenue_cents == s.payments_to_prosumers_cents + s.margin_cents  # to the cent
    assert sum(b.delivered_adaptation_kwh for b in result.bills) == pytest.approx(float(np.abs(deviation).sum()))
    assert s.margin_cents >= -len(offers)  # the spread is never negative beyond each bill's rounding


# -- over real HTTP ----------------------------------------------------------------------------
def test_direct_offers_over_http_are_bid_and_assigned_or_refused() -> None:
    clock = Clock(T0)
    store = OfferStore("agg", clock=clock)
    app = create_app(store, tokens=TOKENS, sse_keepalive_s=0.2)
    _, fman, market, trader = trading_fman(clock, store=store)
    lone = OfferStore("lone", clock=clock)
    lone_app = create_app(lone, tokens=TOKENS, sse_keepalive_s=0.2)
    FlexOfferManager(lone, name="lone", params=AggregationParams())
    with ServerThread(app, graceful_s=0.2) as server, ServerThread(lone_app, graceful_s=0.2) as lone_server:
        client = HttpClient(server.url, TOKEN_OF[P17], party=P17, retries=0)
        events = []
        unsubscribe = client.subscribe(events.append)
        offer = client.submit(direct_offer(P17, ask=0.12, default_kwh=2.5))
        assert offer.state is OfferState.ACCEPTED
        with app.state.lock:
            bids = trader.bid(T0, next_gate=T0 + STEP)
            assert [b.aggregate.offer.members for _, b in bids.submitted] == [(offer.id,)]
            (result,) = clear(market, start=T0 + HOUR, volume_kwh=(-1.0,) * 4, gate=T0 + STEP / 3)
            assert len(result.awards) == 1
        got = client.get(offer.id)
        assert got.state is OfferState.ASSIGNED and check_schedule(got, got.schedule) == []
        np.testing.assert_allclose(got.schedule.energy, [1.5] * 4)
        assert wait_until(lambda: any(e.kind == "assigned" for e in events))
        unsubscribe()
        client.close()

        other = HttpClient(lone_server.url, TOKEN_OF[P17], party=P17, retries=0)
        with pytest.raises(InvalidOfferError) as refused:  # 422 over the wire, the problem named
            other.submit(direct_offer(P17))
        assert refused.value.problems[0].path == "mode" and "bids into no market" in str(refused.value)
        assert other.active() == [] and lone.records() == []
        other.close()
    assert fman.rejected == []


# -- routing in the world ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def routed_world():
    config = config_for(
        "scenario=sww",
        "fman=market_bidding",
        "fman.bidding.large_kw_threshold=10",
        "sim.days=0.25",
        "sim.start=2026-01-12T12:00:00Z",
    )
    world = World(config)
    world.run()
    return world


def test_route_for_sends_small_direct_offers_to_the_fman_and_large_ones_to_the_fmar(routed_world) -> None:
    world = routed_world
    fman_direct = [r for r in world.aggregator.store.records() if r.offer.mode is Mode.DIRECT]
    fmar_direct = [r for r in world.market_operator.market.store.records() if r.owner != world.aggregator.name]
    assert fman_direct and fmar_direct
    assert all(peak_power_kw(r.offer) < 10 for r in fman_direct)
    assert all(peak_power_kw(r.offer) >= 10 for r in fmar_direct)
    routed = [p.foa.client for p in world.prosumers if isinstance(p.foa.client, RoutedClient)]
    assert len(routed) == world.config.site.direct
    assert sum(c.routed[Route.FMAN] for c in routed) == len(fman_direct)
    assert sum(c.routed[Route.FMAR] for c in routed) == len(fmar_direct)
    # Each direct offer at the FMAN ran an awarded schedule or was rejected with the reason.
    for record in fman_direct:
        assert record.state in (OfferState.SETTLED, OfferState.REJECTED)
        if record.state is OfferState.SETTLED:
            assert record.schedule is not None and check_schedule(record.offer, record.schedule) == []
        else:
            assert record.reason
    # The FMAN bid them into the FMAR: awarded bids of direct members, summed exactly.
    members = {r.offer.id: r for r in fman_direct}
    awarded = [
        r
        for r in world.market_operator.market.store.records()
        if r.owner == world.aggregator.name and r.schedule is not None and set(r.offer.members or ()) <= set(members)
    ]
    assert awarded
    for bid in awarded:  # members may start and end at other steps than the bid (staggered blocks)
        total = np.zeros(len(bid.schedule.energy))
        for m in bid.offer.members:
            member = members[m].schedule
            first = int((member.start - bid.schedule.start).total_seconds() // bid.offer.slice_s)
            assert first >= 0 and first + len(member.energy) <= len(total)
            total[first : first + len(member.energy)] += member.energy
        np.testing.assert_allclose(total, bid.schedule.energy, atol=1e-9)


def test_a_bad_routing_threshold_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"fman\.bidding\.large_kw_threshold"):
        config_for("scenario=sww", "fman=market_bidding", "fman.bidding.large_kw_threshold=-1")
    assert config_for("scenario=sww", "fman=market_bidding").fman.bidding.large_kw_threshold == 10.0
    null = config_for("scenario=sww", "fman=market_bidding", "fman.bidding.large_kw_threshold=null")
    assert null.fman.bidding.large_kw_threshold is None
    assert math.isclose(
        config_for(
            "scenario=sww", "fman=market_bidding", "fman.bidding.large_kw_threshold=7.5"
        ).fman.bidding.large_kw_threshold,
        7.5,
    )


def direct_owners(world) -> set[str]:
    return {r.owner for r in world.aggregator.store.records() if r.offer.mode is Mode.DIRECT}


def test_the_run_ledger_pays_each_routed_direct_member_its_own_ask(routed_world) -> None:
    """The run's settlement (what the ledger books) bills the direct offers the FMAN traded:
    each at its own ask per kWh of its delivered deviation from its own default."""
    from sim.ledger import build_ledger, settle_run

    world = routed_world
    steps = world.counted
    run = settle_run(world, steps=steps)
    direct = {r.offer.id: r.offer for r in world.aggregator.store.records() if r.offer.mode is Mode.DIRECT}
    bills = [b for b in run.settlement.bills if b.flex_offer_id in direct]
    assert bills, "no direct member was billed"
    for bill in bills:
        ask = direct[bill.flex_offer_id].price.per_kwh_deviation
        assert abs(bill.activation_cents - ask * bill.delivered_adaptation_kwh * 100) <= 1, bill
        assert bill.total_cents >= 0
    ledger = build_ledger(world, steps=steps, settlement=run)
    payees = {f"prosumer:{owner}" for owner in direct_owners(world)}
    paid = ledger[(ledger["reason"] == "flexibility_payment") & ledger["payee"].isin(payees)]
    assert round(paid["eur"].sum() * 100) == sum(b.total_cents + b.penalty_cents for b in bills) > 0

"""Buyers' requests through the exchange interface: every request is bought, never sold.

Per mechanism and per binding (in-process, and HTTP over a real socket), a DSO (its DOMS FOA,
at a congestion point) and a BRP post their requests to a market through the interface,
sellers submit direct offers through it, the session clears, and the buyers read what they
bought. The assertions are outcomes: buyers pay for what cleared, cleared energy goes in the
requested direction, sellers' schedules are feasible, the session's money balances to the
cent. A buyer's demand sent as an offer is refused, and a hypothesis property checks that no
random request ends on the sell side.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.errors import InvalidOfferError
from atp.flexoffer import FlexOffer, Location, OfferState, check_schedule, encode
from atp.fmar import FlexOfferMarket, Session, SessionKind, SessionResult, mechanism_names
from atp.foa.doms import DomsFoa, GridForecast
from atp.interface import (
    ConflictError,
    FlexRequest,
    ForbiddenError,
    HttpClient,
    InProcessClient,
    NotFoundError,
    OfferStore,
    RequestState,
    cleared_problems,
    create_app,
)
from atp.interface.serve import ServerThread
from tests.http_support import Clock, SwitchApp
from tests.test_fmar_pool import HOUR, STEP, T0, box_offer

MECHANISMS = ("one_sided_pool", "two_sided_pool", "many_to_many")
DSO, BRP = "dso-1@cp-1", "brp-1"
SELLERS = {"seller-a": ("cp-1", 0.05), "seller-b": ("cp-1", 0.08), "seller-c": (None, 0.04), "seller-d": (None, 0.06)}
PARTIES = (DSO, BRP, *SELLERS)
TOKENS = {f"token-of-{p}-0123456789": p for p in PARTIES}
TOKEN_OF = {p: t for t, p in TOKENS.items()}
GATE = T0 + HOUR - 2 * STEP
DELIVERY = (T0 + HOUR, T0 + 2 * HOUR)


def test_the_mechanisms_under_test_are_the_registered_ones():
    assert set(MECHANISMS) <= set(mechanism_names())


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SwitchApp, ServerThread]]:
    switch = SwitchApp()
    with ServerThread(switch, graceful_s=0.5) as srv:
        yield switch, srv


@dataclass
class Venue:
    """A market with one intraday session, reached through one binding of the interface."""

    kind: str
    market: FlexOfferMarket
    clock: Clock
    lock: Any
    url: str | None = None
    clients: list[HttpClient] = field(default_factory=list)

    def client(self, party: str) -> Any:
        if self.kind == "inprocess":
            return InProcessClient(self.market.store, party)
        client = HttpClient(self.url, TOKEN_OF[party], party=party, retries=0)
        self.clients.append(client)
        return client

    def clear(self) -> list[SessionResult]:
        """Clear the session at its gate (holding the served store's lock)."""
        self.clock.now = GATE
        with self.lock:
            return self.market.run_session("id-1")


@pytest.fixture(params=["inprocess", "http"])
def venue_of(request, server) -> Iterator[Any]:
    made: list[Venue] = []

    def make(mechanism: str) -> Venue:
        clock = Clock(T0)
        market = FlexOfferMarket("fmar", clock=clock, mechanism=mechanism)
        market.add_session(Session("id-1", SessionKind.INTRADAY, GATE, *DELIVERY))
        if request.param == "inprocess":
            venue = Venue("inprocess", market, clock, threading.Lock())
        else:
            switch, srv = server
            app = create_app(market.store, tokens=TOKENS)
            switch.app = app
            venue = Venue("http", market, clock, app.state.lock, url=srv.url)
        made.append(venue)
        return venue

    yield make
    for venue in made:
        for client in venue.clients:
            client.close()


def seller_offer(issuer: str) -> FlexOffer:
    """A 4-step offer from 1 kWh a step, each step anywhere in [0, 2] kWh, at the seller's price."""
    point, price = SELLERS[issuer]
    return box_offer(None, issuer=issuer, congestion_point=point, price=price, lower=0.0, upper=2.0, default=1.0)


def feeder_forecast() -> GridForecast:
    """The DSO's feeder cp-1: 1.5, 1.5 and 0.5 kWh over its 10 kWh limit in the session's first steps."""
    return GridForecast(
        start=T0 + HOUR,
        step_s=900,
        forecast_kwh=(11.5, 11.5, 10.5, 10.0),
        limit_kwh=10.0,
        location=Location("TR-cp-1", congestion_point="cp-1"),
        price_eur_per_kwh=0.30,
    )


def brp_request(volume: tuple[float, ...] = (0.5, 1.0, -1.0, -2.0), *, cutoff: float = 0.20, **kw: Any) -> FlexRequest:
    """The BRP's request: more consumption in the first two steps, less in the last two."""
    kw.setdefault("start", T0 + HOUR)
    return FlexRequest(buyer=BRP, slice_s=900, volume_kwh=volume, cutoff_eur_per_kwh=cutoff, **kw)


def on_delivery_grid(start, values) -> np.ndarray:
    """Per-step values that begin at `start`, placed on the session's four steps."""
    out = np.zeros(4)
    k0 = int((start - DELIVERY[0]).total_seconds() // 900)
    for i, v in enumerate(values):
        out[k0 + i] += v
    return out


def assert_bought(requests: list[FlexRequest], sellers: dict[str, Any], results: list[SessionResult]) -> None:
    """Every outcome of a cleared session, read by buyers and sellers through their clients."""
    buyers = {r.buyer for r in requests}
    cleared_sum = np.zeros(4)
    for got in requests:
        result = got.result
        assert got.state is RequestState.CLEARED and result is not None
        assert cleared_problems(got.volume_kwh, result.cleared_kwh) == []
        cleared = np.asarray(result.cleared_kwh)
        assert np.all(cleared * np.asarray(got.volume_kwh) >= 0)  # the requested direction, step by step
        assert result.cleared_total_kwh > 0 and result.buyer_pays_eur > 0  # the buyer pays for what it got
        assert result.buyer_pays_eur <= got.cutoff_eur_per_kwh * result.cleared_total_kwh + 1e-9
        assert math.isclose(
            result.buyer_pays_eur,
            result.sellers_receive_eur + result.transport_fees_eur + result.surplus_eur,
            abs_tol=1e-9,
        )
        assert all(a.issuer in sellers and a.issuer not in buyers for a in result.awards)
        cleared_sum += on_delivery_grid(got.start, cleared)
    # The interface answers what the market cleared.
    by_id = {r.request_id: r for r in results}
    for got in requests:
        market_result = by_id[got.id]
        assert got.result.cleared_kwh == market_result.cleared_kwh
        assert got.result.buyer_pays_eur == market_result.buyer_pays_eur
    # Sellers: feasible schedules whose deviations deliver, step by step, what the buyers bought.
    awards = {a.offer_id: a for r in results for a in r.awards}
    delivered = np.zeros(4)
    for issuer, client in sellers.items():
        for offer in client.active():
            award = awards.get(offer.id)
            if award is None:
                assert offer.state is OfferState.ACCEPTED and offer.schedule is None
                continue
            assert offer.state is OfferState.ASSIGNED and offer.issuer == issuer
            assert check_schedule(offer, offer.schedule, now=GATE) == []
            deviation = np.subtract(offer.schedule.energy, offer.default_schedule.energy)
            np.testing.assert_allclose(deviation, award.deviation_kwh, atol=1e-6)
            delivered += on_delivery_grid(offer.schedule.start, deviation)
            assert award.price_eur >= 0
    assert awards and set(awards) <= {o.id for c in sellers.values() for o in c.active()}
    np.testing.assert_allclose(delivered, cleared_sum, atol=1e-6)
    # Money balances per session to the cent: buyers pay sellers, transport and the market's surplus.
    buyers_pay = sum(r.result.buyer_pays_eur for r in requests)
    parts = sum(r.result.sellers_receive_eur + r.result.transport_fees_eur + r.result.surplus_eur for r in requests)
    assert round(buyers_pay * 100) == round(parts * 100)
    sellers_receive = sum(r.result.sellers_receive_eur for r in requests)
    assert round(sellers_receive * 100) == round(sum(a.price_eur for a in awards.values()) * 100)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_dso_and_a_brp_buy_through_the_interface(venue_of, mechanism):
    venue = venue_of(mechanism)
    sellers = {issuer: venue.client(issuer) for issuer in SELLERS}
    for issuer, client in sellers.items():
        assert client.submit(seller_offer(issuer)).state is OfferState.ACCEPTED
    dso, brp = venue.client(DSO), venue.client(BRP)
    # The DSO's DOMS FOA posts its feeder's excess; the BRP its imbalance.
    (dso_posted,) = DomsFoa(dso, issuer=DSO, gate_lead_s=0).submit(feeder_forecast(), now=T0)
    brp_posted = brp.post_request(brp_request())
    assert dso_posted.volume_kwh == (-1.5, -1.5, -0.5) and dso_posted.congestion_point == "cp-1"
    for posted in (dso_posted, brp_posted):
        assert posted.state is RequestState.OPEN and posted.session == "id-1" and posted.result is None
    assert [r.id for r in venue.market.requests_of("id-1")] == [dso_posted.id, brp_posted.id]
    assert dso.requests() == [dso_posted] and brp.requests() == [brp_posted]
    results = venue.clear()
    got = [dso.get_request(dso_posted.id), brp.get_request(brp_posted.id)]
    assert_bought(got, sellers, results)
    dso_result = got[0].result
    assert all(v <= 0 for v in dso_result.cleared_kwh)  # less consumption at the congested feeder
    if mechanism != "many_to_many":  # the pools list each award with the request it serves
        assert {a.issuer for a in dso_result.awards} <= {"seller-a", "seller-b"}  # located at cp-1
    with pytest.raises(ConflictError):
        dso.withdraw_request(dso_posted.id)


def test_a_buyers_demand_sent_as_an_offer_is_refused(venue_of):
    venue = venue_of("one_sided_pool")
    dso = venue.client(DSO)
    (shaped,) = DomsFoa(dso, issuer=DSO, gate_lead_s=0).requests(feeder_forecast(), now=T0)
    with pytest.raises(InvalidOfferError) as info:
        dso.submit(shaped)
    assert [p.path for p in info.value.problems] == ["device"] and "POST /request" in str(info.value)
    assert venue.market.store.records() == []


def test_http_names_the_side_of_a_message(server):
    market = FlexOfferMarket("fmar", clock=Clock(T0))
    market.add_session(Session("id-1", SessionKind.INTRADAY, GATE, *DELIVERY))
    switch, srv = server
    switch.app = create_app(market.store, tokens=TOKENS)
    auth = {"Authorization": f"Bearer {TOKEN_OF[BRP]}"}
    with httpx.Client(base_url=srv.url, headers=auth) as http:
        offer = {**encode(dataclasses.replace(seller_offer("seller-c"), issuer=BRP)), "side": "buy"}
        answer = http.post("/flexoffer", json=offer)
        assert answer.status_code == 422 and answer.json()["details"][0]["path"] == "side"
        assert "/request" in answer.json()["details"][0]["message"]
        answer = http.post("/request", json={**encode(brp_request()), "side": "sell"})
        assert answer.status_code == 422 and [d["path"] for d in answer.json()["details"]] == ["side"]
        answer = http.post("/request", json=encode(brp_request()))
        assert answer.status_code == 201 and answer.headers["location"] == f"/request/{answer.json()['id']}"
        assert answer.json()["state"] == "open" and answer.json()["session"] == "id-1"
        assert {"/request", "/request/{request_id}"} <= set(http.get("/openapi.json").json()["paths"])
    assert market.store.records() == []


def test_bad_requests_name_every_field_and_store_nothing(venue_of):
    venue = venue_of("two_sided_pool")
    brp = venue.client(BRP)
    bad = FlexRequest(
        buyer=BRP,
        start=T0 + HOUR + timedelta(minutes=7),
        slice_s=700,
        volume_kwh=(0.0, 0.0),
        cutoff_eur_per_kwh=-0.1,
        congestion_point="",
    )
    with pytest.raises(InvalidOfferError) as info:
        brp.post_request(bad)
    assert {p.path for p in info.value.problems} == {"slice_s", "volume_kwh", "cutoff_eur_per_kwh", "congestion_point"}
    assert "would pay the buyer" in str(info.value) and "asks for nothing" in str(info.value)
    off_grid = brp_request(start=T0 + HOUR + timedelta(minutes=7))
    with pytest.raises(InvalidOfferError, match="not on the 900 s grid"):
        brp.post_request(off_grid)
    with pytest.raises(InvalidOfferError) as info:
        brp.post_request(brp_request(state=RequestState.CLEARED, id="mine"))
    assert {p.path for p in info.value.problems} == {"state", "id"}
    # Fields that are each fine but no session takes: the period, or a session that is not there.
    with pytest.raises(InvalidOfferError) as info:
        brp.post_request(brp_request((-1.0,) * 8))
    assert info.value.problems[0].path == "start" and "no open session" in str(info.value)
    with pytest.raises(InvalidOfferError) as info:
        brp.post_request(brp_request(session="day-ahead"))
    assert info.value.problems[0].path == "session" and "day-ahead" in str(info.value)
    with pytest.raises(ForbiddenError):
        brp.post_request(dataclasses.replace(brp_request(), buyer=DSO))
    assert venue.market.store.request_records() == [] and venue.market.requests_of("id-1") == []


def test_ownership_idempotency_and_withdrawal(venue_of):
    venue = venue_of("many_to_many")
    brp, dso = venue.client(BRP), venue.client(DSO)
    first = brp.post_request(brp_request(), idempotency_key="r-1")
    assert brp.post_request(brp_request(), idempotency_key="r-1") == first
    assert len(venue.market.store.request_records()) == 1
    with pytest.raises(NotFoundError):
        dso.get_request(first.id)
    with pytest.raises(NotFoundError):
        dso.withdraw_request(first.id)
    assert dso.requests() == []
    withdrawn = brp.withdraw_request(first.id)
    assert withdrawn.state is RequestState.WITHDRAWN and venue.market.requests_of("id-1") == []
    with pytest.raises(ConflictError):
        brp.withdraw_request(first.id)
    assert [r.state for r in brp.requests()] == [RequestState.WITHDRAWN]
    assert venue.clear() == []  # the session had no request left


def test_a_receiver_without_a_market_takes_no_requests():
    store = OfferStore("fman", clock=Clock(T0))
    with pytest.raises(NotFoundError, match="takes no buyers' requests"):
        InProcessClient(store, BRP).post_request(brp_request())


# -- property: a request is never on the sell side -------------------------------------------
_volume = st.floats(-2.0, 2.0, allow_nan=False).map(lambda v: round(v, 2))
_requests = st.lists(
    st.tuples(
        st.sampled_from([(BRP, None), (DSO, "cp-1"), ("dso-1@cp-2", "cp-2")]),
        st.lists(_volume, min_size=4, max_size=4).filter(lambda v: any(v)),
        st.floats(0.0, 0.5).map(lambda v: round(v, 3)),
    ),
    min_size=1,
    max_size=3,
)
_offers = st.lists(
    st.tuples(
        st.sampled_from([None, "cp-1", "cp-2"]),
        st.floats(0.0, 1.0).map(lambda v: round(v, 2)),  # room below the default
        st.floats(0.0, 1.0).map(lambda v: round(v, 2)),  # room above it
        st.floats(0.0, 0.4).map(lambda v: round(v, 3)),  # price
    ),
    max_size=5,
)


@settings(max_examples=25)
@given(mechanism=st.sampled_from(MECHANISMS), requests=_requests, offers=_offers)
def test_a_request_is_never_on_the_sell_side(mechanism, requests, offers):
    clock = Clock(T0)
    market = FlexOfferMarket("fmar", clock=clock, mechanism=mechanism)
    market.add_session(Session("id-1", SessionKind.INTRADAY, GATE, *DELIVERY))
    for i, (point, down, up, price) in enumerate(offers):
        issuer = f"seller-{i}"
        offer = box_offer(None, issuer=issuer, congestion_point=point, price=price, lower=1 - down, upper=1 + up)
        market.client(issuer).submit(offer)
    posted = []
    for buyer, point, (volume, cutoff) in ((b, p, (v, c)) for (b, p), v, c in requests):
        client = market.client(buyer)
        request = FlexRequest(buyer, T0 + HOUR, 900, tuple(volume), cutoff, congestion_point=point)
        posted.append((client, client.post_request(request)))
    clock.now = GATE
    market.run_session("id-1")
    buyers = {b for (b, _), _, _ in requests}
    assert all(record.offer.issuer not in buyers for record in market.store.records())  # no buyer sells
    for client, answer in posted:
        got = client.get_request(answer.id)
        result = got.result
        assert got.state is RequestState.CLEARED and result is not None
        assert cleared_problems(got.volume_kwh, result.cleared_kwh) == []  # bought, in its direction
        assert result.buyer_pays_eur >= -1e-9  # a buyer pays; it is never paid for its demand
        if result.cleared_total_kwh == 0:
            assert result.buyer_pays_eur == pytest.approx(0.0, abs=1e-9) and result.reason
        assert all(a.issuer not in buyers and a.offer_id != got.id for a in result.awards)

"""The FMAR as a service: a market that opens, gates and clears its sessions by its own clock,
served over a real socket with its operator and DOMS routes, and that keeps an acknowledged
request across a restart."""

from __future__ import annotations

import dataclasses
import math
from datetime import time, timedelta
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest

from atp.errors import InvalidOfferError
from atp.flexoffer import OfferState, encode
from atp.fmar import FlexOfferMarket, MarketCalendar
from atp.fmar.routes import install_market_routes
from atp.fmar.service import MarketLoop, MarketService
from atp.interface import HttpClient, InProcessClient, OfferStore, RequestState, TokenTable, create_app
from atp.interface.serve import ServerThread
from atp.interface.store import open_store
from tests.http_support import OPERATOR_TOKEN, Clock, wait_until
from tests.test_fmar_pool import HOUR, STEP, T0
from tests.test_fmar_requests_interface import DSO, SELLERS, TOKEN_OF, TOKENS, brp_request, seller_offer

CALENDAR = MarketCalendar(
    ZoneInfo("UTC"),
    day_ahead_gate=time(12, 0),
    intraday_gates=(time(12, 30),),
    intraday_lead_s=1800,
    local_gate_after_s=60,
)
INTRADAY = "id-2026-03-02-1230"


def _market(clock: Clock, store: OfferStore | None = None) -> MarketService:
    store = store if store is not None else OfferStore("fmar", clock=clock, opaque_ids=True)
    return MarketService(FlexOfferMarket("fmar", mechanism="one_sided_pool", store=store), CALENDAR)


def test_a_tick_opens_the_calendar_clears_at_the_gate_and_tells_the_sellers() -> None:
    clock = Clock(T0)
    service = _market(clock)
    first = service.tick(T0)
    assert INTRADAY in first.opened and "da-2026-03-03" in first.opened
    assert service.tick(T0).opened == ()  # each session once
    sellers = {s: InProcessClient(service.store, s) for s in SELLERS}
    for issuer, client in sellers.items():
        client.submit(seller_offer(issuer))
    brp = InProcessClient(service.store, "brp-1")
    posted = brp.post_request(brp_request())
    assert posted.session == INTRADAY
    clock.now = T0 + 30 * timedelta(minutes=1)
    tick = service.tick(clock.now)
    assert [r.request_id for r in tick.results if r.session == INTRADAY] == [posted.id]
    got = brp.get_request(posted.id)
    assert got.state is RequestState.CLEARED and got.result.cleared_total_kwh > 0
    assigned = [o for c in sellers.values() for o in c.active() if o.state is OfferState.ASSIGNED]
    assert assigned  # the winners were told through the store (assigned events)
    clock.now = T0 + HOUR
    assert set(service.tick(clock.now).moved.started) >= {o.id for o in assigned}  # delivery begins at 13:00


@pytest.fixture()
def served_market():
    clock = Clock(T0)
    service = _market(clock)
    table = TokenTable.of(TOKENS, [OPERATOR_TOKEN], grid_operators=[DSO])
    app = create_app(service.store, tokens=table, sse_keepalive_s=0.2)
    install_market_routes(app, service, tokens=table)
    loop = MarketLoop(service, every_s=0.02, lock=app.state.lock, clock=clock)
    with ServerThread(app, graceful_s=0.2) as server, loop:
        yield server, clock, service, loop


def test_a_served_market_trades_on_its_own_and_the_dso_request_is_bought(served_market) -> None:
    server, clock, _, loop = served_market
    sellers = {s: HttpClient(server.url, TOKEN_OF[s], party=s, retries=0) for s in SELLERS}
    events = {s: [] for s in SELLERS}
    stops = [c.subscribe(events[s].append) for s, c in sellers.items()]
    for issuer, client in sellers.items():
        client.submit(seller_offer(issuer))
    brp = HttpClient(server.url, TOKEN_OF["brp-1"], party="brp-1", retries=0)
    brp_posted = brp.post_request(brp_request())
    dso_auth = {"Authorization": f"Bearer {TOKEN_OF[DSO]}"}
    point = {
        "point": "cp-1",
        "dso": DSO,
        "start": encode(T0 + HOUR),
        "slice_s": 900,
        "desired_kwh": [-1.5, -1.5, -0.5, -0.5],
        "price_eur_per_kwh": 0.30,
    }
    with httpx.Client(base_url=server.url, timeout=10) as http:
        registered = http.post("/doms/congestion_point", json=point, headers=dso_auth)
        assert registered.status_code == 201, registered.text
        dso_request = registered.json()
        assert dso_request["session"].startswith("local-cp-1")
        prosumers = http.get("/doms/cp-1/prosumers", headers=dso_auth).json()["prosumers"]
        assert prosumers == ["seller-a", "seller-b"]  # the sellers located at cp-1
        seller_auth = {"Authorization": f"Bearer {TOKEN_OF['seller-a']}"}
        assert http.get("/doms/cp-1/prosumers", headers=seller_auth).status_code == 403
        assert http.post("/doms/congestion_point", json=point, headers=seller_auth).status_code == 403
        assert http.get("/market/status", headers=seller_auth).status_code == 403

        clock.now = T0 + 2 * timedelta(minutes=1)  # the local session's gate (60 s after the registration)
        dso = HttpClient(server.url, TOKEN_OF[DSO], party=DSO, retries=0)
        assert wait_until(lambda: dso.get_request(dso_request["id"]).state is RequestState.CLEARED)
        result = dso.get_request(dso_request["id"]).result
        cleared = np.asarray(result.cleared_kwh)
        assert cleared.sum() < 0 and np.all(cleared <= 0)  # less consumption at cp-1: bought, not sold
        assert result.buyer_pays_eur > 0 and all(a.issuer in ("seller-a", "seller-b") for a in result.awards)
        bids = http.get("/doms/cp-1/bids", headers=dso_auth).json()
        assert [b["request_id"] for b in bids] == [dso_request["id"]]

        clock.now = T0 + 30 * timedelta(minutes=1)  # the intraday gate
        assert wait_until(lambda: brp.get_request(brp_posted.id).state is RequestState.CLEARED)
        requests = [brp.get_request(brp_posted.id), dso.get_request(dso_request["id"])]
        for got in requests:  # money balances to the cent for every buyer
            r = got.result
            parts = r.sellers_receive_eur + r.transport_fees_eur + r.surplus_eur
            assert round(r.buyer_pays_eur * 100) == round(parts * 100)
            assert r.buyer_pays_eur <= got.cutoff_eur_per_kwh * r.cleared_total_kwh + 1e-9
        winners = {a.issuer for got in requests for a in got.result.awards}
        assert wait_until(lambda: all(any(e.kind == "assigned" for e in events[s]) for s in winners))

        status = http.get("/market/status", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert status.status_code == 200
        body = status.json()
        assert body["mechanism"] == "one_sided_pool" and body["calendar"]["intraday_gates"] == ["12:30:00"]
        states = {row["session"]: row["state"] for row in body["sessions"]}
        assert states[INTRADAY] == "cleared" and states[dso_request["session"]] == "cleared"
        operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        assert http.put("/market/config", json={"mechanism": "many_to_many"}, headers=seller_auth).status_code == 403
        bad = http.put("/market/config", json={"mechanism": "auction"}, headers=operator)
        assert bad.status_code == 422 and bad.json()["details"][0]["path"] == "mechanism"
        switched = http.put("/market/config", json={"mechanism": "many_to_many"}, headers=operator)
        assert switched.status_code == 200 and switched.json()["mechanism"] == "many_to_many"
        sessions = http.get("/market/sessions", headers=seller_auth).json()
        assert {s["session"] for s in sessions} == set(states)
        assert all(math.isfinite(row["cleared_kwh"]) for row in body["sessions"])
        dso.close()
    for stop in stops:
        stop()
    for client in (*sellers.values(), brp):
        client.close()
    assert loop.errors == []


def test_a_bad_registration_is_named_and_answers_no_5xx(served_market) -> None:
    server, *_ = served_market
    auth = {"Authorization": f"Bearer {TOKEN_OF[DSO]}"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        base = {"point": "cp-1", "dso": DSO, "start": encode(T0), "slice_s": 900, "price_eur_per_kwh": 1.0}
        for body in (
            {"point": "cp-1"},
            {**base, "start": "x", "desired_kwh": [-1.0]},
            {**base, "desired_kwh": []},
            {**base, "slice_s": 7, "desired_kwh": [1.0]},
            {**base, "start": encode(T0 - 10 * HOUR), "desired_kwh": [-1.0], "price_eur_per_kwh": -1.0},
        ):
            answer = http.post("/doms/congestion_point", json=body, headers=auth)
            assert answer.status_code == 422, (body, answer.status_code, answer.text)
            assert answer.json()["error"]


def test_an_acknowledged_request_clears_after_a_restart(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fmar.db'}"
    clock = Clock(T0)
    service = _market(clock, open_store(url, "fmar", clock=clock))
    service.tick(T0)
    for issuer in SELLERS:
        InProcessClient(service.store, issuer).submit(seller_offer(issuer))
    posted = InProcessClient(service.store, "brp-1").post_request(brp_request())
    service.store.close()  # the server stops before the gate

    clock.now = T0 + HOUR - STEP  # it restarts after the gate
    again = _market(clock, open_store(url, "fmar", clock=clock))
    try:
        assert again.restore(clock.now) == 1
        again.tick(clock.now)
        got = InProcessClient(again.store, "brp-1").get_request(posted.id)
        assert got.state is RequestState.CLEARED and got.result.cleared_total_kwh > 0
    finally:
        again.store.close()


def test_a_buyers_demand_dressed_as_an_offer_is_refused_by_the_served_market(served_market) -> None:
    server, *_ = served_market
    dso = HttpClient(server.url, TOKEN_OF[DSO], party=DSO, retries=0)
    demand = dataclasses.replace(seller_offer("seller-a"), issuer=DSO, device="doms")
    with pytest.raises(InvalidOfferError, match="request"):
        dso.submit(demand)
    assert dso.active() == []
    dso.close()

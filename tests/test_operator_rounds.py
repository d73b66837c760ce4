"""The operator's rounds of served receivers on an operator clock (atp.services.operator,
atp.fmar.routes), over HTTP on a real socket: the clock only moves forward and only for the
operator; a planning round assigns what an FOA submitted and the report says so; the life
cycle settles by the operator's time; the operator runs a market session to its results, and
the DOMS knows the point a DSO registered without a request."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from fastapi.routing import APIRoute

from atp.flexoffer import OfferState, check_schedule, encode
from atp.fman import PriceSeries
from atp.fman.rounds import report_from_wire
from atp.fmar import MarketCalendar, Session, SessionKind
from atp.interface import FlexRequest, HttpClient, OfferStore, RequestState, TokenTable
from atp.interface.clock import OperatorClock
from atp.interface.serve import ServerThread
from atp.services.operator import OPERATOR_OPERATIONS
from atp.services.receivers import FmanOptions, build_fman, build_fmar
from tests.http_support import TOKEN_OF, TOKENS, ev_offer
from tests.test_services import _seller_offer

OPERATOR_TOKEN = "operator-token-0123456789abcdef"
P17 = "foss-p017"
NOON = datetime(2026, 11, 25, 12, tzinfo=UTC)
SERVICE_TOKENS = {
    **TOKENS,
    "token-of-dso-foss-0123456789": "dso-foss",
    "token-of-seller-a-0123456789": "seller-a",
    "token-of-brp-foss-0123456789": "brp-foss",
}


def _table() -> TokenTable:
    return TokenTable.of(SERVICE_TOKENS, [OPERATOR_TOKEN], grid_operators=["dso-foss"])


def _operator(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=30)


@pytest.fixture()
def fman() -> Iterator[tuple[str, OperatorClock]]:
    clock = OperatorClock(NOON)
    store = OfferStore("fman", clock=clock)
    prices = np.full(96, 0.30)
    prices[76:84] = 0.05  # cheap from 19:00 to 21:00
    options = FmanOptions(prices=PriceSeries(datetime(2026, 11, 25, tzinfo=UTC), 900, prices))
    receiver = build_fman(store, tokens=_table(), options=options, clock=clock)
    assert receiver.loops == []  # on an operator clock nothing runs by itself
    with ServerThread(receiver.app, graceful_s=0.2) as server:
        yield server.url, clock


def test_the_clock_moves_forward_only_and_only_for_the_operator(fman) -> None:
    url, clock = fman
    with _operator(url) as op:
        later = NOON + timedelta(hours=1)
        answer = op.put("/operator/clock", json={"now": encode(later)})
        assert answer.status_code == 200 and answer.json() == {"now": encode(later)} and clock() == later
        back = op.put("/operator/clock", json={"now": encode(NOON)})
        assert back.status_code == 409 and "never goes back" in back.json()["error"]
        bad = op.put("/operator/clock", json={"now": "noon", "then": 1})
        assert bad.status_code == 422
        assert {d["path"] for d in bad.json()["details"]} == {"now", "then"}
        assert op.put("/operator/clock", json={}).status_code == 422
    party = httpx.put(
        f"{url}/operator/clock", json={"now": encode(later)}, headers={"Authorization": f"Bearer {TOKEN_OF[P17]}"}
    )
    assert party.status_code == 403
    assert clock() == later


def test_a_planning_round_assigns_the_offer_and_the_report_says_so(fman) -> None:
    url, _ = fman
    client = HttpClient(url, TOKEN_OF[P17], party=P17, retries=0)
    offer = client.submit(ev_offer())  # EV: 18:00-21:45 window, 8 steps
    with _operator(url) as op:
        assert op.post("/fman/plan", headers={"Authorization": f"Bearer {TOKEN_OF[P17]}"}).status_code == 403
        summary = op.post("/fman/plan", json={}).json()
        assert summary["n_assigned"] == 1 and summary["planned_at"] == encode(NOON)
        got = client.get(offer.id)
        assert got.state is OfferState.ASSIGNED and check_schedule(got, got.schedule) == []
        assert got.schedule.start >= datetime(2026, 11, 25, 19, tzinfo=UTC)  # into the cheap hours
        report = report_from_wire(op.get("/fman/report").json())
        assert len(report.plans) == 1 and report.plans[0].n_assigned == 1
        [used] = report.aggregates
        assert used.offer.members == (offer.id,) and used.offer.schedule is not None and not used.bid
        assert [loss.offer_id for loss in report.member_losses] == [offer.id]
        # the life cycle follows the operator's time: nothing moves before the schedule starts ...
        assert op.post("/operator/advance").json() == {"started": [], "settled": []}
        end = got.schedule.start + timedelta(seconds=900 * len(got.schedule.energy))
        op.put("/operator/clock", json={"now": encode(end)})
        moved = op.post("/operator/advance", json={"until": encode(end)}).json()
        assert moved == {"started": [offer.id], "settled": [offer.id]}
    assert client.get(offer.id).state is OfferState.SETTLED
    events = [e.kind for e in client.events()]
    assert events == ["accepted", "assigned", "executing", "settled"]
    client.close()


def test_a_wall_clock_receiver_refuses_to_be_set() -> None:
    store = OfferStore("fman")
    receiver = build_fman(store, tokens=_table())
    with ServerThread(receiver.app, graceful_s=0.2) as server, _operator(server.url) as op:
        answer = op.put("/operator/clock", json={"now": encode(NOON)})
        assert answer.status_code == 409 and "wall clock" in answer.json()["error"]
        assert op.post("/fman/plan").status_code == 404  # no price feed: no planning rounds


def test_the_operator_runs_a_market_session_to_its_results() -> None:
    clock = OperatorClock(NOON)
    store = OfferStore("fmar", clock=clock)
    receiver = build_fmar(store, tokens=_table(), calendar=MarketCalendar(ZoneInfo("UTC")), clock=clock)
    assert receiver.loops == []
    routes = {(m.lower(), r.path) for r in receiver.app.routes if isinstance(r, APIRoute) for m in r.methods}
    assert {k for k in OPERATOR_OPERATIONS if not k[1].startswith("/fman")} <= routes
    start = NOON + timedelta(hours=1)
    with ServerThread(receiver.app, graceful_s=0.2) as server, _operator(server.url) as op:
        seller = HttpClient(server.url, "token-of-seller-a-0123456789", party="seller-a", retries=0)
        offer = seller.submit(_seller_offer(start))
        session = Session(
            "local-cp-1", SessionKind.LOCAL, NOON + timedelta(minutes=30), start, start + timedelta(hours=1)
        )
        assert op.post("/market/sessions", json=encode(session)).status_code == 201
        assert op.post("/market/sessions", json=encode(session)).status_code == 409
        bad = dict(encode(session), delivery_end=encode(NOON))
        assert op.post("/market/sessions", json=dict(bad, name="other")).status_code == 422
        point = {
            "point": "cp-1",
            "dso": "dso-foss",
            "start": encode(start),
            "slice_s": 900,
            "desired_kwh": [-0.5] * 4,
            "price_eur_per_kwh": 0.30,
        }
        dso_auth = {"Authorization": "Bearer token-of-dso-foss-0123456789"}
        tracked = httpx.post(f"{server.url}/doms/congestion_point?request=false", json=point, headers=dso_auth)
        assert tracked.status_code == 201 and tracked.json()["point"] == "cp-1"
        dso = HttpClient(server.url, "token-of-dso-foss-0123456789", party="dso-foss", retries=0)
        request = dso.post_request(
            FlexRequest(
                buyer="dso-foss",
                start=start,
                slice_s=900,
                volume_kwh=(-0.5,) * 4,
                cutoff_eur_per_kwh=0.30,
                congestion_point="cp-1",
                session=session.name,
            )
        )
        assert request.state is RequestState.OPEN
        assert op.post("/market/sessions/nowhere/clear").status_code == 404
        [result] = op.post(f"/market/sessions/{session.name}/clear").json()
        assert np.allclose(result["cleared_kwh"], [-0.5] * 4)  # bought, not sold
        assert [a["offer_id"] for a in result["awards"]] == [offer.id]
        assert op.post(f"/market/sessions/{session.name}/clear").status_code == 422  # a session clears once
        assert op.get("/market/results").json() == [result]
        assert op.get("/market/results", params={"after": 1}).json() == []
        assert dso.get_request(request.id).state is RequestState.CLEARED
        assert httpx.get(f"{server.url}/doms/points", headers=dso_auth).json() == ["cp-1"]
        [bid] = httpx.get(f"{server.url}/doms/bids", headers=dso_auth).json()
        assert bid["point"] == "cp-1" and np.isclose(bid["cleared_kwh"], 2.0)
        seller_auth = {"Authorization": "Bearer token-of-seller-a-0123456789"}
        assert httpx.get(f"{server.url}/doms/points", headers=seller_auth).status_code == 403
        assert op.post("/market/reject_expired", json={"at": "soon"}).status_code == 422
        assert op.post("/market/reject_expired", json={"at": encode(start)}).json() == {"rejected": []}
        seller.close()
        dso.close()

"""Losing bidders hear it: offers that can no longer win are rejected with the reason (F2.FMAR5)."""

from __future__ import annotations

import dataclasses

from atp.flexoffer import OfferState
from atp.fmar import FlexOfferMarket, Session
from tests.test_fmar_pool import HOUR, STEP, T0, Clock, box_offer, request


def test_losers_are_rejected_once_they_cannot_win_and_winners_stay_assigned() -> None:
    clock = Clock(T0)
    market = FlexOfferMarket("fmar", clock=clock)
    gate = T0 + HOUR - 2 * STEP
    session = market.add_session(Session("da", "day_ahead", gate, T0 + HOUR, T0 + 2 * HOUR))
    foa = market.client("foa-1")
    events = []
    foa.subscribe(events.append)

    def submit(offer_id, **kw):
        return foa.submit(dataclasses.replace(box_offer(offer_id, issuer="foa-1", **kw), id=None, created_at=None))

    cheap = submit("a", price=0.05, assignment_before=T0 + HOUR)
    dear = submit("b", price=0.9, assignment_before=T0 + HOUR)
    later = submit("c", price=0.9, start=T0 + 3 * HOUR, assignment_before=T0 + 3 * HOUR)
    market.post_request(request([-1.0] * 4), session=session)
    clock.now = gate
    market.run_session(session, now=gate)
    assert market.reject_expired(gate) == []  # nobody has lost its last chance yet

    clock.now = T0 + HOUR + STEP
    rejected = market.reject_expired()
    assert rejected == [dear.id]
    assert foa.get(cheap.id).state is OfferState.ASSIGNED
    assert foa.get(later.id).state is OfferState.ACCEPTED
    (event,) = [e for e in events if e.kind == "rejected"]
    assert event.offer.id == dear.id
    record = next(r for r in market.store.records() if r.offer.id == dear.id)
    assert "assignment deadline" in (record.reason or "")

"""The receiver's own clock over the offer life cycle (atp.interface.lifecycle): offers start
executing when their operation begins and settle when it ends, in memory, on a durable
store, and served over HTTP with the stream telling the issuer."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import OfferState, Schedule
from atp.interface import HttpClient, InProcessClient, OfferStore, create_app
from atp.interface.lifecycle import LifecycleLoop, advance
from atp.interface.serve import ServerThread
from atp.interface.store import open_store
from tests.http_support import TOKEN_OF, TOKENS, Clock, ev_offer, wait_until

P17 = "foss-p017"
T18 = datetime(2026, 11, 25, 18, tzinfo=UTC)
STEP = timedelta(minutes=15)


def _assigned(store: OfferStore, start: datetime) -> str:
    offer = InProcessClient(store, P17).submit(ev_offer())
    store.assign(offer.id, Schedule(offer.id, start, 0, (2.75,) * 8, assigned_at=store.clock()))
    return offer.id


def test_an_offer_executes_from_its_schedule_start_and_settles_at_its_end() -> None:
    store = OfferStore("fman", clock=Clock())
    offer_id = _assigned(store, T18 + 4 * STEP)  # 19:00-21:00
    assert advance(store, T18) == advance(store, T18)  # nothing moves before 19:00
    assert store.get(P17, offer_id).state is OfferState.ASSIGNED
    moved = advance(store, T18 + 4 * STEP, until=T18 + 5 * STEP)
    assert moved.started == (offer_id,) and moved.settled == ()
    assert store.get(P17, offer_id).state is OfferState.EXECUTING
    assert advance(store, T18 + 10 * STEP, until=T18 + 11 * STEP).settled == ()  # 21:00 not reached
    assert advance(store, T18 + 11 * STEP, until=T18 + 12 * STEP).settled == (offer_id,)
    assert store.get(P17, offer_id).state is OfferState.SETTLED
    assert store.active(P17) == []


def test_an_unassigned_offer_runs_its_default_and_one_without_any_schedule_settles_at_once() -> None:
    store = OfferStore("fman", clock=Clock())
    client = InProcessClient(store, P17)
    default = client.submit(ev_offer())  # default schedule from 18:00, 8 steps
    bare = client.submit(dataclasses.replace(ev_offer(), default_schedule=None))
    moved = advance(store, T18)
    assert set(moved.started) == {default.id, bare.id} and moved.settled == (bare.id,)
    assert advance(store, T18 + 8 * STEP).settled == (default.id,)


def test_events_and_states_survive_on_a_durable_store(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fman.db'}"
    store = open_store(url, "fman", clock=Clock())
    offer_id = _assigned(store, T18)
    advance(store, T18 + 8 * STEP)
    kinds = [e.kind for e in store.events(P17)]
    store.close()
    again = open_store(url, "fman", clock=Clock())
    try:
        assert again.get(P17, offer_id).state is OfferState.SETTLED
        assert [e.kind for e in again.events(P17)] == kinds == ["accepted", "assigned", "executing", "settled"]
    finally:
        again.close()


def test_a_served_receiver_moves_offers_by_its_clock_and_the_issuer_hears_it() -> None:
    clock = Clock(T18 - STEP)
    store = OfferStore("fman", clock=clock, opaque_ids=True)
    app = create_app(store, tokens=TOKENS, sse_keepalive_s=0.2)
    loop = LifecycleLoop(store, every_s=0.02, lock=app.state.lock, clock=clock)
    with ServerThread(app, graceful_s=0.2) as server, loop:
        client = HttpClient(server.url, TOKEN_OF[P17], party=P17, retries=0)
        events = []
        unsubscribe = client.subscribe(events.append)
        offer = client.submit(ev_offer())
        clock.now = T18
        assert wait_until(lambda: any(e.kind == "executing" for e in events))
        clock.now = T18 + 8 * STEP
        assert wait_until(lambda: any(e.kind == "settled" for e in events))
        assert client.get(offer.id).state is OfferState.SETTLED
        unsubscribe()
        client.close()
    assert loop.errors == [] and loop.rounds > 0


@settings(max_examples=40, deadline=None)
@given(
    starts=st.lists(st.integers(0, 20), min_size=1, max_size=6),  # the EV may start 18:00-23:00
    times=st.lists(st.integers(0, 60), min_size=1, max_size=8).map(sorted),
)
def test_states_only_move_forward_and_match_the_clock(starts, times) -> None:
    """At any sequence of rounds: an offer executes iff its operation began and has not ended
    by the round's end, settles iff it ended; a repeated round moves nothing."""
    store = OfferStore("fman", clock=Clock())
    ids = {_assigned(store, T18 + k * STEP): T18 + k * STEP for k in starts}
    rank = {OfferState.ASSIGNED: 0, OfferState.EXECUTING: 1, OfferState.SETTLED: 2}
    before = dict.fromkeys(ids, 0)
    for t in times:
        now = T18 + t * STEP
        advance(store, now, until=now + STEP)
        assert advance(store, now, until=now + STEP).started == ()
        for offer_id, start in ids.items():
            state = store.get(P17, offer_id).state
            end = start + 8 * STEP
            expected = OfferState.SETTLED if end <= now + STEP else OfferState.EXECUTING if start <= now else None
            assert state is (expected or OfferState.ASSIGNED)
            assert rank[state] >= before[offer_id]
            before[offer_id] = rank[state]

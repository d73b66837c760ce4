"""What a durable store keeps across a restart, on SQLite and PostgreSQL (and what memory does not).

A restart here is closing the store and opening a new one on the same database, as a new
server process does; `tests/test_interface_crash.py` kills real server processes instead.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from atp.flexoffer import Measurement, OfferState, Schedule
from atp.interface import OPERATOR, InProcessClient
from atp.interface.persist import JournalError, JournalUrlError, open_journal
from atp.interface.requests import FlexRequest, RequestResult, RequestState
from atp.interface.store import StoreUnavailableError, UnknownEventError, open_store
from tests.http_support import Clock, ev_offer
from tests.store_backends import DURABLE, POSTGRES_URL, backend_fixture, store_urls_fixture  # noqa: F401 (fixtures)

T18 = datetime(2026, 11, 25, 18, tzinfo=UTC)


class Desk:
    """A market's request handler: every request joins session s1."""

    def place(self, request: FlexRequest) -> str:
        return "s1"

    def withdraw(self, request: FlexRequest) -> None:
        return None


def _fill(store, clock):
    """Offers of two parties in every state, measurements, requests and idempotency keys."""
    a, b = InProcessClient(store, "foss-p017"), InProcessClient(store, "foss-p018")
    first = a.submit(ev_offer(), idempotency_key="k1")
    a.update(first.id, dataclasses.replace(ev_offer(), device="ev-2"))
    store.assign(first.id, Schedule(first.id, T18, 0, (2.75,) * 8, assigned_at=clock.now))
    second = b.submit(ev_offer("foss-p018"))
    store.reject(second.id, "not worth trading")
    third = a.submit(ev_offer())
    a.withdraw(third.id)
    fourth = a.submit(ev_offer())
    store.start(fourth.id)
    store.settle(fourth.id)
    a.post_measurements([Measurement(first.id, "M-017", T18 + timedelta(minutes=15 * k), 1.5) for k in range(3)])
    store.take_requests(Desk())
    buyer = InProcessClient(store, "brp")
    wanted = FlexRequest("brp", T18, 900, (-1.0, -2.0), 0.3)
    cleared = buyer.post_request(wanted, idempotency_key="r1")
    withdrawn = buyer.post_request(wanted)
    buyer.withdraw_request(withdrawn.id)
    store.record_result(cleared.id, RequestResult(clock.now, (-1.0, -1.0), 0.6, 0.5, 0.0, 0.1))
    return first


def _state(store):
    """Everything a client or the receiver can read of the store."""
    records = [
        (r.view(), r.owner, r.state, r.submitted_at, r.updated_at, r.reason, dict(r.measurements))
        for r in store.records()
    ]
    requests = [(r.view(), r.owner, r.updated_at) for r in store.request_records()]
    series = store.timeseries(OPERATOR, "measurement", T18, T18 + timedelta(hours=2), slice_s=900)
    return records, store.events(OPERATOR), requests, series


@pytest.mark.parametrize("backend", DURABLE, indirect=True)
def test_a_reopened_store_holds_all_it_held_and_numbers_on(store_urls):
    clock = Clock()
    store = open_store(store_urls.url(), "fman", clock=clock)
    first = _fill(store, clock)
    before = _state(store)
    own_last = store.last_seq_of("foss-p017")
    store.close()

    store = open_store(store_urls.url(), "fman", clock=clock)
    try:
        assert _state(store) == before
        client = InProcessClient(store, "foss-p017")
        assert client.submit(ev_offer(), idempotency_key="k1") == before[1][0].offer  # the first answer
        first_request = dataclasses.replace(before[2][0][0], state=RequestState.OPEN, result=None)
        again = InProcessClient(store, "brp").post_request(
            FlexRequest("brp", T18, 900, (-1.0,), 0.3), idempotency_key="r1"
        )
        assert again == first_request
        fresh = client.submit(ev_offer())
        assert fresh.id not in {r[0].id for r in before[0]}
        events = store.events(OPERATOR)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))  # no gap, no repeat
        assert events[-1].offer.id == fresh.id
        assert [e.kind for e in client.events(after=own_last)] == ["accepted"]
        assert [e.seq for e in client.events()] == list(range(1, own_last + 2))  # its own sequence
        assert store.get(OPERATOR, first.id).schedule is not None
    finally:
        store.close()


def test_a_position_the_store_never_issued_is_refused(store_urls):
    store = open_store(store_urls.url(), "fman", clock=Clock())
    try:
        client = InProcessClient(store, "foss-p017")
        client.submit(ev_offer())
        assert client.events(after=1) == []
        with pytest.raises(UnknownEventError) as info:
            client.events(after=2)
        assert info.value.status == 409 and "never issued" in str(info.value)
        with pytest.raises(UnknownEventError):
            store.events(OPERATOR, after=-1)
    finally:
        store.close()


def test_ids_are_opaque_unique_and_tell_nothing_of_other_parties(store_urls):
    store = open_store(store_urls.url(), "fman", clock=Clock())
    try:
        a, b = InProcessClient(store, "foss-p017"), InProcessClient(store, "foss-p018")
        ids = [a.submit(ev_offer()).id for _ in range(3)] + [b.submit(ev_offer("foss-p018")).id]
        assert len(set(ids)) == 4
        for offer_id in ids:
            prefix, tail = offer_id.rsplit("-", 1)
            assert prefix == "fo-fman" and len(tail) == 16 and int(tail, 16) >= 0
        assert not any(i.endswith(("000001", "000002", "000003", "000004")) for i in ids)
    finally:
        store.close()


def test_each_party_has_its_own_event_sequence(store_urls):
    store = open_store(store_urls.url(), "fman", clock=Clock())
    try:
        a, b = InProcessClient(store, "foss-p017"), InProcessClient(store, "foss-p018")
        heard_a = []
        a.subscribe(heard_a.append)
        for _ in range(3):
            b.submit(ev_offer("foss-p018"))
            a.submit(ev_offer())
        b.submit(ev_offer("foss-p018"))
        assert [e.seq for e in a.events()] == [1, 2, 3] == [e.seq for e in heard_a]  # nothing of b's 4 offers
        assert [e.seq for e in b.events()] == [1, 2, 3, 4]
        assert [e.seq for e in store.events(OPERATOR)] == list(range(1, 8))
        assert store.last_seq_of("foss-p017") == 3 and store.last_seq_of(OPERATOR) == 7
        assert [e.offer.id for e in store.events("foss-p017", after=1, limit=1)] == [heard_a[1].offer.id]
        with pytest.raises(UnknownEventError):
            a.events(after=4)
        assert b.events(after=4) == [] and store.events("nobody") == []
    finally:
        store.close()


def test_memory_forgets_and_numbers_from_one():
    first = open_store("memory", "fman", clock=Clock())
    InProcessClient(first, "foss-p017").submit(ev_offer())
    again = open_store("memory", "fman", clock=Clock())
    assert again.records() == [] and again.last_seq == 0


def _refuse_events(url: str, backend: str, refuse: bool) -> None:
    """Make the database itself refuse (or take again) new event rows: a failing disk or server."""
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        sql = (
            "CREATE TRIGGER refuse BEFORE INSERT ON atp_event BEGIN SELECT RAISE(ABORT, 'disk refused'); END"
            if refuse
            else "DROP TRIGGER refuse"
        )
        conn.execute(sql)
        conn.commit()
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as conn:
        if refuse:
            conn.execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'server refused'; END $$"
            )
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON atp_event FOR EACH ROW EXECUTE FUNCTION refuse()")
        else:
            conn.execute("DROP TRIGGER refuse ON atp_event")
            conn.execute("DROP FUNCTION refuse()")


@pytest.mark.parametrize("backend", DURABLE, indirect=True)
def test_a_failed_commit_keeps_nothing_and_the_store_goes_on(store_urls, backend):
    url = store_urls.url()
    store = open_store(url, "fman", clock=Clock())
    try:
        client = InProcessClient(store, "foss-p017")
        heard = []
        client.subscribe(heard.append)
        kept = client.submit(ev_offer())
        _refuse_events(url, backend, refuse=True)
        with pytest.raises(StoreUnavailableError) as info:
            client.submit(ev_offer(), idempotency_key="k")
        assert info.value.status == 503
        with pytest.raises(StoreUnavailableError):
            client.withdraw(kept.id)
        assert [r.view() for r in store.records()] == [client.get(kept.id)]
        assert client.get(kept.id).state is OfferState.ACCEPTED and store.last_seq == 1
        assert [e.seq for e in heard] == [1]  # nobody heard of what was not stored
        _refuse_events(url, backend, refuse=False)
        again = client.submit(ev_offer(), idempotency_key="k")
        assert again.id != kept.id and [e.seq for e in store.events(OPERATOR)] == [1, 2]
    finally:
        store.close()


@pytest.mark.parametrize("backend", DURABLE, indirect=True)
def test_one_process_per_database_and_one_store_per_database(store_urls):
    store = open_store(store_urls.url(), "fman", clock=Clock())
    with pytest.raises(JournalError, match="in use by another process"):
        open_store(store_urls.url(), "fman")
    store.close()
    with pytest.raises(JournalError, match="holds the store 'fman', not 'fmar'"):
        open_store(store_urls.url(), "fmar")
    open_store(store_urls.url(), "fman").close()


def test_store_urls_name_their_backend(tmp_path):
    assert open_journal("memory", store="fman") is None
    for bad in ("sqlite://x.db", "mysql://h/db", "x.db", f"sqlite:///{tmp_path}/a.db?fsync=1"):
        with pytest.raises(JournalUrlError):
            open_journal(bad, store="fman")
    with pytest.raises(JournalError, match="cannot connect"):
        open_journal(POSTGRES_URL.rsplit("/", 1)[0] + "/no_such_database_atp", store="fman")


def test_a_transaction_commits_once_and_tells_subscribers_after(store_urls):
    store = open_store(store_urls.url(), "fman", clock=Clock())
    try:
        client = InProcessClient(store, "foss-p017")
        heard = []
        client.subscribe(heard.append)
        with store.transaction():
            ids = [client.submit(ev_offer()).id for _ in range(3)]
            assert heard == []
        assert [e.offer.id for e in heard] == ids
    finally:
        store.close()


@pytest.mark.parametrize("backend", DURABLE, indirect=True)
def test_group_commit_shows_and_tells_only_what_is_committed(store_urls, backend):
    url = store_urls.url()
    store = open_store(url, "fman", clock=Clock(), group_commit=True)
    heard = []
    store.subscribe(heard.append)
    client = InProcessClient(store, "foss-p017")
    try:
        offers = [client.submit(ev_offer(), idempotency_key=f"k{i}") for i in range(20)]
        ticket = store.pending
        store.sync(ticket)
        assert store.is_committed(ticket) and store.last_seq == 20
        assert [e.offer.id for e in heard] == [o.id for o in offers]  # told once committed, in order
        assert [e.seq for e in store.events(OPERATOR)] == list(range(1, 21))
        _refuse_events(url, backend, refuse=True)
        client.submit(ev_offer())  # returns before its commit, which fails
        with pytest.raises(StoreUnavailableError):
            store.sync()
        with pytest.raises(StoreUnavailableError, match="restart the server"):
            client.submit(ev_offer())
        assert store.last_seq == 20 and len(heard) == 20
    finally:
        store.close()
        _refuse_events(url, backend, refuse=False)
    again = open_store(url, "fman", clock=Clock())
    try:
        assert [r.view().id for r in again.records()] == [o.id for o in offers]  # what a restart finds
    finally:
        again.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_served_store_answers_only_what_is_committed_and_503_after_a_failed_commit(store_urls, backend):
    import httpx

    from atp.flexoffer import encode
    from atp.interface import TokenTable
    from atp.interface.serve import ServerThread
    from atp.services.receivers import build_receiver
    from tests.http_support import TOKEN_OF, TOKENS

    url = store_urls.url()
    store = open_store(url, "fmar", group_commit=True)
    app = build_receiver("fmar", tokens=TokenTable.of(TOKENS, ()), store=store)
    auth = {"Authorization": f"Bearer {TOKEN_OF['foss-p017']}"}
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    offer = ev_offer()
    delta = start - offer.start_after
    offer = dataclasses.replace(
        offer,
        created_at=None,
        assignment_before=start - timedelta(minutes=15),
        start_after=start,
        start_before=offer.start_before + delta,
        default_schedule=dataclasses.replace(offer.default_schedule, start=start),
    )
    try:
        with ServerThread(app) as server, httpx.Client(base_url=server.url, headers=auth, timeout=10) as http:
            posted = http.post("/flexoffer", json=encode(offer))
            assert posted.status_code == 201
            assert store.is_committed(store.pending)  # the 201 left after the commit
            _refuse_events(url, backend, refuse=True)
            refused = http.post("/flexoffer", json=encode(offer))
            assert refused.status_code == 503 and "restart the server" in refused.json()["error"]
            assert http.get(f"/flexoffer/{posted.json()['id']}").status_code == 503
    finally:
        store.close()
        _refuse_events(url, backend, refuse=False)
    again = open_store(url, "fmar")
    try:
        assert [r.view().id for r in again.records()] == [posted.json()["id"]]
    finally:
        again.close()

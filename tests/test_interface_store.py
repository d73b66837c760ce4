"""The exchange interface's receiver store through the in-process binding: states, ownership, events.

Every test runs on the three backends (memory, SQLite, PostgreSQL: `tests/store_backends.py`);
what a store keeps across a restart is in `tests/test_interface_durability.py`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from atp.errors import InvalidOfferError
from atp.flexoffer import Measurement, OfferState, Schedule, offer_from_json
from atp.interface import (
    OPERATOR,
    ConflictError,
    ExchangeInterface,
    ForbiddenError,
    InProcessClient,
    NotFoundError,
)
from atp.interface.store import open_store
from tests.store_backends import backend_fixture, store_urls_fixture  # noqa: F401 (fixtures)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "flexoffers"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def setup(store_urls):
    clock = Clock(datetime(2026, 11, 25, 17, 40, tzinfo=UTC))
    store = open_store(store_urls.url(), "fman", clock=clock)
    ev = dataclasses.replace(offer_from_json((EXAMPLES / "ev_charge.json").read_text()), id=None)
    yield clock, store, InProcessClient(store, "foss-p017"), ev
    store.close()


def test_in_process_client_is_an_exchange_interface(setup):
    assert isinstance(setup[2], ExchangeInterface)


def test_submit_assigns_id_and_accepts_and_idempotency_key_stores_once(setup):
    _, store, client, ev = setup
    first = client.submit(ev, idempotency_key="k1")
    again = client.submit(ev, idempotency_key="k1")
    assert first.id and first.state is OfferState.ACCEPTED and again == first
    assert len(store.records()) == 1
    assert client.get(first.id).state is OfferState.ACCEPTED


def test_invalid_offer_is_rejected_with_every_problem_and_nothing_stored(setup):
    _, store, client, ev = setup
    bad = dataclasses.replace(ev, slice_s=7000, start_before_duration_s=3600)
    with pytest.raises(InvalidOfferError) as info:
        client.submit(bad)
    assert {p.path for p in info.value.problems} >= {"slice_s", "start_before"}
    assert store.records() == []


def test_other_parties_see_404_and_cannot_issue_for_others(setup):
    _, store, client, ev = setup
    offer = client.submit(ev)
    other = InProcessClient(store, "foss-p018")
    with pytest.raises(NotFoundError):
        other.get(offer.id)
    with pytest.raises(NotFoundError):
        other.withdraw(offer.id)
    with pytest.raises(ForbiddenError):
        other.submit(ev)
    assert other.active() == []
    assert InProcessClient(store, OPERATOR).get(offer.id).id == offer.id


def test_update_until_assigned_then_409(setup):
    clock, store, client, ev = setup
    offer = client.submit(ev)
    updated = client.update(offer.id, dataclasses.replace(ev, device="ev-2"))
    assert updated.device == "ev-2"
    s = Schedule(offer.id, datetime(2026, 11, 25, 18, tzinfo=UTC), 0, (2.75,) * 8, assigned_at=clock.now)
    assert store.assign(offer.id, s).state is OfferState.ASSIGNED
    with pytest.raises(ConflictError):
        client.update(offer.id, ev)
    assert client.get(offer.id).schedule == s


def test_assign_refuses_an_infeasible_schedule(setup):
    clock, store, client, ev = setup
    offer = client.submit(ev)
    bad = Schedule(offer.id, datetime(2026, 11, 25, 18, tzinfo=UTC), 0, (3.0,) * 8, assigned_at=clock.now)
    with pytest.raises(InvalidOfferError):
        store.assign(offer.id, bad)
    assert client.get(offer.id).state is OfferState.ACCEPTED


def test_withdraw_before_operation_and_409_after(setup):
    clock, _store, client, ev = setup
    a = client.submit(ev)
    assert client.withdraw(a.id).state is OfferState.WITHDRAWN
    b = client.submit(ev)
    clock.now = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    with pytest.raises(ConflictError):
        client.withdraw(b.id)


def test_events_stream_resumes_and_subscribers_get_only_their_party(setup):
    _clock, store, client, ev = setup
    seen, others = [], []
    client.subscribe(seen.append)
    InProcessClient(store, "foss-p018").subscribe(others.append)
    offer = client.submit(ev)
    store.assign(offer.id, Schedule(offer.id, datetime(2026, 11, 25, 19, tzinfo=UTC), 0, (2.75,) * 8))
    store.start(offer.id)
    store.settle(offer.id)
    assert [e.kind for e in seen] == ["accepted", "assigned", "executing", "settled"]
    assert others == []
    events = client.events()
    assert [e.kind for e in client.events(after=events[1].seq)] == ["executing", "settled"]
    assert client.active() == []


def test_measurements_and_time_series(setup):
    _clock, _store, client, ev = setup
    offer = client.submit(ev)
    start = datetime(2026, 11, 25, 18, tzinfo=UTC)
    client.post_measurements([Measurement(offer.id, "M-017", start + timedelta(minutes=15 * k), 1.0) for k in range(3)])
    series = client.timeseries("measurement", start, start + timedelta(hours=1), slice_s=900)
    assert series.values == (1.0, 1.0, 1.0, 0.0)
    baseline = client.timeseries("baseline", start, start + timedelta(hours=3), slice_s=900)
    assert sum(baseline.values) == pytest.approx(22.0)
    with pytest.raises(NotFoundError):
        client.timeseries("nonsense", start, start, slice_s=900)

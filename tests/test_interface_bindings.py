"""One interface, several bindings: the same behaviour tests against InProcessClient, HttpClient
and MqttClient.

The HTTP binding runs a real uvicorn server on a 127.0.0.1 socket (one per module, a fresh
app and store per test); the MQTT binding a gateway beside a fresh app and store per test,
through the Mosquitto broker on 127.0.0.1:1883 (its own receiver name per test, so no retained
message of another test reaches it). Their clients must answer exactly what the in-process
client answers.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from atp.errors import InvalidOfferError
from atp.flexoffer import Measurement, OfferState, Schedule
from atp.interface import (
    OPERATOR,
    ConflictError,
    ExchangeInterface,
    ForbiddenError,
    HttpClient,
    InProcessClient,
    NotFoundError,
    OfferStore,
    create_app,
)
from atp.interface.auth import TokenTable
from atp.interface.mqtt import MqttClient, MqttGateway, MqttSettings
from atp.interface.serve import ServerThread
from tests.http_support import OPERATOR_TOKEN, TOKEN_OF, TOKENS, Clock, SwitchApp, ev_offer, wait_until

MQTT = MqttSettings.from_url("mqtt://127.0.0.1:1883")  # the machine's Mosquitto (.ci/run starts it)


@dataclass
class Binding:
    """A store, its clock and lock, and a way to make a client of one party for one binding."""

    kind: str
    store: OfferStore
    clock: Clock
    lock: Any
    url: str | None = None
    clients: list[Any] = field(default_factory=list)

    def client(self, party: str) -> Any:
        if self.kind == "inprocess":
            return InProcessClient(self.store, party)
        token = OPERATOR_TOKEN if party == OPERATOR else TOKEN_OF[party]
        if self.kind == "mqtt":
            client = MqttClient(MQTT, receiver=self.url or "", token=token, party=party, timeout_s=5)
            self.clients.append(client)
            return client
        client = HttpClient(self.url, token, party=party, retries=0)
        self.clients.append(client)
        return client

    def events_arrive(self, seen: list[Any], n: int) -> bool:
        return wait_until(lambda: len(seen) >= n)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SwitchApp, ServerThread]]:
    switch = SwitchApp()
    with ServerThread(switch, graceful_s=0.5) as srv:
        yield switch, srv


@pytest.fixture(params=["inprocess", "http", "mqtt"])
def binding(request, server) -> Iterator[Binding]:
    clock = Clock()
    store = OfferStore("fman", clock=clock)
    if request.param == "inprocess":
        yield Binding("inprocess", store, clock, threading.Lock())
        return
    if request.param == "mqtt":
        app = create_app(store, tokens=TOKENS, operator_tokens=[OPERATOR_TOKEN], sse_keepalive_s=0.2)
        receiver = f"fman-{secrets.token_hex(4)}"
        table = TokenTable.of(TOKENS, [OPERATOR_TOKEN])
        with MqttGateway(app, store, receiver=receiver, tokens=table, settings=MQTT):
            b = Binding("mqtt", store, clock, app.state.lock, url=receiver)
            yield b
            for client in b.clients:
                client.close()
        return
    switch, srv = server
    app = create_app(store, tokens=TOKENS, operator_tokens=[OPERATOR_TOKEN], sse_keepalive_s=0.2)
    switch.app = app
    b = Binding("http", store, clock, app.state.lock, url=srv.url)
    yield b
    for client in b.clients:
        client.close()


def test_clients_are_exchange_interfaces(binding):
    assert isinstance(binding.client("foss-p017"), ExchangeInterface)


def test_submit_answers_accepted_with_an_id_and_an_idempotency_key_stores_once(binding):
    client = binding.client("foss-p017")
    first = client.submit(ev_offer(), idempotency_key="k1")
    again = client.submit(ev_offer(), idempotency_key="k1")
    assert first.id and first.state is OfferState.ACCEPTED and again == first
    assert len(binding.store.records()) == 1
    assert client.get(first.id) == binding.store.get("foss-p017", first.id)
    other = client.submit(ev_offer(), idempotency_key="k2")
    assert other.id != first.id and len(binding.store.records()) == 2


def test_an_invalid_offer_lists_every_problem_and_stores_nothing(binding):
    bad = dataclasses.replace(ev_offer(), slice_s=7000, start_before_duration_s=3600)
    with pytest.raises(InvalidOfferError) as info:
        binding.client("foss-p017").submit(bad)
    assert {p.path for p in info.value.problems} >= {"slice_s", "start_before"}
    assert binding.store.records() == []


def test_other_parties_see_404_cannot_issue_for_others_and_the_operator_sees_all(binding):
    offer = binding.client("foss-p017").submit(ev_offer())
    other = binding.client("foss-p018")
    with pytest.raises(NotFoundError):
        other.get(offer.id)
    with pytest.raises(NotFoundError):
        other.withdraw(offer.id)
    with pytest.raises(NotFoundError):
        other.update(offer.id, ev_offer("foss-p018"))
    with pytest.raises(ForbiddenError):
        other.submit(ev_offer("foss-p017"))
    assert other.active() == []
    operator = binding.client(OPERATOR)
    assert operator.get(offer.id) == offer
    assert [o.id for o in operator.active()] == [offer.id]


def test_update_until_assigned_then_409(binding):
    client = binding.client("foss-p017")
    offer = client.submit(ev_offer())
    updated = client.update(offer.id, dataclasses.replace(ev_offer(), device="ev-2"))
    assert updated.device == "ev-2" and updated.id == offer.id
    s = Schedule(offer.id, datetime(2026, 11, 25, 18, tzinfo=UTC), 0, (2.75,) * 8, assigned_at=binding.clock.now)
    with binding.lock:
        binding.store.assign(offer.id, s)
    with pytest.raises(ConflictError):
        client.update(offer.id, ev_offer())
    got = client.get(offer.id)
    assert got.state is OfferState.ASSIGNED and got.schedule == s


def test_withdraw_before_the_operation_and_409_after(binding):
    client = binding.client("foss-p017")
    a = client.submit(ev_offer())
    assert client.withdraw(a.id).state is OfferState.WITHDRAWN
    assert client.active() == []
    b = client.submit(ev_offer())
    binding.clock.now = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    with pytest.raises(ConflictError):
        client.withdraw(b.id)


def test_offers_submitted_or_updated_in_a_period(binding):
    client = binding.client("foss-p017")
    a = client.submit(ev_offer())
    binding.clock.now = datetime(2026, 11, 25, 17, 41, tzinfo=UTC)
    b = client.submit(ev_offer())
    t = datetime(2026, 11, 25, 17, 40, 30, tzinfo=UTC)
    assert [o.id for o in client.between(datetime(2026, 11, 25, 17, tzinfo=UTC), t)] == [a.id]
    assert [o.id for o in client.between(t, datetime(2026, 11, 25, 18, tzinfo=UTC))] == [b.id]
    assert binding.client("foss-p018").between(datetime(2026, 11, 25, tzinfo=UTC), t) == []


def test_events_resume_and_subscribers_get_only_their_party(binding):
    client = binding.client("foss-p017")
    seen: list[Any] = []
    others: list[Any] = []
    stop = client.subscribe(seen.append)
    stop_other = binding.client("foss-p018").subscribe(others.append)
    offer = client.submit(ev_offer())
    with binding.lock:
        binding.store.assign(offer.id, Schedule(offer.id, datetime(2026, 11, 25, 19, tzinfo=UTC), 0, (2.75,) * 8))
        binding.store.start(offer.id)
        binding.store.settle(offer.id)
    assert binding.events_arrive(seen, 4)
    assert [e.kind for e in seen] == ["accepted", "assigned", "executing", "settled"]
    assert seen == binding.store.events("foss-p017")
    events = client.events()
    assert events == binding.store.events("foss-p017")
    assert [e.kind for e in client.events(after=events[1].seq)] == ["executing", "settled"]
    assert client.active() == []
    stop()
    stop_other()
    with binding.lock:
        binding.store.submit("foss-p017", ev_offer())
    assert len(seen) == 4 and others == []


def test_measurements_and_time_series(binding):
    client = binding.client("foss-p017")
    offer = client.submit(ev_offer())
    start = datetime(2026, 11, 25, 18, tzinfo=UTC)
    metered = [Measurement(offer.id, "M-017", start + timedelta(minutes=15 * k), 1.0) for k in range(3)]
    assert client.post_measurements(metered) == 3
    assert client.post_measurements([]) == 0
    end = start + timedelta(hours=1)
    series = client.timeseries("measurement", start, end, slice_s=900)
    assert series == binding.store.timeseries("foss-p017", "measurement", start, end, slice_s=900)
    assert series.values == (1.0, 1.0, 1.0, 0.0) and series.start == start and series.slice_s == 900
    baseline = client.timeseries("baseline", start, start + timedelta(hours=3), slice_s=3600)
    assert baseline.values == pytest.approx((11.0, 11.0, 0.0))
    assert binding.client("foss-p018").timeseries("baseline", start, end, slice_s=900).values == (0.0,) * 4
    with pytest.raises(NotFoundError):
        client.timeseries("nonsense", start, start, slice_s=900)
    with pytest.raises(NotFoundError):
        binding.client("foss-p018").post_measurements(metered[:1])

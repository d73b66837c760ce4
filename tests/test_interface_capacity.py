"""A DSO's grid capacities through the exchange interface (`PUT /capacity/{name}`): who may
publish them, every bad field named, kept across a restart, served over a real socket, and an
FMAN whose plan keeps within what the DSO published over HTTP."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.errors import InvalidOfferError
from atp.flexoffer import OfferState
from atp.flexoffer.codec import decode, encode
from atp.fman import AggregationParams, FlexOfferManager, PriceSeries
from atp.fman.planning import GridCapacity, published_capacity
from atp.interface import HttpClient, InProcessClient, OfferStore
from atp.interface.auth import TokenFileError, TokenTable, tokens_from_dict
from atp.interface.capacity import CapacityPoint, PublishedCapacity, validate_capacity
from atp.interface.errors import ForbiddenError, NotFoundError
from atp.interface.persist import read_capacity, write_json
from atp.interface.serve import ServerThread
from atp.interface.store import open_store
from atp.services.receivers import build_receiver
from tests.http_support import TOKENS, Clock, ev_offer
from tests.store_backends import backend_fixture, store_urls_fixture  # noqa: F401 (fixtures)

DSO = "dso-foss"
DSO_TOKEN = "token-of-dso-foss-0123456789"
OTHER_DSO = "dso-other"
OTHER_TOKEN = "token-of-dso-other-012345678"
P17 = "foss-p017"
T18 = datetime(2026, 11, 25, 18, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 17, 40, tzinfo=UTC)


def _capacity(name: str = "cp-3", kwh: tuple[float | None, ...] = (3.0,) * 20, **kw) -> PublishedCapacity:
    return PublishedCapacity(name, T18, 900, kwh, (CapacityPoint("cp-3"),), **kw)


def _fman_store(clock=None) -> OfferStore:
    store = OfferStore("fman", clock=clock or Clock(NOW))
    store.capacity_book.planner = "fman"
    store.capacity_book.allow([DSO, OTHER_DSO])
    return store


# -- the book -------------------------------------------------------------------------------
def test_a_dso_publishes_replaces_and_withdraws_its_capacities() -> None:
    store = _fman_store()
    dso = InProcessClient(store, DSO)
    first = dso.publish_capacity(_capacity())
    assert first.publisher == DSO and first.published_at == NOW
    assert store.publish_capacity(DSO, _capacity(kwh=(2.0,) * 4))[1] is False  # a replacement, not new
    dso.publish_capacity(_capacity("trafo"))
    assert [c.name for c in dso.capacities()] == ["cp-3", "trafo"]
    assert dso.get_capacity("cp-3").kwh == (2.0,) * 4
    assert dso.withdraw_capacity("cp-3").name == "cp-3"
    assert [c.name for c in store.capacity_book.in_force()] == ["trafo"]
    with pytest.raises(NotFoundError):
        dso.get_capacity("cp-3")


def test_only_grid_operators_publish_and_each_reads_only_its_own() -> None:
    store = _fman_store()
    with pytest.raises(ForbiddenError, match="grid_operators"):
        InProcessClient(store, P17).publish_capacity(_capacity())
    InProcessClient(store, DSO).publish_capacity(_capacity())
    other = InProcessClient(store, OTHER_DSO)
    assert other.capacities() == []
    with pytest.raises(NotFoundError):
        other.get_capacity("cp-3")
    with pytest.raises(NotFoundError):
        other.withdraw_capacity("cp-3")
    other.publish_capacity(_capacity())  # the same name by another DSO is its own capacity
    assert len(store.capacity_book.in_force()) == 2
    assert len(InProcessClient(store, "operator").capacities()) == 2


def test_a_receiver_that_plans_nothing_takes_no_capacities() -> None:
    store = OfferStore("fmar")
    store.capacity_book.allow([DSO])
    with pytest.raises(NotFoundError, match="FMAN"):
        InProcessClient(store, DSO).publish_capacity(_capacity())


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"name": " "}, "name"),
        ({"name": "a/b"}, "name"),
        ({"slice_s": 7}, "slice_s"),
        ({"start": T18 + timedelta(minutes=5)}, "start"),
        ({"start": datetime(2026, 11, 25, 18)}, "start"),
        ({"kwh": ()}, "kwh"),
        ({"points": ()}, "points"),
        ({"points": (CapacityPoint(""),)}, "points[0].congestion_point"),
        ({"points": (CapacityPoint("cp-3"), CapacityPoint("cp-3"))}, "points[1].congestion_point"),
        ({"points": (CapacityPoint("cp-3", -1.0),)}, "points[0].weight"),
        ({"penalty_weight": (1.0,)}, "penalty_weight"),
        ({"penalty_weight": (1.0, 0.0, 1.0, 1.0)}, "penalty_weight[1]"),
        ({"tier_kwh": 0.0}, "tier_kwh"),
        ({"publisher": DSO}, "publisher"),
        ({"published_at": NOW}, "published_at"),
    ],
)
def test_every_bad_field_is_named(change, path) -> None:
    capacity = dataclasses.replace(_capacity(kwh=(1.0, None, 2.0, 0.5)), **change)
    problems = validate_capacity(capacity, max_steps=100)
    assert path in [p.path for p in problems], problems
    store = _fman_store()
    with pytest.raises(InvalidOfferError) as err:
        store.publish_capacity(DSO, capacity)
    assert path in [p.path for p in err.value.problems]
    assert store.capacities(DSO) == []  # nothing stored


def test_limits_are_checked_before_anything_is_stored() -> None:
    store = _fman_store()
    long = _capacity(kwh=(1.0,) * (store.limits.max_window_steps + 1))
    with pytest.raises(InvalidOfferError, match="more than the limit"):
        store.publish_capacity(DSO, long)
    with pytest.raises(InvalidOfferError, match="path"):  # the body names another capacity than the path
        store.publish_capacity(DSO, _capacity(), name="trafo")


capacities = st.builds(
    PublishedCapacity,
    name=st.text(st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=12).filter(str.strip),
    start=st.integers(0, 10_000).map(lambda k: T18 + timedelta(hours=k)),
    slice_s=st.sampled_from([900, 3600]),
    kwh=st.lists(st.none() | st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=30).map(tuple),
    points=st.lists(
        st.builds(CapacityPoint, st.text(min_size=1, max_size=8), st.floats(0, 10)),
        min_size=1,
        max_size=4,
        unique_by=lambda p: p.congestion_point,
    ).map(tuple),
    tier_kwh=st.none() | st.floats(0.01, 100),
)


@settings(max_examples=60, deadline=None)
@given(capacities)
def test_any_valid_capacity_survives_the_wire_the_journal_and_the_planner(capacity) -> None:
    assert validate_capacity(capacity, max_steps=100) == []
    decoded, problems = decode(PublishedCapacity, json.loads(json.dumps(encode(capacity))))
    assert problems == [] and decoded == capacity
    assert read_capacity(write_json(capacity)) == capacity
    planned = published_capacity(capacity)
    limits = np.where(np.isinf(planned.kwh), None, planned.kwh)
    assert tuple(None if v is None else float(v) for v in limits) == capacity.kwh
    assert planned.weights == capacity.weights
    again = planned.as_published()
    assert again.kwh == capacity.kwh and again.points == capacity.points


# -- durability -------------------------------------------------------------------------------
def test_capacities_survive_a_restart(store_urls) -> None:
    url = store_urls.url()
    store = open_store(url, "fman", clock=Clock(NOW))
    store.capacity_book.planner = "fman"
    store.capacity_book.allow([DSO])
    dso = InProcessClient(store, DSO)
    dso.publish_capacity(_capacity("trafo"))
    dso.publish_capacity(_capacity("cp-3"))
    dso.publish_capacity(_capacity("cp-9"))
    dso.publish_capacity(_capacity("trafo", kwh=(9.0, None)))  # replaced: now last in order
    dso.withdraw_capacity("cp-9")
    kept = dso.capacities()
    store.close()
    again = open_store(url, "fman", clock=Clock(NOW))
    try:
        if store_urls.backend == "memory":
            assert again.capacities("operator") == []
        else:
            assert again.capacities(DSO) == kept
            assert [c.name for c in kept] == ["cp-3", "trafo"] and kept[1].kwh == (9.0, None)
    finally:
        again.close()


# -- HTTP, over a real socket --------------------------------------------------------------
@pytest.fixture(scope="module")
def fman_server():
    """A served FMAN (`build_receiver("fman")`) whose tokens name a DSO as grid operator."""
    tokens = {**TOKENS, DSO_TOKEN: DSO, OTHER_TOKEN: OTHER_DSO}
    table = tokens_from_dict({"parties": tokens, "grid_operators": [DSO]})
    store = OfferStore("fman", clock=Clock(NOW), opaque_ids=True)
    app = build_receiver("fman", tokens=table, store=store)
    with ServerThread(app, graceful_s=0.2) as server:
        yield server, store, app


def test_http_publish_answers_201_then_200_and_pages_follow(fman_server) -> None:
    server, store, _ = fman_server
    auth = {"Authorization": f"Bearer {DSO_TOKEN}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as http:
        for k in range(5):
            body = encode(_capacity(f"cp-{k}"))
            assert http.put(f"/capacity/cp-{k}", json=body).status_code == 201
        again = http.put("/capacity/cp-0", json=encode(_capacity("cp-0", kwh=(1.0, None))))
        assert again.status_code == 200 and again.json()["kwh"] == [1.0, None]
        assert again.json()["publisher"] == DSO
        page = http.get("/capacity", params={"limit": 2})
        assert page.status_code == 200 and len(page.json()) == 2 and 'rel="next"' in page.headers["link"]
        client = HttpClient(server.url, DSO_TOKEN, party=DSO, retries=0)
        assert [c.name for c in client.capacities()] == ["cp-1", "cp-2", "cp-3", "cp-4", "cp-0"]
        for k in range(5):
            assert client.withdraw_capacity(f"cp-{k}").name == f"cp-{k}"
        assert client.capacities() == [] and store.capacity_book.in_force() == []
        client.close()


@pytest.mark.parametrize(
    ("token", "body", "status", "path"),
    [
        (TOKEN_P17 := next(iter(TOKENS)), None, 403, None),
        (OTHER_TOKEN, None, 403, None),  # a party, but not a grid operator in the tokens file
        (DSO_TOKEN, {"slice_s": 7}, 422, "slice_s"),
        (DSO_TOKEN, {"kwh": [1.0, "x"]}, 422, "kwh[1]"),
        (DSO_TOKEN, {"kwh": [1e400]}, 422, "kwh[0]"),
        (DSO_TOKEN, {"points": [{"congestion_point": "cp-3", "weight": -2}]}, 422, "points[0].weight"),
        (DSO_TOKEN, {"colour": "red"}, 422, "colour"),
        (DSO_TOKEN, {"name": "other"}, 422, "name"),
        (DSO_TOKEN, {"publisher": DSO}, 422, "publisher"),
    ],
)
def test_http_refusals_name_the_field_and_store_nothing(fman_server, token, body, status, path) -> None:
    server, store, _ = fman_server
    data = {**encode(_capacity("cp-bad")), **(body or {})}
    raw = json.dumps(data).replace("Infinity", "1e400")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        answer = http.put("/capacity/cp-bad", content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    if path is not None:
        assert path in [d["path"] for d in answer.json()["details"]]
    assert store.capacity_book.in_force() == []


def test_a_market_answers_404_to_a_capacity() -> None:
    table = TokenTable.of({DSO_TOKEN: DSO}, grid_operators=[DSO])
    with ServerThread(build_receiver("fmar", tokens=table), graceful_s=0.2) as server:
        client = HttpClient(server.url, DSO_TOKEN, party=DSO, retries=0)
        with pytest.raises(NotFoundError, match="FMAN"):
            client.publish_capacity(_capacity())
        client.close()


def test_the_tokens_file_names_its_grid_operators() -> None:
    with pytest.raises(TokenFileError, match="grid_operators"):
        tokens_from_dict({"parties": TOKENS, "grid_operators": ["nobody"]}, source="t.yaml")
    with pytest.raises(TokenFileError, match="grid_operators"):
        tokens_from_dict({"parties": TOKENS, "grid_operators": "dso"}, source="t.yaml")


# -- the FMAN plans within what was published over HTTP --------------------------------------
def _prices() -> PriceSeries:
    prices = np.full(96, 0.30)
    prices[76:84] = 0.05  # cheap from 19:00 to 21:00: both EVs want those two hours
    return PriceSeries(datetime(2026, 11, 25, tzinfo=UTC), 900, prices)


def _cp3_kwh_per_step(store: OfferStore) -> dict[datetime, float]:
    out: dict[datetime, float] = {}
    for record in store.records((OfferState.ASSIGNED,)):
        s = record.schedule
        for i, e in enumerate(s.energy):
            t = s.start + timedelta(seconds=900 * i)
            out[t] = out.get(t, 0.0) + e
    return out


def test_the_fman_plans_within_a_capacity_published_over_http(fman_server) -> None:
    server, store, app = fman_server
    fman = FlexOfferManager(store, name="fman", params=AggregationParams(max_group_size=1))
    ev17 = HttpClient(server.url, next(t for t, p in TOKENS.items() if p == P17), party=P17, retries=0)
    ev18 = HttpClient(server.url, next(t for t, p in TOKENS.items() if p != P17), party="foss-p018", retries=0)
    dso = HttpClient(server.url, DSO_TOKEN, party=DSO, retries=0)
    ev17.submit(ev_offer(P17))
    ev18.submit(ev_offer("foss-p018"))
    dso.publish_capacity(_capacity(kwh=(3.0,) * 20))  # 3 kWh per step at cp-3, 18:00-23:00
    with app.state.lock:
        result = fman.plan(NOW, _prices())
    assert result.n_assigned == 2
    per_step = _cp3_kwh_per_step(store)
    assert max(per_step.values()) <= 3.0 + 1e-6  # the two EVs charge one after the other

    alone = _fman_store()  # the same offers, no capacity: both charge in the cheap hours at once
    for party in (P17, "foss-p018"):
        InProcessClient(alone, party).submit(ev_offer(party))
    FlexOfferManager(alone, name="fman", params=AggregationParams(max_group_size=1)).plan(NOW, _prices())
    assert max(_cp3_kwh_per_step(alone).values()) > 3.0 + 1e-6
    for client in (ev17, ev18, dso):
        client.close()


def test_an_explicit_capacity_still_overrides_the_published_ones() -> None:
    store = _fman_store()
    InProcessClient(store, DSO).publish_capacity(_capacity(kwh=(0.0,) * 20))
    for party in (P17, "foss-p018"):
        InProcessClient(store, party).submit(ev_offer(party))
    fman = FlexOfferManager(store, name="fman", params=AggregationParams(max_group_size=1))
    none = GridCapacity("none", T18, 900, np.full(20, np.inf), {"cp-3": 1.0})
    result = fman.plan(NOW, _prices(), capacity=[none])
    assert result.n_assigned == 2
    assert max(_cp3_kwh_per_step(store).values()) > 3.0  # the published 0 kWh limit was not used

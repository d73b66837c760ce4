"""Regression tests of issue 14's findings, over real HTTP: no input makes the receiver answer 5xx,
do unbounded work, keep part of a refused request, or hold a connection forever.

One uvicorn server per module serves a fresh app and store per test (`SwitchApp`); every answer
is also checked against the served OpenAPI document (`assert_documented`).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from atp.flexoffer import DefaultSchedule, Measurement, Schedule, encode
from atp.fman import DelegatedContract
from atp.interface import HttpClient, OfferStore, create_app
from atp.interface.http_server import INLINE_BODY_BYTES
from atp.interface.limits import ServiceLimits, connection_options
from atp.interface.serve import ServerThread
from atp.services.providers import ContractBook, bill_provider, store_kpi_provider
from tests.http_support import OPERATOR_TOKEN, TOKEN_OF, TOKENS, Clock, SwitchApp, ev_offer, wait_until
from tests.openapi_support import assert_documented

P17, P18 = "foss-p017", "foss-p018"
AUTH17 = {"Authorization": f"Bearer {TOKEN_OF[P17]}"}
AUTH18 = {"Authorization": f"Bearer {TOKEN_OF[P18]}"}
AUTH_OP = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
SIX_PM = datetime(2026, 11, 25, 18, tzinfo=UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SwitchApp, ServerThread]]:
    switch = SwitchApp()
    with ServerThread(switch, graceful_s=0.5) as srv:
        yield switch, srv


class Receiver:
    """A fresh FMAN store and app behind the module's server, its OpenAPI document, a raw client."""

    def __init__(self, server: tuple[SwitchApp, ServerThread], **options: Any) -> None:
        self.clock = Clock()
        self.store = OfferStore("fman", clock=self.clock)
        book = ContractBook({P17: DelegatedContract(activation_eur_per_kwh=0.1)})
        options.setdefault("kpi", store_kpi_provider(self.store))
        options.setdefault("bill", bill_provider(self.store, book))
        self.app = create_app(
            self.store, tokens=TOKENS, operator_tokens=[OPERATOR_TOKEN], sse_keepalive_s=0.2, **options
        )
        server[0].app = self.app
        self.url = server[1].url
        self.http = httpx.Client(base_url=self.url, timeout=10.0)
        self.doc = self.app.openapi()

    def call(self, method: str, template: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request; its answer must be as the OpenAPI documents it, and never a 5xx."""
        response = self.http.request(method, url, **kwargs)
        assert response.status_code < 500, response.text
        assert_documented(self.doc, method, template, response)
        return response

    def submit(self, issuer: str = P17, **changes: Any) -> dict[str, Any]:
        offer = dataclasses.replace(ev_offer(issuer), **changes)
        auth = AUTH17 if issuer == P17 else AUTH18
        response = self.call("POST", "/flexoffer", "/flexoffer", json=encode(offer), headers=auth)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def receiver(server) -> Iterator[Receiver]:
    r = Receiver(server)
    yield r
    r.http.close()


def refused(response: httpx.Response, status: int, *paths: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "details"}
    if paths:
        assert {d["path"] for d in body["details"]} >= set(paths), body
    return body


def raw_post(r: Receiver, path: str, text: str) -> httpx.Response:
    """POST a JSON text as it is (json= would refuse to write lone surrogates or huge ints)."""
    headers = {**AUTH17, "Content-Type": "application/json"}
    return r.call("POST", path, path, content=text.encode("utf-8", "surrogatepass"), headers=headers)


# -- steps before arrays -----------------------------------------------------------------------
@pytest.mark.parametrize("steps", [10**8, 10**9, 2**53])
def test_a_huge_slice_duration_is_refused_before_any_array_is_built(receiver, steps):
    data = encode(ev_offer())
    data["profiles"][0]["slices"][0]["duration"] = steps
    tracemalloc.start()
    try:
        response = receiver.call("POST", "/flexoffer", "/flexoffer", json=data, headers=AUTH17)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    body = refused(response, 422, "profiles[0].slices")
    assert any(d["rule"] == "limit" and "10000" in d["message"] for d in body["details"])
    assert peak < 20 * 2**20  # a few MiB for the request, not 8 bytes per step
    assert receiver.store.records() == []


# -- the calendar's edges ----------------------------------------------------------------------
def test_an_offer_at_the_end_of_the_calendar_is_refused_naming_the_field(receiver):
    late = datetime(9999, 12, 31, 23, 45, tzinfo=UTC)
    data = encode(ev_offer())
    data["start_before"] = "9999-12-31T23:45:00Z"
    data["assignment_before"] = "0001-01-01T00:00:00+01:00"
    body = refused(receiver.call("POST", "/flexoffer", "/flexoffer", json=data, headers=AUTH17), 422)
    assert {d["path"]: d["rule"] for d in body["details"]} == {"start_before": "time", "assignment_before": "time"}
    # An offer there that reached the store another way (in-process) no longer breaks /kpi for everyone.
    t = late - timedelta(hours=3)
    offer = dataclasses.replace(
        ev_offer(),
        created_at=t - timedelta(hours=1),
        assignment_before=t - timedelta(minutes=15),
        start_after=t,
        start_before=t + timedelta(hours=1),
        default_schedule=DefaultSchedule(t, 0, (2.75,) * 8),
    )
    receiver.clock.now = t - timedelta(hours=1)
    with receiver.app.state.lock:
        receiver.store.submit(P17, offer)
    for auth in (AUTH17, AUTH_OP):
        assert receiver.call("GET", "/kpi", "/kpi", headers=auth).status_code == 200


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1899-12-31T23:59:59Z", "2026-11-25T18:00:00"]
)
def test_times_at_the_edges_of_the_calendar_answer_422_naming_the_field(receiver, text):
    ok = "2026-11-25T18:00:00Z"
    refused(receiver.call("GET", "/flexoffer/{start}/{end}", f"/flexoffer/{text}/{ok}", headers=AUTH17), 422, "from")
    url = f"/timeseries/baseline/{ok}/{text}"
    refused(receiver.call("GET", "/timeseries/{kind}/{start}/{end}", url, headers=AUTH17), 422, "to")
    offer = receiver.submit()
    one = {"flex_offer_id": offer["id"], "meter_id": "M-017", "time": text, "energy": 1.0}
    path = "/flexoffer/measurement"
    refused(receiver.call("POST", path, path, json=[one], headers=AUTH17), 422, "[0].time")


# -- strings, numbers, nesting -------------------------------------------------------------------
def test_a_string_with_an_unpaired_surrogate_is_refused_and_nothing_is_stored(receiver):
    text = json.dumps(encode(ev_offer())).replace('"ev"', '"ev\\ud800"')
    body = refused(raw_post(receiver, "/flexoffer", text), 422, "device")
    assert any(d["rule"] == "unicode" for d in body["details"])
    key = json.dumps(encode(ev_offer()))[:-1] + ', "\\udc00x": 1}'
    body = refused(raw_post(receiver, "/flexoffer", key), 422)
    assert body["details"][0]["path"] == "\\udc00x"  # written escaped: the answer is valid UTF-8
    assert receiver.store.records() == []
    receiver.submit()
    for path in ("/flexoffer", "/flexoffer/stream?follow=false&after=0"):
        assert receiver.http.get(path, headers=AUTH17).status_code == 200
    assert receiver.call("GET", "/kpi", "/kpi", headers=AUTH_OP).status_code == 200


def test_deep_nesting_and_integers_of_thousands_of_digits_answer_422(receiver):
    for text in ("[" * 100_000 + "]" * 100_000, '{"issuer": ' + "[" * 5000 + "]" * 5000 + "}"):
        refused(raw_post(receiver, "/flexoffer", text), 422)
    data = json.dumps(encode(ev_offer()))
    huge = data.replace('"slice_s": 900', '"slice_s": 9' + "0" * 4000)
    refused(raw_post(receiver, "/flexoffer", huge), 422, "slice_s")
    beyond = data.replace('"slice_s": 900', '"slice_s": 9' + "0" * 5000)  # past what the parser reads
    assert "digits" in refused(raw_post(receiver, "/flexoffer", beyond), 422)["error"]
    energy = data.replace("[0.0, 2.75]", "[0.0, 1e308]")
    refused(raw_post(receiver, "/flexoffer", energy), 422, "profiles[0].slices[0].energy[1]")
    refused(raw_post(receiver, "/flexoffer/measurement", "[" * 50_000), 422)
    assert receiver.store.records() == []


@pytest.mark.parametrize("value", [b"\xb2", b"1\xb9", "١٢".encode(), b"12abc", b"-1", b"9" * 40, b"1 2"])
def test_last_event_id_takes_ascii_digits_only(receiver, value):
    headers = {**AUTH17, "Last-Event-ID": value}  # b"\xb2" reads as "²", which str.isdigit() calls a digit
    response = receiver.http.get("/flexoffer/stream", params={"follow": "false"}, headers=headers)
    refused(response, 422, "Last-Event-ID")
    assert_documented(receiver.doc, "GET", "/flexoffer/stream", response)


# -- measurements: all or none, within their offer's period ----------------------------------------
def test_a_measurement_batch_is_stored_whole_or_not_at_all(receiver):
    mine, theirs = receiver.submit(P17), receiver.submit(P18)
    good = {"flex_offer_id": mine["id"], "meter_id": "M-017", "time": "2026-11-25T18:00:00Z", "energy": 1.5}
    path = "/flexoffer/measurement"
    batches = [
        ([good, {**good, "flex_offer_id": theirs["id"]}], 404),  # another party's offer
        ([good, {**good, "time": "2026-11-25T18:07:00Z"}], 422),  # off the offer's grid
        ([good, {**good, "time": "1000-01-01T00:00:00Z"}], 422),  # the year 1000
        ([good, {**good, "time": "2026-12-30T00:00:00Z"}], 422),  # beyond the offer's period and margin
    ]
    for batch, status in batches:
        refused(receiver.call("POST", path, path, json=batch, headers=AUTH17), status)
    assert all(not r.measurements for r in receiver.store.records())
    assert receiver.call("POST", path, path, json=[good, good], headers=AUTH17).json() == {"stored": 2}


def test_a_measurement_in_the_year_1000_no_longer_makes_every_bill_build_millions_of_steps(receiver):
    offer = receiver.submit()
    with receiver.app.state.lock:  # in-process, where the HTTP checks do not run
        receiver.store.post_measurements(
            P17, [Measurement(offer["id"], "M-017", datetime(1000, 1, 1, tzinfo=UTC), 1.0)]
        )
    tracemalloc.start()
    try:
        bill = receiver.call("GET", "/bill", "/bill", headers=AUTH17)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bill.status_code == 200
    (skipped,) = bill.json()["not_billed"]
    assert skipped["flex_offer_id"] == offer["id"] and "more than a bill period holds" in skipped["reason"]
    assert peak < 20 * 2**20


def test_measurements_per_request_are_limited(server):
    r = Receiver(server, limits=ServiceLimits(max_measurements_per_request=3))
    offer = r.submit()
    one = {"flex_offer_id": offer["id"], "meter_id": "M-017", "time": "2026-11-25T18:00:00Z", "energy": 1.5}
    path = "/flexoffer/measurement"
    body = refused(r.call("POST", path, path, json=[one] * 4, headers=AUTH17), 422)
    assert "limit of 3" in body["details"][0]["message"]
    refused(r.call("POST", path, path, json=[], headers=AUTH17), 422)
    r.http.close()


# -- pages ---------------------------------------------------------------------------------------
def test_every_list_is_paged_and_the_client_follows_the_pages(server):
    r = Receiver(server, limits=ServiceLimits(default_page_size=7, max_page_size=20))
    ids = [r.submit()["id"] for _ in range(17)]
    r.submit(P18)
    first = r.call("GET", "/flexoffer", "/flexoffer", headers=AUTH17)
    assert [o["id"] for o in first.json()] == ids[:7]
    seen, response = [], first
    while True:
        seen += [o["id"] for o in response.json()]
        if "next" not in response.links:
            break
        response = r.call("GET", "/flexoffer", response.links["next"]["url"], headers=AUTH17)
    assert seen == ids
    window = "/flexoffer/2026-11-25T00:00Z/2026-11-26T00:00Z"
    page = r.call("GET", "/flexoffer/{start}/{end}", window, params={"limit": 20}, headers=AUTH17)
    assert len(page.json()) == 17 and "next" not in page.links
    client = HttpClient(r.url, TOKEN_OF[P17], party=P17)
    assert [o.id for o in client.active()] == ids
    assert len(client.between(SIX_PM - timedelta(days=1), SIX_PM + timedelta(days=1))) == 17
    assert client.requests() == []
    client.close()
    for params, path in (({"limit": 0}, "limit"), ({"limit": 21}, "limit"), ({"cursor": "@@not-a-cursor"}, "cursor")):
        refused(r.call("GET", "/flexoffer", "/flexoffer", params=params, headers=AUTH17), 422, path)
    assert len(r.call("GET", "/request", "/request", params={"limit": 20}, headers=AUTH17).json()) == 0
    r.http.close()


def test_offers_per_party_are_limited_and_a_retry_still_gets_its_first_answer(server):
    r = Receiver(server, limits=ServiceLimits(max_active_offers_per_party=2))
    r.submit()
    key = {**AUTH17, "Idempotency-Key": "second"}
    second = r.call("POST", "/flexoffer", "/flexoffer", json=encode(ev_offer()), headers=key)
    assert second.status_code == 201
    assert (
        "2 active offers"
        in refused(r.call("POST", "/flexoffer", "/flexoffer", json=encode(ev_offer()), headers=AUTH17), 409)["error"]
    )
    assert r.call("POST", "/flexoffer", "/flexoffer", json=encode(ev_offer()), headers=key).json() == second.json()
    r.submit(P18)  # the quota is per party
    r.call("DELETE", "/flexoffer/{offer_id}", f"/flexoffer/{second.json()['id']}", headers=AUTH17)
    r.submit()  # a withdrawn offer frees its place
    r.http.close()


# -- off the event loop, and timeouts ------------------------------------------------------------
def test_a_slow_kpi_runs_off_the_event_loop_while_the_server_answers_others(server):
    started, release = threading.Event(), threading.Event()

    def slow_kpi(party: str | None) -> dict[str, Any]:
        started.set()
        assert release.wait(10)
        return {"scope": party or "all"}

    r = Receiver(server, kpi=slow_kpi)
    answers: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answers.append(r.http.get("/kpi", headers=AUTH_OP)))
    worker.start()
    try:
        assert started.wait(10)
        with httpx.Client(base_url=r.url, timeout=5.0) as other:  # answered while the KPI is still at work
            assert other.get("/flexoffer", headers={"Authorization": "Bearer no-such-token-0123"}).status_code == 401
            assert other.get("/openapi.json").status_code == 200
    finally:
        release.set()
        worker.join(10)
    assert answers[0].status_code == 200 and answers[0].json() == {"scope": "all"}
    r.http.close()


def test_a_small_offer_waits_for_a_store_held_by_another_request_without_holding_up_the_loop(server):
    started, release = threading.Event(), threading.Event()

    def slow_kpi(party: str | None) -> dict[str, Any]:
        started.set()  # called with the store's lock held
        assert release.wait(10)
        return {"scope": party or "all"}

    r = Receiver(server, kpi=slow_kpi)
    body = json.dumps(encode(ev_offer())).encode()
    assert len(body) <= INLINE_BODY_BYTES  # the offer that is stored on the event loop when it can be
    answers: dict[str, httpx.Response] = {}
    kpi = threading.Thread(target=lambda: answers.update(kpi=r.http.get("/kpi", headers=AUTH_OP)))
    kpi.start()
    try:
        assert started.wait(10)
        headers = {**AUTH17, "Content-Type": "application/json"}
        post = threading.Thread(
            target=lambda: answers.update(
                post=httpx.post(f"{r.url}/flexoffer", content=body, headers=headers, timeout=10)
            )
        )
        post.start()
        with httpx.Client(base_url=r.url, timeout=5.0) as other:  # the loop answers meanwhile
            assert other.get("/openapi.json").status_code == 200
        assert "post" not in answers and r.store.records() == []  # the offer waits for the store
    finally:
        release.set()
        kpi.join(10)
    post.join(10)
    assert answers["post"].status_code == 201, answers["post"].text
    assert [rec.offer.id for rec in r.store.records()] == [answers["post"].json()["id"]]
    r.http.close()


def test_a_slow_body_answers_408(server):
    r = Receiver(server, limits=ServiceLimits(body_timeout_s=0.3))
    with socket.create_connection(("127.0.0.1", server[1].port), timeout=10) as s:
        head = f"POST /flexoffer HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH17['Authorization']}\r\n"
        s.sendall((head + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode())
        answer = read_until_closed(s).decode()
    assert answer.startswith("HTTP/1.1 408") and '"error"' in answer
    assert r.store.records() == []
    r.http.close()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_half_open_connections_time_out(unused_port, http):
    store = OfferStore("fman", clock=Clock())
    config = uvicorn.Config(
        create_app(store, tokens=TOKENS),
        host="127.0.0.1",
        port=unused_port,
        lifespan="off",
        log_level="warning",
        **connection_options(header_timeout_s=0.3, idle_timeout_s=1, http=http),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, timeout_s=10)
    try:
        for sent in (b"", b"GET /flexoffer HTTP/1.1\r\nHost: x\r\n", b"G"):
            with socket.create_connection(("127.0.0.1", unused_port), timeout=10) as s:
                s.sendall(sent)
                assert s.recv(100) == b""  # closed by the server, not left open until the client's timeout
        with socket.create_connection(("127.0.0.1", unused_port), timeout=10) as s:  # a whole request, then idle
            s.sendall(b"GET /flexoffer HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_until_closed(s).startswith(b"HTTP/1.1 401")  # then closed by the idle timeout
        with socket.create_connection(("127.0.0.1", unused_port), timeout=10) as s:  # then half of a second head
            s.sendall(b"GET /flexoffer HTTP/1.1\r\nHost: x\r\n\r\nGET /flexoffer HTTP/1.1\r\n")
            assert read_until_closed(s).count(b"HTTP/1.1 401") == 1
        with socket.create_connection(("127.0.0.1", unused_port), timeout=10) as s:  # a head trickling in
            s.sendall(b"GET /flexoffer HTTP/1.1\r\nX-Slow: ")
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                for _ in range(100):  # 10 s of a byte every 0.1 s: closed long before
                    s.sendall(b"a")
                    time.sleep(0.1)
    finally:
        server.should_exit = True
        thread.join(10)


def read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout bounds it)."""
    chunks = []
    while chunk := s.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_schedule_assigned_in_process_is_served_within_the_limits(receiver):
    offer = receiver.submit()
    with receiver.app.state.lock:
        receiver.store.assign(offer["id"], Schedule(offer["id"], SIX_PM, 0, (2.75,) * 8))
    got = receiver.call("GET", "/flexoffer/{offer_id}", f"/flexoffer/{offer['id']}", headers=AUTH17)
    assert got.json()["schedule"]["energy"] == [2.75] * 8
    assert receiver.call("GET", "/kpi", "/kpi", headers=AUTH17).json()["n_assigned"] == 1

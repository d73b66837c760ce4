"""The HTTP binding over a real socket: status codes, error bodies, SSE resume, providers, retries, TLS, serve.

One uvicorn server per module serves a fresh app and store per test (`SwitchApp`); the TLS
test runs `goflex-atp serve` as a subprocess with a self-signed certificate made by openssl.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from atp.cli import main
from atp.flexoffer import DefaultSchedule, FlexOffer, Measurement, Schedule, encode
from atp.fman import DelegatedContract
from atp.foa.errors import CommunicationError
from atp.interface import HttpClient, InterfaceError, OfferStore, UnauthorizedError, create_app
from atp.interface.limits import ServiceLimits
from atp.interface.serve import ServerThread
from atp.services.providers import ContractBook, bill_provider, contract_provider, store_kpi_provider
from tests.http_support import OPERATOR_TOKEN, TOKEN_OF, TOKENS, Clock, SwitchApp, ev_offer, wait_until

ROOT = Path(__file__).resolve().parents[1]
P17, P18 = "foss-p017", "foss-p018"
AUTH17 = {"Authorization": f"Bearer {TOKEN_OF[P17]}"}
AUTH18 = {"Authorization": f"Bearer {TOKEN_OF[P18]}"}
AUTH_OP = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
SIX_PM = datetime(2026, 11, 25, 18, tzinfo=UTC)
Providers = Callable[[OfferStore], dict[str, Any]]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SwitchApp, ServerThread]]:
    switch = SwitchApp()
    with ServerThread(switch, graceful_s=0.5) as srv:
        yield switch, srv


class Receiver:
    """A fresh store and app behind the module's server, with a raw httpx client."""

    def __init__(self, switch: SwitchApp, url: str, providers: Providers | None = None, **options: Any) -> None:
        self.clock = Clock()
        self.store = OfferStore("fman", clock=self.clock)
        options.update(providers(self.store) if providers is not None else {})
        self.app = create_app(
            self.store, tokens=TOKENS, operator_tokens=[OPERATOR_TOKEN], sse_keepalive_s=0.2, **options
        )
        switch.app = self.app
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=5.0)

    def submit(self, issuer: str = P17) -> dict[str, Any]:
        response = self.http.post("/flexoffer", json=encode(ev_offer(issuer)), headers=TOKEN_HEADERS[issuer])
        assert response.status_code == 201, response.text
        return response.json()


TOKEN_HEADERS = {P17: AUTH17, P18: AUTH18}


@pytest.fixture
def receiver(server) -> Iterator[Receiver]:
    r = Receiver(server[0], server[1].url)
    yield r
    r.http.close()


def make_receiver(server, providers: Providers | None = None, **options: Any) -> Receiver:
    return Receiver(server[0], server[1].url, providers, **options)


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "details"} and body["error"]
    assert "Traceback" not in response.text
    return body


# -- auth and error bodies ---------------------------------------------------------------------
def test_no_token_a_bad_token_or_another_scheme_answers_401(receiver):
    bad = ({}, {"Authorization": "Bearer not-a-token-of-anyone"}, {"Authorization": f"Basic {OPERATOR_TOKEN}"})
    for headers in bad:
        response = receiver.http.get("/flexoffer", headers=headers)
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert receiver.http.get("/kpi").status_code == 401


def test_another_partys_offer_answers_404_and_issuing_for_it_403(receiver):
    offer = receiver.submit(P17)
    for method in ("GET", "DELETE"):
        body = assert_error(receiver.http.request(method, f"/flexoffer/{offer['id']}", headers=AUTH18), 404)
        assert offer["id"] in body["error"]
    assert_error(receiver.http.post("/flexoffer", json=encode(ev_offer(P17)), headers=AUTH18), 403)
    assert receiver.http.get(f"/flexoffer/{offer['id']}", headers=AUTH_OP).json()["id"] == offer["id"]


def test_422_lists_every_problem_with_its_json_path(receiver):
    data = encode(ev_offer())
    data["slice_s"] = "900"
    data["profiles"][0]["slices"][0]["energy"] = [3.0, "x"]
    data["colour"] = "red"
    body = assert_error(receiver.http.post("/flexoffer", json=data, headers=AUTH17), 422)
    paths = {d["path"] for d in body["details"]}
    assert paths == {"slice_s", "profiles[0].slices[0].energy[1]", "colour"}
    assert all(d["message"] and d["rule"] for d in body["details"])
    semantic = dataclasses.replace(ev_offer(), slice_s=7000, start_before_duration_s=3600)
    body = assert_error(receiver.http.post("/flexoffer", json=encode(semantic), headers=AUTH17), 422)
    assert {"slice_s", "start_before"} <= {d["path"] for d in body["details"]}
    assert receiver.store.records() == []


def test_malformed_requests_answer_json_errors_never_a_trace(server):
    r = make_receiver(server, limits=ServiceLimits(max_body_bytes=4000), kpi=lambda party: 1 / 0)
    assert_error(r.http.post("/flexoffer", content=b"{not json", headers=AUTH17), 422)
    assert_error(r.http.post("/flexoffer", headers=AUTH17), 422)
    assert_error(r.http.post("/flexoffer", content=b"[" + b"1," * 3000 + b"1]", headers=AUTH17), 413)
    assert "no route GET /nowhere" in assert_error(r.http.get("/nowhere", headers=AUTH17), 404)["error"]
    assert_error(r.http.patch("/flexoffer", headers=AUTH17), 405)
    url = "/timeseries/baseline/2026-11-25T18:00Z/2026-11-25T19:00Z?slice_s=x"
    body = assert_error(r.http.get(url, headers=AUTH17), 422)
    assert body["details"][0]["path"] == "slice_s"
    assert assert_error(r.http.get("/kpi", headers=AUTH17), 500)["error"] == "internal server error"
    assert_error(r.http.post("/flexoffer", json=encode(ev_offer()), headers={**AUTH17, "Idempotency-Key": ""}), 422)
    r.http.close()


def test_post_answers_201_with_location_and_an_idempotency_key_replays_the_first_answer(receiver):
    headers = {**AUTH17, "Idempotency-Key": "day-1-ev"}
    first = receiver.http.post("/flexoffer", json=encode(ev_offer()), headers=headers)
    again = receiver.http.post("/flexoffer", json=encode(ev_offer()), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and first.json()["state"] == "accepted"
    assert first.headers["location"] == f"/flexoffer/{first.json()['id']}"
    assert len(receiver.store.records()) == 1
    # The key belongs to its party: another party's identical key stores its own offer.
    other_headers = {**AUTH18, "Idempotency-Key": "day-1-ev"}
    other = receiver.http.post("/flexoffer", json=encode(ev_offer(P18)), headers=other_headers)
    assert other.json()["id"] != first.json()["id"]


def test_put_then_409_and_delete_then_409(receiver):
    offer = receiver.submit()
    path = f"/flexoffer/{offer['id']}"
    changed = encode(dataclasses.replace(ev_offer(), device="ev-2"))
    put = receiver.http.put(path, json=changed, headers=AUTH17)
    assert put.status_code == 200 and put.json()["device"] == "ev-2"
    with receiver.app.state.lock:
        receiver.store.assign(offer["id"], Schedule(offer["id"], SIX_PM, 0, (2.75,) * 8))
    assert "assigned" in assert_error(receiver.http.put(path, json=changed, headers=AUTH17), 409)["error"]
    receiver.clock.now = datetime(2026, 11, 25, 18, 5, tzinfo=UTC)
    assert_error(receiver.http.delete(path, headers=AUTH17), 409)
    got = receiver.http.get(path, headers=AUTH17).json()
    assert got["state"] == "assigned" and got["schedule"]["energy"] == [2.75] * 8


# -- server-sent events ------------------------------------------------------------------------
def read_messages(lines: Iterator[str], n: int) -> list[dict[str, str]]:
    """The next n SSE messages (comments skipped) as field dicts."""
    out: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines:
        if line == "":
            if current:
                out.append(current)
                current = {}
            if len(out) == n:
                return out
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value
    return out


def test_the_stream_sends_one_event_per_change_and_last_event_id_resumes_without_loss(receiver):
    with receiver.http.stream("GET", "/flexoffer/stream", headers=AUTH17) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "id: 0"  # the position the stream starts after
        offer = receiver.submit(P17)
        receiver.submit(P18)  # another party's change: not in this stream
        with receiver.app.state.lock:
            receiver.store.reject(offer["id"], "not worth trading")
        messages = read_messages(lines, 2)
    # The caller's own sequence: P18's offer leaves no gap that would tell of it.
    assert [(m["id"], m["event"]) for m in messages] == [("1", "accepted"), ("2", "rejected")]
    data = json.loads(messages[1]["data"])
    assert data["id"] == offer["id"] and data["state"] == "rejected"
    # Changes while disconnected arrive on reconnection with Last-Event-ID.
    second = receiver.submit(P17)
    with receiver.app.state.lock:
        receiver.store.assign(second["id"], Schedule(second["id"], SIX_PM, 0, (2.75,) * 8))
    backlog = receiver.http.get("/flexoffer/stream?follow=false", headers={**AUTH17, "Last-Event-ID": "1"})
    kinds = [line.removeprefix("event: ") for line in backlog.text.splitlines() if line.startswith("event: ")]
    assert kinds == ["rejected", "accepted", "assigned"]
    assert_error(receiver.http.get("/flexoffer/stream", headers={**AUTH17, "Last-Event-ID": "x"}), 422)


def test_a_subscription_survives_a_receiver_restart_without_losing_events():
    clock = Clock()
    store = OfferStore("fman", clock=clock)
    first = ServerThread(create_app(store, tokens=TOKENS, sse_keepalive_s=0.2), graceful_s=0.2).start()
    port = first.port
    client = HttpClient(first.url, TOKEN_OF[P17], party=P17, backoff_s=0.05)
    seen: list[Any] = []
    stop = client.subscribe(seen.append)
    offer = client.submit(ev_offer())
    assert wait_until(lambda: len(seen) == 1)
    first.stop()
    store.assign(offer.id, Schedule(offer.id, datetime(2026, 11, 25, 18, tzinfo=UTC), 0, (2.75,) * 8))
    with ServerThread(create_app(store, tokens=TOKENS, sse_keepalive_s=0.2), port=port, graceful_s=0.2) as second:
        assert wait_until(lambda: len(seen) == 2, timeout_s=15)
        client.withdraw(offer.id)
        assert wait_until(lambda: len(seen) == 3)
        stop()
        client.close()
        assert second.port == port
    assert [e.kind for e in seen] == ["accepted", "assigned", "withdrawn"]
    assert seen == store.events(P17)


# -- measurements, time series -----------------------------------------------------------------
def test_measurements_one_or_a_list_and_every_bad_one_listed(receiver):
    offer = receiver.submit()
    one = {"flex_offer_id": offer["id"], "meter_id": "M-017", "time": "2026-11-25T18:00:00Z", "energy": 1.5}
    response = receiver.http.post("/flexoffer/measurement", json=one, headers=AUTH17)
    assert response.status_code == 201 and response.json() == {"stored": 1}
    two = [{**one, "time": "2026-11-25T18:15:00Z"}, {**one, "energy": "much"}, {**one, "time": "18:30"}]
    body = assert_error(receiver.http.post("/flexoffer/measurement", json=two, headers=AUTH17), 422)
    assert [d["path"] for d in body["details"]] == ["[1].energy", "[2].time"]
    assert_error(receiver.http.post("/flexoffer/measurement", json=one, headers=AUTH18), 404)


def test_time_series_answer_start_slice_and_values(receiver):
    receiver.submit()
    url = "/timeseries/baseline/2026-11-25T18:00:00Z/2026-11-25T19:00:00Z"
    assert receiver.http.get(url, params={"slice_s": 1800}, headers=AUTH17).json() == {
        "start": "2026-11-25T18:00:00Z",
        "slice_s": 1800,
        "values": [5.5, 5.5],
    }
    assert receiver.http.get(url, headers=AUTH17).json()["slice_s"] == 900
    assert_error(receiver.http.get(url, params={"slice_s": 0}, headers=AUTH17), 422)
    body = assert_error(receiver.http.get("/timeseries/baseline/yesterday/2026-11-25T19:00Z", headers=AUTH17), 422)
    assert body["details"][0]["path"] == "from"
    long = "/timeseries/baseline/2026-01-01T00:00Z/2027-01-01T00:00Z"
    assert "limit" in assert_error(receiver.http.get(long, params={"slice_s": 60}, headers=AUTH17), 422)["error"]
    assert_error(receiver.http.get("/timeseries/price/2026-11-25T18:00Z/2026-11-25T19:00Z", headers=AUTH17), 404)


# -- KPIs, contract, bill ----------------------------------------------------------------------
def test_kpi_is_scoped_to_the_party_and_the_operator_sees_everything(server):
    r = make_receiver(server)
    assert "serves no /kpi" in assert_error(r.http.get("/kpi", headers=AUTH17), 404)["error"]
    r.http.close()
    r = make_receiver(server, lambda store: {"kpi": store_kpi_provider(store)})
    offer = r.submit(P17)
    r.submit(P18)
    with r.app.state.lock:
        r.store.assign(offer["id"], Schedule(offer["id"], datetime(2026, 11, 25, 19, tzinfo=UTC), 0, (2.75,) * 8))
    mine = r.http.get("/kpi", headers=AUTH17).json()
    assert mine["scope"] == P17 and mine["n_offers"] == 1 and mine["n_assigned"] == 1
    assert mine["offered_flexible_kwh"] == pytest.approx(22.0) and mine["assigned_kwh"] == pytest.approx(22.0)
    assert mine["adaptation_kwh"] == pytest.approx(22.0)  # moved one hour: 4 steps off, 4 steps on
    assert mine["offers_by_state"]["assigned"] == 1
    d21 = mine["d21"]  # the FMAN's D2.1 7.6 KPIs over the hours the offer covers
    assert d21["scope"] == P17 and d21["participants"] == 1
    assert sum(abs(v) for v in d21["hourly_adaptation_projected_mwh"]) == pytest.approx(0.022)
    assert sum(d21["hourly_adaptation_projected_mwh"]) == pytest.approx(0.0, abs=1e-9)  # shifted, not shed
    assert set(d21["extrapolated"]["projections"]) == {"x10", "x100", "x1000"}  # hours, not a year: flagged
    everything = r.http.get("/kpi", headers=AUTH_OP).json()
    assert everything["scope"] == "all" and everything["n_offers"] == 2 and everything["n_parties"] == 2
    assert r.http.get("/kpi", params={"party": P18}, headers=AUTH_OP).json()["n_offers"] == 1
    assert_error(r.http.get("/kpi", params={"party": P18}, headers=AUTH17), 404)
    r.http.close()


def test_contract_and_bill_come_from_the_fman_contracts_and_settlement(server):
    book = ContractBook({P17: DelegatedContract(activation_eur_per_kwh=0.1)})
    r = make_receiver(server, lambda store: {"contract": contract_provider(book), "bill": bill_provider(store, book)})
    client = HttpClient(r.url, TOKEN_OF[P17], party=P17)
    offer = client.submit(ev_offer())
    start = datetime(2026, 11, 25, 19, tzinfo=UTC)
    with r.app.state.lock:
        r.store.assign(offer.id, Schedule(offer.id, start, 0, (2.75,) * 8))
    metered = [Measurement(offer.id, "M-017", start + timedelta(minutes=15 * k), 2.75) for k in range(8)]
    client.post_measurements(metered)
    assert client.contract() == {
        "party": P17,
        "receiver": "fman",
        "contract": dataclasses.asdict(book.parties[P17]) | {"kind": "delegated"},
    }
    bill = client.bill()
    assert bill["contract_kind"] == "delegated" and bill["not_billed"] == []
    (period,) = bill["periods"]
    assert period["flex_offer_id"] == offer.id and period["period_start"] == "2026-11-25T18:00:00Z"
    # followed the schedule exactly: 11 kWh moved one hour later, paid once (where it landed)
    assert period["delivered_adaptation_kwh"] == pytest.approx(11.0)
    assert period["activation_cents"] == 110 and bill["total_cents"] == bill["predicted_total_cents"] == 110
    assert r.http.get("/bill", params={"party": P17}, headers=AUTH_OP).json() == bill
    assert "?party=" in assert_error(r.http.get("/bill", headers=AUTH_OP), 422)["error"]
    assert "no contract" in assert_error(r.http.get("/contract", headers=AUTH18), 404)["error"]
    client.close()
    r.http.close()


# -- the client: retries only where safe ---------------------------------------------------------
class LoseReply(httpx.BaseTransport):
    """Delivers every request, but loses the first reply to `method` (the receiver did the work)."""

    def __init__(self, method: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.method = method
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == self.method:
            self.sent += 1
            if self.sent == 1:
                response.read()
                response.close()
                raise httpx.ReadError("the reply was lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_submission_whose_reply_is_lost_is_retried_and_stored_once(receiver):
    transport = LoseReply("POST")
    client = HttpClient(receiver.url, TOKEN_OF[P17], party=P17, transport=transport, backoff_s=0.01)
    seen: list[Any] = []
    stop = client.subscribe(seen.append)
    offer = client.submit(ev_offer())
    assert transport.sent == 2 and len(receiver.store.records()) == 1
    assert wait_until(lambda: len(seen) == 1) and seen[0].offer == offer
    stop()  # the subscription leaves the caller's transport open
    assert client.get(offer.id) == offer
    client.close()


def test_a_put_whose_reply_is_lost_is_not_retried(receiver):
    offer = receiver.submit()
    transport = LoseReply("PUT")
    client = HttpClient(receiver.url, TOKEN_OF[P17], party=P17, transport=transport, backoff_s=0.01)
    with pytest.raises(CommunicationError):
        client.update(offer["id"], ev_offer())
    assert transport.sent == 1
    client.close()


def test_an_unreachable_receiver_raises_communication_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", TOKEN_OF[P17], party=P17, retries=1, backoff_s=0.01, timeout_s=1)
    with pytest.raises(CommunicationError):
        client.active()
    with pytest.raises(CommunicationError):
        client.subscribe(lambda event: None)
    client.close()


def test_a_refused_subscription_raises_the_refusal(receiver):
    client = HttpClient(receiver.url, "not-a-token-of-anyone", party=P17)
    with pytest.raises(UnauthorizedError):
        client.subscribe(lambda event: None)
    client.close()


def test_other_refusals_keep_their_status(server):
    r = make_receiver(server, limits=ServiceLimits(max_body_bytes=100))
    client = HttpClient(r.url, TOKEN_OF[P17], party=P17)
    with pytest.raises(InterfaceError) as info:
        client.submit(ev_offer())
    assert info.value.status == 413
    client.close()
    r.http.close()


# -- goflex-atp serve --------------------------------------------------------------------------
def shifted(offer: FlexOffer, start: datetime) -> FlexOffer:
    """The offer moved so that its window opens at `start` (the serve test runs on wall-clock time)."""
    assert offer.start_after is not None and offer.start_before is not None and offer.default_schedule is not None
    delta = start - offer.start_after
    return dataclasses.replace(
        offer,
        created_at=None,
        assignment_before=start - timedelta(minutes=15),
        start_after=start,
        start_before=offer.start_before + delta,
        default_schedule=DefaultSchedule(start, offer.default_schedule.profile, offer.default_schedule.energy),
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is needed to make a test certificate")
def test_serve_runs_an_fman_over_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    tokens = write(tmp_path / "tokens.yaml", f"parties:\n  {TOKEN_OF[P17]}: {P17}\noperators:\n  - {OPERATOR_TOKEN}\n")
    contracts = write(tmp_path / "contracts.yaml", "default:\n  kind: direct\n  price_eur_per_kwh_deviation: 0.2\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "atp.cli", "serve", "--role", "fman", "--port", str(port), "--tokens", str(tokens)]
    command += ["--contracts", str(contracts), "--certfile", str(cert), "--keyfile", str(key), "--log-level", "warning"]
    command += ["--store", f"sqlite:///{tmp_path / 'fman.db'}"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(cert))
    client = HttpClient(url, TOKEN_OF[P17], party=P17, verify=trusted, retries=0, timeout_s=2)
    try:

        def up() -> bool:
            try:
                client.kpi()
            except CommunicationError:
                return proc.poll() is not None
            return True

        assert wait_until(up, timeout_s=30) and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
        offer = client.submit(shifted(ev_offer(), start))
        assert client.get(offer.id).state.value == "accepted"
        assert client.kpi()["n_offers"] == 1
        assert client.contract()["contract"]["kind"] == "direct"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/kpi", headers=AUTH17, timeout=2)
        untrusting = HttpClient(url, TOKEN_OF[P17], party=P17, retries=0, timeout_s=2)
        with pytest.raises(CommunicationError):
            untrusting.kpi()
        untrusting.close()
    finally:
        client.close()
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert f"serving fman on https://127.0.0.1:{port}" in out and f"store sqlite:///{tmp_path / 'fman.db'}" in out
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("parties:\n  tok: p1\n", "tokens.yaml: parties: the token of party 'p1' has 3 characters; use at least 16"),
        ("partys:\n  x: y\n", "tokens.yaml: partys: is not a known key (known: parties, operators, grid_operators)"),
        (f"parties:\n  {TOKEN_OF[P17]}: operator\n", "tokens.yaml: parties: the party name 'operator' is reserved"),
        ("operators: 3\n", "tokens.yaml: operators: must be a list of tokens"),
        ("parties: [\n", "tokens.yaml: is not valid YAML at line 2"),
        ("{}\n", "tokens.yaml: lists no tokens"),
    ],
)
def test_serve_names_the_file_and_key_of_a_bad_tokens_file(tmp_path, capsys, text, message):
    path = write(tmp_path / "tokens.yaml", text)
    assert main(["serve", "--role", "fman", "--tokens", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("goflex-atp: ") and message in err and err.count("\n") == 1
    assert "tok:" not in err and TOKEN_OF[P17] not in err  # a token is a secret: never printed


def test_serve_refuses_bad_contracts_and_tls_options_in_one_sentence(tmp_path, capsys):
    tokens = write(tmp_path / "tokens.yaml", f"parties:\n  {TOKEN_OF[P17]}: {P17}\n")
    bad = write(tmp_path / "contracts.yaml", "parties:\n  foss-p017: {kind: delegated, activation_eur: 0.1}\n")
    good = write(tmp_path / "good.yaml", "default: {kind: direct}\n")
    cases = [
        (["--role", "fman", "--contracts", str(bad)], "contracts.yaml: parties.foss-p017: contract field 'activation_"),
        (["--role", "fmar", "--contracts", str(good)], "--contracts: a market (fmar) holds no contracts"),
        (["--role", "fman", "--certfile", str(tokens)], "--certfile and --keyfile go together"),
        (["--role", "fman", "--certfile", str(tokens), "--keyfile", str(tokens)], "not a PEM certificate"),
        (["--role", "fman", "--port", "70000"], "--port 70000: must lie in 0..65535"),
        (["--role", "fman", "--tokens", str(tmp_path / "none.yaml")], "none.yaml: no such tokens file"),
    ]
    for args, message in cases:
        argv = ["serve", "--tokens", str(tokens), *args] if "--tokens" not in args else ["serve", *args]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_serve_on_a_busy_port_exits_1(tmp_path):
    tokens = write(tmp_path / "tokens.yaml", f"parties:\n  {TOKEN_OF[P17]}: {P17}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = ["serve", "--role", "fmar", "--port", str(port), "--tokens", str(tokens), "--log-level", "critical"]
        argv += ["--store", f"sqlite:///{tmp_path / 'fmar.db'}"]
        assert main(argv) == 1

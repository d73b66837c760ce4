"""The served OpenAPI tells the truth: every route, body, status, the bearer scheme; schemathesis finds no 5xx.

The property test runs schemathesis over `GET /openapi.json` of a real uvicorn server on a
socket: for every operation, request bodies, parameters and headers generated from the
documented schemas (positive: fitting them; negative: breaking them), each answer checked for
no server error, a documented status, content type and headers, and a body the documented
schema accepts. The examples are bounded and drawn from a fixed seed (printed), so a run in CI
repeats exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from atp.flexoffer import Measurement, Schedule, encode
from atp.fman import DelegatedContract
from atp.interface import OfferStore, create_app
from atp.interface.openapi import OPERATIONS
from atp.interface.serve import ServerThread
from atp.services.providers import ContractBook, bill_provider, contract_provider, store_kpi_provider
from tests.http_support import OPERATOR_TOKEN, TOKEN_OF, TOKENS, Clock, ev_offer
from tests.openapi_support import assert_documented

P17, P18 = "foss-p017", "foss-p018"
SEED = 20261202
EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def receiver_app() -> tuple[Any, OfferStore]:
    """An FMAN with every provider, two parties' offers, one assigned and metered."""
    store = OfferStore("fman", clock=Clock())
    book = ContractBook({P17: DelegatedContract(activation_eur_per_kwh=0.1)})
    app = create_app(
        store,
        tokens=TOKENS,
        operator_tokens=[OPERATOR_TOKEN],
        kpi=store_kpi_provider(store),
        contract=contract_provider(book),
        bill=bill_provider(store, book),
        sse_keepalive_s=0.2,
    )
    offer = store.submit(P17, ev_offer(P17))
    store.submit(P18, ev_offer(P18))
    start = datetime(2026, 11, 25, 18, tzinfo=UTC)
    store.assign(offer.id or "", Schedule(offer.id or "", start, 0, (2.75,) * 8))
    store.post_measurements(
        P17, [Measurement(offer.id or "", "M-017", start + timedelta(minutes=15 * k), 2.0) for k in range(4)]
    )
    return app, store


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, OfferStore, dict[str, Any]]]:
    app, store = receiver_app()
    with ServerThread(app, graceful_s=0.2) as srv:
        doc = httpx.get(f"{srv.url}/openapi.json", timeout=5).json()
        yield srv.url, store, doc


def test_every_route_is_documented_and_every_documented_operation_is_served():
    app, _ = receiver_app()
    served = {
        (method.lower(), route.path) for route in app.routes if isinstance(route, APIRoute) for method in route.methods
    }
    assert served == set(OPERATIONS)
    doc = app.openapi()
    assert {(m, p) for p, item in doc["paths"].items() for m in item} == served


def test_bodies_security_errors_and_the_event_stream_are_described():
    app, _ = receiver_app()
    doc = app.openapi()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One token per party (spec/interface.md).",
    }
    schemas = doc["components"]["schemas"]
    assert {"FlexOffer", "Measurement", "Schedule", "FlexRequest", "Error"} <= set(schemas)
    assert schemas["Error"]["required"] == ["error", "details"]
    assert schemas["Error"]["properties"]["details"]["items"]["required"] == ["path", "message", "rule"]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert "401" in operation["responses"] and "500" in operation["responses"]
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            if method in ("post", "put"):
                assert operation["requestBody"]["required"] is True, (method, path)
    body = doc["paths"]["/flexoffer"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/FlexOffer"}
    measurement = doc["paths"]["/flexoffer/measurement"]["post"]["requestBody"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/Measurement"} in measurement["schema"]["anyOf"]
    stream = doc["paths"]["/flexoffer/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    for path in ("/flexoffer", "/request", "/flexoffer/{start}/{end}"):
        get = doc["paths"][path]["get"]
        assert {p["name"] for p in get["parameters"]} >= {"limit", "cursor"}
        assert "Link" in get["responses"]["200"]["headers"]


def test_the_documented_schemas_accept_real_answers(served):
    url, store, doc = served
    auth = {"Authorization": f"Bearer {TOKEN_OF[P17]}"}
    offer_id = store.records()[0].offer.id
    with httpx.Client(base_url=url, headers=auth, timeout=5) as http:
        posted = http.post("/flexoffer", json=encode(dataclasses.replace(ev_offer(), device="ev-2")))
        answers = [
            ("post", "/flexoffer", posted),
            ("get", "/flexoffer", http.get("/flexoffer")),
            ("get", "/flexoffer/{offer_id}", http.get(f"/flexoffer/{offer_id}")),
            ("delete", "/flexoffer/{offer_id}", http.delete(f"/flexoffer/{posted.json()['id']}")),
            ("get", "/flexoffer/{start}/{end}", http.get("/flexoffer/2026-11-25T00:00Z/2026-11-26T00:00Z")),
            (
                "get",
                "/timeseries/{kind}/{start}/{end}",
                http.get("/timeseries/schedule/2026-11-25T18:00Z/2026-11-25T20:00Z"),
            ),
            ("get", "/kpi", http.get("/kpi")),
            ("get", "/bill", http.get("/bill")),
            ("get", "/contract", http.get("/contract")),
            ("get", "/request", http.get("/request")),
            ("post", "/request", http.post("/request", json={"buyer": P17})),
            ("get", "/flexoffer/stream", http.get("/flexoffer/stream", params={"follow": "false", "after": 0})),
            ("get", "/flexoffer", http.get("/flexoffer", headers={"Authorization": "Bearer nobody-0123456789"})),
            ("get", "/flexoffer/{offer_id}", http.get("/flexoffer/fo-nowhere")),
            ("post", "/flexoffer", http.post("/flexoffer", content=b"{")),
        ]
    for method, template, response in answers:
        assert_documented(doc, method, template, response)
    assert {r.status_code for _, _, r in answers} >= {200, 201, 401, 404, 422}


def _operations(doc_url: str) -> Iterator[Any]:
    schema = schemathesis.openapi.from_url(doc_url)
    for result in schema.get_all_operations():
        yield result.ok()


def test_schemathesis_finds_no_server_error_and_every_answer_as_documented(served, capsys):
    url, _, _ = served
    with capsys.disabled():
        print(f"\nschemathesis: seed {SEED}, {EXAMPLES_PER_OPERATION} examples per operation and mode")
    headers = {"Authorization": f"Bearer {TOKEN_OF[P17]}"}
    failures: list[str] = []
    calls = 0
    for operation in _operations(f"{url}/openapi.json"):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @seed(SEED)
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                database=None,
                deadline=None,
                derandomize=False,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(mode))
            def check(case: Any) -> None:
                nonlocal calls
                calls += 1
                if case.path == "/flexoffer/stream":  # the backlog only: a followed stream never ends
                    case.query = {**(case.query or {}), "follow": "false"}
                case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=10)

            try:
                check()
            except Exception as exc:  # every operation is tried; all failures are reported together
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert calls >= 16 * 2  # every operation, both modes


def test_a_market_documents_its_own_routes_too():
    from zoneinfo import ZoneInfo

    from atp.fmar import FlexOfferMarket, MarketCalendar
    from atp.fmar.routes import MARKET_OPERATIONS, install_market_routes
    from atp.fmar.service import MarketService
    from atp.interface import TokenTable

    table = TokenTable.of(TOKENS, [OPERATOR_TOKEN])
    service = MarketService(FlexOfferMarket("fmar", clock=Clock()), MarketCalendar(ZoneInfo("UTC")))
    app = create_app(service.store, tokens=table)
    install_market_routes(app, service, tokens=table)
    served = {
        (method.lower(), route.path) for route in app.routes if isinstance(route, APIRoute) for method in route.methods
    }
    assert served == set(OPERATIONS) | set(MARKET_OPERATIONS)
    doc = app.openapi()
    assert {(m, p) for p, item in doc["paths"].items() for m in item} == served
    assert {"CongestionPoint", "CompletedBid"} <= set(doc["components"]["schemas"])
    body = doc["paths"]["/doms/congestion_point"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CongestionPoint"}

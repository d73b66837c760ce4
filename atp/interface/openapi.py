"""The OpenAPI document of the HTTP binding: every body, the bearer scheme, every status, the SSE type.

FastAPI derives paths and parameters from the routes; this module adds what it cannot see
because the handlers read and check their bodies themselves (to list every problem with its
JSON path): the request and response bodies, as JSON Schema generated from the same
dataclasses that decode them (`atp.flexoffer.schema`, so the document, the codec and
`flexoffer.schema.json` cannot disagree); the bearer security scheme; and for each operation
every status code it can answer, each error with the body `{"error", "details": [{"path",
"message", "rule"}]}`. `GET /flexoffer/stream` answers `text/event-stream`.

`OPERATIONS` is the one table of what each route answers; `tests/test_openapi.py` checks it
against the routes and against what the server really answers.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from atp.flexoffer import FlexOffer, Measurement, flexoffer_schema
from atp.flexoffer.schema import _type_schema
from atp.interface.capacity import PublishedCapacity
from atp.interface.requests import FlexRequest

__all__ = ["OPERATIONS", "STATUS_TEXT", "component_schemas", "install_openapi", "operation", "schema_ref"]

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    401: "No token, an unknown token, or another scheme than Bearer",
    403: "The body names another party as issuer or buyer, or the party may not publish grid capacities",
    404: "Unknown, or another party's (or a route this receiver does not serve)",
    408: "The body did not arrive in time",
    409: "The state of the offer or request (or the party's quota) forbids the operation, or the stream's "
    "Last-Event-ID / after is a position this receiver never issued",
    413: "The body is larger than the receiver accepts",
    422: "Invalid body, parameter or header: every problem with its JSON path",
    500: "Internal error (never caused by input; the traceback goes to the server's log only)",
    503: "The store's database did not take the change; nothing of it was kept (retry later)",
}

_REF = "#/components/schemas/"
_AUTH = (401,)
_READ = (*_AUTH, 404, 422, 500)
_BODY = (*_AUTH, 403, 404, 408, 413, 422, 500, 503)
_WRITE = (*_READ, 409, 503)

_LINK = {
    "Link": {
        "description": 'Present when more items follow: `<URL of the next page>; rel="next"`.',
        "schema": {"type": "string"},
    }
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def schema_ref(name: str) -> dict[str, Any]:
    """A reference to the component schema `name`."""
    return {"$ref": _REF + name}


_ref = schema_ref


def _list_of(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def operation(
    ok: int,
    body: dict[str, Any] | None,
    errors: tuple[int, ...],
    *,
    request: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    media: str = "application/json",
    created: bool = False,
) -> dict[str, Any]:
    """One operation's answers: `ok` with `body`, each error code with the error body, and
    (`created`) also 201 with the same body (a PUT that made a new item)."""
    answer: dict[str, Any] = {"description": STATUS_TEXT[ok]}
    if body is not None:
        answer["content"] = {media: {"schema": body}}
    if headers:
        answer["headers"] = headers
    answers = {str(ok): answer}
    if created:
        answers["201"] = {**answer, "description": STATUS_TEXT[201]}
    op: dict[str, Any] = {"responses": {**answers, **{str(code): _error_response(code) for code in errors}}}
    if request is not None:
        op["requestBody"] = {"required": True, "content": _json(request)}
    return op


_op = operation


def _error_response(code: int) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": STATUS_TEXT[code], "content": _json(_ref("Error"))}
    if code == 401:
        answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}}
    return answer


_LOCATION = {"Location": {"description": "The path of the new item.", "schema": {"type": "string"}}}
_SSE = {
    "type": "object",
    "description": (
        "One message of the stream (spec/interface.md, GET /flexoffer/stream): `id` the event's sequence "
        "number, `event` the change, `data` the offer as JSON on one line; the first message carries only "
        "the `id` the stream starts after, `: keepalive` comments keep the connection open."
    ),
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"enum": ["accepted", "rejected", "assigned", "updated", "executing", "settled", "withdrawn"]},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": _ref("FlexOffer")},
    },
    "required": ["id"],
}

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/flexoffer"): _op(201, _ref("FlexOffer"), (*_BODY, 409), request=_ref("FlexOffer"), headers=_LOCATION),
    ("get", "/flexoffer"): _op(200, _list_of("FlexOffer"), (*_AUTH, 422, 500), headers=_LINK),
    ("get", "/flexoffer/stream"): _op(200, _SSE, (*_AUTH, 409, 422, 500), media="text/event-stream"),
    ("post", "/flexoffer/measurement"): _op(
        201,
        _ref("Stored"),
        _BODY,
        request={"anyOf": [_ref("Measurement"), {"type": "array", "items": _ref("Measurement"), "minItems": 1}]},
    ),
    ("get", "/flexoffer/{offer_id}"): _op(200, _ref("FlexOffer"), _READ),
    ("put", "/flexoffer/{offer_id}"): _op(200, _ref("FlexOffer"), (*_BODY, 409), request=_ref("FlexOffer")),
    ("delete", "/flexoffer/{offer_id}"): _op(200, _ref("FlexOffer"), _WRITE),
    ("get", "/flexoffer/{start}/{end}"): _op(200, _list_of("FlexOffer"), _READ, headers=_LINK),
    ("post", "/request"): _op(201, _ref("FlexRequest"), _BODY, request=_ref("FlexRequest"), headers=_LOCATION),
    ("get", "/request"): _op(200, _list_of("FlexRequest"), (*_AUTH, 422, 500), headers=_LINK),
    ("get", "/request/{request_id}"): _op(200, _ref("FlexRequest"), _READ),
    ("delete", "/request/{request_id}"): _op(200, _ref("FlexRequest"), _WRITE),
    ("put", "/capacity/{name}"): _op(
        200, _ref("PublishedCapacity"), (*_BODY, 409), request=_ref("PublishedCapacity"), created=True
    ),
    ("get", "/capacity"): _op(200, _list_of("PublishedCapacity"), (*_AUTH, 422, 500), headers=_LINK),
    ("get", "/capacity/{name}"): _op(200, _ref("PublishedCapacity"), _READ),
    ("delete", "/capacity/{name}"): _op(200, _ref("PublishedCapacity"), _WRITE),
    ("get", "/timeseries/{kind}/{start}/{end}"): _op(200, _ref("TimeSeries"), _READ),
    ("get", "/contract"): _op(200, _ref("Document"), _READ),
    ("get", "/bill"): _op(200, _ref("Document"), _READ),
    ("get", "/kpi"): _op(200, _ref("Document"), _READ),
}


def _rebased(schema: Any) -> Any:
    """A schema with its `#/$defs/` references pointed at the OpenAPI components."""
    text = json.dumps(schema).replace('"#/$defs/', f'"{_REF}')
    return json.loads(text)


def component_schemas(extra: tuple[type, ...] = ()) -> dict[str, Any]:
    """The schemas of every body: FlexOffer and its parts, Measurement, FlexRequest, Error, ...,
    and of the `extra` dataclasses (the bodies of routes a receiver adds, e.g. a market's)."""
    offer = flexoffer_schema()
    defs: dict[str, Any] = dict(offer.pop("$defs"))
    for key in ("$schema", "$id", "title"):
        offer.pop(key, None)
    defs[FlexOffer.__name__] = offer
    _type_schema(FlexRequest, defs)
    _type_schema(PublishedCapacity, defs)
    _type_schema(Measurement, defs)
    for cls in extra:
        _type_schema(cls, defs)
    problem = {
        "type": "object",
        "properties": {"path": {"type": "string"}, "message": {"type": "string"}, "rule": {"type": "string"}},
        "required": ["path", "message", "rule"],
        "additionalProperties": False,
    }
    defs["Error"] = {
        "type": "object",
        "description": "Every error: a sentence, and for 422 every problem with its JSON path.",
        "properties": {"error": {"type": "string", "minLength": 1}, "details": {"type": "array", "items": problem}},
        "required": ["error", "details"],
        "additionalProperties": False,
    }
    defs["Stored"] = {
        "type": "object",
        "properties": {"stored": {"type": "integer", "minimum": 0}},
        "required": ["stored"],
        "additionalProperties": False,
    }
    defs["TimeSeries"] = {
        "type": "object",
        "description": "Energy per step: values[i] kWh over [start + i*slice_s, start + (i+1)*slice_s).",
        "properties": {
            "start": {"type": "string", "format": "date-time"},
            "slice_s": {"type": "integer", "minimum": 1},
            "values": {"type": "array", "items": {"type": "number"}},
        },
        "required": ["start", "slice_s", "values"],
        "additionalProperties": False,
    }
    defs["Document"] = {
        "type": "object",
        "description": "A contract, bill or KPI document (docs/interface.md, Routes).",
    }
    return _rebased(dict(sorted(defs.items())))


def _document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version="1", routes=app.routes, description=app.description)
    components = doc.setdefault("components", {})
    # A receiver that adds routes (a market's: atp.fmar.routes) documents them in app.state.
    operations = {**OPERATIONS, **getattr(app.state, "operations", {})}
    components["schemas"] = component_schemas(tuple(getattr(app.state, "schemas", ())))  # never FastAPI's own
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "One token per party (spec/interface.md)."}
    }
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            extra = operations.get((method, path))
            if extra is None:
                raise RuntimeError(f"{method.upper()} {path} is served but not documented in OPERATIONS")
            operation.update(copy.deepcopy(extra))
            operation["security"] = [{"bearer": []}]
    return doc


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and `GET /openapi.json`) answer the full document, built once."""
    built: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not built:
            built.update(_document(app))
        return built

    app.openapi = openapi  # type: ignore[method-assign]

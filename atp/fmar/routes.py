"""The market's own HTTP routes beside the exchange interface (a served FMAR, `goflex-atp serve
--role fmar`): the operator's view (F2.FMAR6), the session calendar, and the DOMS interface
(F2.FMAR7).

    GET  /market/status               operator: mechanism, pricing, calendar, one row per session
    PUT  /market/config               operator: {"mechanism": name}, for the sessions cleared from now on
    GET  /market/sessions             any party: the sessions, their gates and delivery periods
    POST /doms/congestion_point       a grid operator registers a congestion point (201 + its request)
    GET  /doms/{point}/prosumers      a grid operator: the issuers of open offers at the point
    GET  /doms/{point}/bids           a grid operator: the completed bids of the point

`install_market_routes(app, service, tokens=)` adds them to the app of `create_app` (the same
error bodies, the same lock around the store); `MARKET_OPERATIONS` documents them in the
OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from atp.errors import InvalidOfferError, Problem, ValidationError
from atp.flexoffer.codec import decode, encode
from atp.fmar.doms import CompletedBid, CongestionPoint
from atp.fmar.errors import SessionError
from atp.fmar.market import mechanism_names
from atp.fmar.service import MarketService
from atp.interface.auth import TokenTable
from atp.interface.errors import ForbiddenError
from atp.interface.limits import parse_json, read_json_body
from atp.interface.openapi import operation, schema_ref
from atp.interface.store import OPERATOR

__all__ = ["MARKET_OPERATIONS", "install_market_routes"]

_READ = (401, 403, 404, 422, 500)
_SESSION_ROWS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "session": {"type": "string"},
            "kind": {"enum": ["day_ahead", "intraday", "local"]},
            "gate_closure": {"type": "string", "format": "date-time"},
            "delivery_start": {"type": "string", "format": "date-time"},
            "delivery_end": {"type": "string", "format": "date-time"},
            "state": {"type": "string"},
        },
    },
}
MARKET_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/market/status"): operation(200, {"type": "object"}, _READ),
    ("get", "/market/sessions"): operation(200, _SESSION_ROWS, _READ),
    ("put", "/market/config"): operation(
        200,
        {"type": "object"},
        (*_READ, 408, 413),
        request={
            "type": "object",
            "properties": {"mechanism": {"type": "string"}},
            "required": ["mechanism"],
            "additionalProperties": False,
        },
    ),
    ("post", "/doms/congestion_point"): operation(
        201, schema_ref("FlexRequest"), (*_READ, 408, 409, 413, 503), request=schema_ref("CongestionPoint")
    ),
    ("get", "/doms/{point}/prosumers"): operation(
        200,
        {"type": "object", "properties": {"point": {"type": "string"}, "prosumers": {"type": "array"}}},
        _READ,
    ),
    ("get", "/doms/{point}/bids"): operation(200, {"type": "array", "items": schema_ref("CompletedBid")}, _READ),
}
"""What each market route answers, for the receiver's OpenAPI document (atp.interface.openapi)."""


class MarketRefusalError(ValidationError):
    """The market cannot do what was asked (a session refuses a request): 422 with its sentence."""


def _json(obj: Any) -> Any:
    """JSON-ready form of answers that mix dicts and model objects (times as ISO 8601 UTC)."""
    if isinstance(obj, dict):
        return {str(k): _json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json(v) for v in obj]
    return encode(obj)


def install_market_routes(app: FastAPI, service: MarketService, *, tokens: TokenTable) -> None:
    """Add the market's routes (module docstring) to `app`, a `create_app` app over `service.store`."""
    guard = app.state.lock
    limits = app.state.limits
    app.state.operations = {**getattr(app.state, "operations", {}), **MARKET_OPERATIONS}
    app.state.schemas = (*getattr(app.state, "schemas", ()), CongestionPoint, CompletedBid)
    clock = service.market.clock

    def party_of(request: Request) -> str:
        return tokens.party_of(request.headers.get("authorization"))

    def grid_operator(request: Request) -> str:
        party = party_of(request)
        if party != OPERATOR and party not in tokens.grid_operators:
            raise ForbiddenError(f"party {party!r} is not a grid operator of this market (tokens file: grid_operators)")
        return party

    async def locked(work: Any) -> Any:
        def run() -> Any:
            with guard:
                try:
                    return work()
                except SessionError as exc:
                    raise MarketRefusalError(str(exc)) from exc

        return await run_in_threadpool(run)

    @app.get("/market/status", summary="The operator's view: configuration, calendar, sessions")
    async def market_status(request: Request) -> JSONResponse:
        if party_of(request) != OPERATOR:
            raise ForbiddenError("the market's status is the operator's (use an operator token)")
        return JSONResponse(_json(await locked(lambda: service.status(now=clock()))))

    @app.put("/market/config", summary="The operator configures the market's clearing")
    async def market_config(request: Request) -> JSONResponse:
        if party_of(request) != OPERATOR:
            raise ForbiddenError("the market's configuration is the operator's (use an operator token)")
        data = parse_json(await read_json_body(request, limits))
        if not isinstance(data, dict) or set(data) != {"mechanism"} or not isinstance(data["mechanism"], str):
            raise InvalidOfferError(
                [Problem("mechanism", 'give {"mechanism": name} and nothing else', "type")], what="configuration"
            )
        names = mechanism_names()
        if data["mechanism"] not in names:
            problem = Problem("mechanism", f"{data['mechanism']!r} is not one of {', '.join(names)}", "mechanism")
            raise InvalidOfferError([problem], what="configuration")

        def configure() -> dict[str, Any]:
            service.configure(mechanism=data["mechanism"])
            return service.status(now=clock())

        return JSONResponse(_json(await locked(configure)))

    @app.get("/market/sessions", summary="The sessions, their gates and delivery periods")
    async def market_sessions(request: Request) -> JSONResponse:
        party_of(request)
        keys = ("session", "kind", "gate_closure", "delivery_start", "delivery_end", "state")
        rows = await locked(lambda: service.market.status(now=clock()))
        return JSONResponse(_json([{k: row[k] for k in keys} for row in rows]))

    @app.post("/doms/congestion_point", status_code=201, summary="A DSO registers a congestion point")
    async def register_congestion(request: Request) -> JSONResponse:
        party = grid_operator(request)
        raw = await read_json_body(request, limits)
        point, problems = decode(CongestionPoint, parse_json(raw))
        if problems or point is None:
            raise InvalidOfferError(problems, what="congestion point")
        if party != OPERATOR and point.dso != party:
            raise ForbiddenError(f"dso {point.dso!r} is not the calling party {party!r}")
        answer = await locked(lambda: service.register_congestion(point, now=clock()))
        return JSONResponse(encode(answer), status_code=201, headers={"Location": f"/request/{answer.id}"})

    @app.get("/doms/{point}/prosumers", summary="The prosumers with open offers at a congestion point")
    async def relevant_prosumers(point: str, request: Request) -> JSONResponse:
        grid_operator(request)
        prosumers = await locked(lambda: service.relevant_prosumers(point, now=clock()))
        return JSONResponse({"point": point, "prosumers": prosumers})

    @app.get("/doms/{point}/bids", summary="The completed bids of a congestion point")
    async def completed_bids(point: str, request: Request) -> JSONResponse:
        grid_operator(request)
        return JSONResponse(_json(await locked(lambda: service.completed_bids(point))))

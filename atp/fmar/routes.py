"""The market's own HTTP routes beside the exchange interface (a served FMAR, `goflex-atp serve
--role fmar`): the operator's view (F2.FMAR6), the session calendar, and the DOMS interface
(F2.FMAR7).

    GET  /market/status               operator: mechanism, pricing, calendar, one row per session
    PUT  /market/config               operator: {"mechanism": name}, for the sessions cleared from now on
    GET  /market/sessions             any party: the sessions, their gates and delivery periods
    POST /doms/congestion_point       a grid operator registers a congestion point (201 + its request)
    GET  /doms/{point}/prosumers      a grid operator: the issuers of open offers at the point
    GET  /doms/{point}/bids           a grid operator: the completed bids of the point
    GET  /doms/points                 a grid operator: the registered congestion points
    GET  /doms/bids                   a grid operator: the completed bids of every point, in clearing order

An operator who drives the market's sessions itself (a run on an operator clock,
`serve --clock operator`, where the market's own tick does not run):

    POST /market/sessions                 a Session: put it on the calendar (201; 409 for a known name)
    POST /market/sessions/{name}/clear    clear it at its gate closure: its results, in order
    POST /market/reject_expired           {"at": T}: reject the offers that can no longer win by T
    GET  /market/results                  every result so far, in clearing order (?after=N: from the N+1st)

`POST /doms/congestion_point?request=false` registers a point without posting a request: its
completed bids are then the results of the point's `dso` as a buyer, whatever it posts itself.

`install_market_routes(app, service, tokens=)` adds them to the app of `create_app` (the same
error bodies, the same lock around the store); `MARKET_OPERATIONS` documents them in the
OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from atp.errors import InvalidOfferError, Problem, ValidationError
from atp.flexoffer.codec import decode, encode, printable
from atp.fmar.doms import CompletedBid, CongestionPoint
from atp.fmar.errors import SessionError
from atp.fmar.market import mechanism_names
from atp.fmar.model import Session, SessionResult
from atp.fmar.service import MarketService
from atp.interface.auth import TokenTable
from atp.interface.clock import times_of
from atp.interface.errors import ConflictError, ForbiddenError, NotFoundError
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
    ("get", "/doms/points"): operation(200, {"type": "array", "items": {"type": "string"}}, _READ),
    ("get", "/doms/bids"): operation(200, {"type": "array", "items": schema_ref("CompletedBid")}, _READ),
    ("post", "/market/sessions"): operation(
        201, schema_ref("Session"), (*_READ, 408, 409, 413, 503), request=schema_ref("Session")
    ),
    ("post", "/market/sessions/{name}/clear"): operation(
        200, {"type": "array", "items": schema_ref("SessionResult")}, (*_READ, 409, 503)
    ),
    ("post", "/market/reject_expired"): operation(
        200,
        {"type": "object", "properties": {"rejected": {"type": "array", "items": {"type": "string"}}}},
        (*_READ, 408, 413, 503),
        request={
            "type": "object",
            "properties": {"at": {"type": "string", "format": "date-time"}},
            "additionalProperties": False,
        },
    ),
    ("get", "/market/results"): operation(200, {"type": "array", "items": schema_ref("SessionResult")}, _READ),
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
    app.state.schemas = (*getattr(app.state, "schemas", ()), CongestionPoint, CompletedBid, Session, SessionResult)
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

    def operator(request: Request, what: str) -> None:
        if party_of(request) != OPERATOR:
            raise ForbiddenError(f"{what} is the operator's (use an operator token)")

    @app.post("/market/sessions", status_code=201, summary="The operator puts a session on the calendar")
    async def add_session(request: Request) -> JSONResponse:
        operator(request, "the market's calendar")
        session, problems = decode(Session, parse_json(await read_json_body(request, limits)))
        if problems or session is None:
            raise InvalidOfferError(problems, what="session")

        def add() -> None:  # the check and the addition under one hold of the lock
            if session.name in {s.name for s in service.market.sessions}:
                raise ConflictError(f"session {session.name!r} is already on the calendar; give it another name")
            service.market.add_session(session)

        await locked(add)
        return JSONResponse(encode(session), status_code=201)

    @app.post("/market/sessions/{name}/clear", summary="The operator clears a session at its gate closure")
    async def clear_session(name: str, request: Request) -> JSONResponse:
        operator(request, "clearing a session")

        def clear() -> list[Any]:
            session = next((s for s in service.market.sessions if s.name == name), None)
            if session is None:
                raise NotFoundError(f"no session {printable(name)[:80]!r} on the calendar")
            return service.market.run_session(session, now=session.gate_closure)

        return JSONResponse(_json(await locked(clear)))

    @app.post("/market/reject_expired", summary="The operator rejects the offers that can no longer win")
    async def reject_expired(request: Request) -> JSONResponse:
        operator(request, "rejecting offers")
        raw = await read_json_body(request, limits)
        at = times_of(parse_json(raw) if raw.strip() else None, ("at",)).get("at") or clock()
        rejected = await locked(lambda: service.market.reject_expired(at))
        return JSONResponse({"rejected": rejected})

    @app.get("/market/results", summary="Every result so far, in clearing order")
    async def market_results(request: Request, after: int = 0) -> JSONResponse:
        operator(request, "the market's results")
        if after < 0:
            raise InvalidOfferError([Problem("after", "must be >= 0", "range")], what="query")
        return JSONResponse(_json(await locked(lambda: service.market.results[after:])))

    @app.get("/doms/points", summary="The registered congestion points")
    async def doms_points(request: Request) -> JSONResponse:
        grid_operator(request)
        return JSONResponse(await locked(lambda: service.doms.points))

    @app.get("/doms/bids", summary="The completed bids of every congestion point, in clearing order")
    async def doms_bids(request: Request) -> JSONResponse:
        grid_operator(request)
        return JSONResponse(_json(await locked(lambda: service.doms.completed_bids())))

    @app.post("/doms/congestion_point", status_code=201, summary="A DSO registers a congestion point")
    async def register_congestion(request: Request, post_request: bool = Query(True, alias="request")) -> JSONResponse:
        party = grid_operator(request)
        raw = await read_json_body(request, limits)
        point, problems = decode(CongestionPoint, parse_json(raw))
        if problems or point is None:
            raise InvalidOfferError(problems, what="congestion point")
        if party != OPERATOR and point.dso != party:
            raise ForbiddenError(f"dso {point.dso!r} is not the calling party {party!r}")
        if not post_request:
            await locked(lambda: service.doms.track(point))
            return JSONResponse(encode(point), status_code=201)
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

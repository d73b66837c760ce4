"""The operator's rounds of a served receiver: set its clock, run its life cycle and its FMAN's
planning round when the operator says, and read what the FMAN's rounds did.

    PUT  /operator/clock     {"now": T}: the receiver's time (an operator clock only; never back: 409)
    POST /operator/advance   {"until": T?}: offers start and settle at the receiver's time (life cycle)
    POST /fman/plan          {"next_gate": T?}: one planning round at the receiver's time (an FMAN)
    GET  /fman/report        the FMAN's rounds, the aggregates it used and their members' losses
    POST /fman/market/sync   an FMAN that bids, on an operator clock: read the market's new events
                             (awards, rejections) now; awarded members are assigned before it answers

A receiver on the wall clock runs these rounds by itself (its loops); one on an operator clock
(`serve --clock operator`) runs none of them until its operator asks, so whoever drives time (a
simulated run, `goflex-twin atp.deployment=services`, or a lab replaying a day) decides what
happens when. Only operator tokens may call them (403 otherwise); every answer is JSON, every
refusal the interface's error body.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from atp.flexoffer.codec import encode
from atp.fman.rounds import PlanningRounds, PlanSummary
from atp.interface.auth import TokenTable
from atp.interface.clock import OperatorClock, times_of
from atp.interface.errors import ConflictError, ForbiddenError
from atp.interface.lifecycle import advance
from atp.interface.limits import parse_json, read_json_body
from atp.interface.openapi import operation
from atp.interface.store import OPERATOR, OfferStore

__all__ = ["OPERATOR_OPERATIONS", "install_operator_routes"]

_ERRORS = (401, 403, 404, 408, 409, 413, 422, 500, 503)


def _times(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {n: {"type": "string", "format": "date-time"} for n in names},
        "required": list(required),
        "additionalProperties": False,
    }


OPERATOR_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("put", "/operator/clock"): operation(200, _times("now"), _ERRORS, request=_times("now", required=("now",))),
    ("post", "/operator/advance"): operation(
        200,
        {"type": "object", "properties": {"started": {"type": "array"}, "settled": {"type": "array"}}},
        _ERRORS,
        request=_times("until"),
    ),
    ("post", "/fman/plan"): operation(200, {"type": "object"}, _ERRORS, request=_times("next_gate")),
    ("get", "/fman/report"): operation(200, {"type": "object"}, (401, 403, 500)),
    ("post", "/fman/market/sync"): operation(
        200, {"type": "object", "properties": {"events": {"type": "integer"}}}, (401, 403, 500, 503)
    ),
}
"""What each operator route answers, for the receiver's OpenAPI document (atp.interface.openapi)."""


def install_operator_routes(
    app: FastAPI,
    store: OfferStore,
    *,
    tokens: TokenTable,
    clock: Callable[[], datetime],
    rounds: PlanningRounds | None = None,
    market_events: Callable[[], int] | None = None,
) -> None:
    """Add the operator's routes (module docstring) to `app`, a `create_app` app over `store`;
    `rounds` are the FMAN's (None for a market: no /fman routes), `market_events` reads the
    market's new events of an FMAN that bids on an operator clock (None: no sync route)."""
    guard = app.state.lock
    limits = app.state.limits
    operations = {
        key: value
        for key, value in OPERATOR_OPERATIONS.items()
        if (rounds is not None or not key[1].startswith("/fman"))
        and (market_events is not None or key[1] != "/fman/market/sync")
    }
    app.state.operations = {**getattr(app.state, "operations", {}), **operations}

    def operator(request: Request) -> None:
        if tokens.party_of(request.headers.get("authorization")) != OPERATOR:
            raise ForbiddenError("the receiver's rounds are its operator's (use an operator token)")

    async def body(request: Request) -> Any:
        raw = await read_json_body(request, limits)
        return parse_json(raw) if raw.strip() else None

    async def locked(work: Callable[[], Any]) -> Any:
        def run() -> Any:
            with guard:
                return work()

        return await run_in_threadpool(run)

    @app.put("/operator/clock", summary="The operator sets the receiver's time (an operator clock)")
    async def set_clock(request: Request) -> JSONResponse:
        operator(request)
        now = times_of(await body(request), ("now",), required=("now",))["now"]
        if not isinstance(clock, OperatorClock):
            raise ConflictError(
                "this receiver runs on the wall clock (serve --clock operator lets its operator set it)"
            )
        return JSONResponse({"now": encode(await locked(lambda: clock.set(now)))})

    @app.post("/operator/advance", summary="The offer life cycle at the receiver's time")
    async def advance_lifecycle(request: Request) -> JSONResponse:
        operator(request)
        until = times_of(await body(request), ("until",)).get("until")
        moved = await locked(lambda: advance(store, clock(), until=until))
        return JSONResponse({"started": list(moved.started), "settled": list(moved.settled)})

    if rounds is None:
        return

    @app.post("/fman/plan", summary="One planning round of the FMAN at the receiver's time")
    async def plan(request: Request) -> JSONResponse:
        operator(request)
        gate = times_of(await body(request), ("next_gate",)).get("next_gate")
        result = await locked(lambda: rounds.round(clock(), next_gate=gate))
        return JSONResponse(encode(PlanSummary.of(result)))

    @app.get("/fman/report", summary="What the FMAN's planning rounds did")
    async def report(request: Request) -> JSONResponse:
        operator(request)
        return JSONResponse(encode(await locked(rounds.report)))

    if market_events is None:
        return

    @app.post("/fman/market/sync", summary="The FMAN reads its market's new events now")
    async def market_sync(request: Request) -> JSONResponse:
        operator(request)
        return JSONResponse({"events": await locked(market_events)})

"""HTTP binding of the exchange interface, server side: a FastAPI app over one receiver's OfferStore.

`create_app(store, tokens=..., ...)` serves every route of spec/interface.md (HTTP binding).
The handlers are thin: authenticate the bearer token, read the body (bounded, `atp.interface.limits`),
decode the JSON (every problem listed, with its JSON path), call one `OfferStore` method, encode
the answer. The store is the source of truth for the life cycle; its errors become status codes:

    InvalidOfferError / bad JSON / bad parameter   422  {"error", "details": [{"path", "message", "rule"}]}
    UnauthorizedError (no or unknown token)        401  (with WWW-Authenticate: Bearer)
    ForbiddenError (issuing for another party)     403
    NotFoundError (unknown id, another party's)    404
    RequestTimeoutError (the body came too slowly) 408
    ConflictError (state or quota forbids it)      409
    body larger than `limits.max_body_bytes`       413
    anything unexpected                            500  {"error": "internal server error"}, never a trace

No input causes a 500: bodies, parameters and headers are checked against `ServiceLimits` and
the codec's bounds before any work they would cause. Every list answers one page (`?limit=`,
`?cursor=`; `Link: <next>; rel="next"` while more follow). The OpenAPI document
(`GET /openapi.json`, `atp.interface.openapi`) describes every body, status and the bearer scheme.

`POST /request`, `GET /request`, `GET` and `DELETE /request/{id}` are the buy side: a buyer's
request (`atp.interface.requests.FlexRequest`) to the store's `RequestBook`; a body posted to
`/flexoffer` with `"side": "buy"` is refused (422) and pointed there.

`PUT /capacity/{name}`, `GET /capacity`, `GET` and `DELETE /capacity/{name}` are a DSO's grid
capacities (`atp.interface.capacity.PublishedCapacity`) for the receiver's plan, in the store's
`CapacityBook`; the tokens' `grid_operators` may publish them.

`GET /contract`, `/bill` and `/kpi` call the provider callables given to `create_app` with the
caller's party (the operator may name one with `?party=`; `/kpi` without it is the whole
receiver, provider argument None); a receiver without a provider answers 404 saying so.

Threads: the event loop only reads requests and writes answers. Decoding, validation, every
store call, the providers and the encoding of answers run on the threadpool, so one party's
large request does not stall the others' (they wait for the store's lock only while it works).
Every store call holds `app.state.lock`; code in other threads that changes the store while it
is served (a planning loop, a test) must hold the same lock. `GET /flexoffer/stream` wakes on
the store's own event callback, so changes made by any thread reach the streams at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from atp.errors import AtpError, InvalidOfferError, Problem, ValidationError
from atp.flexoffer import (
    DEFAULT_SLICE_S,
    FlexOffer,
    Measurement,
    decode,
    encode,
    format_time,
    parse_wire_time,
    printable,
)
from atp.interface.auth import TokenTable
from atp.interface.capacity import PublishedCapacity
from atp.interface.errors import InterfaceError, NotFoundError, UnauthorizedError
from atp.interface.limits import (
    PayloadTooLargeError,
    ServiceLimits,
    check_measurements,
    decode_cursor,
    encode_cursor,
    invalid,
    parse_json,
    read_json_body,
)
from atp.interface.openapi import install_openapi
from atp.interface.requests import FlexRequest
from atp.interface.sse import KEEPALIVE, format_event, format_position
from atp.interface.store import OPERATOR, Event, OfferStore

__all__ = ["KpiProvider", "PartyProvider", "PayloadTooLargeError", "ServiceLimits", "create_app"]

KpiProvider = Callable[[str | None], Mapping[str, Any]]
"""`kpi(party)`: the KPIs over one party's scope, or over the whole receiver for None."""
PartyProvider = Callable[[str], Mapping[str, Any]]
"""`contract(party)` / `bill(party)`: that party's document; NotFoundError when it has none."""

MAX_IDEMPOTENCY_KEY_CHARS = 200
MAX_EVENT_ID_DIGITS = 19
INLINE_BODY_BYTES = 8192
"""`POST /flexoffer` bodies up to this size are decoded, checked and stored on the event loop
(a fraction of a millisecond, less than the hop to the thread pool); larger ones on the pool."""

_log = logging.getLogger(__name__)
T = TypeVar("T")


class _SafeJSON(JSONResponse):
    """JSON with every non-ASCII character escaped: an error body can always be written."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, details: list[dict[str, str]] | None = None, **headers: str) -> JSONResponse:
    return _SafeJSON({"error": message, "details": details or []}, status_code=status, headers=headers or None)


def _problems(problems: list[Problem]) -> list[dict[str, str]]:
    return [asdict(p) for p in problems]


def _time(text: str, name: str) -> datetime:
    try:
        return parse_wire_time(text)
    except ValueError as exc:
        msg = str(exc)
        if "offset" not in msg and "outside" not in msg:
            msg = f"{printable(text)[:60]!r} is not an ISO 8601 time (e.g. 2026-11-25T18:00:00Z)"
        raise invalid(name, msg, "time") from None


class _EventHub:
    """Wakes the open event streams whenever the store records an event (from any thread)."""

    def __init__(self, store: OfferStore) -> None:
        events = store.events(OPERATOR)
        self.last_seq = events[-1].seq if events else 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._guard = threading.Lock()
        store.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        self.last_seq = max(self.last_seq, event.seq)
        with self._guard:
            waiters = list(self._waiters)
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(waiter.set)
            except RuntimeError:  # the loop has closed (server stopped): forget the waiter
                self.unregister((loop, waiter))

    def register(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._guard:
            self._waiters.add(entry)
        return entry

    def unregister(self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self._guard:
            self._waiters.discard(entry)


def _decode_offer(data: Any) -> FlexOffer:
    offer, problems = decode(FlexOffer, data)
    if problems or offer is None:
        raise InvalidOfferError(problems)
    return offer


_BUY_SIDE = (
    "a buy-side offer is a buyer's request for flexibility, and a market never sells it: "
    "POST it to /request (buyer, start, slice_s, volume_kwh, cutoff_eur_per_kwh, congestion_point)"
)


def _decode_offer_body(raw: bytes) -> FlexOffer:
    """An offer from POST/PUT /flexoffer; a body marked `"side": "buy"` is pointed to /request."""
    data = parse_json(raw)
    if isinstance(data, dict) and data.get("side") == "buy":
        raise InvalidOfferError([Problem("side", _BUY_SIDE, "side")])
    return _decode_offer(data)


def _decode_request(raw: bytes) -> FlexRequest:
    """A buyer's request from POST /request, every structural problem listed."""
    data = parse_json(raw)
    problems: list[Problem] = []
    if isinstance(data, dict) and "side" in data:
        problems.append(
            Problem(
                "side",
                "a request is always a buy (the buyer pays for the change it asks for); leave `side` out. "
                "To sell flexibility, submit a Flex-Offer (POST /flexoffer)",
                "side",
            )
        )
        data = {k: v for k, v in data.items() if k != "side"}
    request, decoded = decode(FlexRequest, data)
    problems.extend(decoded)
    if problems or request is None:
        raise InvalidOfferError(problems, what="request")
    return request


def _decode_capacity(raw: bytes) -> PublishedCapacity:
    """A grid capacity from PUT /capacity/{name}, every structural problem listed."""
    capacity, problems = decode(PublishedCapacity, parse_json(raw))
    if problems or capacity is None:
        raise InvalidOfferError(problems, what="capacity")
    return capacity


def _decode_measurements(raw: bytes, limits: ServiceLimits) -> tuple[list[Measurement], str]:
    """The measurements of a body (one or a list, at most the limit), and the path prefix of its items."""
    data = parse_json(raw)
    items, prefix = (data, "[{}]") if isinstance(data, list) else ([data], "")
    if len(items) > limits.max_measurements_per_request:
        raise invalid(
            "",
            f"holds {len(items)} measurements, more than the limit of {limits.max_measurements_per_request}",
            "limit",
        )
    if not items:
        raise InvalidOfferError([Problem("", "the list holds no measurement", "empty")], what="measurement")
    problems: list[Problem] = []
    out: list[Measurement] = []
    for i, item in enumerate(items):
        m, item_problems = decode(Measurement, item, path=prefix.format(i))
        problems.extend(item_problems)
        if m is not None:
            out.append(m)
    if problems:
        raise InvalidOfferError(problems, what="measurement")
    return out, prefix


def _last_event_id(header: str) -> int:
    text = header.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_EVENT_ID_DIGITS):
        shown = printable(header)[:40]
        raise invalid("Last-Event-ID", f"must be an event sequence number (ASCII digits), not {shown!r}", "header")
    return int(text)


class _GuardedRoute(APIRoute):
    """A route that answers 500 itself for an unexpected error (logged with its traceback).

    Left to Starlette, the error would also propagate to the server, which then drops the
    connection and the client's next request on it fails.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (AtpError, StarletteHTTPException, RequestValidationError):
                raise
            except Exception:
                _log.exception("unexpected error in %s %s", request.method, request.url.path)
                return _error(500, "internal server error")

        return guarded


def _install_error_handlers(app: FastAPI) -> None:
    """Every error answers {"error", "details"}; none shows a stack trace."""

    @app.exception_handler(InvalidOfferError)
    async def _invalid_offer(_: Request, exc: InvalidOfferError) -> JSONResponse:
        return _error(422, str(exc), _problems(exc.problems))

    @app.exception_handler(InterfaceError)
    async def _interface(_: Request, exc: InterfaceError) -> JSONResponse:
        if isinstance(exc, UnauthorizedError):
            return _error(exc.status, str(exc), **{"WWW-Authenticate": "Bearer"})
        return _error(exc.status, str(exc))

    @app.exception_handler(AtpError)
    async def _atp(_: Request, exc: AtpError) -> JSONResponse:
        return _error(422 if isinstance(exc, ValidationError) else 500, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _parameters(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "path": printable(".".join(str(p) for p in e.get("loc", ())[1:])),
                "message": printable(str(e.get("msg", ""))),
                "rule": "type",
            }
            for e in exc.errors()
        ]
        text = "; ".join(f"{d['path']}: {d['message']}" for d in details)
        return _error(422, f"invalid request: {text}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return _error(exc.status_code, message, **dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal server error")


def _page_response(request: Request, items: Sequence[Any], size: int, ids: Callable[[Any], str | None]) -> JSONResponse:
    """A list answer; `Link: <next page>; rel="next"` when the page is full."""
    headers = None
    if len(items) > size:
        items = items[:size]
        last = ids(items[-1])
        if last is not None:
            query = {k: v for k, v in request.query_params.items() if k != "cursor"}
            query.update(limit=str(size), cursor=encode_cursor(last))
            headers = {"Link": f'<{request.url.path}?{urlencode(query)}>; rel="next"'}
    return JSONResponse(encode(list(items)), headers=headers)


def create_app(
    store: OfferStore,
    *,
    tokens: Mapping[str, str] | TokenTable,
    operator_tokens: Collection[str] = (),
    kpi: KpiProvider | None = None,
    contract: PartyProvider | None = None,
    bill: PartyProvider | None = None,
    lock: threading.Lock | None = None,
    sse_keepalive_s: float = 15.0,
    limits: ServiceLimits | None = None,
) -> FastAPI:
    """The FastAPI app of one receiver (an FMAN or FMAR) over `store`.

    `tokens` maps bearer tokens to parties (or is a `TokenTable`, e.g. from `load_tokens`);
    `operator_tokens` see every party. `kpi`, `contract` and `bill` answer `GET /kpi`,
    `/contract` and `/bill`. `lock` guards the store (made when not given; `app.state.lock`).
    `limits` bounds what one request may cost (`ServiceLimits()` when None; spec/interface.md "Limits").
    """
    limits = limits if limits is not None else ServiceLimits()
    table = tokens if isinstance(tokens, TokenTable) else TokenTable.of(tokens, operator_tokens)
    if isinstance(tokens, TokenTable) and operator_tokens:
        raise ValueError("give operator tokens inside the TokenTable, not beside it")
    if sse_keepalive_s <= 0:
        raise ValueError(f"sse_keepalive_s(={sse_keepalive_s}) must be > 0 (e.g. 15)")
    guard = lock if lock is not None else threading.Lock()
    hub = _EventHub(store)
    store.capacity_book.allow(table.grid_operators)
    app = FastAPI(
        title=f"GOFLEX ATP receiver {store.name!r}: Flex-Offer Exchange Interface v1",
        description="spec: docs/spec/interface.md (HTTP binding, Limits, Pages)",
        docs_url=None,
        redoc_url=None,
    )
    app.router.route_class = _GuardedRoute
    app.state.store = store
    app.state.lock = guard
    app.state.limits = limits
    _install_error_handlers(app)
    install_openapi(app)

    async def caller(request: Request) -> str:
        return table.party_of(request.headers.get("authorization"))

    authenticated = Depends(caller)
    page_limit = Query(None, ge=1, le=limits.max_page_size, description="Items per page")
    page_cursor = Query(None, max_length=1000, description='Opaque, from the Link rel="next" of the previous page')
    party_query = Query(
        None, alias="party", max_length=200, description="An operator names the party (others: only themselves)"
    )
    idempotency = Header(None, alias="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS)

    async def off_loop(work: Callable[[], T]) -> T:
        """Run `work` on the threadpool: the event loop keeps serving other parties meanwhile."""
        return await run_in_threadpool(work)

    def locked(work: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            with guard:
                return work()

        return run

    def scope(party: str, requested: str | None) -> str | None:
        if party == OPERATOR:
            return requested
        if requested not in (None, party):
            raise NotFoundError(f"no data of party {printable(requested or '')!r} for party {party!r}")
        return party

    def named(party: str, requested: str | None, route: str) -> str:
        who = scope(party, requested)
        if who is None:
            raise invalid("party", f"an operator names the party: {route}?party=<name>")
        return who

    def provided(provider: Any, route: str) -> Any:
        if provider is None:
            raise NotFoundError(f"receiver {store.name!r} serves no {route} (it was started without a provider for it)")
        return provider

    def offer_response(offer: FlexOffer, status: int = 200) -> JSONResponse:
        headers = {"Location": f"/flexoffer/{offer.id}"} if status == 201 else None
        return JSONResponse(encode(offer), status_code=status, headers=headers)

    def document(provider: Callable[..., Mapping[str, Any]], who: str | None) -> Callable[[], JSONResponse]:
        def run() -> JSONResponse:
            with guard:
                answer = dict(provider(who))
            return JSONResponse(answer)

        return run

    # -- offers ------------------------------------------------------------------------
    @app.post("/flexoffer", status_code=201, summary="Submit an offer")
    async def submit(request: Request, party: str = authenticated, key: str | None = idempotency) -> JSONResponse:
        raw = await read_json_body(request, limits)

        def stored(offer: FlexOffer) -> FlexOffer:
            return store.submit(party, offer, idempotency_key=key, max_active=limits.max_active_offers_per_party)

        if len(raw) <= INLINE_BODY_BYTES:
            # A small offer costs less to decode, check and store than the hop to the thread pool:
            # right here, unless another request holds the store (then the pool waits for it).
            offer = _decode_offer_body(raw)
            if guard.acquire(blocking=False):
                try:
                    answer = stored(offer)
                finally:
                    guard.release()
            else:
                answer = await off_loop(locked(lambda: stored(offer)))
            return offer_response(answer, 201)

        def work() -> JSONResponse:
            offer = _decode_offer_body(raw)
            with guard:
                answer = stored(offer)
            return offer_response(answer, 201)

        return await off_loop(work)

    @app.get("/flexoffer", summary="The caller's active offers, a page at a time")
    async def active(
        request: Request, party: str = authenticated, limit: int | None = page_limit, cursor: str | None = page_cursor
    ) -> JSONResponse:
        size, after = limits.page_size(limit), decode_cursor(cursor)

        def work() -> JSONResponse:
            with guard:
                offers = store.active(party, after=after, limit=size + 1)
            return _page_response(request, offers, size, lambda o: o.id)

        return await off_loop(work)

    @app.get(
        "/flexoffer/stream",
        summary="Server-Sent Events of the caller's offers",
        response_class=StreamingResponse,
    )
    async def stream(
        after: int | None = Query(None, ge=0, le=10**MAX_EVENT_ID_DIGITS - 1),
        follow: bool = True,
        last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=100),
        party: str = authenticated,
    ) -> Any:
        if last_event_id is not None:
            start = _last_event_id(last_event_id)
        elif after is not None:
            start = after
        else:
            start = store.last_seq_of(party)  # the caller's own sequence (the store-wide one for the operator)
        store.check_position(party, start)  # 409 for a position this store never issued (a durable store keeps its own)
        chunk = limits.max_page_size

        def read(pos: int) -> tuple[list[str], int]:
            with guard:
                events = store.events(party, after=pos, limit=chunk)
            return [format_event(e) for e in events], events[-1].seq if events else pos

        async def body() -> AsyncIterator[str]:
            # Registered before the first read: a change after it wakes the loop, one before it is read.
            entry = hub.register()
            pos = start
            try:
                yield format_position(pos)
                while True:
                    entry[1].clear()
                    while True:  # the backlog, a chunk at a time off the loop
                        messages, reached = await off_loop(lambda p=pos: read(p))
                        for message in messages:
                            yield message
                        pos = reached
                        if len(messages) < chunk:
                            break
                    if not follow:
                        return
                    try:
                        await asyncio.wait_for(entry[1].wait(), sse_keepalive_s)
                    except TimeoutError:
                        yield KEEPALIVE
            finally:
                hub.unregister(entry)

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @app.post("/flexoffer/measurement", status_code=201, summary="Submit one measurement or a list (all or none)")
    async def measurements(request: Request, party: str = authenticated) -> JSONResponse:
        raw = await read_json_body(request, limits)

        def work() -> JSONResponse:
            items, prefix = _decode_measurements(raw, limits)
            with guard:
                offers = {i: store.get(party, i) for i in {m.flex_offer_id for m in items}}
                check_measurements(items, offers, limits, prefix)
                stored = store.post_measurements(party, items)
            return JSONResponse({"stored": stored}, status_code=201)

        return await off_loop(work)

    @app.get("/flexoffer/{offer_id}", summary="One offer with its state and schedule")
    async def get(offer_id: str, party: str = authenticated) -> JSONResponse:
        return await off_loop(locked(lambda: offer_response(store.get(party, offer_id))))

    @app.put("/flexoffer/{offer_id}", summary="Replace an offer that is not yet assigned")
    async def update(offer_id: str, request: Request, party: str = authenticated) -> JSONResponse:
        raw = await read_json_body(request, limits)

        def work() -> JSONResponse:
            offer = _decode_offer_body(raw)
            with guard:
                return offer_response(store.update(party, offer_id, offer))

        return await off_loop(work)

    @app.delete("/flexoffer/{offer_id}", summary="Withdraw an offer whose operation has not started")
    async def withdraw(offer_id: str, party: str = authenticated) -> JSONResponse:
        return await off_loop(locked(lambda: offer_response(store.withdraw(party, offer_id))))

    @app.get("/flexoffer/{start}/{end}", summary="The caller's offers submitted or updated in [from, to), paged")
    async def between(
        request: Request,
        start: str,
        end: str,
        party: str = authenticated,
        limit: int | None = page_limit,
        cursor: str | None = page_cursor,
    ) -> JSONResponse:
        t0, t1 = _time(start, "from"), _time(end, "to")
        size, after = limits.page_size(limit), decode_cursor(cursor)

        def work() -> JSONResponse:
            with guard:
                offers = store.between(party, t0, t1, after=after, limit=size + 1)
            return _page_response(request, offers, size, lambda o: o.id)

        return await off_loop(work)

    # -- buyers' requests --------------------------------------------------------------
    def request_response(answer: FlexRequest, status: int = 200) -> JSONResponse:
        headers = {"Location": f"/request/{answer.id}"} if status == 201 else None
        return JSONResponse(encode(answer), status_code=status, headers=headers)

    @app.post("/request", status_code=201, summary="Post a buyer's request for flexibility (demand)")
    async def post_request(request: Request, party: str = authenticated, key: str | None = idempotency) -> JSONResponse:
        raw = await read_json_body(request, limits)

        def work() -> JSONResponse:
            wanted = _decode_request(raw)
            with guard:
                answer = store.post_request(party, wanted, idempotency_key=key)
            return request_response(answer, 201)

        return await off_loop(work)

    @app.get("/request", summary="The caller's requests, a page at a time")
    async def list_requests(
        request: Request, party: str = authenticated, limit: int | None = page_limit, cursor: str | None = page_cursor
    ) -> JSONResponse:
        size, after = limits.page_size(limit), decode_cursor(cursor)

        def work() -> JSONResponse:
            with guard:
                answers = store.requests(party, after=after, limit=size + 1)
            return _page_response(request, answers, size, lambda r: r.id)

        return await off_loop(work)

    @app.get("/request/{request_id}", summary="One request with its state, result and awards")
    async def get_request(request_id: str, party: str = authenticated) -> JSONResponse:
        return await off_loop(locked(lambda: request_response(store.get_request(party, request_id))))

    @app.delete("/request/{request_id}", summary="Withdraw a request before its session clears")
    async def withdraw_request(request_id: str, party: str = authenticated) -> JSONResponse:
        return await off_loop(locked(lambda: request_response(store.withdraw_request(party, request_id))))

    # -- grid capacities --------------------------------------------------------------
    def capacity_response(answer: PublishedCapacity, status: int = 200) -> JSONResponse:
        return JSONResponse(encode(answer), status_code=status)

    @app.put("/capacity/{name}", summary="Publish or replace a DSO's grid capacity for the receiver's plan")
    async def put_capacity(name: str, request: Request, party: str = authenticated) -> JSONResponse:
        raw = await read_json_body(request, limits)

        def work() -> JSONResponse:
            capacity = _decode_capacity(raw)
            with guard:
                answer, new = store.publish_capacity(party, capacity, name=name)
            return capacity_response(answer, 201 if new else 200)

        return await off_loop(work)

    @app.get("/capacity", summary="The caller's grid capacities, a page at a time")
    async def list_capacities(
        request: Request, party: str = authenticated, limit: int | None = page_limit, cursor: str | None = page_cursor
    ) -> JSONResponse:
        size, after = limits.page_size(limit), decode_cursor(cursor)

        def work() -> JSONResponse:
            with guard:
                answers = store.capacities(party, after=after, limit=size + 1)
            return _page_response(request, answers, size, lambda c: c.name)

        return await off_loop(work)

    @app.get("/capacity/{name}", summary="One of the caller's grid capacities")
    async def get_capacity(name: str, party: str = authenticated) -> JSONResponse:
        return await off_loop(locked(lambda: capacity_response(store.get_capacity(party, name))))

    @app.delete("/capacity/{name}", summary="Withdraw a grid capacity")
    async def withdraw_capacity(name: str, party: str = authenticated) -> JSONResponse:
        return await off_loop(locked(lambda: capacity_response(store.withdraw_capacity(party, name))))

    # -- time series -------------------------------------------------------------------
    @app.get("/timeseries/{kind}/{start}/{end}", summary="Measured, baseline or scheduled kWh per step")
    async def timeseries(
        kind: str,
        start: str,
        end: str,
        slice_s: int = Query(DEFAULT_SLICE_S, ge=1, le=86_400),
        party: str = authenticated,
    ) -> JSONResponse:
        t0, t1 = _time(start, "from"), _time(end, "to")
        steps = int((t1 - t0).total_seconds() // slice_s)
        if steps > limits.max_timeseries_steps:
            raise invalid(
                "slice_s",
                f"[from, to) holds {steps} steps of {slice_s} s, more than the limit {limits.max_timeseries_steps}",
            )

        def work() -> JSONResponse:
            with guard:
                series = store.timeseries(party, kind, t0, t1, slice_s=slice_s)
            return JSONResponse(
                {"start": format_time(series.start), "slice_s": series.slice_s, "values": list(series.values)}
            )

        return await off_loop(work)

    # -- contract, bill, KPIs ------------------------------------------------------------
    @app.get("/contract", summary="The caller's flexibility contract")
    async def get_contract(party: str = authenticated, who: str | None = party_query) -> JSONResponse:
        provider = provided(contract, "/contract")
        return await off_loop(document(provider, named(party, who, "/contract")))

    @app.get("/bill", summary="The caller's bill")
    async def get_bill(party: str = authenticated, who: str | None = party_query) -> JSONResponse:
        provider = provided(bill, "/bill")
        return await off_loop(document(provider, named(party, who, "/bill")))

    @app.get("/kpi", summary="KPIs over the caller's scope")
    async def get_kpi(party: str = authenticated, who: str | None = party_query) -> JSONResponse:
        provider = provided(kpi, "/kpi")
        return await off_loop(document(provider, scope(party, who)))

    return app

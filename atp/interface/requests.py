"""Buyers' requests: the buy side of the exchange interface (`POST /request`, spec/interface.md).

A `FlexRequest` is demand. A buyer (a BRP balancing its portfolio, a DSO relieving a
congestion point) asks a market (an FMAR) for a change of consumption per step and pays for
what it gets, at most its cut-off price per kWh. A request never travels as a Flex-Offer: an
offer is supply (its issuer sells a deviation from its default schedule), so a buyer's demand
sent as an offer would be sold to the other buyers. The route, the message and its life cycle
are the buyer's own:

    open -> cleared,  or withdrawn

Signs follow the Flex-Offer convention (positive = consumption): `volume_kwh[t] < 0` asks for
*less* consumption in step t (upward regulation), `> 0` for more (downward regulation); step t
covers `[start + t*slice_s, start + (t+1)*slice_s)`.

- `validate_request` lists every problem of a posted request (422, `InvalidOfferError` with
  `what="request"`): a buyer, a grid (`slice_s` divides 86400, `start` on it), finite volumes
  not all zero, a cut-off >= 0 (a negative one would pay the buyer: that is selling), no
  fields that only the receiver sets.
- `RequestBook` keeps one receiver's requests: ids (`rq-<receiver>-<n>`, or the store's
  opaque ids), ownership (another
  party's request is 404), idempotency keys, and the `RequestHandler` of the receiver (the
  market) that places a valid request in a session or refuses it. A receiver without a handler
  takes no requests (404 saying so). Its `on_change` hook tells the store what to persist.
- Once the request's session is cleared, the receiver records a `RequestResult`: what cleared
  per step, what the buyer pays, and the awards; the buyer reads it with `GET /request/{id}`.

Request changes are not streamed as events (the event stream carries offers); a buyer polls.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from atp.errors import InvalidOfferError, Problem
from atp.interface.errors import ConflictError, ForbiddenError, NotFoundError

__all__ = [
    "FlexRequest",
    "RequestAward",
    "RequestBook",
    "RequestHandler",
    "RequestRecord",
    "RequestResult",
    "RequestState",
    "cleared_problems",
    "validate_request",
]

_SECONDS_PER_DAY = 86_400
_RECEIVER_FIELDS = ("id", "state", "posted_at", "result")
_TOL_KWH = 1e-6  # the feasibility tolerance of spec/flexoffer.md


class RequestState(enum.Enum):
    """Where a buyer's request is: waiting for its session's clearing, cleared, or withdrawn."""

    OPEN = "open"
    CLEARED = "cleared"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class RequestAward:
    """A sale that served the request: the seller's offer, its delivered deviation and its price.

    `deviation_kwh[i]` is the seller's change of consumption in the step that begins `i` steps
    after `deviation_start` (signed like the request); `price_eur` is what the seller receives.
    """

    offer_id: str
    issuer: str
    deviation_start: datetime
    deviation_kwh: tuple[float, ...]
    price_eur_per_kwh: float
    price_eur: float


@dataclass(frozen=True)
class RequestResult:
    """What a cleared request bought: per step (on the request's grid) and in money (EUR).

    `cleared_kwh[t]` has the sign of the request's `volume_kwh[t]` and at most its size.
    `buyer_pays_eur` = `sellers_receive_eur` + `transport_fees_eur` + `surplus_eur`, and the
    buyer pays it. `reason` says why nothing cleared (None when something did). Where the
    market is the counterparty of every trade (a two-sided pool, many-to-many), the money is
    the buyer's share of the session's, and each award is listed with the request that took
    most of it.
    """

    cleared_at: datetime
    cleared_kwh: tuple[float, ...]
    buyer_pays_eur: float
    sellers_receive_eur: float
    transport_fees_eur: float
    surplus_eur: float
    awards: tuple[RequestAward, ...] = ()
    reason: str | None = None

    @property
    def cleared_total_kwh(self) -> float:
        """Cleared change in absolute value, summed over steps (kWh)."""
        return math.fsum(abs(v) for v in self.cleared_kwh)


@dataclass(frozen=True)
class FlexRequest:
    """A buyer's request for flexibility (the body of `POST /request` and of its answers).

    The buyer sets `buyer` (the calling party), `start`, `slice_s`, `volume_kwh` (the change of
    consumption wanted per step: negative = less), `cutoff_eur_per_kwh` (the most it pays per
    kWh delivered), and optionally `congestion_point` (only offers located there may serve it:
    a DSO's local request) and `session` (the market session to join; absent = the open session
    that covers the period and closes its gate first). The receiver sets `id`, `state`,
    `posted_at`, `session` (the one joined) and, once cleared, `result`.
    """

    buyer: str
    start: datetime
    slice_s: int
    volume_kwh: tuple[float, ...]
    cutoff_eur_per_kwh: float
    congestion_point: str | None = None
    session: str | None = None
    id: str | None = None
    state: RequestState | None = None
    posted_at: datetime | None = None
    result: RequestResult | None = None

    @property
    def n_steps(self) -> int:
        """Number of `slice_s` steps the request covers."""
        return len(self.volume_kwh)

    @property
    def total_kwh(self) -> float:
        """Requested change summed over steps, in absolute value (kWh)."""
        return math.fsum(abs(v) for v in self.volume_kwh)


def validate_request(request: FlexRequest, *, max_duration_s: int | None = None) -> list[Problem]:
    """Every problem of a request as a buyer posts it (empty when it may be posted).

    `max_duration_s` bounds the period the request covers (the store's `Limits.max_profile_s`).
    """
    problems: list[Problem] = []
    if not request.buyer:
        problems.append(Problem("buyer", "is empty; name the buying party (a BRP or DSO)", "party"))
    slice_s = request.slice_s
    grid_ok = isinstance(slice_s, int) and not isinstance(slice_s, bool) and slice_s > 0
    grid_ok = grid_ok and _SECONDS_PER_DAY % slice_s == 0
    if not grid_ok:
        problems.append(Problem("slice_s", f"(={slice_s}) must divide 86400 (e.g. 900 or 3600)", "grid"))
    start = request.start
    if start.tzinfo is None:
        problems.append(Problem("start", f"{start.isoformat()} has no timezone; give UTC times", "time"))
    elif grid_ok and start.timestamp() % slice_s:
        problems.append(Problem("start", f"{start.isoformat()} is not on the {slice_s} s grid", "grid"))
    volume = request.volume_kwh
    if not volume:
        problems.append(Problem("volume_kwh", "has no steps; give one kWh value per slice_s step", "volume"))
    elif grid_ok and max_duration_s is not None and len(volume) * slice_s > max_duration_s:
        problems.append(
            Problem(
                "volume_kwh",
                f"covers {len(volume)} steps of {slice_s} s, more than the limit of {max_duration_s} s",
                "volume",
            )
        )
    finite = True
    for i, v in enumerate(volume):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            problems.append(Problem(f"volume_kwh[{i}]", f"{v!r} is not a finite number of kWh", "volume"))
            finite = False
    if volume and finite and all(v == 0 for v in volume):
        problems.append(
            Problem("volume_kwh", "is 0 kWh in every step: the request asks for nothing (negative = less)", "volume")
        )
    cutoff = request.cutoff_eur_per_kwh
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not math.isfinite(cutoff):
        problems.append(Problem("cutoff_eur_per_kwh", f"{cutoff!r} must be a finite price >= 0 EUR/kWh", "price"))
    elif cutoff < 0:
        problems.append(
            Problem(
                "cutoff_eur_per_kwh",
                f"{cutoff} < 0 would pay the buyer for the change it asks for: a request buys; "
                "to sell flexibility, submit a Flex-Offer (POST /flexoffer)",
                "side",
            )
        )
    for name in ("congestion_point", "session"):
        if getattr(request, name) == "":
            problems.append(Problem(name, "is empty; leave it out or name one", "name"))
    for name in _RECEIVER_FIELDS:
        if getattr(request, name) is not None:
            problems.append(Problem(name, "is set by the receiver; leave it out of a request you post", "receiver"))
    return problems


def cleared_problems(volume_kwh: Sequence[float], cleared_kwh: Sequence[float]) -> list[Problem]:
    """Why `cleared_kwh` cannot be what a request for `volume_kwh` bought (empty when it can):
    per step it goes in the requested direction and never beyond the requested size."""
    if len(cleared_kwh) != len(volume_kwh):
        return [Problem("cleared_kwh", f"has {len(cleared_kwh)} steps; the request has {len(volume_kwh)}", "volume")]
    problems: list[Problem] = []
    for i, (cleared, wanted) in enumerate(zip(cleared_kwh, volume_kwh, strict=True)):
        against = cleared * wanted < 0 or wanted == 0
        if against and abs(cleared) > _TOL_KWH:
            problems.append(
                Problem(f"cleared_kwh[{i}]", f"{cleared} kWh goes against the {wanted} kWh requested", "side")
            )
        elif abs(cleared) > abs(wanted) + _TOL_KWH:
            problems.append(
                Problem(f"cleared_kwh[{i}]", f"{cleared} kWh is more than the {wanted} kWh requested", "volume")
            )
    return problems


class RequestHandler(Protocol):
    """What a receiver that trades (an FMAR) does with the requests posted to its store."""

    def place(self, request: FlexRequest) -> str:
        """Take a valid request (its `id` set) into a session; return the session's name.

        Refuse it by raising `InvalidOfferError` (422, naming the field) or an `InterfaceError`.
        """
        ...

    def withdraw(self, request: FlexRequest) -> None:
        """Take the request out of its session; `ConflictError` once the session has cleared."""
        ...


@dataclass
class RequestRecord:
    """What the store keeps of one request."""

    request: FlexRequest
    owner: str
    state: RequestState
    posted_at: datetime
    updated_at: datetime
    session: str
    result: RequestResult | None = None

    def view(self) -> FlexRequest:
        """The request as the wire shows it: with its state, session and, once cleared, result."""
        return dataclasses.replace(
            self.request, state=self.state, posted_at=self.posted_at, session=self.session, result=self.result
        )


class RequestBook:
    """One receiver's buyers' requests (held by its `OfferStore`, which every binding serves)."""

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], datetime],
        id_prefix: str,
        max_duration_s: int,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.max_duration_s = max_duration_s
        self.handler: RequestHandler | None = None
        self.on_change: Callable[[RequestRecord, tuple[str, str] | None], None] | None = None
        """Called with the changed record (and the (party, idempotency key) of a new one): the
        store's hook that persists it."""
        self._prefix = id_prefix
        self._new_id = new_id
        self._n = 0
        self._records: dict[str, RequestRecord] = {}
        self._idempotency: dict[tuple[str, str], FlexRequest] = {}

    def restore(self, records: Iterable[RequestRecord], idempotency: dict[tuple[str, str], FlexRequest]) -> None:
        """Refill the book with stored records (in posting order) and idempotency answers."""
        self._records = {r.request.id or "": r for r in records}
        self._idempotency = dict(idempotency)
        self._n = len(self._records)

    def _changed(self, record: RequestRecord, key: tuple[str, str] | None = None) -> None:
        if self.on_change is not None:
            self.on_change(record, key)

    def _record(self, party: str, request_id: str, *, operator: str) -> RequestRecord:
        record = self._records.get(request_id)
        if record is None or (party != operator and record.owner != party):
            raise NotFoundError(f"no request {request_id!r} for party {party!r}")
        return record

    def _handler(self) -> RequestHandler:
        if self.handler is None:
            raise NotFoundError(
                f"receiver {self.name!r} takes no buyers' requests: post them to a market (FMAR) whose "
                "store has a market attached"
            )
        return self.handler

    def post(self, party: str, request: FlexRequest, *, operator: str, idempotency_key: str | None) -> FlexRequest:
        """Validate, number and place a request; the answer carries its id, state and session."""
        if idempotency_key is not None:
            first = self._idempotency.get((party, idempotency_key))
            if first is not None:
                return first
        handler = self._handler()
        if party != operator and request.buyer != party:
            raise ForbiddenError(f"buyer {request.buyer!r} is not the calling party {party!r}")
        problems = validate_request(request, max_duration_s=self.max_duration_s)
        if problems:
            raise InvalidOfferError(problems, what="request")
        now = self.clock()
        request_id = self._new_id() if self._new_id is not None else f"{self._prefix}-{self._n + 1:06d}"
        numbered = dataclasses.replace(request, id=request_id)
        session = handler.place(numbered)  # refuses by raising; nothing is stored then
        self._n += 1
        owner = party if party != operator else request.buyer
        record = RequestRecord(numbered, owner, RequestState.OPEN, now, now, session)
        self._records[request_id] = record
        answer = record.view()
        if idempotency_key is not None:
            self._idempotency[(party, idempotency_key)] = answer
        self._changed(record, None if idempotency_key is None else (party, idempotency_key))
        return answer

    def get(self, party: str, request_id: str, *, operator: str) -> FlexRequest:
        """One request with its state, session and result."""
        return self._record(party, request_id, operator=operator).view()

    def of(self, party: str, *, operator: str) -> list[FlexRequest]:
        """The party's requests in posting order (every party's for the operator)."""
        return [r.view() for r in self._records.values() if party in (operator, r.owner)]

    def withdraw(self, party: str, request_id: str, *, operator: str) -> FlexRequest:
        """Withdraw an open request; 409 once its session has cleared (or its gate closed)."""
        record = self._record(party, request_id, operator=operator)
        if record.state is not RequestState.OPEN:
            raise ConflictError(f"request {request_id} is {record.state.value}; only open requests can be withdrawn")
        self._handler().withdraw(record.view())
        record.state = RequestState.WITHDRAWN
        record.updated_at = self.clock()
        self._changed(record)
        return record.view()

    def records(self, states: Iterable[RequestState] | None = None) -> list[RequestRecord]:
        """The book's records in posting order, optionally only those in `states`."""
        wanted = set(states) if states is not None else None
        return [r for r in self._records.values() if wanted is None or r.state in wanted]

    def has(self, request_id: str) -> bool:
        """True when `request_id` was posted here."""
        return request_id in self._records

    def record_result(self, request_id: str, result: RequestResult) -> FlexRequest:
        """The receiver records what an open request's session cleared for it; a result that
        buys against the request's direction or beyond its size is refused (never trusted)."""
        record = self._records.get(request_id)
        if record is None:
            raise NotFoundError(f"no request {request_id!r} at receiver {self.name!r}")
        if record.state is not RequestState.OPEN:
            raise ConflictError(f"request {request_id} is {record.state.value}; only open requests clear")
        problems = cleared_problems(record.request.volume_kwh, result.cleared_kwh)
        if problems:
            raise InvalidOfferError(problems, what=f"result for request {request_id}")
        record.result = result
        record.state = RequestState.CLEARED
        record.updated_at = self.clock()
        self._changed(record)
        return record.view()

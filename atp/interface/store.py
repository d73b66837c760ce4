"""The receiving party's offer store: states, ownership, schedules, measurements and events.

One `OfferStore` sits behind every receiver (an FMAN or an FMAR) and behind all of its
bindings (in-process, HTTP, MQTT), so every binding sees the same offers. It enforces the
protocol of spec/interface.md:

    accepted -> assigned -> executing -> settled,  or rejected,  or withdrawn

- `submit` validates (every problem listed), gives the offer an id and answers it accepted; a
  repeated idempotency key returns the first answer and stores nothing new.
- `update` replaces an offer while it is accepted (409 once assigned); `withdraw` works until
  its operation starts (409 after).
- A party sees only its own offers (another party's answers 404); the operator party sees all.
- The receiver itself assigns, rejects, starts and settles offers; an assigned schedule must be
  feasible for its offer (checked, never trusted).
- Every change is an `Event` with a sequence number, for SSE/MQTT streams and in-process
  subscribers; `events(party, after=n)` resumes without loss.
- Buyers' requests (the buy side, `POST /request`) live beside the offers in a `RequestBook`
  (`atp.interface.requests`): `post_request`, `get_request`, `requests`, `withdraw_request`
  for the buyer; `take_requests(handler)` lets the receiver's market place them in sessions,
  `record_result` writes back what cleared. A store without a handler takes no requests.
- `add_offer_check(check)` lets the receiver refuse offers it must not trade (a market refuses
  a buyer's demand dressed as an offer), with the problems named like any invalid offer.

Time comes from the `clock` callable, so the store runs on simulated or wall-clock time.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.errors import InvalidOfferError, Problem
from atp.flexoffer import (
    FlexOffer,
    Limits,
    Measurement,
    OfferState,
    Schedule,
    check_schedule,
    validate_offer,
)
from atp.interface.errors import ConflictError, ForbiddenError, NotFoundError
from atp.interface.requests import (
    FlexRequest,
    RequestBook,
    RequestHandler,
    RequestRecord,
    RequestResult,
    RequestState,
)

__all__ = ["OPERATOR", "Event", "OfferCheck", "OfferRecord", "OfferStore", "TimeSeries"]

OPERATOR = "operator"


@dataclass(frozen=True)
class Event:
    """One change of one offer: `kind` is accepted, rejected, assigned, updated, executing,
    settled or withdrawn; `offer` carries its state (and schedule, once assigned)."""

    seq: int
    kind: str
    party: str
    offer: FlexOffer
    time: datetime


@dataclass(frozen=True)
class TimeSeries:
    """Energy per step: `values[i]` kWh over [start + i*slice_s, start + (i+1)*slice_s)."""

    start: datetime
    slice_s: int
    values: tuple[float, ...]


@dataclass
class OfferRecord:
    """What the store keeps of one offer."""

    offer: FlexOffer
    owner: str
    state: OfferState
    submitted_at: datetime
    updated_at: datetime
    schedule: Schedule | None = None
    reason: str | None = None
    measurements: dict[datetime, float] = field(default_factory=dict)

    def view(self) -> FlexOffer:
        """The offer as the wire shows it: with its state and, once assigned, its schedule."""
        return dataclasses.replace(self.offer, state=self.state, schedule=self.schedule)

    def operation_start(self) -> datetime | None:
        """When the offer's operation starts: its schedule's start, else the default's."""
        if self.schedule is not None:
            return self.schedule.start
        if self.offer.default_schedule is not None:
            return self.offer.default_schedule.start
        return self.offer.start_after


_OPEN = frozenset({OfferState.ACCEPTED, OfferState.ASSIGNED, OfferState.EXECUTING})

OfferCheck = Callable[[FlexOffer], list[Problem]]
"""A receiver's own check of a submitted offer: the problems that make it refuse the offer."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OfferStore:
    """Offers received by one party (an FMAN or FMAR), with their life cycle and events."""

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        limits: Limits = Limits(),
        id_prefix: str | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.limits = limits
        self._prefix = id_prefix or f"fo-{name}"
        self._ids = itertools.count(1)
        self._records: dict[str, OfferRecord] = {}
        self._idempotency: dict[tuple[str, str], FlexOffer] = {}
        self._events: list[Event] = []
        self._subscribers: list[Callable[[Event], None]] = []
        self._party_subscribers: dict[str, list[Callable[[Event], None]]] = {}
        self._offer_checks: list[OfferCheck] = []
        self.request_book = RequestBook(name, clock=clock, id_prefix=f"rq-{name}", max_duration_s=limits.max_profile_s)

    # -- helpers -------------------------------------------------------------------------
    def _record(self, party: str, offer_id: str) -> OfferRecord:
        record = self._records.get(offer_id)
        if record is None or (party != OPERATOR and record.owner != party):
            raise NotFoundError(f"no offer {offer_id!r} for party {party!r}")
        return record

    def _emit(self, kind: str, record: OfferRecord) -> None:
        event = Event(len(self._events) + 1, kind, record.owner, record.view(), self.clock())
        self._events.append(event)
        for callback in list(self._subscribers):
            callback(event)
        for callback in list(self._party_subscribers.get(event.party, ())):
            callback(event)

    def _validated(self, party: str, offer: FlexOffer) -> FlexOffer:
        if party != OPERATOR and offer.issuer != party:
            raise ForbiddenError(f"issuer {offer.issuer!r} is not the calling party {party!r}")
        problems = validate_offer(offer, limits=self.limits, now=self.clock())
        for check in self._offer_checks:
            problems.extend(check(offer))
        if problems:
            raise InvalidOfferError(problems)
        return offer

    # -- issuer operations (spec/interface.md) ----------------------------------------------
    def submit(
        self, party: str, offer: FlexOffer, *, idempotency_key: str | None = None, max_active: int | None = None
    ) -> FlexOffer:
        """Accept a valid offer: returns it with its new id and state `accepted`.

        Raises InvalidOfferError (422) listing every problem; stores nothing then. With
        `max_active`, ConflictError (409) when the issuer already has that many active offers
        (a repeated idempotency key still returns its first answer).
        """
        if idempotency_key is not None:
            first = self._idempotency.get((party, idempotency_key))
            if first is not None:
                return first
        self._validated(party, offer)
        owner = party if party != OPERATOR else offer.issuer
        if max_active is not None and self.count_active(owner) >= max_active:
            raise ConflictError(
                f"party {owner!r} has {max_active} active offers, the most this receiver keeps; "
                "withdraw one or wait until one settles"
            )
        now = self.clock()
        offer_id = f"{self._prefix}-{next(self._ids):06d}"
        stored = dataclasses.replace(offer, id=offer_id, created_at=offer.created_at or now, state=None, schedule=None)
        record = OfferRecord(stored, party if party != OPERATOR else offer.issuer, OfferState.ACCEPTED, now, now)
        self._records[offer_id] = record
        self._emit("accepted", record)
        answer = record.view()
        if idempotency_key is not None:
            self._idempotency[(party, idempotency_key)] = answer
        return answer

    def update(self, party: str, offer_id: str, offer: FlexOffer) -> FlexOffer:
        """Replace an offer while it is accepted and not yet assigned (409 after)."""
        record = self._record(party, offer_id)
        if record.state is not OfferState.ACCEPTED:
            raise ConflictError(f"offer {offer_id} is {record.state.value}; only accepted offers can be replaced")
        self._validated(party, offer)
        record.offer = dataclasses.replace(
            offer, id=offer_id, created_at=offer.created_at or record.offer.created_at, state=None, schedule=None
        )
        record.updated_at = self.clock()
        self._emit("updated", record)
        return record.view()

    def withdraw(self, party: str, offer_id: str) -> FlexOffer:
        """Withdraw an offer whose operation has not started (409 after)."""
        record = self._record(party, offer_id)
        start = record.operation_start()
        if record.state not in (OfferState.ACCEPTED, OfferState.ASSIGNED) or (
            start is not None and start <= self.clock()
        ):
            raise ConflictError(f"offer {offer_id} cannot be withdrawn: its operation has started or ended")
        record.state = OfferState.WITHDRAWN
        record.updated_at = self.clock()
        self._emit("withdrawn", record)
        return record.view()

    def get(self, party: str, offer_id: str) -> FlexOffer:
        """One offer with its state and schedule."""
        return self._record(party, offer_id).view()

    def _page(self, keep: Callable[[OfferRecord], bool], after: str | None, limit: int | None) -> list[FlexOffer]:
        """Views of the kept records in submission order, from the one after offer id `after`."""
        records: Iterable[OfferRecord] = self._records.values()
        if after is not None:
            rest = itertools.dropwhile(lambda r: r.offer.id != after, records)
            records = itertools.islice(rest, 1, None)
        kept = (r.view() for r in records if keep(r))
        return list(kept if limit is None else itertools.islice(kept, limit))

    def active(self, party: str, *, after: str | None = None, limit: int | None = None) -> list[FlexOffer]:
        """The party's offers not yet settled, rejected or withdrawn (all parties for the operator).

        In submission order; a page: at most `limit`, from the offer after id `after`."""
        return self._page(lambda r: r.state in _OPEN and party in (OPERATOR, r.owner), after, limit)

    def count_active(self, party: str) -> int:
        """How many offers `active(party)` lists."""
        return sum(1 for r in self._records.values() if r.state in _OPEN and party in (OPERATOR, r.owner))

    def between(
        self, party: str, start: datetime, end: datetime, *, after: str | None = None, limit: int | None = None
    ) -> list[FlexOffer]:
        """The party's offers submitted or updated in [start, end), paged as `active`."""
        return self._page(lambda r: party in (OPERATOR, r.owner) and start <= r.updated_at < end, after, limit)

    def post_measurements(self, party: str, measurements: Sequence[Measurement]) -> int:
        """Store metered kWh per offer and step, all or none; returns how many were stored.

        NotFoundError (another party's or an unknown offer) stores nothing of the batch."""
        records = [self._record(party, m.flex_offer_id) for m in measurements]
        for record, m in zip(records, measurements, strict=True):
            record.measurements[m.time] = m.energy
        return len(measurements)

    def timeseries(self, party: str, kind: str, start: datetime, end: datetime, *, slice_s: int) -> TimeSeries:
        """Summed kWh per step of the party's offers: `measurement`, `baseline` or `schedule`."""
        if kind not in ("measurement", "baseline", "schedule"):
            raise NotFoundError(f"no time series {kind!r} (measurement, baseline or schedule)")
        n = max(int((end - start).total_seconds() // slice_s), 0)
        values = np.zeros(n)
        for r in self._records.values():
            if party not in (OPERATOR, r.owner) or r.state in (OfferState.REJECTED, OfferState.WITHDRAWN):
                continue
            if kind == "measurement":
                for t, e in r.measurements.items():
                    i = int((t - start).total_seconds() // slice_s)
                    if 0 <= i < n:
                        values[i] += e
                continue
            sched = r.schedule if kind == "schedule" else r.offer.default_schedule
            if sched is None:
                continue
            step_s = r.offer.slice_s
            for k, e in enumerate(sched.energy):
                t = sched.start + timedelta(seconds=k * step_s)
                i = int((t - start).total_seconds() // slice_s)
                if 0 <= i < n:
                    values[i] += e
        return TimeSeries(start, slice_s, tuple(float(v) for v in values))

    def events(self, party: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        """The party's events with sequence number > `after` (all events for the operator), at most `limit`."""
        kept = (e for e in self._events[after:] if party in (OPERATOR, e.party))
        return list(kept if limit is None else itertools.islice(kept, limit))

    def subscribe(self, callback: Callable[[Event], None], *, party: str | None = None) -> Callable[[], None]:
        """Call `callback` on every event (only the events of `party`, when given); returns a
        function that unsubscribes."""
        callbacks = self._subscribers if party is None else self._party_subscribers.setdefault(party, [])
        callbacks.append(callback)
        return lambda: callbacks.remove(callback)

    # -- buyers' requests (spec/interface.md, POST /request) ---------------------------------
    def post_request(self, party: str, request: FlexRequest, *, idempotency_key: str | None = None) -> FlexRequest:
        """Post a buyer's request: answered open, with its id and the session it joined.

        InvalidOfferError (422, `what="request"`) lists every problem, or says why no session
        takes it; ForbiddenError (403) for another buyer; NotFoundError (404) when this receiver
        takes no requests. A repeated idempotency key returns the first answer.
        """
        return self.request_book.post(party, request, operator=OPERATOR, idempotency_key=idempotency_key)

    def get_request(self, party: str, request_id: str) -> FlexRequest:
        """One request with its state, session and, once cleared, result (404 for another party's)."""
        return self.request_book.get(party, request_id, operator=OPERATOR)

    def requests(self, party: str, *, after: str | None = None, limit: int | None = None) -> list[FlexRequest]:
        """The party's requests in posting order, whatever their state (all for the operator);
        a page: at most `limit`, from the request after id `after`."""
        found = self.request_book.of(party, operator=OPERATOR)
        if after is not None:
            ids = [r.id for r in found]
            found = found[ids.index(after) + 1 :] if after in ids else []
        return found if limit is None else found[:limit]

    def withdraw_request(self, party: str, request_id: str) -> FlexRequest:
        """Withdraw an open request before its session clears (409 after)."""
        return self.request_book.withdraw(party, request_id, operator=OPERATOR)

    def take_requests(self, handler: RequestHandler) -> None:
        """Make this store take buyers' requests, placed by `handler` (the receiver's market)."""
        if self.request_book.handler is not None and self.request_book.handler is not handler:
            raise ConflictError(f"store {self.name!r} already hands its requests to another market")
        self.request_book.handler = handler

    def request_records(self, states: Iterable[RequestState] | None = None) -> list[RequestRecord]:
        """The requests' records in posting order, optionally only those in `states`."""
        return self.request_book.records(states)

    def record_result(self, request_id: str, result: RequestResult) -> FlexRequest:
        """Record what an open request's session cleared for it; refused (InvalidOfferError)
        when it goes against the request's direction or beyond its size."""
        return self.request_book.record_result(request_id, result)

    def add_offer_check(self, check: OfferCheck) -> None:
        """Run `check` on every submitted or replaced offer; its problems refuse the offer (422)."""
        self._offer_checks.append(check)

    # -- receiver operations --------------------------------------------------------------
    def open_offers(self, *, now: datetime | None = None) -> list[FlexOffer]:
        """Accepted offers that can still be assigned at `now` (default: the clock)."""
        now = now or self.clock()
        return [
            r.view()
            for r in self._records.values()
            if r.state is OfferState.ACCEPTED
            and (r.offer.assignment_before is None or r.offer.assignment_before >= now)
        ]

    def records(self, states: Iterable[OfferState] | None = None) -> list[OfferRecord]:
        """The store's records (in submission order), optionally only those in `states`."""
        wanted = set(states) if states is not None else None
        return [r for r in self._records.values() if wanted is None or r.state in wanted]

    def assign(self, offer_id: str, schedule: Schedule) -> FlexOffer:
        """Assign a schedule to an accepted offer; it must be feasible for the offer."""
        record = self._record(OPERATOR, offer_id)
        if record.state is not OfferState.ACCEPTED:
            raise ConflictError(f"offer {offer_id} is {record.state.value}; only accepted offers can be assigned")
        if schedule.flex_offer_id != offer_id:
            raise ConflictError(f"schedule is for {schedule.flex_offer_id}, not {offer_id}")
        problems = check_schedule(record.offer, schedule)
        if problems:
            raise InvalidOfferError(problems, what=f"schedule for {offer_id}")
        record.schedule = schedule
        record.state = OfferState.ASSIGNED
        record.updated_at = self.clock()
        self._emit("assigned", record)
        return record.view()

    def reject(self, offer_id: str, reason: str) -> FlexOffer:
        """Reject an accepted offer (e.g. not worth trading), with the reason."""
        record = self._record(OPERATOR, offer_id)
        if record.state is not OfferState.ACCEPTED:
            raise ConflictError(f"offer {offer_id} is {record.state.value}; only accepted offers can be rejected")
        record.state = OfferState.REJECTED
        record.reason = reason
        record.updated_at = self.clock()
        self._emit("rejected", record)
        return record.view()

    def start(self, offer_id: str) -> FlexOffer:
        """Mark an offer executing (its operation began), with or without an assigned schedule."""
        record = self._record(OPERATOR, offer_id)
        if record.state not in (OfferState.ACCEPTED, OfferState.ASSIGNED):
            raise ConflictError(f"offer {offer_id} is {record.state.value} and cannot start executing")
        record.state = OfferState.EXECUTING
        record.updated_at = self.clock()
        self._emit("executing", record)
        return record.view()

    def settle(self, offer_id: str) -> FlexOffer:
        """Mark an executed offer settled."""
        record = self._record(OPERATOR, offer_id)
        if record.state is not OfferState.EXECUTING:
            raise ConflictError(f"offer {offer_id} is {record.state.value}; only executing offers settle")
        record.state = OfferState.SETTLED
        record.updated_at = self.clock()
        self._emit("settled", record)
        return record.view()

    def problems_of(self, offer_id: str) -> list[Problem]:
        """Why an offer was rejected (empty for other states)."""
        record = self._record(OPERATOR, offer_id)
        return [Problem("", record.reason, "rejected")] if record.reason else []

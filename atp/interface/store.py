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
  subscribers; `events(party, after=n)` resumes without loss. A party's events are numbered
  in its own sequence (1, 2, ...: the numbers tell nothing of other parties' activity), and
  a subscriber for one party gets those; the operator and store-wide subscribers see the
  store-wide sequence.
- Buyers' requests (the buy side, `POST /request`) live beside the offers in a `RequestBook`
  (`atp.interface.requests`): `post_request`, `get_request`, `requests`, `withdraw_request`
  for the buyer; `take_requests(handler)` lets the receiver's market place them in sessions,
  `record_result` writes back what cleared. A store without a handler takes no requests.
- A DSO's grid capacities (`PUT /capacity/{name}`) live in a `CapacityBook`
  (`atp.interface.capacity`): `publish_capacity`, `get_capacity`, `capacities`,
  `withdraw_capacity`; the receiver's FMAN plans within `capacity_book.in_force()`.
- `add_offer_check(check)` lets the receiver refuse offers it must not trade (a market refuses
  a buyer's demand dressed as an offer), with the problems named like any invalid offer.

Time comes from the `clock` callable, so the store runs on simulated or wall-clock time.

Durability: without a journal the store lives in memory (the simulation, the tests). With one
(`atp.interface.persist`: SQLite or PostgreSQL; `open_store(url, name)`) every operation's rows
are committed before it returns and before any subscriber hears of it, and a new store on the
same database starts where the last one stopped: offers, schedules, measurements, requests,
idempotency answers and events with their sequence numbers. If a commit fails, the store
reloads itself from the database and raises `StoreUnavailableError` (503): what it answers is
always what is stored. `transaction()` groups operations into one commit. With group commit
(`group_commit=True`, what `goflex-atp serve` uses) an operation returns before its commit, a
writer thread commits all waiting operations at once, events are read and told only once
committed, `sync()` waits for the commit, and a failed commit makes every later operation
answer 503 until the server is restarted.

Ids: `opaque_ids=True` (every durable store, `goflex-atp serve`) gives random ids
(`fo-<name>-<16 hex>`) that tell a party nothing of other parties' offers; the default numbers
them `fo-<name>-000001`, ... in submission order (reproducible simulation runs).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import itertools
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from atp.interface.capacity import CapacityBook, PublishedCapacity
from atp.interface.errors import ConflictError, ForbiddenError, NotFoundError
from atp.interface.persist import (
    Batch,
    GroupCommitter,
    Journal,
    JournalError,
    open_journal,
    read_capacity,
    read_offer,
    read_request,
    write_json,
)
from atp.interface.records import Event, OfferRecord, StoreUnavailableError, TimeSeries, UnknownEventError
from atp.interface.requests import (
    FlexRequest,
    RequestBook,
    RequestHandler,
    RequestRecord,
    RequestResult,
    RequestState,
)

__all__ = [
    "OPERATOR",
    "Event",
    "OfferCheck",
    "OfferRecord",
    "OfferStore",
    "StoreUnavailableError",
    "TimeSeries",
    "UnknownEventError",
    "open_store",
]

OPERATOR = "operator"


_OPEN = frozenset({OfferState.ACCEPTED, OfferState.ASSIGNED, OfferState.EXECUTING})
_CLOSING = frozenset({"rejected", "withdrawn", "settled"})  # the events that end an open offer

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
        journal: Journal | None = None,
        opaque_ids: bool = False,
        group_commit: bool = False,
    ) -> None:
        self.name = name
        self.clock = clock
        self.limits = limits
        self.journal = journal
        self.opaque_ids = opaque_ids
        self._prefix = id_prefix or f"fo-{name}"
        self._records: dict[str, OfferRecord] = {}
        self._order: dict[str, int] = {}  # submission number of each offer id (the journal's row order)
        self._request_order: dict[str, int] = {}
        self._idempotency: dict[tuple[str, str], FlexOffer] = {}
        self._events: list[Event] = []
        self._subscribers: list[Callable[[Event], None]] = []
        self._party_subscribers: dict[str, list[Callable[[Event], None]]] = {}
        self._each_party_subscribers: list[Callable[[Event], None]] = []
        self._offer_checks: list[OfferCheck] = []
        self._active_counts: Counter[str] | None = None  # per owner; counted on first use, then kept
        self._party_events: dict[str, list[Event]] = {}  # each party's events, numbered 1, 2, ... for it
        self._party_global: dict[str, list[int]] = {}  # the store-wide seq of each of them
        self._unsent: list[tuple[Event, Event]] = []  # (store-wide, party's) of the operation under way
        self._visible = 0  # events[:_visible] are committed: only those are read or told
        self._committer: GroupCommitter | None = None
        self._batch = Batch()
        self._depth = 0
        new_request_id = (lambda: self._opaque_id(f"rq-{name}", self.request_book.has)) if opaque_ids else None
        self.request_book = RequestBook(
            name, clock=clock, id_prefix=f"rq-{name}", max_duration_s=limits.max_profile_s, new_id=new_request_id
        )
        self.capacity_book = CapacityBook(name, clock=clock, max_steps=limits.max_window_steps)
        self._capacity_n = 0  # the journal's publication order of capacities
        if journal is not None:
            self.request_book.on_change = self._request_changed
            self.capacity_book.on_change = self._capacity_changed
            self._reload()
            if group_commit:
                self._committer = GroupCommitter(journal, on_committed=self._committed)

    # -- durability ------------------------------------------------------------------------
    @staticmethod
    def _opaque_id(prefix: str, taken: Callable[[str], bool]) -> str:
        while True:
            candidate = f"{prefix}-{secrets.token_hex(8)}"
            if not taken(candidate):
                return candidate

    def _offer_row(self, record: OfferRecord, view_json: str) -> tuple[object, ...]:
        offer_id = record.offer.id
        state = record.state.value
        times = record.submitted_at.isoformat(), record.updated_at.isoformat()
        return (self._order[offer_id or ""], offer_id, record.owner, state, *times, record.reason, view_json)

    def _request_changed(self, record: RequestRecord, key: tuple[str, str] | None) -> None:
        view = record.view()
        text = write_json(view)
        order = self._request_order.setdefault(view.id or "", len(self._request_order) + 1)
        self._batch.requests.append(
            (order, view.id, record.owner, record.state.value, record.posted_at.isoformat(),
             record.updated_at.isoformat(), record.session, text)
        )  # fmt: skip
        if key is not None:
            self._batch.keys.append(("request", key[0], key[1], text))

    def _capacity_changed(self, publisher: str, name: str, capacity: PublishedCapacity | None) -> None:
        self._capacity_n += 1
        text = None if capacity is None else write_json(capacity)
        self._batch.capacities.append((publisher, name, self._capacity_n, text))

    def _finish(self) -> None:
        """Commit the operation's rows (when durable), then tell the subscribers its events."""
        if self._depth:
            return
        if self._committer is not None:
            if self._batch or self._unsent:
                batch, self._batch, unsent, self._unsent = self._batch, Batch(), self._unsent, []
                try:
                    self._committer.enqueue(batch, unsent)
                except JournalError as exc:
                    raise self._unavailable(exc) from exc
            return
        if self._journal_pending():
            batch, self._batch = self._batch, Batch()
            try:
                self.journal.commit(batch)  # type: ignore[union-attr]
            except JournalError as exc:
                self._unsent = []
                self._reload()
                raise StoreUnavailableError(f"store {self.name!r}: {exc}; nothing of the change was kept") from exc
        unsent, self._unsent = self._unsent, []
        self._visible = len(self._events)
        self._tell(unsent)

    def _tell(self, events: list[tuple[Event, Event]]) -> None:
        for event, own in events:
            for callback in list(self._subscribers):
                callback(event)
            for callback in list(self._party_subscribers.get(event.party, ())):
                callback(own)
            for callback in list(self._each_party_subscribers):
                callback(own)

    def _committed(self, payloads: list[list[tuple[Event, Event]]]) -> None:
        """The group committer's report (on its thread): these operations' events are stored."""
        events = [pair for unsent in payloads for pair in unsent]
        if events:
            self._visible = events[-1][0].seq
        self._tell(events)

    def _number(self, event: Event) -> Event:
        """File a store-wide event under its party: the party's copy, numbered in its own sequence."""
        own = self._party_events.setdefault(event.party, [])
        numbered = Event(len(own) + 1, event.kind, event.party, event.offer, event.time)
        own.append(numbered)
        self._party_global.setdefault(event.party, []).append(event.seq)
        return numbered

    def _unavailable(self, exc: JournalError) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"store {self.name!r}: {exc}; what was not committed is lost, restart the server to go on"
        )

    def _journal_pending(self) -> bool:
        return self.journal is not None and bool(self._batch)

    @property
    def pending(self) -> int:
        """The group commit's ticket of the last operation (0 when every operation is committed
        on return: a store without group commit)."""
        return self._committer.latest if self._committer is not None else 0

    @property
    def commit_failed(self) -> bool:
        """True once a group commit has failed (every later operation answers 503)."""
        return self._committer is not None and self._committer.failure is not None

    def is_committed(self, ticket: int) -> bool:
        """True once the operations up to `ticket` (from `pending`) are committed."""
        return self._committer is None or self._committer.committed(ticket)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the writer thread) after each group commit and after a failed
        one; a store without group commit never calls it (its operations commit on return)."""
        if self._committer is not None:
            self._committer.listeners.append(callback)

    def sync(self, ticket: int | None = None) -> None:
        """Wait until the operations up to `ticket` (default: all so far) are committed;
        StoreUnavailableError (503) if the database refused them. Call it without holding the
        lock that guards the store, so that other operations join the next commit."""
        if self._committer is None:
            return
        try:
            self._committer.wait(ticket)
        except JournalError as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        """Commit what waits and close the store's database (a durable store); the store must
        not be used after."""
        if self._committer is not None:
            self._committer.close()
        if self.journal is not None:
            self.journal.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the operations of a `with` block into one commit (at its end); subscribers
        hear of their events after it. The operations that succeeded are committed even when
        the block raises (as without a journal, where nothing is undone)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self._finish()

    def _reload(self) -> None:
        """Refill the store from its journal (at start, and after a failed commit)."""
        assert self.journal is not None
        rows = self.journal.load()
        self._records, self._order, self._events, self._idempotency = {}, {}, [], {}
        self._party_events, self._party_global = {}, {}
        self._active_counts = None
        views: dict[str, FlexOffer] = {}  # an event that shows an offer as it is now shares its object
        for n, offer_id, owner, state, submitted, updated, reason, text in rows.offers:
            view = views[text] = read_offer(text)
            offer = dataclasses.replace(view, state=None, schedule=None)
            self._records[offer_id] = OfferRecord(
                offer, owner, OfferState(state), datetime.fromisoformat(submitted), datetime.fromisoformat(updated),
                view.schedule, reason,
            )  # fmt: skip
            self._order[offer_id] = n
        for offer_id, time, energy_kwh in rows.measurements:
            self._records[offer_id].measurements[datetime.fromisoformat(time)] = energy_kwh
        for seq, kind, party, time, text in rows.events:
            shown = views.get(text)
            event = Event(seq, kind, party, shown or read_offer(text), datetime.fromisoformat(time))
            self._events.append(event)
            self._number(event)
        self._visible = len(self._events)
        requests = []
        request_keys = {}
        self._request_order = {}
        for n, request_id, owner, state, posted, updated, session, text in rows.requests:
            self._request_order[request_id] = n
            view = read_request(text)
            request = dataclasses.replace(view, state=None, posted_at=None, result=None)
            requests.append(
                RequestRecord(
                    request, owner, RequestState(state), datetime.fromisoformat(posted),
                    datetime.fromisoformat(updated), session, view.result,
                )
            )  # fmt: skip
        for kind, party, key, text in rows.keys:
            if kind == "offer":
                self._idempotency[(party, key)] = read_offer(text)
            else:
                request_keys[(party, key)] = read_request(text)
        self.request_book.restore(requests, request_keys)
        self.capacity_book.restore(read_capacity(text) for *_, text in rows.capacities if text is not None)
        self._capacity_n = max((n for _, _, n, _ in rows.capacities), default=0)

    # -- helpers -------------------------------------------------------------------------
    def _record(self, party: str, offer_id: str) -> OfferRecord:
        record = self._records.get(offer_id)
        if record is None or (party != OPERATOR and record.owner != party):
            raise NotFoundError(f"no offer {offer_id!r} for party {party!r}")
        return record

    def _emit(self, kind: str, record: OfferRecord) -> None:
        """Record the event of a change of `record` (and, when durable, the record's new row);
        `_finish` commits and tells the subscribers."""
        if self._active_counts is not None and kind in _CLOSING:
            self._active_counts[record.owner] -= 1
        view = record.view()
        event = Event(len(self._events) + 1, kind, record.owner, view, self.clock())
        self._events.append(event)
        self._unsent.append((event, self._number(event)))
        if self.journal is not None:
            text = write_json(view)
            self._batch.offers.append(self._offer_row(record, text))
            self._batch.events.append((event.seq, kind, event.party, event.time.isoformat(), text))

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
        n = len(self._records) + 1
        if self.opaque_ids:
            offer_id = self._opaque_id(self._prefix, self._records.__contains__)
        else:
            offer_id = f"{self._prefix}-{n:06d}"
        stored = dataclasses.replace(offer, id=offer_id, created_at=offer.created_at or now, state=None, schedule=None)
        record = OfferRecord(stored, party if party != OPERATOR else offer.issuer, OfferState.ACCEPTED, now, now)
        self._records[offer_id] = record
        self._order[offer_id] = n
        if self._active_counts is not None:
            self._active_counts[record.owner] += 1
        self._emit("accepted", record)
        answer = record.view()
        if idempotency_key is not None:
            self._idempotency[(party, idempotency_key)] = answer
            if self.journal is not None:
                self._batch.keys.append(("offer", party, idempotency_key, self._batch.events[-1][-1]))
        self._finish()
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
        self._finish()
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
        self._finish()
        return record.view()

    def get(self, party: str, offer_id: str) -> FlexOffer:
        """One offer with its state and schedule."""
        return self._record(party, offer_id).view()

    def _page(self, keep: Callable[[OfferRecord], bool], after: str | None, limit: int | None) -> list[FlexOffer]:
        """Views of the kept records in submission order, from the one after offer id `after`."""
        records: Iterable[OfferRecord] = self._records.values()
        if after is not None:
            n = self._order.get(after, 0)  # its submission number: its place in `_records`, skipped in C
            rest = itertools.islice(self._records.values(), max(n - 1, 0), None)
            first = next(rest, None)
            if first is not None and first.offer.id == after:
                records = rest
            else:  # not where its number says (or unknown): look for it
                rest = itertools.dropwhile(lambda r: r.offer.id != after, self._records.values())
                records = itertools.islice(rest, 1, None)
        kept = (r.view() for r in records if keep(r))
        return list(kept if limit is None else itertools.islice(kept, limit))

    def active(self, party: str, *, after: str | None = None, limit: int | None = None) -> list[FlexOffer]:
        """The party's offers not yet settled, rejected or withdrawn (all parties for the operator).

        In submission order; a page: at most `limit`, from the offer after id `after`."""
        return self._page(lambda r: r.state in _OPEN and party in (OPERATOR, r.owner), after, limit)

    def count_active(self, party: str) -> int:
        """How many offers `active(party)` lists (counted once, then kept by every change)."""
        if self._active_counts is None:
            self._active_counts = Counter(r.owner for r in self._records.values() if r.state in _OPEN)
        return sum(self._active_counts.values()) if party == OPERATOR else self._active_counts[party]

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
        if self.journal is not None:
            self._batch.measurements.extend((m.flex_offer_id, m.time.isoformat(), m.energy) for m in measurements)
        self._finish()
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

    @property
    def last_seq(self) -> int:
        """The store-wide sequence number of the last committed event (0 before the first)."""
        return self._visible

    def last_seq_of(self, party: str) -> int:
        """The number of the party's last committed event in its own sequence (the store-wide
        one for the operator)."""
        if party == OPERATOR:
            return self._visible
        return bisect.bisect_right(self._party_global.get(party, ()), self._visible)

    def check_position(self, party: str, after: int) -> None:
        """UnknownEventError (409) unless `after` is a position this store issued to `party`
        (0 .. `last_seq_of(party)`)."""
        last = self.last_seq_of(party)
        if not 0 <= after <= last:
            raise UnknownEventError(
                f"event {after} was never issued by store {self.name!r} to {party!r} (its last event is {last}): "
                "the position is from another store or a store that was replaced; resume from 0 to read every event"
            )

    def events(self, party: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        """The party's events after position `after`, at most `limit`, in order.

        Each party has its own sequence (1, 2, ... over its own events, so the numbers tell
        nothing of other parties); the operator reads every event in the store-wide sequence.
        UnknownEventError (409) for a position `after` beyond the last event issued."""
        last = self.last_seq_of(party)
        self.check_position(party, after)
        source = self._events if party == OPERATOR else self._party_events.get(party, [])
        end = last if limit is None else min(last, after + limit)
        return source[after:end]

    def subscribe(self, callback: Callable[[Event], None], *, party: str | None = None) -> Callable[[], None]:
        """Call `callback` on every event (only the events of `party`, when given); returns a
        function that unsubscribes."""
        callbacks = self._subscribers if party is None else self._party_subscribers.setdefault(party, [])
        callbacks.append(callback)
        return lambda: callbacks.remove(callback)

    def subscribe_each_party(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback` on every event as its party sees it (numbered in the party's own
        sequence, `Event.party` saying whose): what a binding that pushes each party's events
        to that party uses (the MQTT gateway); returns a function that unsubscribes."""
        self._each_party_subscribers.append(callback)
        return lambda: self._each_party_subscribers.remove(callback)

    # -- buyers' requests (spec/interface.md, POST /request) ---------------------------------
    def post_request(self, party: str, request: FlexRequest, *, idempotency_key: str | None = None) -> FlexRequest:
        """Post a buyer's request: answered open, with its id and the session it joined.

        InvalidOfferError (422, `what="request"`) lists every problem, or says why no session
        takes it; ForbiddenError (403) for another buyer; NotFoundError (404) when this receiver
        takes no requests. A repeated idempotency key returns the first answer.
        """
        answer = self.request_book.post(party, request, operator=OPERATOR, idempotency_key=idempotency_key)
        self._finish()
        return answer

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
        answer = self.request_book.withdraw(party, request_id, operator=OPERATOR)
        self._finish()
        return answer

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
        answer = self.request_book.record_result(request_id, result)
        self._finish()
        return answer

    # -- grid capacities (spec/interface.md, PUT /capacity/{name}) ----------------------------
    def publish_capacity(
        self, party: str, capacity: PublishedCapacity, *, name: str | None = None
    ) -> tuple[PublishedCapacity, bool]:
        """Publish or replace the party's capacity `name` (default: the capacity's): (the stored
        capacity, True if it is new). 422 lists every problem, 403 for a party not allowed to."""
        answer = self.capacity_book.publish(party, name or capacity.name, capacity, operator=OPERATOR)
        self._finish()
        return answer

    def get_capacity(self, party: str, name: str) -> PublishedCapacity:
        """The party's capacity `name` (404 for another party's)."""
        return self.capacity_book.get(party, name, operator=OPERATOR)

    def capacities(self, party: str, *, after: str | None = None, limit: int | None = None) -> list[PublishedCapacity]:
        """The party's capacities in publication order (all for the operator); a page: at most
        `limit`, from the capacity after the one named `after`."""
        found = self.capacity_book.of(party, operator=OPERATOR)
        names = [c.name for c in found]
        if after is not None:
            found = found[names.index(after) + 1 :] if after in names else []
        return found if limit is None else found[:limit]

    def withdraw_capacity(self, party: str, name: str) -> PublishedCapacity:
        """Withdraw the party's capacity `name`: the FMAN plans without it from then on."""
        answer = self.capacity_book.withdraw(party, name, operator=OPERATOR)
        self._finish()
        return answer

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
        self._finish()
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
        self._finish()
        return record.view()

    def start(self, offer_id: str) -> FlexOffer:
        """Mark an offer executing (its operation began), with or without an assigned schedule."""
        record = self._record(OPERATOR, offer_id)
        if record.state not in (OfferState.ACCEPTED, OfferState.ASSIGNED):
            raise ConflictError(f"offer {offer_id} is {record.state.value} and cannot start executing")
        record.state = OfferState.EXECUTING
        record.updated_at = self.clock()
        self._emit("executing", record)
        self._finish()
        return record.view()

    def settle(self, offer_id: str) -> FlexOffer:
        """Mark an executed offer settled."""
        record = self._record(OPERATOR, offer_id)
        if record.state is not OfferState.EXECUTING:
            raise ConflictError(f"offer {offer_id} is {record.state.value}; only executing offers settle")
        record.state = OfferState.SETTLED
        record.updated_at = self.clock()
        self._emit("settled", record)
        self._finish()
        return record.view()

    def problems_of(self, offer_id: str) -> list[Problem]:
        """Why an offer was rejected (empty for other states)."""
        record = self._record(OPERATOR, offer_id)
        return [Problem("", record.reason, "rejected")] if record.reason else []


def open_store(
    url: str,
    name: str,
    *,
    clock: Callable[[], datetime] = _utc_now,
    limits: Limits = Limits(),
    group_commit: bool = False,
    opaque_ids: bool = True,
) -> OfferStore:
    """The store `name` on the backend a URL names: `memory`, `sqlite:///PATH` or
    `postgresql://...` (see `atp.interface.persist`), with opaque ids (numbered ones with
    `opaque_ids=False`: reproducible runs); a durable one starts from what its database holds.
    JournalError when the database cannot be opened.

    `group_commit`: operations return before their commit, which a writer thread shares among
    all that wait; `sync()` waits for it (what a server does before it answers)."""
    journal = open_journal(url, store=name)
    return OfferStore(
        name, clock=clock, limits=limits, journal=journal, opaque_ids=opaque_ids, group_commit=group_commit
    )

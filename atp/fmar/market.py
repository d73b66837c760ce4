"""The Flex-Offer Market service: offer store, session calendar, clearing mechanisms, results.

`FlexOfferMarket` is what a market operator runs (D2.1 F2.FMAR5, automatic operation; F2.FMAR6,
monitoring). Issuers submit direct offers to its `OfferStore` through the exchange interface;
buyers (BRPs, DSOs) post their requests through the same interface (`POST /request`, a
`FlexRequest`; `atp.fmar.exchange` turns it into a `Request` for a session and writes the
result back for the buyer to read), or, as a library, post `Request`s to `Session`s of its
calendar with `post_request`; at or after a session's
gate closure `run_session` clears the session's requests with the configured `Mechanism`
over the open offers whose default schedules lie in the delivery period, and assigns the
awarded schedules through the store, so the issuers receive `assigned` events. Offers that win
nothing stay accepted and run their default schedule.

Mechanisms are plug-ins: a subclass of `Mechanism` with a `name` and `version` (recorded in
every result), registered by name with `@register_mechanism` and created with
`create_mechanism(name, **options)`. `atp.fmar.one_sided_pool` registers `one_sided_pool`,
`atp.fmar.session_clearing` `many_to_many`, `atp.fmar.two_sided_pool` `two_sided_pool`.
"""

from __future__ import annotations

import abc
import enum
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from atp.flexoffer import FlexOffer, Limits, Mode, OfferState, format_time
from atp.fmar.errors import MarketError, SessionError, UnknownMechanismError
from atp.fmar.exchange import RequestDesk, buy_side_offer_problems, result_to_wire
from atp.fmar.model import Request, Session, SessionKind, SessionResult
from atp.interface import ConflictError, InProcessClient, OfferStore, cleared_problems

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RESULT_COLUMNS",
    "FlexOfferMarket",
    "Mechanism",
    "SessionState",
    "create_mechanism",
    "mechanism_names",
    "register_mechanism",
    "results_frame",
]


# -- mechanisms ----------------------------------------------------------------------------
class Mechanism(abc.ABC):
    """A market clearing mechanism: requests and offers in, one SessionResult per request out.

    Subclasses set `name` and `version` (provenance, copied into every result), implement
    `clear`, and may override the lifecycle hooks, which do nothing by default.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    @abc.abstractmethod
    def clear(
        self,
        requests: Sequence[Request],
        offers: Sequence[FlexOffer],
        *,
        now: datetime,
        session: Session | None = None,
    ) -> list[SessionResult]:
        """Clear the requests against the offers at `now`; one result per request, in order.

        Awards must name offers from `offers`, each at most once over all results, with
        schedules feasible for their offers and assigned at `now`.
        """

    def on_gate_closure(self, session: Session, *, now: datetime) -> None:  # noqa: B027 (optional hook)
        """Called when a session's clearing begins (after its gate closure). No-op."""

    def on_cleared(  # noqa: B027 (optional hook)
        self, session: Session, results: Sequence[SessionResult], *, now: datetime
    ) -> None:
        """Called after a session's awards were assigned. No-op."""


_MECHANISMS: dict[str, type[Mechanism]] = {}
_M = TypeVar("_M", bound=type[Mechanism])


def register_mechanism(cls: _M) -> _M:
    """Class decorator: make the mechanism available under its `name`."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or not isinstance(getattr(cls, "version", None), str):
        raise MarketError(f"mechanism {cls.__qualname__} needs a `name` and a `version` string to be registered")
    known = _MECHANISMS.get(name)
    if known is not None and known is not cls:
        raise MarketError(f"mechanism name {name!r} is taken by {known.__qualname__}; choose another name")
    _MECHANISMS[name] = cls
    return cls


def mechanism_names() -> list[str]:
    """Names of the registered mechanisms, sorted."""
    return sorted(_MECHANISMS)


def create_mechanism(name: str, **options: Any) -> Mechanism:
    """A new instance of the mechanism registered under `name`, with its keyword `options`."""
    cls = _MECHANISMS.get(name)
    if cls is None:
        raise UnknownMechanismError(f"no mechanism {name!r}; registered: {', '.join(mechanism_names()) or 'none'}")
    params = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(params))
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = ", ".join(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY) or "none"
        raise MarketError(f"mechanism {name!r} has no option {unknown[0]!r} (options: {known})")
    return cls(**options)


# -- sessions ------------------------------------------------------------------------------
class SessionState(enum.Enum):
    """Where a session is in its life: before `opens_at`, taking requests, or cleared."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    CLEARED = "cleared"


@dataclass
class _Book:
    """What the market keeps of one session."""

    session: Session
    requests: list[Request] = field(default_factory=list)
    results: list[SessionResult] | None = None
    n_bids: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _in_delivery(offer: FlexOffer, session: Session) -> bool:
    """True when the offer's default schedule lies in the session's delivery period."""
    default = offer.default_schedule
    if default is None:
        return False
    end = default.start + timedelta(seconds=offer.slice_s * len(default.energy))
    return session.delivery_start <= default.start and end <= session.delivery_end


def _fits(request: Request, session: Session) -> str | None:
    """Why the request does not fit the session's grid and delivery period, else None."""
    if request.slice_s != session.slice_s:
        return f"the request's slice_s {request.slice_s} s differs from session {session.name!r}'s {session.slice_s} s"
    if request.start < session.delivery_start or request.end > session.delivery_end:
        return (
            f"the request period [{format_time(request.start)}, {format_time(request.end)}) is outside "
            f"session {session.name!r}'s delivery period "
            f"[{format_time(session.delivery_start)}, {format_time(session.delivery_end)})"
        )
    return None


class FlexOfferMarket:
    """The market operator's service: offer store, session calendar, clearing and results.

    The store (the receiver of direct offers and of buyers' requests) runs on `clock`; pass
    `store` to use an existing one (its clock is then used; one market per store). The market
    takes the store's requests (`OfferStore.take_requests`) and refuses offers that are a
    buyer's demand (`atp.fmar.exchange.buy_side_offer_problems`). `mechanism` is a registered
    name or a Mechanism instance. `results` keeps every SessionResult in clearing order (for
    market.parquet, `results_frame`).
    """

    def __init__(
        self,
        name: str = "fmar",
        *,
        clock: Callable[[], datetime] = _utc_now,
        mechanism: str | Mechanism = "one_sided_pool",
        limits: Limits = Limits(),
        store: OfferStore | None = None,
    ) -> None:
        self.name = name
        self.store = store if store is not None else OfferStore(name, clock=clock, limits=limits)
        self.clock = self.store.clock
        self.mechanism = create_mechanism(mechanism) if isinstance(mechanism, str) else mechanism
        self.results: list[SessionResult] = []
        self._books: dict[str, _Book] = {}
        self.desk = RequestDesk(self)
        self.store.take_requests(self.desk)
        self.store.add_offer_check(buy_side_offer_problems)

    def client(self, party: str) -> InProcessClient:
        """An in-process exchange client for `party` against this market's store."""
        return InProcessClient(self.store, party)

    # -- calendar ------------------------------------------------------------------------
    def add_session(self, session: Session) -> Session:
        """Put a session on the calendar; names are unique."""
        if session.name in self._books:
            raise SessionError(f"session {session.name!r} is already on the calendar; give the new one another name")
        self._books[session.name] = _Book(session)
        return session

    @property
    def sessions(self) -> list[Session]:
        """The calendar, by gate closure then name."""
        return sorted((b.session for b in self._books.values()), key=lambda s: (s.gate_closure, s.name))

    def _book(self, session: Session | str) -> _Book:
        name = session if isinstance(session, str) else session.name
        book = self._books.get(name)
        if book is None:
            raise SessionError(f"no session {name!r} on the calendar; add it with add_session")
        return book

    def state_of(self, session: Session | str, *, now: datetime | None = None) -> SessionState:
        """Scheduled (before `opens_at`), open (taking requests or awaiting clearing), or cleared."""
        book = self._book(session)
        now = now or self.clock()
        if book.results is not None:
            return SessionState.CLEARED
        if book.session.opens_at is not None and now < book.session.opens_at:
            return SessionState.SCHEDULED
        return SessionState.OPEN

    def sessions_due(self, now: datetime | None = None) -> list[Session]:
        """Sessions whose gate has closed and that are not yet cleared, by gate closure."""
        now = now or self.clock()
        return [s for s in self.sessions if self._books[s.name].results is None and s.gate_closure <= now]

    # -- requests ------------------------------------------------------------------------
    def _refusal(self, book: _Book, request: Request, now: datetime) -> str | None:
        session = book.session
        if book.results is not None:
            return f"session {session.name!r} is already cleared"
        if now >= session.gate_closure:
            return f"session {session.name!r} closed its gate at {format_time(session.gate_closure)}"
        if session.opens_at is not None and now < session.opens_at:
            return f"session {session.name!r} opens at {format_time(session.opens_at)}"
        return _fits(request, session)

    def post_request(self, request: Request, *, session: Session | str | None = None) -> Session:
        """Collect a buyer's request for a session; returns the session it joined.

        Without `session`, the request joins the open session that covers its period and
        closes its gate first, preferring local sessions for requests with a congestion point
        and the others otherwise.
        """
        now = self.clock()
        if session is not None:
            book = self._book(session)
            refusal = self._refusal(book, request, now)
            if refusal is not None:
                raise SessionError(f"request not accepted: {refusal}")
        else:
            fitting = [b for b in self._books.values() if self._refusal(b, request, now) is None]
            if not fitting:
                raise SessionError(
                    f"no open session covers [{format_time(request.start)}, {format_time(request.end)}) on a "
                    f"{request.slice_s} s grid; add one with add_session or name the session"
                )
            local = request.congestion_point is not None
            book = min(
                fitting,
                key=lambda b: ((b.session.kind is SessionKind.LOCAL) != local, b.session.gate_closure, b.session.name),
            )
        book.requests.append(request)
        return book.session

    def restore_request(self, request: Request, *, session: Session | str) -> None:
        """Put back a request the store acknowledged into the session it had joined (after a
        restart: its gate may have closed meanwhile; it clears at the next `run_due`)."""
        book = self._book(session)
        if book.results is not None:
            raise SessionError(f"session {book.session.name!r} is already cleared")
        book.requests.append(request)
        if request.id is not None:
            self.desk.ids.add(request.id)  # its result goes back to the store

    def withdraw_request(self, request_id: str, *, now: datetime | None = None) -> Request:
        """Take a request out of the session it joined, before that session's gate closes.

        ConflictError once the gate has closed or the session has cleared; SessionError for an
        id that no session holds.
        """
        now = now or self.clock()
        for book in self._books.values():
            for i, request in enumerate(book.requests):
                if request.id != request_id:
                    continue
                if book.results is not None or now >= book.session.gate_closure:
                    raise ConflictError(
                        f"request {request_id} cannot be withdrawn: session {book.session.name!r} closed its "
                        f"gate at {format_time(book.session.gate_closure)}"
                    )
                return book.requests.pop(i)
        raise SessionError(f"no session holds a request {request_id!r}")

    def requests_of(self, session: Session | str) -> list[Request]:
        """The requests collected for a session, in posting order."""
        return list(self._book(session).requests)

    # -- clearing ------------------------------------------------------------------------
    def _offers_for(self, session: Session, now: datetime) -> list[FlexOffer]:
        return [o for o in self.store.open_offers(now=now) if _in_delivery(o, session)]

    def run_session(self, session: Session | str, *, now: datetime | None = None) -> list[SessionResult]:
        """Clear a session's requests at `now` (at or after its gate closure) and assign the awards.

        Offers that win nothing stay accepted; offers past their assignment_before are left
        alone. A session clears once; its results are kept in `results` as well.
        """
        book = self._book(session)
        session = book.session
        now = now or self.clock()
        if book.results is not None:
            raise SessionError(f"session {session.name!r} is already cleared; its results are in `results`")
        if now < session.gate_closure:
            raise SessionError(
                f"session {session.name!r} closes its gate at {format_time(session.gate_closure)}; "
                f"run it then or later, not at {format_time(now)}"
            )
        offers = self._offers_for(session, now)
        self.mechanism.on_gate_closure(session, now=now)
        results = self.mechanism.clear(list(book.requests), offers, now=now, session=session)
        self._check_awards(results, offers, book.requests)
        for result in results:
            for award in result.awards:
                self.store.assign(award.offer_id, award.schedule)
        for result in results:  # the buyers that posted through the interface read their results there
            if result.request_id is not None and result.request_id in self.desk.ids:
                self.store.record_result(result.request_id, result_to_wire(result))
        book.results = list(results)
        book.n_bids = sum(1 for o in offers if o.mode is Mode.DIRECT)
        self.results.extend(results)
        self.mechanism.on_cleared(session, results, now=now)
        return list(results)

    def _check_awards(
        self, results: Sequence[SessionResult], offers: Sequence[FlexOffer], requests: Sequence[Request]
    ) -> None:
        """Refuse a mechanism's answer before anything is assigned if it breaks its contract:
        one result per request, each buying in its request's direction, offers awarded once."""
        if len(results) != len(requests):
            raise MarketError(
                f"mechanism {self.mechanism.name} returned {len(results)} results for {len(requests)} requests"
            )
        for request, result in zip(requests, results, strict=True):
            problems = cleared_problems(request.volume_kwh, result.cleared_kwh)
            if problems:
                raise MarketError(
                    f"mechanism {self.mechanism.name} cleared request {request.id or request.buyer!r} against "
                    f"the buyer: {'; '.join(map(str, problems[:3]))}"
                )
        offered = {o.id for o in offers}
        awarded: set[str] = set()
        for result in results:
            for award in result.awards:
                if award.offer_id not in offered or award.offer_id in awarded:
                    raise MarketError(
                        f"mechanism {self.mechanism.name} awarded offer {award.offer_id!r}, which was not "
                        "in the session or was awarded twice"
                    )
                awarded.add(award.offer_id)

    def reject_expired(self, now: datetime | None = None) -> list[str]:
        """Tell the losing bidders (F2.FMAR5): every accepted offer that can no longer win - its
        assignment deadline has passed, or its default operation has begun - is rejected with
        the reason, so its issuer gets a `rejected` event and runs its default schedule.
        Returns the rejected offer ids."""
        now = now or self.clock()
        out = []
        for record in self.store.records((OfferState.ACCEPTED,)):
            offer = record.offer
            if offer.assignment_before is not None and offer.assignment_before < now:
                deadline = format_time(offer.assignment_before)
                reason = f"no award in any session before its assignment deadline {deadline}"
            elif (start := record.operation_start()) is not None and start <= now:
                reason = f"no award before its operation began at {format_time(start)}; it runs its default schedule"
            else:
                continue
            assert offer.id is not None
            self.store.reject(offer.id, reason)
            out.append(offer.id)
        return out

    def run_due(self, now: datetime | None = None) -> list[SessionResult]:
        """Clear every session whose gate has closed (automatic operation, F2.FMAR5)."""
        now = now or self.clock()
        results: list[SessionResult] = []
        for session in self.sessions_due(now):
            results.extend(self.run_session(session, now=now))
        return results

    # -- monitoring ----------------------------------------------------------------------
    def status(self, *, now: datetime | None = None) -> list[dict[str, Any]]:
        """One row per session (F2.FMAR6): its times, state, requests, bids, awards and volumes.

        `n_bids` counts the direct offers in the delivery period: live while the session is
        open, as handed to the mechanism once it is cleared.
        """
        now = now or self.clock()
        open_offers: list[FlexOffer] | None = None
        rows = []
        for session in self.sessions:
            book = self._books[session.name]
            state = self.state_of(session, now=now)
            if book.results is None:
                if open_offers is None:
                    open_offers = self.store.open_offers(now=now)
                n_bids = sum(1 for o in open_offers if o.mode is Mode.DIRECT and _in_delivery(o, session))
            else:
                n_bids = book.n_bids
            results = book.results or []
            rows.append(
                {
                    "session": session.name,
                    "kind": session.kind.value,
                    "gate_closure": session.gate_closure,
                    "delivery_start": session.delivery_start,
                    "delivery_end": session.delivery_end,
                    "state": state.value,
                    "mechanism": self.mechanism.name,
                    "pricing": getattr(getattr(self.mechanism, "pricing", None), "value", "pay_as_bid"),
                    "n_requests": len(book.requests),
                    "n_bids": n_bids,
                    "n_awards": sum(r.n_awards for r in results),
                    "requested_kwh": sum(r.total_kwh for r in book.requests),
                    "cleared_kwh": sum(r.cleared_total_kwh for r in results),
                }
            )
        return rows


RESULT_COLUMNS = (
    "session",
    "kind",
    "mechanism",
    "version",
    "gate_closure",
    "request_id",
    "buyer",
    "n_bids",
    "n_awards",
    "requested_kwh",
    "cleared_kwh",
    "mean_price_eur_per_kwh",
    "max_price_eur_per_kwh",
    "buyer_pays_eur",
    "sellers_receive_eur",
    "transport_fees_eur",
    "surplus_eur",
    "reason",
)


def results_frame(results: Sequence[SessionResult]) -> pd.DataFrame:
    """One row per session and request (columns `RESULT_COLUMNS`), for market.parquet.

    Volumes are absolute kWh summed over steps; prices EUR/kWh (NaN when nothing cleared).
    """
    import pandas as pd  # the library imports without pandas; only this table needs it

    rows = [
        {
            "session": r.session,
            "kind": r.kind.value if r.kind is not None else None,
            "mechanism": r.mechanism,
            "version": r.mechanism_version,
            "gate_closure": r.gate_closure,
            "request_id": r.request_id,
            "buyer": r.buyer,
            "n_bids": r.n_bids,
            "n_awards": r.n_awards,
            "requested_kwh": r.requested_total_kwh,
            "cleared_kwh": r.cleared_total_kwh,
            "mean_price_eur_per_kwh": r.mean_price_eur_per_kwh,
            "max_price_eur_per_kwh": r.max_price_eur_per_kwh,
            "buyer_pays_eur": r.buyer_pays_eur,
            "sellers_receive_eur": r.sellers_receive_eur,
            "transport_fees_eur": r.transport_fees_eur,
            "surplus_eur": r.surplus_eur,
            "reason": r.reason,
        }
        for r in results
    ]
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    frame["gate_closure"] = pd.to_datetime(frame["gate_closure"], utc=True)
    for column in ("mean_price_eur_per_kwh", "max_price_eur_per_kwh"):
        frame[column] = frame[column].astype(float)
    return frame

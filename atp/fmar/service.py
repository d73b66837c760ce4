"""The FMAR as a service (D2.1 7.5, F2.FMAR5-7): a market that trades on its own in wall-clock time.

`MarketService` wraps a `FlexOfferMarket` over the receiver's store with its calendar and its
DOMS face; `MarketLoop` runs `MarketService.tick` every few seconds beside the HTTP binding
(`goflex-atp serve --role fmar`). A tick:

1. puts the sessions of today and tomorrow (local days of the calendar) on the market's
   calendar, once each (day-ahead gate the day before, intraday gates);
2. clears every session whose gate has closed (`run_due`): the awarded offers are assigned
   (their issuers receive `assigned` events), the buyers' requests get their results;
3. rejects the offers that can no longer win (`reject_expired`: `rejected` events);
4. moves offers to executing and settled by the clock (`atp.interface.lifecycle.advance`).

A DSO registers a congestion point (`register_congestion`, `POST /doms/congestion_point`): the
market opens a local session on demand for it and posts the DSO's local request there (a
request, bought and never sold). `status()` is the operator's view (F2.FMAR6): configuration,
calendar and one row per session.

After a restart the market's sessions come back from the calendar, and every open request the
store kept is placed again in its session (`restore`), so a buyer's acknowledged request still
clears.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from atp.fmar.calendar import MarketCalendar
from atp.fmar.doms import CompletedBid, CongestionPoint, DomsInterface
from atp.fmar.errors import SessionError
from atp.fmar.exchange import request_from_wire
from atp.fmar.market import FlexOfferMarket, create_mechanism
from atp.fmar.model import Session, SessionResult
from atp.interface import FlexRequest
from atp.interface.lifecycle import Moved, advance
from atp.interface.periodic import PeriodicTask
from atp.interface.requests import RequestState

__all__ = ["MarketLoop", "MarketService", "Tick"]


@dataclass(frozen=True)
class Tick:
    """What one tick did: sessions put on the calendar, results cleared, offers rejected, moved."""

    opened: tuple[str, ...]
    results: tuple[SessionResult, ...]
    rejected: tuple[str, ...]
    moved: Moved


class MarketService:
    """A market with its calendar, its DOMS interface and its operator's view."""

    def __init__(self, market: FlexOfferMarket, calendar: MarketCalendar) -> None:
        if calendar.slice_s <= 0 or 86_400 % calendar.slice_s:
            raise SessionError(f"the calendar's slice_s(={calendar.slice_s}) must divide 86400")
        self.market = market
        self.calendar = calendar
        self.doms = DomsInterface(market)

    @property
    def store(self) -> Any:
        """The market's offer store (what the HTTP binding serves)."""
        return self.market.store

    def open_calendar(self, now: datetime) -> list[Session]:
        """Put today's and tomorrow's sessions (local days) on the calendar, once each."""
        today = now.astimezone(self.calendar.timezone).date()
        known = {s.name for s in self.market.sessions}
        added = []
        for day in (today, today + timedelta(days=1)):
            for session in self.calendar.sessions_for_day(day):
                if session.name not in known:
                    added.append(self.market.add_session(session))
        return added

    def restore(self, now: datetime) -> int:
        """Place every open request of the store in its session again (after a restart); the
        sessions must be on the calendar (`open_calendar`). Returns how many were placed."""
        self.open_calendar(now)
        known = {s.name for s in self.market.sessions}
        placed = 0
        for record in self.market.store.request_records((RequestState.OPEN,)):
            request = request_from_wire(record.view())
            if record.session not in known:  # a local session made on demand: again, its gate now
                local = self.calendar.local_session(
                    request.congestion_point or "-", now=now, delivery_start=request.start, n_steps=request.n_steps
                )
                self.market.add_session(dataclasses.replace(local, name=record.session))
                known.add(record.session)
            self.market.restore_request(request, session=record.session)
            placed += 1
        return placed

    def tick(self, now: datetime) -> Tick:
        """One round of automatic operation at `now` (module docstring)."""
        opened = self.open_calendar(now)
        results = self.market.run_due(now)
        rejected = self.market.reject_expired(now)
        moved = advance(self.market.store, now)
        return Tick(tuple(s.name for s in opened), tuple(results), tuple(rejected), moved)

    def register_congestion(self, point: CongestionPoint, *, now: datetime) -> FlexRequest:
        """A DOMS registers a congestion point: a local session on demand, and the DSO's local
        request posted in it (answered with the request's id and session)."""
        n_steps = len(point.desired_kwh)
        session = self.calendar.local_session(point.point, now=now, delivery_start=point.start, n_steps=n_steps)
        if session.name not in {s.name for s in self.market.sessions}:
            self.market.add_session(session)
        return self.doms.register(point, session=session)

    def relevant_prosumers(self, point: str, *, now: datetime) -> list[str]:
        """The issuers of open offers located at `point` (F2.FMAR7)."""
        return self.doms.relevant_prosumers(point, now=now)

    def completed_bids(self, point: str) -> list[CompletedBid]:
        """The cleared local requests of `point` (F2.FMAR7)."""
        return self.doms.completed_bids(point)

    def configure(self, *, mechanism: str) -> None:
        """The operator switches the clearing mechanism (F2.FMAR6): sessions cleared from now on
        use it; UnknownMechanismError for a name that is not registered."""
        self.market.mechanism = create_mechanism(mechanism)

    def status(self, *, now: datetime) -> dict[str, Any]:
        """The operator's view (F2.FMAR6): mechanism, pricing, calendar, one row per session."""
        mechanism = self.market.mechanism
        calendar = self.calendar
        return {
            "market": self.market.name,
            "now": now,
            "mechanism": mechanism.name,
            "pricing": getattr(getattr(mechanism, "pricing", None), "value", "pay_as_bid"),
            "calendar": {
                "timezone": str(calendar.timezone),
                "slice_s": calendar.slice_s,
                "day_ahead_gate": calendar.day_ahead_gate.isoformat(),
                "intraday_gates": [g.isoformat() for g in calendar.intraday_gates],
                "intraday_lead_s": calendar.intraday_lead_s,
                "local_gate_after_s": calendar.local_gate_after_s,
            },
            "sessions": self.market.status(now=now),
        }


class MarketLoop(PeriodicTask[Tick]):
    """`MarketService.tick` every `every_s` seconds on a background thread (a served market)."""

    name = "market"

    def __init__(self, service: MarketService, **options: Any) -> None:
        super().__init__(**options)
        self.service = service

    def work(self, now: datetime) -> Tick:
        """One tick of the market at `now`."""
        return self.service.tick(now)

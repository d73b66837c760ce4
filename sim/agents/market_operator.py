"""Market operator agent: runs the FMAR (atp.fmar), in rolling sessions or on a calendar.

Buyers (the BRP, the DSO) leave standing requests: volumes per step they still want. Each
session posts every buyer's remaining volume over its delivery window as that buyer's request
through the exchange interface (`post_request` of the buyer's in-process client, the buy side:
`atp.interface.FlexRequest`, `POST /request` over HTTP), is cleared with the configured
mechanism (`market.mechanism`, with its pricing rule, transport links and time flexibility
from the market group), and what cleared is subtracted.

- Rolling (default, `market.intraday.gates: null`): at each step an intraday session for
  delivery from the next step over the market horizon. Direct offers arrive one step before
  they start, so a rolling clearing is what lets them all trade.
- Calendar (`market.intraday.gates: ["06:00", ...]`, F2.FMAR5): the sessions of an
  `atp.fmar.MarketCalendar`: the day-ahead session of each local day at
  `market.day_ahead.gate_closure` the day before, intraday sessions at the gates (delivery from
  `market.intraday.lead_s` after the gate to the end of the local day), and a DSO local session
  on demand whenever the DSO registers a congestion point (its own volume only, gate one
  second later). Offers made after a gate wait for the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import mesa
import numpy as np

from atp.fmar import (
    FlexOfferMarket,
    MarketCalendar,
    Session,
    SessionKind,
    SessionResult,
    create_mechanism,
)
from atp.interface import FlexRequest

__all__ = ["MarketOperator", "StandingRequest"]

_GATE_AFTER = timedelta(seconds=0.5)  # requests are posted, then the gate closes and the pool clears


@dataclass
class StandingRequest:
    """What a buyer still wants per step (kWh, + = more consumption), with its cut-off, and the
    largest volume it has asked for each step (kWh, absolute: `asked_kwh`)."""

    buyer: str
    cutoff_eur_per_kwh: float
    remaining_kwh: np.ndarray
    congestion_point: str | None = None
    asked_kwh: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.asked_kwh is None:
            self.asked_kwh = np.zeros(len(self.remaining_kwh))


class MarketOperator(mesa.Agent):
    """The Flex-Offer Market's operator: sessions, requests and clearing."""

    def __init__(
        self,
        model: mesa.Model,
        *,
        market: FlexOfferMarket | Any,
        start: datetime,
        slice_s: int,
        n_steps: int,
        horizon_steps: int,
        calendar: MarketCalendar | None = None,
    ) -> None:
        super().__init__(model)
        market_config = getattr(getattr(model, "config", None), "market", None)
        if market_config is not None and market_config.mechanism_options():
            # The configured pricing rule, transport links and time flexibility (market group).
            market.mechanism = create_mechanism(market_config.mechanism, **market_config.mechanism_options())
        self.market = market
        self.start = start
        self.slice_s = slice_s
        self.n_steps = n_steps
        self.horizon_steps = horizon_steps
        self.standing: dict[str, StandingRequest] = {}
        self.requested_kwh = np.zeros(n_steps)
        self.cleared_kwh = np.zeros(n_steps)
        self.calendar = calendar
        self._planned: list[Session] = _calendar_sessions(calendar, start, n_steps * slice_s) if calendar else []
        self._local_due: list[tuple[str, FlexRequest]] = []  # DSO registrations waiting for their local session
        self._buyers: dict[str, Any] = {}  # each buyer's exchange client, posting its requests

    def client(self, party: str) -> Any:
        """An in-process exchange client of `party` at the market (an FOA's, or a buyer's)."""
        return self.market.client(party)

    def post(self, request: FlexRequest, *, congestion_point: str | None = None) -> None:
        """Add a buyer's request to its standing volumes (a later request for a step replaces it).

        `requested_kwh` counts, per step, the largest volume each buyer has asked for it: a
        request that repeats or refreshes a step (the DSO's, at every forecast) replaces it and
        is not counted again.
        """
        k0 = int((request.start - self.start).total_seconds() // self.slice_s)
        standing = self.standing.setdefault(
            request.buyer,
            StandingRequest(request.buyer, request.cutoff_eur_per_kwh, np.zeros(self.n_steps), congestion_point),
        )
        standing.cutoff_eur_per_kwh = request.cutoff_eur_per_kwh
        assert standing.asked_kwh is not None
        for i, v in enumerate(request.volume_kwh):
            if 0 <= k0 + i < self.n_steps:
                standing.remaining_kwh[k0 + i] = v
                more = max(0.0, abs(v) - standing.asked_kwh[k0 + i])
                standing.asked_kwh[k0 + i] += more
                self.requested_kwh[k0 + i] += more
        if self.calendar is not None and congestion_point is not None:
            self._local_due.append((congestion_point, request))

    def _step(self, at: datetime) -> int:
        return int((at - self.start).total_seconds() // self.slice_s)

    def clear(self, k: int, now: datetime) -> list[SessionResult]:
        """Clear what is due at step k: the rolling session, or the calendar's sessions whose
        gate falls in this step and the DSO's local sessions on demand."""
        if self.calendar is None:
            first, last = k + 1, min(k + 1 + self.horizon_steps, self.n_steps)
            if first >= last:
                return []
            session = Session(
                name=f"intraday-{k:05d}",
                kind=SessionKind.INTRADAY,
                gate_closure=now + _GATE_AFTER,
                delivery_start=self.start + timedelta(seconds=first * self.slice_s),
                delivery_end=self.start + timedelta(seconds=last * self.slice_s),
                slice_s=self.slice_s,
                opens_at=None,
            )
            results = self._run(session, k, None)
        else:
            results = []
            step_end = now + timedelta(seconds=self.slice_s)
            while self._planned and self._planned[0].gate_closure <= step_end:
                session = self._planned.pop(0)
                if session.gate_closure > now:
                    results += self._run(session, k, None)
            for point, request in self._local_due:
                session = self.calendar.local_session(
                    point, now=now, delivery_start=request.start, n_steps=len(request.volume_kwh)
                )
                results += self._run(session, k, request.buyer)
            self._local_due = []
        # Offers that lost their last chance hear it now: `rejected`, and they run their default.
        self.market.reject_expired(now + _GATE_AFTER)
        return results

    def _run(self, session: Session, k: int, buyer: str | None) -> list[SessionResult]:
        """Post the standing volumes (of `buyer`, or all) over the session's window from step
        k+1 on, clear it at its gate and subtract what cleared."""
        first = max(k + 1, self._step(session.delivery_start))
        last = min(self._step(session.delivery_end), self.n_steps)
        if first >= last:
            return []
        delivery_start = self.start + timedelta(seconds=first * self.slice_s)
        self.market.add_session(session)
        posted = False
        for standing in self.standing.values():
            volume = standing.remaining_kwh[first:last]
            if (buyer is not None and standing.buyer != buyer) or not np.any(np.abs(volume) > 1e-9):
                continue
            if standing.buyer not in self._buyers:
                self._buyers[standing.buyer] = self.client(standing.buyer)
            self._buyers[standing.buyer].post_request(
                FlexRequest(
                    buyer=standing.buyer,
                    start=delivery_start,
                    slice_s=self.slice_s,
                    volume_kwh=tuple(float(v) for v in volume),
                    cutoff_eur_per_kwh=standing.cutoff_eur_per_kwh,
                    congestion_point=standing.congestion_point,
                    session=session.name,
                )
            )
            posted = True
        if not posted:  # the buyers' requests are the operator's to post: none, nothing to clear
            return []
        results = self.market.run_session(session, now=session.gate_closure)
        for result in results:
            cleared = np.asarray(result.cleared_kwh, dtype=float)
            span = slice(self._step(result.start), self._step(result.start) + len(cleared))
            self.standing[result.buyer].remaining_kwh[span] -= cleared
            self.cleared_kwh[span] += np.abs(cleared)
        return results


def _calendar_sessions(calendar: MarketCalendar, start: datetime, duration_s: int) -> list[Session]:
    """The calendar's sessions delivering within the run, by gate closure."""
    tz: ZoneInfo = calendar.timezone
    end = start + timedelta(seconds=duration_s)
    day, last_day = start.astimezone(tz).date(), end.astimezone(tz).date()
    sessions = []
    while day <= last_day:
        sessions += [s for s in calendar.sessions_for_day(day) if s.delivery_start < end and s.delivery_end > start]
        day += timedelta(days=1)
    return sorted(sessions, key=lambda s: (s.gate_closure, s.name))

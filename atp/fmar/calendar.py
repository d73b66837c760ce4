"""The market calendar (D2.1 F2.FMAR5): which sessions open and close when, in local time.

A `MarketCalendar` names the day-ahead gate (the day before delivery, local time), the
intraday gates of each day (each session delivers from `intraday_lead_s` after its gate to the
end of the local day) and how DSO local sessions are made on demand. `sessions_for_day` lays a
delivery day out as `Session`s; `open_days` puts them on a market's calendar, after which
`FlexOfferMarket.run_due` clears each session once its gate has closed and assigns the awards
(the bidders receive `assigned` events through the store; offers that win nothing stay accepted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from atp.fmar.market import FlexOfferMarket
from atp.fmar.model import Session, SessionKind

__all__ = ["MarketCalendar", "open_days"]


@dataclass(frozen=True)
class MarketCalendar:
    """Gate times of the day-ahead and intraday sessions (local), and local-session timing."""

    timezone: ZoneInfo
    slice_s: int = 900
    day_ahead_gate: time = time(12, 0)
    intraday_gates: tuple[time, ...] = ()
    intraday_lead_s: int = 3600
    local_gate_after_s: int = 0

    def _utc(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self.timezone).astimezone(UTC)

    def sessions_for_day(self, day: date) -> list[Session]:
        """The day-ahead session delivering `day` (local) and that day's intraday sessions."""
        start, end = self._utc(day, time(0)), self._utc(day + timedelta(days=1), time(0))
        gate = self._utc(day - timedelta(days=1), self.day_ahead_gate)
        sessions = [Session(f"da-{day.isoformat()}", SessionKind.DAY_AHEAD, gate, start, end, self.slice_s)]
        for at in self.intraday_gates:
            gate = self._utc(day, at)
            first = gate + timedelta(seconds=self.intraday_lead_s)
            first += timedelta(seconds=-first.timestamp() % self.slice_s)  # next step on the grid
            if first < end:
                name = f"id-{day.isoformat()}-{at.strftime('%H%M')}"
                sessions.append(Session(name, SessionKind.INTRADAY, gate, first, end, self.slice_s, opens_at=None))
        return sessions

    def local_session(self, point: str, *, now: datetime, delivery_start: datetime, n_steps: int) -> Session:
        """A DSO local session on demand for `point`: gate `local_gate_after_s` after `now`."""
        gate = now + timedelta(seconds=self.local_gate_after_s)
        end = delivery_start + timedelta(seconds=self.slice_s * n_steps)
        name = f"local-{point}-{delivery_start.strftime('%Y%m%dT%H%M')}-{now.strftime('%H%M%S')}"
        return Session(name, SessionKind.LOCAL, gate, delivery_start, end, self.slice_s, opens_at=now)


def open_days(market: FlexOfferMarket, calendar: MarketCalendar, days: Sequence[date]) -> list[Session]:
    """Put the sessions of each delivery day on the market's calendar; returns them."""
    added = []
    for day in days:
        for session in calendar.sessions_for_day(day):
            added.append(market.add_session(session))
    return added

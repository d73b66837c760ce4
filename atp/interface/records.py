"""What the offer store keeps and answers: events, time series, offer records, and the
store's own errors (`atp.interface.store` re-exports them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

from atp.flexoffer import FlexOffer, OfferState, Schedule
from atp.interface.errors import InterfaceError

__all__ = ["Event", "OfferRecord", "StoreUnavailableError", "TimeSeries", "UnknownEventError"]


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


class StoreUnavailableError(InterfaceError):
    """The store's database did not take a change; nothing of it was kept (retry later)."""

    status = 503


class UnknownEventError(InterfaceError):
    """A resume position (`after`, `Last-Event-ID`) beyond the last event this store issued."""

    status = 409

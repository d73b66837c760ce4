"""The Flex-Offer data model (wire format v1, spec/flexoffer.md) as frozen dataclasses.

The dataclasses keep the wire format's own field names so that one field is one JSON key;
units are those of the spec: energies in kWh per `slice_s` step (positive = consumption),
durations in seconds or in `slice_s` steps where the spec says so, money in EUR, prices in
EUR/kWh, times as timezone-aware UTC datetimes.

Sequences are tuples so that every object is immutable and hashable; `codec` turns JSON
lists into tuples and back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

__all__ = [
    "DEFAULT_SLICE_S",
    "Conditional",
    "DefaultSchedule",
    "DependencyPoint",
    "FlexOffer",
    "Location",
    "Measurement",
    "Mode",
    "OfferState",
    "Polytope",
    "Price",
    "Profile",
    "Schedule",
    "Slice",
    "TimeWindow",
]

DEFAULT_SLICE_S = 900

# [d, lower, upper]: bounds of x_i when the energy accumulated before step i is d (kWh).
DependencyPoint = tuple[float, float, float]


class Mode(enum.Enum):
    """How an offer is traded (D2.1 3.3): valued by the aggregator, or at market conditions."""

    DELEGATED = "delegated"
    DIRECT = "direct"


class OfferState(enum.Enum):
    """Life cycle of an offer at its receiver (spec/interface.md)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ASSIGNED = "assigned"
    EXECUTING = "executing"
    SETTLED = "settled"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class Location:
    """Where an offer connects to the grid; only `meter_id` is required."""

    meter_id: str
    bus: int | None = None
    congestion_point: str | None = None


@dataclass(frozen=True)
class Slice:
    """`duration` steps of `slice_s` seconds, each bounded to `energy` = [lower, upper] kWh."""

    duration: int
    energy: tuple[float, float]


@dataclass(frozen=True)
class Polytope:
    """The linear constraint `A @ x <= b` over a profile's step vector x (m x n, m)."""

    A: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]


@dataclass(frozen=True)
class Profile:
    """One (XOR) alternative of an offer: slices plus optional joint constraints."""

    slices: tuple[Slice, ...]
    total_energy: tuple[float, float] | None = None
    polytope: Polytope | None = None
    dependency: tuple[tuple[DependencyPoint, ...], ...] | None = None

    @property
    def n_steps(self) -> int:
        """Number of `slice_s` steps of the profile (the length of its vector x)."""
        return sum(s.duration for s in self.slices)

    def lower_kwh(self) -> np.ndarray:
        """Per-step lower energy bound (kWh), one entry per `slice_s` step."""
        return np.repeat([s.energy[0] for s in self.slices], [s.duration for s in self.slices])

    def upper_kwh(self) -> np.ndarray:
        """Per-step upper energy bound (kWh), one entry per `slice_s` step."""
        return np.repeat([s.energy[1] for s in self.slices], [s.duration for s in self.slices])


@dataclass(frozen=True)
class Conditional:
    """Two-mode conditional operation (D2.1 7.1); expanded into XOR profiles by `expand_conditional`.

    `prior_portion` and `after_portion` of the energy curtailed by an intervention are consumed
    within `prior_s` seconds before and `after_s` seconds after it (pre-load and rebound).
    """

    prior_s: int
    prior_portion: float
    after_s: int
    after_portion: float


@dataclass(frozen=True)
class Price:
    """Prices of an offer: deviation from the default schedule, and an optional energy price."""

    per_kwh_deviation: float | None = None
    per_kwh: float | None = None


@dataclass(frozen=True)
class DefaultSchedule:
    """The baseline operation an offer runs when no schedule is assigned."""

    start: datetime
    profile: int
    energy: tuple[float, ...]


@dataclass(frozen=True)
class Schedule:
    """An assignment: which profile runs from which start with which energy per step."""

    flex_offer_id: str
    start: datetime
    profile: int
    energy: tuple[float, ...]
    assigned_at: datetime | None = None
    price_eur: float | None = None

    def end(self, slice_s: int) -> datetime:
        """End of the last step of the schedule."""
        return self.start + timedelta(seconds=slice_s * len(self.energy))


@dataclass(frozen=True)
class Measurement:
    """Metered kWh of a flexible load over the `slice_s` step that begins at `time`."""

    flex_offer_id: str
    meter_id: str
    time: datetime
    energy: float


@dataclass(frozen=True)
class TimeWindow:
    """The resolved start window of an offer: earliest and latest start, both inclusive."""

    earliest: datetime | None
    latest: datetime | None


@dataclass(frozen=True)
class FlexOffer:
    """A Flex-Offer: time and energy flexibility of one load (or of an aggregate of offers).

    `state` and `schedule` are set by the receiving party (interface.md) and are absent in a
    POST; `members` lists the ids an aggregated offer stands for.
    """

    issuer: str
    mode: Mode
    profiles: tuple[Profile, ...]
    id: str | None = None
    device: str | None = None
    location: Location | None = None
    created_at: datetime | None = None
    assignment_before: datetime | None = None
    start_after: datetime | None = None
    start_before: datetime | None = None
    start_before_duration_s: int | None = None
    slice_s: int = DEFAULT_SLICE_S
    conditional: Conditional | None = None
    default_schedule: DefaultSchedule | None = None
    price: Price | None = None
    members: tuple[str, ...] | None = None
    state: OfferState | None = None
    schedule: Schedule | None = None

    def window(self, now: datetime | None = None) -> TimeWindow:
        """The start window, resolving implicit time flexibility against `now` (D2.1 7.1).

        An absent `start_after` means `now`; `start_before_duration_s` means
        `now + start_before_duration_s`. Without `now`, an implicit bound stays None.
        """
        earliest = self.start_after if self.start_after is not None else now
        if self.start_before is not None:
            latest = self.start_before
        elif self.start_before_duration_s is not None and now is not None:
            latest = now + timedelta(seconds=self.start_before_duration_s)
        else:
            latest = None
        return TimeWindow(earliest, latest)

    @property
    def time_flexibility_s(self) -> int | None:
        """Seconds between earliest and latest start when both are explicit, else None."""
        if self.start_before_duration_s is not None and self.start_after is None:
            return self.start_before_duration_s
        if self.start_after is not None and self.start_before is not None:
            return int((self.start_before - self.start_after).total_seconds())
        return None

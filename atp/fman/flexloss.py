"""Flexibility measures of Flex-Offers and the flexibility lost by aggregation.

Measures of one box (per-step bounds `lower_kwh`, `upper_kwh` of n steps) that may start at
any of `tf + 1` consecutive grid times (time flexibility `tf` in steps), after Valsomatzis et al.
2015 ("Measuring and comparing energy flexibilities"):

- `time_steps` = tf, the time flexibility in steps;
- `energy_kwh` = sum_k (upper_k - lower_k), the energy flexibility;
- `area_kwh_steps`, the area-based measure: the area (kWh x steps) of the time-energy region
  swept by the box over all its start shifts. At absolute step t (0 <= t < n + tf) the shifts
  s in 0..tf with 0 <= t - s < n cover t; the region there is
  [min_s lower_{t-s}, max_s upper_{t-s}], and the area is the sum over t of its widths:

      area = sum_t ( max_{s covers t} upper_{t-s} - min_{s covers t} lower_{t-s} )

  With tf = 0 it equals `energy_kwh`; it grows with both time and energy flexibility and is
  monotone: a box inside another with no more time flexibility has no larger area. (Unlike the
  paper's absolute area, shifts that do not cover t add no zero-energy point, so an offer with
  fixed energy and no time flexibility has area 0.)

The flexibility of an offer (`offer_flexibility`) uses the slice bounds of a profile (profile 0
unless given) and its start window resolved against `now` and put on the grid as aggregation
does. For an aggregate (`aggregate_loss`), each member's *original* flexibility is that of its
offer (the chosen profile's slice bounds, its window resolved at the aggregate's `created_at`,
the `now` of aggregation); what it *keeps* is its box (`MemberBox.lower_kwh`, `upper_kwh`)
with the aggregate's time flexibility. The loss is original minus kept, summed over members;
it is never negative, since the box lies inside the slice bounds and the aggregate's time
flexibility is at most each member's own. A member that keeps its profile
(`MemberBox.keeps_profile`) keeps its slice bounds and its own time flexibility: it loses
nothing.

Over a run the FMAN rebuilds aggregates as offers come and go, so one offer can be a member of
several aggregates in turn; `member_losses` counts each member offer once, in the last of the
given aggregates that holds it (the one it was assigned from, when the caller lists them in
order of use).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from atp.flexoffer import FlexOffer
from atp.fman.aggregation import Aggregate, ceil_to_grid, floor_to_grid
from atp.fman.errors import FmanError

__all__ = [
    "Flexibility",
    "FlexibilityError",
    "FlexibilityLoss",
    "MemberLoss",
    "aggregate_loss",
    "box_flexibility",
    "member_losses",
    "offer_flexibility",
    "portfolio_loss",
]


class FlexibilityError(FmanError):
    """The flexibility of an offer cannot be measured (e.g. its start window cannot be resolved)."""


@dataclass(frozen=True)
class Flexibility:
    """Time flexibility (steps), energy flexibility (kWh) and area-based flexibility (kWh x steps)."""

    time_steps: int
    energy_kwh: float
    area_kwh_steps: float

    def __add__(self, other: Flexibility) -> Flexibility:
        return Flexibility(
            self.time_steps + other.time_steps,
            self.energy_kwh + other.energy_kwh,
            self.area_kwh_steps + other.area_kwh_steps,
        )

    def __sub__(self, other: Flexibility) -> Flexibility:
        return Flexibility(
            self.time_steps - other.time_steps,
            self.energy_kwh - other.energy_kwh,
            self.area_kwh_steps - other.area_kwh_steps,
        )


_ZERO = Flexibility(0, 0.0, 0.0)


@dataclass(frozen=True)
class FlexibilityLoss:
    """Flexibility before and after aggregation, summed over members (and aggregates).

    - `original`: the members' own flexibility (their offers);
    - `kept`: what the members keep inside their aggregates (box, aggregate time flexibility);
    - `aggregated`: the flexibility of the aggregate offers themselves;
    - `n_members`, `n_aggregates`: how many were summed.

    `time_steps`, `energy_kwh` and `area_kwh_steps` are the losses, original minus kept.
    """

    original: Flexibility
    kept: Flexibility
    aggregated: Flexibility
    n_members: int
    n_aggregates: int

    @property
    def loss(self) -> Flexibility:
        """original - kept."""
        return self.original - self.kept

    @property
    def time_steps(self) -> int:
        """Time flexibility lost, in steps, summed over members."""
        return self.loss.time_steps

    @property
    def energy_kwh(self) -> float:
        """Energy flexibility lost, in kWh, summed over members."""
        return self.loss.energy_kwh

    @property
    def area_kwh_steps(self) -> float:
        """Area-based flexibility lost, in kWh x steps, summed over members."""
        return self.loss.area_kwh_steps

    @property
    def area_kept_fraction(self) -> float:
        """Share of the members' area-based flexibility kept (1.0 when they had none)."""
        if self.original.area_kwh_steps <= 0.0:
            return 1.0
        return self.kept.area_kwh_steps / self.original.area_kwh_steps

    def __add__(self, other: FlexibilityLoss) -> FlexibilityLoss:
        return FlexibilityLoss(
            self.original + other.original,
            self.kept + other.kept,
            self.aggregated + other.aggregated,
            self.n_members + other.n_members,
            self.n_aggregates + other.n_aggregates,
        )


def _swept_area(lower: np.ndarray, upper: np.ndarray, time_steps: int) -> float:
    """Area of the region swept by the box over shifts 0..time_steps (see the module docstring)."""
    n = len(lower)
    if n == 0:
        return 0.0
    w = time_steps + 1
    hi = np.concatenate((np.full(time_steps, -np.inf), upper, np.full(time_steps, -np.inf)))
    lo = np.concatenate((np.full(time_steps, np.inf), lower, np.full(time_steps, np.inf)))
    # window j covers padded indices j..j+tf, i.e. box steps t-tf..t for absolute step t = j
    top = sliding_window_view(hi, w).max(axis=1)
    bottom = sliding_window_view(lo, w).min(axis=1)
    return float((top - bottom).sum())


def box_flexibility(lower_kwh: np.ndarray, upper_kwh: np.ndarray, time_steps: int) -> Flexibility:
    """The three measures of a box that may start at any of `time_steps + 1` grid times."""
    if time_steps < 0:
        raise FlexibilityError(f"time_steps(={time_steps}) must not be negative")
    lower = np.asarray(lower_kwh, dtype=float)
    upper = np.maximum(np.asarray(upper_kwh, dtype=float), lower)
    return Flexibility(int(time_steps), float((upper - lower).sum()), _swept_area(lower, upper, time_steps))


def _time_steps(offer: FlexOffer, now: datetime | None) -> int:
    window = offer.window(now)
    if window.earliest is None or window.latest is None:
        raise FlexibilityError(
            f"offer {offer.id!r}: its start window cannot be resolved; give `now` for implicit time flexibility"
        )
    earliest = ceil_to_grid(window.earliest, offer.slice_s)
    if now is not None:
        earliest = max(earliest, ceil_to_grid(now, offer.slice_s))
    latest = floor_to_grid(window.latest, offer.slice_s)
    return max(0, round((latest - earliest).total_seconds() / offer.slice_s))


def offer_flexibility(offer: FlexOffer, *, now: datetime | None = None, profile: int | None = None) -> Flexibility:
    """The flexibility of one offer: its on-grid start window (resolved against `now`) and the
    slice bounds of `profile` (the default schedule's profile, else 0)."""
    if profile is None:
        d = offer.default_schedule
        profile = d.profile if d is not None and 0 <= d.profile < len(offer.profiles) else 0
    if not 0 <= profile < len(offer.profiles):
        raise FlexibilityError(f"profile(={profile}) is not a profile index of offer {offer.id!r}")
    p = offer.profiles[profile]
    return box_flexibility(p.lower_kwh(), p.upper_kwh(), _time_steps(offer, now))


def aggregate_loss(aggregate: Aggregate) -> FlexibilityLoss:
    """Flexibility of an aggregate's members before and after aggregation, and of the aggregate."""
    now = aggregate.offer.created_at
    tf = aggregate.flexibility_steps
    original = _ZERO
    kept = _ZERO
    for m in aggregate.members:
        original = original + offer_flexibility(m.offer, now=now, profile=m.profile)
        kept = kept + box_flexibility(m.lower_kwh, m.upper_kwh, tf)
    aggregated = box_flexibility(aggregate.lower_kwh, aggregate.upper_kwh, tf)
    return FlexibilityLoss(original, kept, aggregated, len(aggregate.members), 1)


def portfolio_loss(aggregates: Iterable[Aggregate]) -> FlexibilityLoss:
    """`aggregate_loss` summed over a portfolio of aggregates (e.g. an `AggregationResult`)."""
    total = FlexibilityLoss(_ZERO, _ZERO, _ZERO, 0, 0)
    for aggregate in aggregates:
        total = total + aggregate_loss(aggregate)
    return total


@dataclass(frozen=True)
class MemberLoss:
    """One member offer's flexibility in its aggregate: its own (`original`) and what it kept."""

    offer_id: str
    device: str
    keeps_profile: bool
    original: Flexibility
    kept: Flexibility

    @property
    def loss(self) -> Flexibility:
        """original - kept."""
        return self.original - self.kept


def member_losses(aggregates: Iterable[Aggregate]) -> list[MemberLoss]:
    """Each member offer once, with its flexibility in the last aggregate (of those given, in
    order) that holds it; members in order of that aggregate."""
    last: dict[str, tuple[Aggregate, int]] = {}
    for aggregate in aggregates:
        for i, m in enumerate(aggregate.members):
            last.pop(m.offer_id, None)  # re-inserted: dict order = order of last use
            last[m.offer_id] = (aggregate, i)
    out = []
    for offer_id, (aggregate, i) in last.items():
        m = aggregate.members[i]
        original = offer_flexibility(m.offer, now=aggregate.offer.created_at, profile=m.profile)
        kept = box_flexibility(m.lower_kwh, m.upper_kwh, aggregate.flexibility_steps)
        out.append(MemberLoss(offer_id, m.offer.device or "", m.keeps_profile, original, kept))
    return out

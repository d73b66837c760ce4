"""Grid capacities: what a DSO lets an aggregator's portfolio draw at its congestion points
(`PUT /capacity/{name}`, spec/interface.md "Grid capacities").

A DSO that manages congestion by grid-aware planning (D2.1 F2.FMAR4, F2.FMAR7) tells each
aggregator, per step, how much energy the flexible load it controls may draw at a feeder or
behind a transformer. The FMAN plans within it (`atp.fman` `GridCapacity`, soft rows: a plan
goes over only where no feasible plan keeps it). A capacity is the DSO's to publish, replace
and withdraw; the FMAN reads every capacity in force when it plans.

    {"name": "cp-esr-3", "start": "2026-01-12T16:00:00Z", "slice_s": 900,
     "kwh": [40.0, 38.5, null, 12.0], "points": [{"congestion_point": "cp-esr-3", "weight": 1.0}]}

Over step t (`[start + t*slice_s, start + (t+1)*slice_s)`), the energy of the portfolio's load
at each listed congestion point times its weight, summed over the points, is at most `kwh[t]`
(`null`: no limit in that step; a negative value asks the portfolio to inject). A feeder's
limit lists its own point with weight 1; a transformer's lists the points behind it, each
weighted by its sensitivity.

- `validate_capacity` lists every problem of a published capacity (422 with its JSON path).
- `CapacityBook` keeps one receiver's capacities, one per (publisher, name): only parties
  allowed to publish (`allow`, the tokens file's `grid_operators`) may; a party reads only its
  own, the operator and the receiver itself read all (`in_force`). Its `on_change` hook tells
  the store what to persist.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from atp.errors import InvalidOfferError, Problem
from atp.interface.errors import ConflictError, ForbiddenError, NotFoundError

__all__ = [
    "MAX_CAPACITIES_PER_PUBLISHER",
    "MAX_CAPACITY_POINTS",
    "CapacityBook",
    "CapacityPoint",
    "PublishedCapacity",
    "capacity_limits",
    "validate_capacity",
]

_SECONDS_PER_DAY = 86_400
_RECEIVER_FIELDS = ("publisher", "published_at")
_MAX_NAME_CHARS = 200
MAX_CAPACITY_POINTS = 1_000
"""Congestion points one capacity may list."""
MAX_CAPACITIES_PER_PUBLISHER = 1_000
"""Capacities one publisher may hold in force at a receiver (beyond: 409)."""


@dataclass(frozen=True)
class CapacityPoint:
    """A congestion point a capacity covers, and how much one kWh there counts against it."""

    congestion_point: str
    weight: float = 1.0


@dataclass(frozen=True)
class PublishedCapacity:
    """A DSO's grid capacity for a portfolio (the body of `PUT /capacity/{name}` and its answers).

    The DSO sets `name` (its name for the limit, e.g. a feeder's or the transformer's), `start`,
    `slice_s`, `kwh` (the limit per step; None: no limit in that step), `points` (the congestion
    points covered, with their weights) and optionally `penalty_weight` (per step, > 0: how much
    an excess in that step matters to the DSO relative to the others, default 1) and `tier_kwh`
    (> 0: the width of the first excess tier, so that an excess the plan cannot avoid is spread
    over steps). The receiver sets `publisher` (the calling party) and `published_at`.
    """

    name: str
    start: datetime
    slice_s: int
    kwh: tuple[float | None, ...]
    points: tuple[CapacityPoint, ...]
    penalty_weight: tuple[float, ...] | None = None
    tier_kwh: float | None = None
    publisher: str | None = None
    published_at: datetime | None = None

    @property
    def n_steps(self) -> int:
        """Number of `slice_s` steps the capacity covers."""
        return len(self.kwh)

    @property
    def weights(self) -> dict[str, float]:
        """Congestion point -> weight."""
        return {p.congestion_point: p.weight for p in self.points}


def validate_capacity(capacity: PublishedCapacity, *, max_steps: int) -> list[Problem]:
    """Every problem of a capacity as a DSO publishes it (empty when it may be published);
    `max_steps` bounds its length (the store's `Limits.max_window_steps`)."""
    problems: list[Problem] = []
    name = capacity.name
    if not name.strip() or len(name) > _MAX_NAME_CHARS or any(c in name for c in "/?#"):
        problems.append(Problem("name", f"must be 1-{_MAX_NAME_CHARS} characters without '/', '?' or '#'", "name"))
    slice_s = capacity.slice_s
    grid_ok = 0 < slice_s <= _SECONDS_PER_DAY and _SECONDS_PER_DAY % slice_s == 0
    if not grid_ok:
        problems.append(Problem("slice_s", f"(={slice_s}) must divide 86400 (e.g. 900 or 3600)", "grid"))
    start = capacity.start
    if start.tzinfo is None:
        problems.append(Problem("start", f"{start.isoformat()} has no timezone; give UTC times", "time"))
    elif grid_ok and start.timestamp() % slice_s:
        problems.append(Problem("start", f"{start.isoformat()} is not on the {slice_s} s grid", "grid"))
    n = len(capacity.kwh)
    if n == 0:
        problems.append(Problem("kwh", "has no steps; give one kWh limit (or null) per slice_s step", "volume"))
    elif n > max_steps:
        problems.append(Problem("kwh", f"has {n} steps, more than the limit of {max_steps}", "volume"))
    points = capacity.points
    if not points:
        problems.append(Problem("points", "names no congestion point; list at least one", "points"))
    elif len(points) > MAX_CAPACITY_POINTS:
        problems.append(Problem("points", f"lists {len(points)} points, more than {MAX_CAPACITY_POINTS}", "points"))
    else:
        seen: set[str] = set()
        for i, point in enumerate(points):
            if not point.congestion_point:
                problems.append(Problem(f"points[{i}].congestion_point", "is empty; name the point", "name"))
            elif point.congestion_point in seen:
                problems.append(
                    Problem(f"points[{i}].congestion_point", f"{point.congestion_point!r} is listed twice", "points")
                )
            seen.add(point.congestion_point)
            if point.weight < 0:
                problems.append(Problem(f"points[{i}].weight", f"{point.weight} must not be negative", "range"))
    weights = capacity.penalty_weight
    if weights is not None:
        if len(weights) != n:
            problems.append(
                Problem("penalty_weight", f"has {len(weights)} values; give one per step of kwh ({n})", "volume")
            )
        for i, w in enumerate(weights):
            if not w > 0:
                problems.append(Problem(f"penalty_weight[{i}]", f"{w} must be positive", "range"))
    if capacity.tier_kwh is not None and not capacity.tier_kwh > 0:
        problems.append(Problem("tier_kwh", f"{capacity.tier_kwh} must be a positive number of kWh", "range"))
    for field in _RECEIVER_FIELDS:
        if getattr(capacity, field) is not None:
            problems.append(
                Problem(field, "is set by the receiver; leave it out of a capacity you publish", "receiver")
            )
    return problems


class CapacityBook:
    """One receiver's grid capacities (held by its `OfferStore`, which every binding serves)."""

    def __init__(self, name: str, *, clock: Callable[[], datetime], max_steps: int) -> None:
        self.name = name
        self.clock = clock
        self.max_steps = max_steps
        self.planner: str | None = None
        """The planner that reads the book (an FMAN sets it); a receiver without one takes no
        capacities (404: an FMAR plans no portfolio)."""
        self.publishers: set[str] = set()
        """Parties that may publish capacities here (the DSOs); the operator always may."""
        self.on_change: Callable[[str, str, PublishedCapacity | None], None] | None = None
        """Called with (publisher, name, the capacity or None once withdrawn): the store's hook
        that persists it."""
        self._capacities: dict[tuple[str, str], PublishedCapacity] = {}

    def allow(self, parties: Collection[str]) -> None:
        """Let `parties` publish capacities at this receiver."""
        self.publishers.update(parties)

    def restore(self, capacities: Iterable[PublishedCapacity]) -> None:
        """Refill the book with stored capacities (in publication order)."""
        self._capacities = {(c.publisher or "", c.name): c for c in capacities}

    def _changed(self, publisher: str, name: str, capacity: PublishedCapacity | None) -> None:
        if self.on_change is not None:
            self.on_change(publisher, name, capacity)

    def publish(
        self, party: str, name: str, capacity: PublishedCapacity, *, operator: str
    ) -> tuple[PublishedCapacity, bool]:
        """Publish or replace the caller's capacity `name`; (the stored capacity, True if new)."""
        if self.planner is None:
            raise NotFoundError(
                f"receiver {self.name!r} plans no portfolio and takes no grid capacities: publish them to an FMAN"
            )
        if party != operator and party not in self.publishers:
            raise ForbiddenError(
                f"party {party!r} may not publish grid capacities at receiver {self.name!r}: only the grid "
                "operators of its tokens file (grid_operators) may"
            )
        if capacity.name != name:
            raise InvalidOfferError(
                [Problem("name", f"{capacity.name!r} is not the {name!r} of the path /capacity/{name}", "name")],
                what="capacity",
            )
        problems = validate_capacity(capacity, max_steps=self.max_steps)
        if problems:
            raise InvalidOfferError(problems, what="capacity")
        key = (party, name)
        new = key not in self._capacities
        if new and sum(1 for p, _ in self._capacities if p == party) >= MAX_CAPACITIES_PER_PUBLISHER:
            raise ConflictError(
                f"party {party!r} holds {MAX_CAPACITIES_PER_PUBLISHER} capacities here, the limit; "
                "withdraw one (DELETE /capacity/{name}) first"
            )
        stored = dataclasses.replace(capacity, publisher=party, published_at=self.clock())
        self._capacities.pop(key, None)  # a replaced capacity moves to the end of the publication order
        self._capacities[key] = stored
        self._changed(party, name, stored)
        return stored, new

    def get(self, party: str, name: str, *, operator: str) -> PublishedCapacity:
        """The caller's capacity `name` (the operator: the first of that name, any publisher)."""
        for (publisher, n), capacity in self._capacities.items():
            if n == name and party in (operator, publisher):
                return capacity
        raise NotFoundError(f"no capacity {name!r} published by party {party!r}")

    def of(self, party: str, *, operator: str) -> list[PublishedCapacity]:
        """The caller's capacities in publication order (every publisher's for the operator)."""
        return [c for (publisher, _), c in self._capacities.items() if party in (operator, publisher)]

    def withdraw(self, party: str, name: str, *, operator: str) -> PublishedCapacity:
        """Withdraw the caller's capacity `name`: the FMAN no longer plans within it."""
        capacity = self.get(party, name, operator=operator)
        del self._capacities[(capacity.publisher or "", name)]
        self._changed(capacity.publisher or "", name, None)
        return capacity

    def in_force(self, *, after: datetime | None = None) -> list[PublishedCapacity]:
        """Every capacity of every publisher (for the receiver's own planning); with `after`,
        only those that still cover a step ending after it."""
        out = list(self._capacities.values())
        if after is not None:
            out = [c for c in out if c.start.timestamp() + c.n_steps * c.slice_s > after.timestamp()]
        return out


def capacity_limits(capacity: PublishedCapacity) -> list[float]:
    """The limit per step, +inf where the capacity sets none."""
    return [math.inf if v is None else v for v in capacity.kwh]

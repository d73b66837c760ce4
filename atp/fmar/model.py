"""Market data of the Flex-Offer Market: requests, bids, awards, sessions and their results.

Units are in the names: energies in kWh per `slice_s` step, prices in EUR/kWh, money in EUR,
times as timezone-aware UTC datetimes on the `slice_s` grid. Signs follow the Flex-Offer
convention (positive = consumption): a request's `volume_kwh[t] < 0` asks for *less*
consumption in step t (upward regulation), `> 0` for more (downward regulation); a bid's and
an award's deviations are changes of consumption relative to the offer's default schedule.

Every object is a frozen dataclass; sequences are tuples. `Request` and `Session` check
themselves on construction and list every problem (`InvalidRequestError`,
`InvalidSessionError`).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from atp.errors import Problem
from atp.flexoffer import FlexOffer, Schedule
from atp.fmar.errors import InvalidRequestError, InvalidSessionError

__all__ = [
    "SECONDS_PER_DAY",
    "Award",
    "Bid",
    "Rejection",
    "Request",
    "Session",
    "SessionKind",
    "SessionResult",
    "result_header",
]

SECONDS_PER_DAY = 86_400


def _grid_problems(slice_s: object, times: dict[str, datetime | None]) -> list[Problem]:
    """Problems with `slice_s` and with times that must be aware and on its grid."""
    problems: list[Problem] = []
    grid_ok = isinstance(slice_s, int) and slice_s > 0 and SECONDS_PER_DAY % slice_s == 0
    if not grid_ok:
        problems.append(Problem("slice_s", f"(={slice_s}) must divide 86400 (e.g. 900 or 3600)", "grid"))
    for name, t in times.items():
        if t is None:
            continue
        if t.tzinfo is None:
            problems.append(Problem(name, f"{t.isoformat()} has no timezone; give UTC times", "time"))
        elif grid_ok and t.timestamp() % slice_s:  # type: ignore[operator]
            problems.append(Problem(name, f"{t.isoformat()} is not on the {slice_s} s grid", "grid"))
    return problems


@dataclass(frozen=True)
class Request:
    """A buyer's (BRP's, DSO's) wish to change consumption, step by step, at a price cap.

    `volume_kwh[t]` is the desired change of consumption in step t, which starts at
    `start + t * slice_s`: negative = less consumption (upward regulation), positive = more.
    `cutoff_eur_per_kwh` is the most the buyer pays per kWh delivered. A set
    `congestion_point` limits the request to offers located there (a local market).
    """

    buyer: str
    start: datetime
    slice_s: int
    volume_kwh: tuple[float, ...]
    cutoff_eur_per_kwh: float
    congestion_point: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "volume_kwh", tuple(float(v) for v in self.volume_kwh))
        problems = _grid_problems(self.slice_s, {"start": self.start})
        if not self.buyer:
            problems.append(Problem("buyer", "is empty; name the buying party (a BRP or DSO)", "party"))
        if not self.volume_kwh:
            problems.append(Problem("volume_kwh", "has no steps; give one kWh value per slice_s step", "volume"))
        for i, v in enumerate(self.volume_kwh):
            if not math.isfinite(v):
                problems.append(Problem(f"volume_kwh[{i}]", f"{v} is not a finite number of kWh", "volume"))
        cutoff = self.cutoff_eur_per_kwh
        if not (isinstance(cutoff, int | float) and math.isfinite(cutoff) and cutoff >= 0):
            problems.append(Problem("cutoff_eur_per_kwh", f"{cutoff} must be a finite price >= 0 EUR/kWh", "price"))
        if problems:
            raise InvalidRequestError(problems)

    @property
    def n_steps(self) -> int:
        """Number of `slice_s` steps the request covers."""
        return len(self.volume_kwh)

    @property
    def end(self) -> datetime:
        """End of the request's last step."""
        return self.start + timedelta(seconds=self.slice_s * self.n_steps)

    @property
    def total_kwh(self) -> float:
        """Requested change summed over steps, in absolute value (kWh)."""
        return math.fsum(abs(v) for v in self.volume_kwh)


@dataclass(frozen=True)
class Bid:
    """A direct offer as the market trades it: deviations from its default at its price.

    `lower_kwh[i] <= 0 <= upper_kwh[i]` bound the change of consumption in step i of the
    offer's default schedule, which starts at `start`; every deviation vector inside these
    bounds gives a feasible schedule (an inner box of the offer, `inner_box_around`).
    """

    offer_id: str
    offer: FlexOffer
    price_eur_per_kwh: float
    start: datetime
    lower_kwh: tuple[float, ...]
    upper_kwh: tuple[float, ...]

    @property
    def n_steps(self) -> int:
        """Number of steps of the default schedule."""
        return len(self.lower_kwh)


@dataclass(frozen=True)
class Award:
    """A winning bid: the schedule the offer runs and what its seller receives.

    `deviation_kwh[i]` = change of consumption against the default schedule in the step that
    begins `i` steps after `deviation_start` (kWh delivered, signed like the request); absent
    `deviation_start` means the schedule's start, where the pool (no time shifting) puts it;
    a time-shifted award (many-to-many) starts it at the earlier of schedule and default.
    `price_eur` = what the seller receives, `price_eur_per_kwh` * `delivered_kwh`.
    """

    offer_id: str
    issuer: str
    schedule: Schedule
    deviation_kwh: tuple[float, ...]
    price_eur_per_kwh: float
    price_eur: float
    deviation_start: datetime | None = None

    @property
    def delivered_kwh(self) -> float:
        """Energy delivered: the absolute deviations summed over steps (kWh)."""
        return math.fsum(abs(d) for d in self.deviation_kwh)


@dataclass(frozen=True)
class Rejection:
    """An offer that won nothing in a clearing, and why."""

    offer_id: str
    reason: str


class SessionKind(enum.Enum):
    """What a session trades: the day ahead, within the day, or a DSO's local flexibility."""

    DAY_AHEAD = "day_ahead"
    INTRADAY = "intraday"
    LOCAL = "local"


@dataclass(frozen=True)
class Session:
    """One market session: requests and offers collected until `gate_closure`, then cleared.

    Offers take part when their default schedule lies in [`delivery_start`, `delivery_end`).
    `opens_at` (optional) is when the session starts taking requests; absent = at once.
    `kind` accepts a `SessionKind` or its value ("day_ahead", "intraday", "local").
    """

    name: str
    kind: SessionKind
    gate_closure: datetime
    delivery_start: datetime
    delivery_end: datetime
    slice_s: int = 900
    opens_at: datetime | None = None

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        if not isinstance(self.kind, SessionKind):
            try:
                object.__setattr__(self, "kind", SessionKind(self.kind))
            except ValueError:
                kinds = ", ".join(k.value for k in SessionKind)
                problems.append(Problem("kind", f"{self.kind!r} is not a session kind ({kinds})", "kind"))
        if not self.name:
            problems.append(Problem("name", "is empty; give the session a unique name", "name"))
        times = {
            "gate_closure": self.gate_closure,
            "delivery_start": self.delivery_start,
            "delivery_end": self.delivery_end,
            "opens_at": self.opens_at,
        }
        problems.extend(_grid_problems(self.slice_s, {k: times[k] for k in ("delivery_start", "delivery_end")}))
        aware = all(t is None or t.tzinfo is not None for t in times.values())
        for name in ("gate_closure", "opens_at"):
            t = times[name]
            if t is not None and t.tzinfo is None:
                problems.append(Problem(name, f"{t.isoformat()} has no timezone; give UTC times", "time"))
        if aware:
            if self.delivery_end <= self.delivery_start:
                problems.append(Problem("delivery_end", "must be after delivery_start", "period"))
            if self.gate_closure > self.delivery_start:
                problems.append(Problem("gate_closure", "must not be after delivery_start", "period"))
            if self.opens_at is not None and self.opens_at > self.gate_closure:
                problems.append(Problem("opens_at", "must not be after gate_closure", "period"))
        if problems:
            raise InvalidSessionError(problems)

    @property
    def n_steps(self) -> int:
        """Number of `slice_s` steps in the delivery period."""
        return int((self.delivery_end - self.delivery_start).total_seconds() // self.slice_s)


@dataclass(frozen=True)
class SessionResult:
    """The outcome of clearing one request in one session, with provenance and money.

    Per step t (starting at `start + t * slice_s`): `requested_kwh[t]` and `cleared_kwh[t]`
    (same sign, |cleared| <= |requested|), and the volume-weighted mean and the highest price
    of the awards used in that step (None when nothing cleared there).

    Money (EUR, unrounded; settlement rounds): `buyer_pays_eur` - `sellers_receive_eur` -
    `transport_fees_eur` = `surplus_eur` (the market operator's margin; 0 in the one-sided
    pool). In the many-to-many and two-sided mechanisms the market is the counterparty of
    every trade: a seller's volume and money are shared among the buyers of each step and
    product in proportion to what they bought, and each award is listed with the request
    that took most of it. `reason` says why nothing cleared (empty market, no crossing bids,
    zero volume, ...); None when something did.
    """

    session: str
    mechanism: str
    mechanism_version: str
    buyer: str
    request_id: str | None
    kind: SessionKind | None
    gate_closure: datetime | None
    cleared_at: datetime
    start: datetime
    slice_s: int
    cutoff_eur_per_kwh: float
    requested_kwh: tuple[float, ...]
    cleared_kwh: tuple[float, ...]
    step_mean_price_eur_per_kwh: tuple[float | None, ...]
    step_max_price_eur_per_kwh: tuple[float | None, ...]
    n_offers: int
    n_bids: int
    awards: tuple[Award, ...]
    rejected: tuple[Rejection, ...]
    buyer_pays_eur: float
    sellers_receive_eur: float
    surplus_eur: float
    reason: str | None = None
    transport_fees_eur: float = 0.0

    @property
    def n_awards(self) -> int:
        """Number of winning bids."""
        return len(self.awards)

    @property
    def requested_total_kwh(self) -> float:
        """Requested change in absolute value, summed over steps (kWh)."""
        return math.fsum(abs(v) for v in self.requested_kwh)

    @property
    def cleared_total_kwh(self) -> float:
        """Cleared change in absolute value, summed over steps (kWh)."""
        return math.fsum(abs(v) for v in self.cleared_kwh)

    @property
    def mean_price_eur_per_kwh(self) -> float | None:
        """What the buyer pays per kWh cleared (volume-weighted); None when nothing cleared."""
        cleared = self.cleared_total_kwh
        return self.buyer_pays_eur / cleared if cleared > 0 else None

    @property
    def max_price_eur_per_kwh(self) -> float | None:
        """The highest price of any award; None when nothing cleared."""
        return max((a.price_eur_per_kwh for a in self.awards), default=None)


def result_header(
    request: Request, *, session: Session | None, mechanism: str, version: str, now: datetime
) -> dict[str, Any]:
    """The fields every mechanism's `SessionResult` for `request` shares: where, what, when."""
    return {
        "session": session.name if session is not None else "ad-hoc",
        "mechanism": mechanism,
        "mechanism_version": version,
        "buyer": request.buyer,
        "request_id": request.id,
        "kind": session.kind if session is not None else None,
        "gate_closure": session.gate_closure if session is not None else None,
        "cleared_at": now,
        "start": request.start,
        "slice_s": request.slice_s,
        "cutoff_eur_per_kwh": request.cutoff_eur_per_kwh,
        "requested_kwh": request.volume_kwh,
    }

"""The FMAN's market bids: its aggregates turned into priced offers for the Flex-Offer Market.

D2.1 3.3.2 (F2.FMAN3): the FMAN compares its flexibility with the market's opportunities and
bids aggregated offers whose price is sourced from the member offers. `plan_bids` does that for
one gate:

1. Each aggregate's bid price (EUR per kWh of deviation) is the members' prices weighted by
   their energy flexibility (sum of upper - lower of their boxes): a member's own
   `price.per_kwh_deviation` when it carries one (direct-style offers), else the contract's
   rate `cost_eur_per_kwh` (what the aggregator pays the prosumer per kWh of adaptation),
   plus the aggregator's `margin_eur_per_kwh`.
2. Order (D2.1 3.3.2): production first, cheapest first (ascending bid price); then consumption,
   dearest first (descending energy price `price.per_kwh`, the value of the energy to its
   owners, weighted like the bid price; ties by ascending bid price). An aggregate produces
   when its default energy sums below zero.
3. Only bids that raise profit are made: the market's reference price for flexibility at the
   aggregate's steps (a `PriceSeries` or one number, e.g. recent clearing prices or the buyers'
   cut-off) must exceed the bid price. `max_volume_kwh` caps the flexible energy bid in one
   gate (market depth), taken in the order above.
4. The rest is held: `postponed` when every member can still be assigned after `next_gate`
   (the FMAN tries again then), else `rejected` from the market (the FMAN plans those members
   itself). An aggregate without a common default schedule cannot bid (the pool pays
   deviations from a default) and is held the same way.

A bid is the aggregate's offer in `direct` mode with its price, issued by the aggregator;
`disaggregate_award` turns the market's schedule for it into member schedules (exact and
feasible, `aggregation.disaggregate`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from atp.errors import ValidationError
from atp.flexoffer import FlexOffer, Mode, Price, Schedule
from atp.fman.aggregation import Aggregate, disaggregate
from atp.fman.planning import PriceSeries

__all__ = ["BidPlan", "BiddingParams", "HeldAggregate", "MarketBid", "disaggregate_award", "plan_bids"]


@dataclass(frozen=True)
class BiddingParams:
    """How the FMAN prices and limits its bids.

    - `cost_eur_per_kwh`: the contract's rate per kWh of adaptation, for members without price;
    - `margin_eur_per_kwh`: added to every bid price;
    - `max_volume_kwh`: at most this much flexible energy (kWh, summed over bids) per gate.
    """

    cost_eur_per_kwh: float = 0.05
    margin_eur_per_kwh: float = 0.0
    max_volume_kwh: float | None = None

    def __post_init__(self) -> None:
        for name in ("cost_eur_per_kwh", "margin_eur_per_kwh"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValidationError(f"{name}(={value}) must be a finite price of at least 0 EUR/kWh")
        if self.max_volume_kwh is not None and not self.max_volume_kwh > 0:
            raise ValidationError(f"max_volume_kwh(={self.max_volume_kwh}) must be positive (or None for no cap)")


@dataclass(frozen=True, eq=False)
class MarketBid:
    """One aggregate bid into the market: the wire offer and what the FMAN expects of it."""

    aggregate: Aggregate
    offer: FlexOffer
    direction: str  # "production" or "consumption"
    price_eur_per_kwh: float
    reference_eur_per_kwh: float
    flexible_kwh: float

    @property
    def expected_profit_eur(self) -> float:
        """Profit if all its flexibility clears at the reference price."""
        return (self.reference_eur_per_kwh - self.price_eur_per_kwh) * self.flexible_kwh


@dataclass(frozen=True)
class HeldAggregate:
    """An aggregate not bid at this gate: `postponed` (try again later) or `rejected`."""

    aggregate_id: str
    members: tuple[str, ...]
    decision: str
    reason: str


@dataclass(frozen=True)
class BidPlan:
    """The bids of one gate, in D2.1 order, and the aggregates held back."""

    bids: tuple[MarketBid, ...]
    held: tuple[HeldAggregate, ...]

    @property
    def postponed(self) -> tuple[HeldAggregate, ...]:
        return tuple(h for h in self.held if h.decision == "postponed")

    @property
    def rejected(self) -> tuple[HeldAggregate, ...]:
        return tuple(h for h in self.held if h.decision == "rejected")


def _weighted(values: list[float], weights: list[float]) -> float:
    total = sum(weights)
    if total <= 0:
        return sum(values) / len(values)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total


def _reference(reference: PriceSeries | float, agg: Aggregate) -> float | None:
    """Mean reference price over the aggregate's default steps (None when not covered)."""
    if not isinstance(reference, PriceSeries):
        return float(reference)
    default = agg.offer.default_schedule
    if default is None:
        return None
    offset = (default.start - reference.start).total_seconds() / reference.slice_s
    if offset != int(offset) or reference.slice_s != agg.slice_s:
        return None
    k = int(offset)
    values = np.asarray(reference.values_eur_per_kwh, dtype=float)
    if k < 0 or k + agg.n_steps > len(values):
        return None
    return float(values[k : k + agg.n_steps].mean())


def plan_bids(
    aggregates: Sequence[Aggregate],
    *,
    reference: PriceSeries | float,
    next_gate: datetime,
    issuer: str,
    params: BiddingParams | None = None,
) -> BidPlan:
    """The bids for one market gate from the FMAN's aggregates (see the module docstring)."""
    params = params or BiddingParams()
    candidates: list[tuple[tuple[int, float, float, str], MarketBid]] = []
    held: list[HeldAggregate] = []

    def hold(agg: Aggregate, reason: str) -> None:
        members = tuple(m.offer_id for m in agg.members)
        deadlines = [m.offer.assignment_before for m in agg.members if m.offer.assignment_before is not None]
        later = not deadlines or min(deadlines) > next_gate
        decision = "postponed" if later else "rejected"
        why = reason if later else f"{reason}; a member must be assigned before the next gate"
        held.append(HeldAggregate(agg.id, members, decision, why))

    for agg in aggregates:
        default = agg.offer.default_schedule
        if default is None:
            hold(agg, "no common default schedule: its members' defaults do not run at one shift")
            continue
        weights = [m.energy_flexibility_kwh for m in agg.members]
        prices = [
            m.offer.price.per_kwh_deviation
            if m.offer.price is not None and m.offer.price.per_kwh_deviation is not None
            else params.cost_eur_per_kwh
            for m in agg.members
        ]
        values = [(m.offer.price.per_kwh or 0.0) if m.offer.price is not None else 0.0 for m in agg.members]
        price = _weighted(prices, weights) + params.margin_eur_per_kwh
        value = _weighted(values, weights)
        ref = _reference(reference, agg)
        if ref is None:
            hold(agg, "the reference prices do not cover its steps")
            continue
        flexible_kwh = float((agg.upper_kwh - agg.lower_kwh).sum())
        if flexible_kwh <= 1e-9:
            hold(agg, "no energy flexibility to sell")
            continue
        if not ref > price:
            hold(agg, f"no profit: bid price {price:.4f} EUR/kWh is not below the reference {ref:.4f} EUR/kWh")
            continue
        production = sum(default.energy) < 0
        offer = dataclasses.replace(
            agg.offer,
            issuer=issuer,
            mode=Mode.DIRECT,
            price=Price(per_kwh_deviation=round(price, 6), per_kwh=round(value, 6) if value else None),
        )
        bid = MarketBid(
            aggregate=agg,
            offer=offer,
            direction="production" if production else "consumption",
            price_eur_per_kwh=price,
            reference_eur_per_kwh=ref,
            flexible_kwh=flexible_kwh,
        )
        key = (0, price, 0.0, agg.id) if production else (1, -value, price, agg.id)
        candidates.append((key, bid))

    bids: list[MarketBid] = []
    volume_kwh = 0.0
    for _, bid in sorted(candidates, key=lambda c: c[0]):
        if params.max_volume_kwh is not None and volume_kwh + bid.flexible_kwh > params.max_volume_kwh:
            hold(bid.aggregate, f"the gate's bid volume of {params.max_volume_kwh:g} kWh is used up")
            continue
        bids.append(bid)
        volume_kwh += bid.flexible_kwh
    return BidPlan(tuple(bids), tuple(held))


def disaggregate_award(bid: MarketBid, schedule: Schedule, *, assigned_at: datetime | None = None) -> list[Schedule]:
    """Member schedules (in member order) for the market's schedule of a bid; they sum exactly to
    it and each is feasible for its member (DisaggregationError when `schedule` is not feasible
    for the aggregate)."""
    return disaggregate(bid.aggregate, schedule, assigned_at=assigned_at)


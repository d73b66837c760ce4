"""The FMAN's market bids: its aggregates turned into priced offers for the Flex-Offer Market.

D2.1 3.3.2 (F2.FMAN3): the FMAN compares its flexibility with the market's opportunities and
bids aggregated offers whose price is sourced from the member offers. `plan_bids` does that for
one gate:

1. Each aggregate's bid price (EUR per kWh of deviation) plus the aggregator's
   `margin_eur_per_kwh`: for an aggregate of direct offers, its own price, the highest ask
   of its members (`build_aggregate`; each member is paid its own ask, so every ask is met
   and the aggregator keeps the spread); for delegated members, their prices weighted by
   their energy flexibility (sum of upper - lower of their boxes): a member's own
   `price.per_kwh_deviation` when it carries one, else the contract's rate
   `cost_eur_per_kwh` (what the aggregator pays the prosumer per kWh of adaptation).
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

A bid is the aggregate's offer in `direct` mode with its price, issued by the aggregator (an
aggregate of direct offers at its default start, without time flexibility: its members are
paid for deviating from their own defaults, which a time shift would move apart);
`disaggregate_award` turns the market's schedule for it into member schedules (exact and
feasible: `aggregation.disaggregate_around_default` for direct members, so each deviates from
its own default the way the aggregate does, `aggregation.disaggregate` for delegated ones).

`MarketTrader` (`FlexOfferManager.trade_on`) runs this at every gate through the aggregator's
exchange client of the FMAR (`bid`): it withdraws the bids that won nothing since the last
gate, rejects the direct offers the FMAN can no longer trade (the store's `reject`, with the
reason), bids what `plan_bids` finds profitable, rejects direct members of held aggregates
that cannot wait for the next gate, and returns the offers the planner must leave alone.
When the market awards a bid (its `assigned` event), the trader disaggregates the awarded
schedule and assigns every member through the FMAN's store.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from atp.errors import AtpError, ValidationError
from atp.flexoffer import FlexOffer, Mode, OfferState, Price, Schedule
from atp.fman.aggregation import Aggregate, disaggregate, disaggregate_around_default
from atp.fman.errors import PriceError
from atp.fman.planning import PriceSeries
from atp.interface import Event, ExchangeInterface

if TYPE_CHECKING:
    from atp.fman.manager import FlexOfferManager

__all__ = [
    "BidPlan",
    "BidRound",
    "BiddingParams",
    "HeldAggregate",
    "MarketBid",
    "MarketTrader",
    "RejectedOffer",
    "disaggregate_award",
    "member_schedules",
    "plan_bids",
]


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
    try:
        reference = reference.on_grid(agg.slice_s)  # hourly day-ahead prices onto quarter-hour offers
    except PriceError:
        return None
    offset = (default.start - reference.start).total_seconds() / reference.slice_s
    if offset != int(offset):
        return None
    k = int(offset)
    values = np.asarray(reference.values_eur_per_kwh, dtype=float)
    if k < 0 or k + agg.n_steps > len(values):
        return None
    return float(values[k : k + agg.n_steps].mean())


def _at_default_start(offer: FlexOffer, start: datetime) -> FlexOffer:
    """The bid of a direct aggregate: no time flexibility, it runs at its default start. Its
    members are paid for their deviation from their own defaults; a shift would move the
    members' deviations apart from the aggregate's, so the market buys energy flexibility only."""
    deadline = offer.assignment_before
    return dataclasses.replace(
        offer,
        start_after=start,
        start_before=start,
        start_before_duration_s=None,
        assignment_before=start if deadline is None or deadline > start else deadline,
    )


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
        ask = agg.offer.price.per_kwh_deviation if agg.offer.price is not None else None
        if agg.offer.mode is Mode.DIRECT and ask is not None:
            price = ask + params.margin_eur_per_kwh  # the highest member ask
        else:
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
        if agg.offer.mode is Mode.DIRECT:
            offer = _at_default_start(offer, default.start)
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


def member_schedules(
    aggregate: Aggregate, schedule: Schedule, *, assigned_at: datetime | None = None
) -> list[Schedule]:
    """Member schedules (in member order) for a schedule of the aggregate: around the members'
    defaults for a direct aggregate (`disaggregate_around_default`: each member deviates from its
    own default the way the aggregate does, so it is paid for no deviation the market did not
    buy), by fractions of the members' boxes for a delegated one (`disaggregate`)."""
    if aggregate.offer.mode is Mode.DIRECT:
        return disaggregate_around_default(aggregate, schedule, assigned_at=assigned_at)
    return disaggregate(aggregate, schedule, assigned_at=assigned_at)


def disaggregate_award(bid: MarketBid, schedule: Schedule, *, assigned_at: datetime | None = None) -> list[Schedule]:
    """Member schedules (in member order) for the market's schedule of a bid (`member_schedules`);
    they sum exactly to it and each is feasible for its member (DisaggregationError when
    `schedule` is not feasible for the aggregate)."""
    return member_schedules(bid.aggregate, schedule, assigned_at=assigned_at)


# -- trading -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RejectedOffer:
    """An offer the FMAN rejected (the store's `reject`), with the reason its issuer is given."""

    offer_id: str
    reason: str


@dataclass(frozen=True)
class BidRound:
    """What one `MarketTrader.bid` did.

    `plan`: the gate's bids and held aggregates; `submitted`: (market offer id, bid) of the bids
    made; `rejected`: direct offers rejected in this round; `skip`: offer ids the FMAN's planner
    must leave alone this round (members of bids and of postponed aggregates).
    """

    plan: BidPlan
    submitted: tuple[tuple[str, MarketBid], ...]
    rejected: tuple[RejectedOffer, ...]
    skip: frozenset[str]


class MarketTrader:
    """The FMAN's side of the Flex-Offer Market: bids its aggregates through `market`, the
    aggregator's exchange client of the FMAR, and assigns the awards (module docstring).

    Made by `FlexOfferManager.trade_on`; with a trader the FMAN accepts direct offers. The
    market's events are handled on the thread that delivers them (the in-process binding: the
    caller's). `on_award(aggregate, schedule)` is called after an award's members are assigned.
    """

    def __init__(
        self,
        fman: FlexOfferManager,
        market: ExchangeInterface,
        *,
        reference_eur_per_kwh: PriceSeries | float,
        params: BiddingParams | None = None,
        on_award: Callable[[Aggregate, Schedule], None] | None = None,
    ) -> None:
        self.fman = fman
        self.market = market
        self.params = params or BiddingParams()
        self.reference = reference_eur_per_kwh
        self.on_award = on_award
        self.bids: dict[str, MarketBid] = {}  # market offer id -> bid, while not yet awarded
        self.bids_made = 0
        self.bids_awarded = 0
        self.postponed = 0
        self._unsubscribe = market.subscribe(self._on_market_event)

    @property
    def issuer(self) -> str:
        """The aggregator's party at the market: the issuer of its bids."""
        return self.market.party

    def close(self) -> None:
        """Stop following the market's events."""
        self._unsubscribe()

    def pending_members(self) -> frozenset[str]:
        """Offer ids of the members of bids not yet awarded."""
        return frozenset(m.offer_id for bid in self.bids.values() for m in bid.aggregate.members)

    def _on_market_event(self, event: Event) -> None:
        offer_id = event.offer.id or ""
        if offer_id not in self.bids:
            return
        if event.kind in ("rejected", "withdrawn"):
            del self.bids[offer_id]  # won nothing: its members are the FMAN's again
            return
        if event.kind != "assigned":
            return
        bid = self.bids.pop(offer_id)
        schedule = event.offer.schedule
        if schedule is None:  # an assigned event carries its schedule (spec/interface.md)
            raise AtpError(f"the market assigned bid {offer_id} without a schedule")
        awarded = dataclasses.replace(schedule, flex_offer_id=bid.aggregate.id)
        self.fman.assign_aggregate(bid.aggregate, awarded, now=event.time)
        self.bids_awarded += 1
        if self.on_award is not None:
            self.on_award(bid.aggregate, awarded)

    def _withdraw_unawarded(self) -> None:
        """Take back the bids that won nothing; their members return to the FMAN."""
        for offer_id in list(self.bids):
            try:
                if self.market.get(offer_id).state is OfferState.ACCEPTED:
                    self.market.withdraw(offer_id)
            except AtpError:
                pass  # its operation started: it runs its default, like every unawarded offer
            self.bids.pop(offer_id, None)

    def bid(self, now: datetime, *, next_gate: datetime) -> BidRound:
        """One gate: withdraw what won nothing, reject the direct offers that can no longer be
        traded, bid the profitable aggregates, reject the direct members of held aggregates
        that cannot wait for `next_gate`; returns what it did (`BidRound`)."""
        self._withdraw_unawarded()
        rejected = self.fman.reject_untradeable(now)
        aggregates = list(self.fman.portfolio.result(now))
        plan = plan_bids(
            aggregates, reference=self.reference, next_gate=next_gate, issuer=self.issuer, params=self.params
        )
        skip: set[str] = set()
        submitted: list[tuple[str, MarketBid]] = []
        for bid in plan.bids:
            answer = self.market.submit(dataclasses.replace(bid.offer, id=None))
            if answer.id is None:
                raise AtpError("the market accepted a bid without giving it an id")
            self.bids[answer.id] = bid
            submitted.append((answer.id, bid))
            skip.update(m.offer_id for m in bid.aggregate.members)
        direct = {a.id for a in aggregates if a.offer.mode is Mode.DIRECT}
        for held in plan.held:
            if held.aggregate_id in direct and held.decision == "rejected":
                reason = f"not bid into the market: {held.reason}"
                rejected.extend(self.fman.reject(member, reason) for member in held.members)
            elif held.decision == "postponed":
                skip.update(held.members)
        self.bids_made += len(plan.bids)
        self.postponed += len(plan.postponed)
        return BidRound(plan, tuple(submitted), tuple(rejected), frozenset(skip))

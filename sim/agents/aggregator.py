"""Aggregator agent: runs the FMAN (atp.fman) that receives, plans and trades the delegated offers.

Each planning round (`plan`), without bidding, the FMAN plans every open delegated offer
against its objective. With bidding (`fman.bidding`, F2.FMAN3, D2.1 3.3.2) a round first
withdraws its bids that won nothing since the last round, then bids the portfolio's
aggregates that earn more on the market than they cost (`atp.fman.plan_bids`) to the FMAR
through the aggregator's exchange client, and plans the rest itself; aggregates postponed by
the bidding rule wait for a later round. When the market awards a bid, the FMAR's `assigned`
event reaches the aggregator and the FMAN disaggregates the awarded schedule onto the members.

`aggregates_used` remembers every aggregate the FMAN planned or bid, once per aggregate id,
with the schedule its members were assigned from (a plan's or the market's award; None while
a bid is not awarded). An aggregate is assigned at most once: its members leave the portfolio
when assigned, so a later round builds new aggregates with new ids.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

import mesa
import pandas as pd

from atp.errors import AtpError
from atp.flexoffer import OfferState, Schedule
from atp.fman import (
    Aggregate,
    AggregationParams,
    BiddingParams,
    FlexOfferManager,
    MarketBid,
    PlanResult,
    PriceSeries,
    plan_bids,
)
from atp.interface import Event, InProcessClient, OfferStore

__all__ = ["AggregateUse", "Aggregator"]


@dataclass(eq=False)
class AggregateUse:
    """An aggregate the FMAN planned or bid, and the schedule its members were assigned from.

    `schedule` (flex_offer_id = the aggregate's id) is None while the aggregate is only bid and
    not awarded; `bid` tells whether it was ever bid into the market.
    """

    aggregate: Aggregate
    schedule: Schedule | None = None
    bid: bool = False


class Aggregator(mesa.Agent):
    """The aggregator: an FMAN and its offer store; plans (and bids) at each planning time."""

    def __init__(
        self,
        model: mesa.Model,
        *,
        name: str,
        store: OfferStore,
        params: AggregationParams,
        objective: str,
        horizon_steps: int,
        time_limit_s: float,
        prices: pd.Series,
        series_kwh: dict[str, PriceSeries] | None = None,
        planning_interval_s: int = 900,
    ) -> None:
        super().__init__(model)
        self.name = name
        self.store = store
        self.fman = FlexOfferManager(
            store, name=name, params=params, objective=objective, horizon_steps=horizon_steps, time_limit_s=time_limit_s
        )
        self.prices = prices
        self.series_kwh = series_kwh or {}  # what the objective needs besides prices (kWh per step)
        self.planning_interval_s = planning_interval_s
        self.plans: list[PlanResult] = []
        self.aggregates_used: list[AggregateUse] = []  # one per aggregate id, in order of first use
        # Market bidding (None: the FMAN does not bid).
        self.bidding: BiddingParams | None = None
        self.reference_eur_per_kwh = 0.0
        self.market: InProcessClient | None = None
        self.bids: dict[str, MarketBid] = {}  # market offer id -> bid, while not yet awarded
        self.bids_made = 0
        self.bids_awarded = 0
        self.postponed = 0

    def client(self, party: str) -> InProcessClient:
        """An exchange client for a prosumer's FOA (in-process binding)."""
        return InProcessClient(self.store, party)

    def trade_on(self, market: InProcessClient, *, params: BiddingParams, reference_eur_per_kwh: float) -> None:
        """Bid into the market behind `market` (the aggregator's client of the FMAR's store)."""
        self.market = market
        self.bidding = params
        self.reference_eur_per_kwh = reference_eur_per_kwh
        market.subscribe(self._on_market_event)

    def _on_market_event(self, event: Event) -> None:
        if event.kind != "assigned" or event.offer.id not in self.bids:
            return
        bid = self.bids.pop(event.offer.id)
        schedule = event.offer.schedule
        assert schedule is not None  # an assigned event carries its schedule
        awarded = dataclasses.replace(schedule, flex_offer_id=bid.aggregate.id)
        self.fman.assign_aggregate(bid.aggregate, awarded, now=event.time)
        self._use(bid.aggregate).schedule = awarded
        self.bids_awarded += 1

    def _use(self, aggregate: Aggregate) -> AggregateUse:
        """The entry of `aggregate` in `aggregates_used`, added if it is not there yet."""
        for use in reversed(self.aggregates_used):
            if use.aggregate.id == aggregate.id:
                return use
        use = AggregateUse(aggregate)
        self.aggregates_used.append(use)
        return use

    def _withdraw_unawarded(self) -> None:
        """Take back the bids that won nothing; their members return to the FMAN's planning."""
        assert self.market is not None
        for offer_id in list(self.bids):
            try:
                if self.market.get(offer_id).state is OfferState.ACCEPTED:
                    self.market.withdraw(offer_id)
            except AtpError:
                pass  # its operation started: it runs its default, like every unawarded offer
            del self.bids[offer_id]

    def plan(self, now: datetime) -> PlanResult:
        """One planning round of the FMAN at `now` against the day-ahead prices (bidding first)."""
        skip: set[str] = set()
        if self.bidding is not None and self.market is not None:
            self._withdraw_unawarded()
            aggregates = list(self.fman.portfolio.result(now))
            bids = plan_bids(
                aggregates,
                reference=self.reference_eur_per_kwh,
                next_gate=now + timedelta(seconds=self.planning_interval_s),
                issuer=self.name,
                params=self.bidding,
            )
            for bid in bids.bids:
                submitted = self.market.submit(dataclasses.replace(bid.offer, id=None))
                assert submitted.id is not None
                self.bids[submitted.id] = bid
                self._use(bid.aggregate).bid = True
                skip.update(m.offer_id for m in bid.aggregate.members)
            for held in bids.postponed:
                skip.update(held.members)
            self.bids_made += len(bids.bids)
            self.postponed += len(bids.postponed)
        result = self.fman.plan(now, self.prices, series_kwh=self.series_kwh, skip=skip)
        self.plans.append(result)
        for aggregate, schedule in result.aggregate_schedules:
            self._use(aggregate).schedule = schedule
        return result

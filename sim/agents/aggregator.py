"""Aggregator agent: runs the FMAN (atp.fman) that receives, plans and trades the prosumers' offers.

Each planning round (`plan`), without bidding, the FMAN plans every open delegated offer
against its objective (and rejects direct offers: it cannot trade them). With bidding
(`fman.bidding`, F2.FMAN3, D2.1 3.3.2) the FMAN trades on the FMAR through the aggregator's
exchange client (`atp.fman.MarketTrader`): a round first withdraws its bids that won nothing
since the last round, then bids the portfolio's aggregates that earn more on the market than
they cost (`atp.fman.plan_bids`) - the delegated ones and the small direct prosumers' offers
routed to it (`fman.bidding.large_kw_threshold`, sim/world.py) - and plans the delegated
rest itself; aggregates postponed by the bidding rule wait for a later round, direct ones
that cannot wait are rejected. When the market awards a bid, the FMAR's `assigned` event
reaches the trader and the FMAN disaggregates the awarded schedule onto the members.

`aggregates_used` remembers every aggregate the FMAN planned or bid, once per aggregate id,
with the schedule its members were assigned from (a plan's or the market's award; None while
a bid is not awarded). An aggregate is assigned at most once: its members leave the portfolio
when assigned, so a later round builds new aggregates with new ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import mesa
import pandas as pd

from atp.flexoffer import Schedule
from atp.fman import (
    Aggregate,
    AggregationParams,
    BiddingParams,
    FlexOfferManager,
    MarketTrader,
    PlanResult,
    PriceSeries,
)
from atp.interface import InProcessClient, OfferStore
from atp.interface.capacity import PublishedCapacity

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
        self.trader: MarketTrader | None = None  # the FMAN's market side (None: the FMAN does not bid)
        # the DSO's tariff per point for grid-aware planning (sim/agents/dso.py); its grid capacities
        # reach the FMAN through the exchange interface (PUT /capacity, World._publish_capacity)
        self.grid_tariff: dict[str, PriceSeries] = {}

    @property
    def bidding(self) -> BiddingParams | None:
        """How the FMAN prices its bids (None: it does not bid)."""
        return self.trader.params if self.trader is not None else None

    @property
    def bids_made(self) -> int:
        """Bids the FMAN made into the market."""
        return self.trader.bids_made if self.trader is not None else 0

    @property
    def bids_awarded(self) -> int:
        """Bids the market awarded."""
        return self.trader.bids_awarded if self.trader is not None else 0

    @property
    def postponed(self) -> int:
        """Aggregates the bidding rule postponed, summed over rounds."""
        return self.trader.postponed if self.trader is not None else 0

    @property
    def grid_capacity(self) -> list[PublishedCapacity]:
        """The grid capacities the DSO has published to this FMAN through the exchange interface."""
        return self.store.capacity_book.in_force()

    def client(self, party: str) -> InProcessClient:
        """An exchange client for a prosumer's FOA (in-process binding)."""
        return InProcessClient(self.store, party)

    def trade_on(self, market: InProcessClient, *, params: BiddingParams, reference_eur_per_kwh: float) -> None:
        """Bid into the market behind `market` (the aggregator's client of the FMAR's store)."""
        self.trader = self.fman.trade_on(
            market, params=params, reference_eur_per_kwh=reference_eur_per_kwh, on_award=self._on_award
        )

    def _on_award(self, aggregate: Aggregate, schedule: Schedule) -> None:
        self._use(aggregate).schedule = schedule

    def _use(self, aggregate: Aggregate) -> AggregateUse:
        """The entry of `aggregate` in `aggregates_used`, added if it is not there yet."""
        for use in reversed(self.aggregates_used):
            if use.aggregate.id == aggregate.id:
                return use
        use = AggregateUse(aggregate)
        self.aggregates_used.append(use)
        return use

    def plan(self, now: datetime) -> PlanResult:
        """One planning round of the FMAN at `now` against the day-ahead prices (bidding first)."""
        skip: frozenset[str] = frozenset()
        if self.trader is not None:
            bids = self.trader.bid(now, next_gate=now + timedelta(seconds=self.planning_interval_s))
            for _, bid in bids.submitted:
                self._use(bid.aggregate).bid = True
            skip = bids.skip
        result = self.fman.plan(now, self.prices, series_kwh=self.series_kwh, skip=skip, tariff=self.grid_tariff)
        self.plans.append(result)
        for aggregate, schedule in result.aggregate_schedules:
            self._use(aggregate).schedule = schedule
        return result

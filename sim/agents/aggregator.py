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

The rounds and their record (`plans`, `aggregates_used`: every aggregate planned or bid, with
the schedule its members were assigned from) are `atp.fman.rounds.PlanningRounds`, the same
code a served FMAN runs.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import mesa
import pandas as pd

from atp.flexoffer import FlexOffer
from atp.fman import (
    AggregationParams,
    BiddingParams,
    FlexOfferManager,
    MarketTrader,
    MemberLoss,
    PlanResult,
    PriceSeries,
    member_losses,
)
from atp.fman.rounds import AggregateUse, PlanningRounds
from atp.interface import InProcessClient, OfferStore
from atp.interface.capacity import PublishedCapacity

__all__ = ["Aggregator"]


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
        self.planning_interval_s = planning_interval_s
        # the rounds and their record (atp.fman.rounds): plans, aggregates used, bids
        self.rounds = PlanningRounds(self.fman, prices, series_kwh=series_kwh, interval_s=planning_interval_s)

    @property
    def plans(self) -> list[PlanResult]:
        """Every planning round's result, in order."""
        return self.rounds.plans

    @property
    def aggregates_used(self) -> list[AggregateUse]:
        """Every aggregate the FMAN planned or bid, once per id in order of first use."""
        return self.rounds.aggregates_used

    @property
    def series_kwh(self) -> dict[str, PriceSeries]:
        """What the objective needs besides prices (kWh per step)."""
        return self.rounds.series_kwh

    @series_kwh.setter
    def series_kwh(self, series: dict[str, PriceSeries]) -> None:
        self.rounds.series_kwh = dict(series)

    @property
    def grid_tariff(self) -> dict[str, PriceSeries]:
        """The DSO's tariff per point for grid-aware planning (sim/agents/dso.py); its grid
        capacities reach the FMAN through the exchange interface (PUT /capacity)."""
        return self.rounds.tariff

    @grid_tariff.setter
    def grid_tariff(self, tariff: dict[str, PriceSeries]) -> None:
        self.rounds.tariff = dict(tariff)

    @property
    def trader(self) -> MarketTrader | None:
        """The FMAN's market side (None: the FMAN does not bid)."""
        return self.fman.trader

    def member_losses(self) -> list[MemberLoss]:
        """Each member offer once, with its flexibility in its last aggregate."""
        return member_losses(use.aggregate for use in self.aggregates_used)

    def aggregate_offers(self) -> list[FlexOffer]:
        """Every aggregate used, once per id in order of first use, as a wire offer (issuer = the
        aggregator, `members` = member offer ids) with the schedule its members were assigned
        from (absent while a bid was never awarded)."""
        return [dataclasses.replace(use.aggregate.offer, schedule=use.schedule) for use in self.aggregates_used]

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
        self.rounds.trade_on(market, params=params, reference_eur_per_kwh=reference_eur_per_kwh)

    def plan(self, now: datetime) -> PlanResult:
        """One planning round of the FMAN at `now` against the day-ahead prices (bidding first)."""
        return self.rounds.round(now)

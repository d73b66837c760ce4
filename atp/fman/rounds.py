"""The FMAN's planning rounds and their record: what the simulation's aggregator and a served
FMAN (its planning loop, or its operator's `POST /fman/plan`) both run.

A round at `now` (`PlanningRounds.round`) first bids into the market when the FMAN trades on
one (`MarketTrader.bid`: withdraw the bids that won nothing, bid the aggregates that earn more
there than they cost; the next gate is the next round), then plans the rest against the
prices, the objective's series and the DSOs' tariffs and capacities.

The record: `plans` (every round's `PlanResult`) and `aggregates_used`: every aggregate the
FMAN planned or bid, once per aggregate id in order of first use, with the schedule its
members were assigned from (a plan's or the market's award; None while a bid is not awarded).
An aggregate is assigned at most once: its members leave the portfolio when assigned, so a
later round builds new aggregates with new ids. `report()` is that record on the wire (what
`GET /fman/report` answers, and what a run reads back from a served FMAN).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from atp.flexoffer import FlexOffer, Schedule
from atp.flexoffer.codec import decode, encode
from atp.fman.aggregation import Aggregate
from atp.fman.bidding import BiddingParams, MarketTrader
from atp.fman.errors import FmanError
from atp.fman.flexloss import MemberLoss, member_losses
from atp.fman.manager import FlexOfferManager, PlanResult
from atp.fman.planning import PriceSeries

__all__ = [
    "AggregateUse",
    "FmanReport",
    "PlanSummary",
    "PlanningRounds",
    "UsedAggregate",
    "report_from_wire",
    "report_to_wire",
]


@dataclass(eq=False)
class AggregateUse:
    """An aggregate the FMAN planned or bid, and the schedule its members were assigned from.

    `schedule` (flex_offer_id = the aggregate's id) is None while the aggregate is only bid and
    not awarded; `bid` tells whether it was ever bid into the market.
    """

    aggregate: Aggregate
    schedule: Schedule | None = None
    bid: bool = False


@dataclass(frozen=True)
class PlanSummary:
    """One planning round on the wire: its provenance and counts (`PlanResult` without the
    schedules, aggregates and solutions it carries)."""

    planner: str
    planner_version: str
    objective: str
    objective_version: str
    solver: str
    planned_at: datetime
    n_offers: int
    n_aggregates: int
    n_assigned: int
    model_status: str
    objective_eur: float | None = None
    baseline_cost_eur: float | None = None
    time_flex_loss_steps: int = 0
    energy_flex_loss_kwh: float = 0.0
    mip_gap: float | None = None
    fallback_reason: str | None = None

    @classmethod
    def of(cls, result: PlanResult) -> PlanSummary:
        """The summary of a round's result."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: getattr(result, name) for name in names})


@dataclass(frozen=True)
class UsedAggregate:
    """An aggregate the FMAN used, on the wire: its offer (issuer = the FMAN, `members` = the
    member offer ids) with the schedule its members were assigned from, and whether it was bid."""

    offer: FlexOffer
    bid: bool = False


@dataclass(frozen=True)
class FmanReport:
    """What an FMAN's planning rounds did (`PlanningRounds.report`, `GET /fman/report`):
    its rounds, the aggregates it used, each member's flexibility in its last aggregate
    (`atp.fman.member_losses`), and its bids."""

    fman: str
    plans: tuple[PlanSummary, ...]
    aggregates: tuple[UsedAggregate, ...]
    member_losses: tuple[MemberLoss, ...]
    bids_made: int = 0
    bids_awarded: int = 0
    aggregates_postponed: int = 0


def report_from_wire(data: Any) -> FmanReport:
    """An `FmanReport` from its JSON form; FmanError naming the first bad field."""
    report, problems = decode(FmanReport, data)
    if problems or report is None:
        first = problems[0]
        raise FmanError(f"FMAN report: {first.path or '(root)'}: {first.message}")
    return report


class PlanningRounds:
    """An FMAN's rounds (module docstring): bid first, plan the rest, remember what was used.

    `prices` are the FMAN's prices (EUR/kWh); `series_kwh` what its objective needs besides
    (kWh per step: `base_kwh`, `target_kwh`, ...); `tariff` the DSOs' grid tariffs per
    congestion point (added to the prices); `interval_s` the time between rounds (a bid's
    next gate).
    """

    def __init__(
        self,
        fman: FlexOfferManager,
        prices: Any,
        *,
        series_kwh: Mapping[str, PriceSeries] | None = None,
        interval_s: float = 900.0,
    ) -> None:
        self.fman = fman
        self.prices = prices
        self.series_kwh: dict[str, PriceSeries] = dict(series_kwh or {})
        self.tariff: dict[str, PriceSeries] = {}
        self.interval_s = interval_s
        self.plans: list[PlanResult] = []
        self.aggregates_used: list[AggregateUse] = []
        self._by_id: dict[str, AggregateUse] = {}

    @property
    def trader(self) -> MarketTrader | None:
        """The FMAN's market side (None: it does not bid)."""
        return self.fman.trader

    def trade_on(self, market: Any, *, params: BiddingParams, reference_eur_per_kwh: PriceSeries | float) -> None:
        """Bid into the market behind `market` (the FMAN's exchange client of the FMAR)."""
        self.fman.trade_on(market, params=params, reference_eur_per_kwh=reference_eur_per_kwh, on_award=self._award)

    def _award(self, aggregate: Aggregate, schedule: Schedule) -> None:
        self._use(aggregate).schedule = schedule

    def _use(self, aggregate: Aggregate) -> AggregateUse:
        use = self._by_id.get(aggregate.id)
        if use is None:
            use = self._by_id[aggregate.id] = AggregateUse(aggregate)
            self.aggregates_used.append(use)
        return use

    def round(self, now: datetime, *, next_gate: datetime | None = None) -> PlanResult:
        """One round at `now` (bidding first, the next gate `next_gate` or one interval later)."""
        skip: frozenset[str] = frozenset()
        if self.trader is not None:
            gate = next_gate if next_gate is not None else now + timedelta(seconds=self.interval_s)
            bids = self.trader.bid(now, next_gate=gate)
            for _, bid in bids.submitted:
                self._use(bid.aggregate).bid = True
            skip = bids.skip
        result = self.fman.plan(now, self.prices, series_kwh=self.series_kwh, skip=skip, tariff=self.tariff)
        self.plans.append(result)
        for aggregate, schedule in result.aggregate_schedules:
            self._use(aggregate).schedule = schedule
        return result

    def report(self) -> FmanReport:
        """The record of the rounds (module docstring)."""
        trader = self.trader
        return FmanReport(
            fman=self.fman.name,
            plans=tuple(PlanSummary.of(p) for p in self.plans),
            aggregates=tuple(
                UsedAggregate(dataclasses.replace(u.aggregate.offer, schedule=u.schedule), u.bid)
                for u in self.aggregates_used
            ),
            member_losses=tuple(member_losses(u.aggregate for u in self.aggregates_used)),
            bids_made=trader.bids_made if trader is not None else 0,
            bids_awarded=trader.bids_awarded if trader is not None else 0,
            aggregates_postponed=trader.postponed if trader is not None else 0,
        )


def report_to_wire(report: FmanReport) -> Any:
    """The JSON form of an `FmanReport`."""
    return encode(report)

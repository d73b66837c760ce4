"""The Flex-Offer Manager: the aggregator's service that plans its delegated offers and trades
the direct ones on the market.

Direct offers (D2.1 3.3.2: small direct prosumers trade through the aggregator): an FMAN that
trades on a market (`trade_on`, a `MarketTrader`) takes direct offers that carry an ask
`price.per_kwh_deviation` and a default schedule, aggregates them by price band and congestion
point (`AggregationParams.price_band_eur_per_kwh`), bids them into the FMAR at their highest
ask plus its margin, and assigns the members of an award (each deviating from its own default
the way the aggregate does); they are never planned against energy prices (the aggregator
earns nothing there to pay their asks with). An FMAN that cannot trade a direct offer (no
market, no ask, no default) refuses it at submission through its store's offer check
(`OfferStore.add_offer_check`: 422, the problem named, nothing stored); a direct offer the
market has not taken by its assignment deadline or the start of its default operation is
rejected (`reject`: the issuer's `rejected` event, the reason kept with the offer). So every
offer the FMAN holds is in an aggregate, listed with a reason (`PlanResult.not_planned`,
`BidPlan.held`), or rejected with one (`FlexOfferManager.rejected`); none is accepted and
ignored.

`FlexOfferManager.plan(now, prices)` is one round of rolling planning:

1. take the store's open offers (accepted, assignment deadline not passed) that are
   `delegated` (direct aggregates are listed as not planned, with the reason); assigned or
   executing offers are never touched, so a later round cannot change what is already decided;
2. aggregate them start-aligned: the manager's `Portfolio` follows the store's events and
   keeps the aggregates up to date incrementally (equal to `aggregate_start_aligned` of the
   open offers);
3. per step length (`slice_s`) build a planning problem over `horizon_steps`, solve it with
   HiGHS (`solve_highs`) and extract one schedule per aggregate;
4. disaggregate each aggregate schedule and assign every member schedule through
   `store.assign` (assigned_at = now). The store re-checks feasibility; a refusal is a bug in
   the FMAN and raises AssignmentError.

Every open offer is planned in the round that sees it, in particular those whose
`assignment_before` falls before the next round. Offers that cannot be planned (no inner box,
start window passed, outside the horizon, solver fallback) are not assigned: they keep their
default schedule (or are planned by a later round while still open) and are listed with the
reason in `PlanResult.not_planned`.

The FMAN keeps conditional offers expanded (`expand_conditional`): aggregation and
disaggregation work on the expanded offer. The store holds the offer as submitted, so a member
schedule of a conditional offer (which always runs a normal-mode profile 2p) is mapped back
to profile p of the submitted offer: its start moves past the pre-load steps and the zero
padding is dropped.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from atp.errors import AtpError, Problem
from atp.flexoffer import FlexOffer, Mode, OfferState, Schedule, format_time
from atp.fman.aggregation import (
    Aggregate,
    AggregationParams,
    AggregationResult,
)
from atp.fman.bidding import BiddingParams, MarketTrader, RejectedOffer, member_schedules
from atp.fman.errors import AssignmentError, PriceError, UnknownObjectiveError
from atp.fman.objectives import OBJECTIVES, solve_objective
from atp.fman.planning import (
    GridCapacity,
    PlanningProblem,
    PlanSolution,
    PriceSeries,
    as_price_series,
    build_problem,
    extract_schedules,
    get_objective,
    objective_names,
    published_capacity,
    residual_capacity,
    schedule_cost_eur,
    solve_highs,
)
from atp.fman.portfolio import Portfolio
from atp.interface.protocol import ExchangeInterface
from atp.interface.store import OPERATOR, OfferStore

__all__ = ["PLANNER_NAME", "PLANNER_VERSION", "FlexOfferManager", "NotPlanned", "PlanResult"]

PLANNER_NAME = "fman-start-aligned-milp"
PLANNER_VERSION = "0.1.0"


@dataclass(frozen=True)
class NotPlanned:
    """An open offer that got no schedule in this round, and why (it keeps its default)."""

    offer_id: str | None
    reason: str


@dataclass(frozen=True, eq=False)
class PlanResult:
    """The outcome of one planning round, with its provenance.

    Costs are at the given prices: `objective_eur` of the assigned schedules (the solver's
    objective), `baseline_cost_eur` of the same offers' default schedules (None when a default
    is missing or not covered by prices). Flexibility loss is that of aggregation (time in
    steps summed over members, energy in kWh). `fallback_reason` is None unless a solve
    failed and its offers were left on their defaults. `aggregate_schedules`: each aggregate
    planned in this round with the schedule its members were disaggregated from. `rejected`:
    direct offers the FMAN rejected in this round, with the reasons.
    """

    planner: str
    planner_version: str
    objective: str
    objective_version: str
    solver: str
    planned_at: datetime
    n_offers: int
    n_aggregates: int
    n_assigned: int
    aggregation_s: float
    build_s: float
    solve_s: float
    objective_eur: float | None
    baseline_cost_eur: float | None
    time_flex_loss_steps: int
    energy_flex_loss_kwh: float
    model_status: str
    mip_gap: float | None
    fallback_reason: str | None
    not_planned: tuple[NotPlanned, ...] = field(repr=False)
    schedules: tuple[Schedule, ...] = field(repr=False)
    aggregation: AggregationResult = field(repr=False)
    solutions: tuple[PlanSolution, ...] = field(repr=False)
    aggregate_schedules: tuple[tuple[Aggregate, Schedule], ...] = field(repr=False, default=())
    rejected: tuple[RejectedOffer, ...] = field(repr=False, default=())

    @property
    def savings_eur(self) -> float | None:
        """Baseline cost minus planned cost, when both are known."""
        if self.objective_eur is None or self.baseline_cost_eur is None:
            return None
        return self.baseline_cost_eur - self.objective_eur


def _store_schedule(original: FlexOffer, schedule: Schedule) -> Schedule:
    """The member schedule for the offer as the store holds it (conditional offers collapsed)."""
    c = original.conditional
    if c is None:
        return schedule
    if schedule.profile % 2:
        raise AssignmentError(
            f"offer {original.id}: schedule runs intervention profile {schedule.profile} of the expanded "
            "conditional offer, which the submitted offer cannot express"
        )
    k_prior = math.ceil(c.prior_s / original.slice_s)
    p = schedule.profile // 2
    n = original.profiles[p].n_steps
    return dataclasses.replace(
        schedule,
        start=schedule.start + timedelta(seconds=k_prior * original.slice_s),
        profile=p,
        energy=tuple(schedule.energy[k_prior : k_prior + n]),
    )


def _objective_spec(name: str) -> tuple[str, str]:
    """(name, version) of a planning objective: a linear registered one or one of OBJECTIVES."""
    if name in objective_names():
        objective = get_objective(name)
        return objective.name, objective.version
    if name in OBJECTIVES:
        return name, OBJECTIVES[name].version
    known = sorted({*objective_names(), *OBJECTIVES})
    raise UnknownObjectiveError(f"no planning objective {name!r}; known: {', '.join(known)}")


def _series_on_grid(problem: PlanningProblem, series_kwh: Mapping[str, PriceSeries]) -> dict[str, np.ndarray]:
    """Each series' values for the problem's horizon steps (PriceError when it does not cover them)."""
    out = {}
    for key, ps in series_kwh.items():
        if ps.slice_s != problem.slice_s:
            raise PriceError(f"series {key}: slice_s {ps.slice_s} differs from the plan's {problem.slice_s}")
        offset = int((problem.horizon_start - ps.start).total_seconds() // problem.slice_s)
        values = np.asarray(ps.values_eur_per_kwh, dtype=float)
        if offset < 0 or offset + problem.n_steps > len(values):
            raise PriceError(f"series {key} does not cover the planning horizon")
        out[key] = values[offset : offset + problem.n_steps]
    return out


class FlexOfferManager:
    """The aggregator's service: plans the delegated offers of its `OfferStore` and, once it
    trades on a market (`trade_on`), bids the direct ones there (module docstring)."""

    def __init__(
        self,
        store: OfferStore,
        *,
        name: str,
        params: AggregationParams,
        objective: str = "least_cost",
        horizon_steps: int = 96,
        time_limit_s: float = 30.0,
        mip_rel_gap: float = 1e-6,
    ) -> None:
        _objective_spec(objective)
        self.store = store
        self.name = name
        self.params = params
        self.objective = objective
        self.horizon_steps = horizon_steps
        self.time_limit_s = time_limit_s
        self.mip_rel_gap = mip_rel_gap
        self.trader: MarketTrader | None = None  # the market side; None: no direct trading
        self.rejected: list[RejectedOffer] = []  # every offer this FMAN rejected, with the reason
        # Direct offers the FMAN cannot trade are refused at submission; those in the store
        # before (a trader may be attached next) are rejected by the first round that still
        # cannot trade them.
        store.add_offer_check(self.offer_problems)
        store.capacity_book.planner = name  # DSOs publish their grid capacities to this store (PUT /capacity)
        # The offers, aggregated incrementally as the store's events arrive.
        self.portfolio = Portfolio(params=params, issuer=name)
        for offer in store.open_offers():
            self.portfolio.put(offer)
        self._unsubscribe = store.subscribe(self.portfolio.on_event)

    # -- direct offers ------------------------------------------------------------------------
    def trade_on(
        self,
        market: ExchangeInterface,
        *,
        reference_eur_per_kwh: PriceSeries | float,
        params: BiddingParams | None = None,
        on_award: Any = None,
    ) -> MarketTrader:
        """Bid into the market behind `market` (the aggregator's exchange client of the FMAR):
        from now on the FMAN takes direct offers. Returns the `MarketTrader`; call its `bid`
        before each planning round (`on_award(aggregate, schedule)`: see MarketTrader)."""
        if self.trader is not None:
            raise AtpError(f"FMAN {self.name} already trades on a market (as {self.trader.issuer!r})")
        self.trader = MarketTrader(
            self, market, reference_eur_per_kwh=reference_eur_per_kwh, params=params, on_award=on_award
        )
        return self.trader

    def _direct_problem(self, offer: FlexOffer) -> Problem | None:
        if offer.mode is not Mode.DIRECT:
            return None
        if self.trader is None:
            message = (
                f"FMAN {self.name} trades no direct offers: it bids into no market (its bidding is off); "
                "submit direct offers to the FMAR or delegate them"
            )
            return Problem("mode", message, "receiver")
        if offer.price is None or offer.price.per_kwh_deviation is None:
            message = (
                "a direct offer to the FMAN needs price.per_kwh_deviation: the FMAN bids it at its ask and pays "
                "the ask per kWh of delivered deviation"
            )
            return Problem("price.per_kwh_deviation", message, "receiver")
        if offer.default_schedule is None:
            return Problem(
                "default_schedule",
                "a direct offer needs a default_schedule: the market pays deviations from it",
                "receiver",
            )
        return None

    def direct_problem(self, offer: FlexOffer) -> str | None:
        """Why this FMAN cannot trade the direct `offer` (None: it can, or it is not direct)."""
        problem = self._direct_problem(offer)
        return None if problem is None else problem.message

    def offer_problems(self, offer: FlexOffer) -> list[Problem]:
        """The store's offer check (`OfferStore.add_offer_check`): a direct offer this FMAN cannot
        trade is refused at submission (422), the problem named; nothing else is."""
        problem = self._direct_problem(offer)
        return [] if problem is None else [problem]

    def reject(self, offer_id: str, reason: str) -> RejectedOffer:
        """Reject an accepted offer through the store (its issuer gets `rejected`), with the reason."""
        self.portfolio.remove(offer_id)
        self.store.reject(offer_id, reason)
        rejected = RejectedOffer(offer_id, reason)
        self.rejected.append(rejected)
        return rejected

    def reject_untradeable(self, now: datetime) -> list[RejectedOffer]:
        """Reject the accepted direct offers the FMAN cannot (or no longer) trade at `now`:
        `direct_problem`, an assignment deadline that has passed, or a default operation that
        has begun without an award. Members of bids awaiting the market are left alone."""
        pending = self.trader.pending_members() if self.trader is not None else frozenset()
        out: list[RejectedOffer] = []
        for record in self.store.records((OfferState.ACCEPTED,)):
            offer = record.offer
            if offer.mode is not Mode.DIRECT or offer.id is None or offer.id in pending:
                continue
            reason = self.direct_problem(offer)
            default, deadline = offer.default_schedule, offer.assignment_before
            if reason is None and deadline is not None and deadline < now:
                reason = f"the market awarded it nothing before its assignment deadline {format_time(deadline)}"
            if reason is None and default is not None and default.start <= now:
                reason = (
                    f"the market awarded it nothing before its default operation began at {format_time(default.start)}"
                )
            if reason is not None:
                out.append(self.reject(offer.id, reason))
        return out

    def plan(
        self,
        now: datetime,
        prices: Any,
        *,
        prices_start: datetime | None = None,
        prices_slice_s: int | None = None,
        series_kwh: Mapping[str, PriceSeries] | None = None,
        skip: Collection[str] = (),
        capacity: Sequence[GridCapacity] | None = None,
        tariff: Mapping[str, PriceSeries] | None = None,
    ) -> PlanResult:
        """One planning round at `now` with `prices` (EUR/kWh: a PriceSeries, a pandas Series
        on a DatetimeIndex, or an array with `prices_start` and `prices_slice_s`).

        Objectives other than the linear ones (`balance_imbalance`, `peak_shaving`, see
        atp/fman/objectives.py) read their series from `series_kwh` (kWh per step, as
        PriceSeries on the planning grid covering the horizon): `target_kwh`, `other_kwh`,
        `base_kwh`. Aggregates with a member in `skip` (offer ids: bid into a market, or
        postponed) are left alone this round.

        Grid-aware planning: `capacity` is what the DSO lets the portfolio draw at its
        congestion points (`GridCapacity`; None: every capacity the DSOs published to the
        store through the exchange interface, `PUT /capacity/{name}`, that still covers a
        step after `now`); the round plans its aggregates within what the
        store's other offers leave of it (assigned and executing schedules, defaults of the
        offers not planned now: `residual_capacity`), as soft rows (atp/fman/planning_problem.py).
        `tariff`: per congestion point a grid tariff (EUR/kWh) added to the prices of the
        aggregates there."""
        series = as_price_series(prices, start=prices_start, slice_s=prices_slice_s)
        objective_name, objective_version = _objective_spec(self.objective)
        rejected = self.reject_untradeable(now)
        offers = [o for o in self.store.open_offers(now=now) if o.mode is Mode.DELEGATED]
        originals = {o.id: o for o in offers}
        t0 = time.perf_counter()
        aggregation = self.portfolio.result(now)
        skipped = frozenset(skip)
        if skipped:
            aggregation = AggregationResult(
                tuple(a for a in aggregation if not any(m.offer_id in skipped for m in a.members)),
                aggregation.unaggregated,
            )
            offers = [o for o in offers if o.id not in skipped]
            originals = {o.id: o for o in offers}
        # Direct aggregates are the market's (MarketTrader.bid), never planned against prices.
        direct = [a for a in aggregation if a.offer.mode is Mode.DIRECT]
        if direct:
            aggregation = AggregationResult(
                tuple(a for a in aggregation if a.offer.mode is not Mode.DIRECT), aggregation.unaggregated
            )
        aggregation_s = time.perf_counter() - t0
        not_planned = [NotPlanned(u.offer_id, u.reason) for u in aggregation.unaggregated]
        not_planned.extend(
            NotPlanned(m.offer_id, f"a direct offer (aggregate {a.id}): traded on the market, not at energy prices")
            for a in direct
            for m in a.members
        )

        by_slice: dict[int, list[Aggregate]] = {}
        for a in aggregation:
            by_slice.setdefault(a.slice_s, []).append(a)
        if capacity is None:
            capacity = [published_capacity(c) for c in self.store.capacity_book.in_force(after=now)]
        if capacity:  # what the offers not planned in this round already draw at the points
            planning = {m.offer_id for a in aggregation for m in a.members}
            records = self.store.records((OfferState.ACCEPTED, OfferState.ASSIGNED, OfferState.EXECUTING))
            capacity = residual_capacity(
                capacity,
                (
                    (r.offer.location and r.offer.location.congestion_point, d.start, r.offer.slice_s, d.energy)
                    for r in records
                    if r.offer.id not in planning and (d := r.schedule or r.offer.default_schedule) is not None
                ),
            )
        solutions: list[PlanSolution] = []
        statuses: list[str] = []
        fallbacks: list[str] = []
        assigned: list[Schedule] = []
        planned: list[tuple[Aggregate, Schedule]] = []
        build_s = solve_s = 0.0
        objective_eur = 0.0
        baseline: float | None = 0.0
        for slice_s in sorted(by_slice):
            aggs = by_slice[slice_s]
            linear = self.objective in objective_names()
            problem = build_problem(
                aggs,
                series,
                now=now,
                horizon_steps=self.horizon_steps,
                objective=self.objective if linear else "least_cost",
                slice_s=slice_s,
                capacity=capacity,
                tariff=tariff,
            )
            if linear:
                solution = solve_highs(problem, time_limit_s=self.time_limit_s, mip_rel_gap=self.mip_rel_gap)
            else:
                solution = solve_objective(
                    problem,
                    self.objective,
                    series=_series_on_grid(problem, series_kwh or {}),
                    time_limit_s=self.time_limit_s,
                    mip_rel_gap=self.mip_rel_gap,
                )
            solutions.append(solution)
            build_s += solution.build_s
            solve_s += solution.solve_s
            statuses.append(f"{slice_s} s: {solution.status}" if len(by_slice) > 1 else solution.status)
            members = {a.id: a.members for a in aggs}
            for agg_id, reason in problem.left_out:
                not_planned.extend(NotPlanned(m.offer_id, f"aggregate {agg_id}: {reason}") for m in members[agg_id])
            if not solution.ok:
                fallbacks.append(f"{slice_s} s grid: {solution.fallback_reason}")
                for agg_id in problem.aggregate_ids:
                    not_planned.extend(
                        NotPlanned(m.offer_id, f"planning fell back to defaults: {solution.fallback_reason}")
                        for m in members[agg_id]
                    )
                continue
            objective_eur += solution.objective_eur or 0.0
            for agg, schedule in extract_schedules(problem, solution, aggs, now=now):
                baseline = self._assign_members(agg, schedule, originals, series, now, assigned, baseline)
                planned.append((agg, schedule))
        return PlanResult(
            planner=PLANNER_NAME,
            planner_version=PLANNER_VERSION,
            objective=objective_name,
            objective_version=objective_version,
            solver=solutions[0].solver if solutions else "",
            planned_at=now,
            n_offers=len(offers),
            n_aggregates=len(aggregation),
            n_assigned=len(assigned),
            aggregation_s=aggregation_s,
            build_s=build_s,
            solve_s=solve_s,
            objective_eur=objective_eur,
            baseline_cost_eur=baseline,
            time_flex_loss_steps=aggregation.time_flex_loss_steps,
            energy_flex_loss_kwh=aggregation.energy_flex_loss_kwh,
            model_status="; ".join(statuses) if statuses else "Empty",
            mip_gap=max((s.mip_gap for s in solutions if s.ok and s.mip_gap is not None), default=None),
            fallback_reason="; ".join(fallbacks) if fallbacks else None,
            not_planned=tuple(not_planned),
            schedules=tuple(assigned),
            aggregation=aggregation,
            solutions=tuple(solutions),
            aggregate_schedules=tuple(planned),
            rejected=tuple(rejected),
        )

    def assign_aggregate(self, agg: Aggregate, schedule: Schedule, *, now: datetime) -> list[Schedule]:
        """Disaggregate a feasible schedule of one aggregate (from planning or a market award;
        `bidding.member_schedules`) and assign every member through the store; returns the
        member schedules as assigned."""
        assigned: list[Schedule] = []
        members = member_schedules(agg, schedule, assigned_at=now)
        for member, member_schedule in zip(agg.members, members, strict=True):
            original = self.store.get(OPERATOR, member.offer_id)
            wire = _store_schedule(original, member_schedule)
            try:
                self.store.assign(member.offer_id, wire)
            except AtpError as e:
                raise AssignmentError(
                    f"the store refused the schedule of {member.offer_id} from aggregate {agg.id}: {e} "
                    "(disaggregation must always be feasible: this is a bug in the FMAN)"
                ) from e
            assigned.append(wire)
        return assigned

    def _assign_members(
        self,
        agg: Aggregate,
        schedule: Schedule,
        originals: dict[str | None, FlexOffer],
        series: Any,
        now: datetime,
        assigned: list[Schedule],
        baseline: float | None,
    ) -> float | None:
        """Disaggregate one aggregate schedule and assign its members; returns the baseline sum."""
        assigned.extend(self.assign_aggregate(agg, schedule, now=now))
        for member in agg.members:
            original = originals[member.offer_id]
            default = original.default_schedule
            cost = (
                None if default is None else schedule_cost_eur(series, default.start, default.energy, original.slice_s)
            )
            baseline = None if baseline is None or cost is None else baseline + cost
        return baseline

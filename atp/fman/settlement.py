"""Settlement of a period: one bill per prosumer and the aggregator's statement (F2.FMAN4).

Inputs per prosumer (`ProsumerPeriod`): the offer (with its default schedule), the schedule
the aggregator assigned (None = the offer ran its default), the metered kWh per step and the
contract. All energies are put on one period grid (`period_start`, `period_steps` steps of
`slice_s` seconds); parts of a schedule outside the period are not settled in it. A caller
that knows which offer was in force at each step (the world does) passes the per-step series
itself (`baseline_kwh`, `scheduled_kwh`) and `covered`, the steps the offer was in force: a
bill then settles only those steps (an offer re-declared after a few steps is billed for
those steps, never for the rest of its default schedule).

Quantities of a bill (all kWh over the steps it covers):

- baseline b: `baseline_kwh` when given (the default in force, a `characteristic_baseline`,
  the uncontrolled twin...), else the offer's default schedule on the grid; scheduled s:
  `scheduled_kwh`, else the assigned schedule, else the default; metered m;
- delivered adaptation per step = min(max(m - b, 0), max(s - b, 0)): only energy moved INTO
  a step, as far as it was both asked for and metered. An energy-neutral shift (1 kWh out of
  one step, into another) counts once, not twice; and raising b can only lower every term,
  so a default declared above what the device would do is never paid more than an honest
  one (tests/test_fman_settlement.py proves it to the cent). Scheduled adaptation = sum
  max(s - b, 0), factual adaptation = sum max(m - b, 0);
- consequences of the rule: PV curtailment (production smaller than its declared default),
  a battery's charging and a load moved to other steps are paid where the energy lands;
  a pure reduction (less consumption, a battery discharge, extra production, with no energy
  moved into another step of the bill) is not paid as activation: against a declared
  baseline it is exactly what an inflated declaration would fake. Its value is the energy
  the prosumer does not buy (a valuation against the uncontrolled twin, not a payment);
  a default declared *below* what the device would do is bounded by the offer itself (the
  default must be a feasible schedule of the offer, e.g. meet its total energy);
- imbalance = sum |m - s|; tolerance = `imbalance_tolerance_share` * sum |s|; only the
  imbalance beyond the tolerance is penalised. Neither depends on the baseline, so the
  penalty cannot be moved by a declaration either.

Direct members (small direct prosumers whose offers the FMAN bids into the market,
`atp.fman.bidding`): `settlement_period` settles a direct offer under
`DIRECT_MEMBER_CONTRACT`, a `DirectContract` at the offer's own ask `price.per_kwh_deviation`
that pays both ways (`pays_both_ways`): per step the deviation from the offer's own default
schedule that was both scheduled and metered in the same direction, min(|s - b|, |m - b|),
paid at the member's ask, exactly what the market pays a direct offer for. The baseline is
always the offer's default (the deviation its ask is for), whatever the delegated bills use.
The market pays the aggregator for the aggregate's deviation at the highest member ask plus
its margin; the members' schedules deviate from their defaults the way the aggregate does
(`disaggregate_around_default`) and the bid keeps the default start, so the members' paid
deviations add up to at most the aggregate's, and the aggregator keeps the spread (its
margin: revenue - payments, to the cent).

Offered flexibility (delegated contracts) is taken from the profile that was scheduled (or the
default's): time flexibility in hours (`FlexOffer.time_flexibility_s`, 0 when implicit),
power in kW (largest per-step bound / step length), energy flexibility sum(upper - lower)
(capped by the total-energy span) and flexible kWh = sum |m| over the bill's steps (the energy
the flexible load really ran under the contract; a declared default cannot raise it).

Money is kept in integer cents. Every line item is rounded to cents (round half to even) and
a bill's total is the sum of its rounded lines; the aggregator's margin is the market revenue
in cents minus the payments, so revenue = payments + margin holds exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from atp.flexoffer import FlexOffer, Mode, Schedule
from atp.fman.contracts import Contract, DelegatedContract, DirectContract
from atp.fman.errors import FmanError

__all__ = [
    "DIRECT_MEMBER_CONTRACT",
    "SETTLEMENT_NAME",
    "SETTLEMENT_VERSION",
    "AggregatorStatement",
    "Bill",
    "ProsumerPeriod",
    "Settlement",
    "SettlementError",
    "settle",
    "settlement_period",
]

SETTLEMENT_NAME = "fman-settlement"
SETTLEMENT_VERSION = "2"
DIRECT_MEMBER_CONTRACT = DirectContract(pays_both_ways=True)
"""The contract of a direct member of the FMAN: its own ask per kWh of deviation, both ways."""


class SettlementError(FmanError):
    """Inputs that cannot be settled (misaligned grid, missing price or baseline); says which."""


@dataclass(frozen=True)
class ProsumerPeriod:
    """What is settled for one offer of one prosumer in the period.

    `baseline_kwh` and `scheduled_kwh` (one value per period step) replace the offer's default
    and its schedule on the grid; `covered` (booleans per period step) limits the bill to the
    steps the offer was in force (None: every step).
    """

    offer: FlexOffer
    contract: Contract
    metered_kwh: np.ndarray
    schedule: Schedule | None = None
    baseline_kwh: np.ndarray | None = None
    scheduled_kwh: np.ndarray | None = None
    covered: np.ndarray | None = None


@dataclass(frozen=True)
class Bill:
    """A prosumer's bill for one offer: offered flexibility, delivered adaptation, money (cents)."""

    prosumer: str
    flex_offer_id: str
    contract_kind: str
    covered_steps: int
    # Offered flexibility.
    offered_time_flexibility_h: float
    offered_power_kw: float
    offered_energy_flexibility_kwh: float
    offered_flexible_kwh: float
    # Energies: predicted (scheduled) and factual (metered).
    baseline_kwh: float
    scheduled_kwh: float
    metered_kwh: float
    scheduled_adaptation_kwh: float
    factual_adaptation_kwh: float
    delivered_adaptation_kwh: float
    imbalance_kwh: float
    tolerance_kwh: float
    penalised_kwh: float
    # Money, integer cents; total = sum of rewards - penalty.
    time_flexibility_reward_cents: int
    energy_flexibility_reward_cents: int
    flexible_kwh_reward_cents: int
    activation_cents: int
    penalty_cents: int
    total_cents: int
    predicted_total_cents: int

    @property
    def total_eur(self) -> float:
        """What the aggregator pays the prosumer (negative: the prosumer pays)."""
        return self.total_cents / 100

    @property
    def predicted_total_eur(self) -> float:
        """The total had the prosumer followed the schedule exactly."""
        return self.predicted_total_cents / 100

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (cents as integers, EUR totals added)."""
        out: dict[str, Any] = dict(self.__dict__)
        out["total_eur"] = self.total_eur
        out["predicted_total_eur"] = self.predicted_total_eur
        return out


@dataclass(frozen=True)
class AggregatorStatement:
    """The aggregator's period: market revenue, payments to prosumers and the margin (cents)."""

    market_revenue_cents: int
    payments_to_prosumers_cents: int
    margin_cents: int
    predicted_payments_cents: int
    n_bills: int

    @property
    def market_revenue_eur(self) -> float:
        """Revenue from the market in EUR."""
        return self.market_revenue_cents / 100

    @property
    def payments_to_prosumers_eur(self) -> float:
        """Sum of the bills in EUR."""
        return self.payments_to_prosumers_cents / 100

    @property
    def margin_eur(self) -> float:
        """Market revenue minus payments in EUR."""
        return self.margin_cents / 100


@dataclass(frozen=True)
class Settlement:
    """Bills and statement of one period, with the settlement's name and version."""

    period_start: datetime
    period_steps: int
    slice_s: int
    bills: tuple[Bill, ...]
    statement: AggregatorStatement
    name: str = SETTLEMENT_NAME
    version: str = SETTLEMENT_VERSION


def _cents(amount_eur: float, what: str) -> int:
    if not math.isfinite(amount_eur):
        raise SettlementError(f"{what} is not a finite amount of EUR ({amount_eur!r})")
    return round(amount_eur * 100)


def _on_grid(
    start: datetime, energy: Sequence[float], period_start: datetime, period_steps: int, slice_s: int, what: str
) -> np.ndarray:
    """Energies placed on the period grid; steps outside the period are dropped."""
    offset_s = (start - period_start).total_seconds()
    if offset_s % slice_s != 0:
        raise SettlementError(f"{what} starts at {start.isoformat()}, not on the {slice_s} s grid of the period")
    first = int(offset_s // slice_s)
    values = np.asarray(energy, dtype=float)
    out = np.zeros(period_steps)
    lo, hi = max(first, 0), min(first + values.size, period_steps)
    if lo < hi:
        out[lo:hi] = values[lo - first : hi - first]
    return out


def _grid_array(values: np.ndarray, period_steps: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.shape != (period_steps,):
        raise SettlementError(f"{what} must have one value per period step ({period_steps}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise SettlementError(f"{what} contains NaN or infinite values")
    return arr


def _offered(offer: FlexOffer, profile_index: int) -> tuple[float, float, float]:
    """(time flexibility h, power kW, energy flexibility kWh) of one profile."""
    profile = offer.profiles[profile_index]
    lower, upper = profile.lower_kwh(), profile.upper_kwh()
    time_h = (offer.time_flexibility_s or 0) / 3600
    bound = np.maximum(np.abs(lower), np.abs(upper))
    power_kw = float(bound.max(initial=0.0)) / (offer.slice_s / 3600)
    energy_flex = float((upper - lower).sum())
    if profile.total_energy is not None:
        energy_flex = min(energy_flex, profile.total_energy[1] - profile.total_energy[0])
    return time_h, power_kw, max(energy_flex, 0.0)


def _bill(item: ProsumerPeriod, period_start: datetime, period_steps: int, slice_s: int) -> Bill:
    offer = item.offer
    name = f"offer {offer.id!r}"
    default = offer.default_schedule
    schedule = item.schedule
    profile_index = schedule.profile if schedule is not None else default.profile if default is not None else 0
    if not 0 <= profile_index < len(offer.profiles):
        raise SettlementError(f"{name}: profile {profile_index} is not a profile index")

    def placed(start: datetime, energy: Sequence[float], what: str) -> np.ndarray:
        if offer.slice_s != slice_s:
            raise SettlementError(f"{name} has slice_s={offer.slice_s}, the period uses {slice_s}")
        return _on_grid(start, energy, period_start, period_steps, slice_s, f"{name} {what}")

    if item.baseline_kwh is not None:
        baseline = _grid_array(item.baseline_kwh, period_steps, f"{name} baseline_kwh")
    elif default is not None:
        baseline = placed(default.start, default.energy, "default_schedule")
    else:
        raise SettlementError(f"{name} has no default_schedule; pass a baseline_kwh (e.g. characteristic_baseline)")
    if item.scheduled_kwh is not None:
        scheduled = _grid_array(item.scheduled_kwh, period_steps, f"{name} scheduled_kwh")
    elif schedule is not None:
        scheduled = placed(schedule.start, schedule.energy, "schedule")
    elif default is not None:
        scheduled = placed(default.start, default.energy, "default_schedule")
    else:
        scheduled = baseline
    metered = _grid_array(item.metered_kwh, period_steps, f"{name} metered_kwh")
    covered = np.ones(period_steps, dtype=bool)
    if item.covered is not None:
        covered = np.asarray(item.covered)
        if covered.shape != (period_steps,) or covered.dtype != bool:
            raise SettlementError(f"{name} covered must be {period_steps} booleans (one per period step)")
    # Steps the offer did not cover are not settled under it.
    baseline, scheduled, metered = (np.where(covered, a, 0.0) for a in (baseline, scheduled, metered))

    contract = item.contract
    if isinstance(contract, DirectContract) and contract.pays_both_ways:
        # Deviation either way, paid where scheduled and metered agree in direction (the market's rule).
        asked, done = scheduled - baseline, metered - baseline
        asked_up, metered_up = np.abs(asked), np.abs(done)
        delivered = float(np.where(asked * done > 0, np.minimum(asked_up, metered_up), 0.0).sum())
    else:
        asked_up = np.maximum(scheduled - baseline, 0.0)
        metered_up = np.maximum(metered - baseline, 0.0)
        delivered = float(np.minimum(asked_up, metered_up).sum())
    scheduled_adaptation = float(asked_up.sum())
    imbalance = float(np.abs(metered - scheduled).sum())
    tolerance = contract.imbalance_tolerance_share * float(np.abs(scheduled).sum())
    penalised = max(imbalance - tolerance, 0.0)
    flexible = float(np.abs(metered).sum())

    time_h, power_kw, energy_flex = _offered(offer, profile_index)
    if isinstance(contract, DelegatedContract):
        time_c = _cents(contract.reward_eur_per_h_kw_time_flexibility * time_h * power_kw, f"{name} time reward")
        energy_c = _cents(contract.reward_eur_per_kwh_energy_flexibility * energy_flex, f"{name} energy reward")
        flexible_c = _cents(contract.reward_eur_per_flexible_kwh * flexible, f"{name} flexible-kWh reward")
        scheduled_flexible = float(np.abs(scheduled).sum())
        predicted_flexible_c = _cents(contract.reward_eur_per_flexible_kwh * scheduled_flexible, f"{name} predicted")
        rate = contract.activation_eur_per_kwh
    elif isinstance(contract, DirectContract):
        time_c = energy_c = flexible_c = predicted_flexible_c = 0
        rate_or_none = contract.price_eur_per_kwh_deviation
        if rate_or_none is None:
            rate_or_none = None if offer.price is None else offer.price.per_kwh_deviation
        if rate_or_none is None:
            raise SettlementError(f"{name} has a direct contract but neither it nor the offer has a deviation price")
        rate = rate_or_none
    else:
        raise SettlementError(f"{name}: contract {contract!r} is not a DelegatedContract or DirectContract")
    activation_c = _cents(rate * delivered, f"{name} activation")
    penalty_c = _cents(contract.penalty_eur_per_kwh * penalised, f"{name} penalty")
    predicted_activation_c = _cents(rate * scheduled_adaptation, f"{name} predicted activation")
    return Bill(
        prosumer=offer.issuer,
        flex_offer_id=offer.id or "",
        contract_kind=contract.kind,
        covered_steps=int(covered.sum()),
        offered_time_flexibility_h=time_h,
        offered_power_kw=power_kw,
        offered_energy_flexibility_kwh=energy_flex,
        offered_flexible_kwh=flexible,
        baseline_kwh=float(baseline.sum()),
        scheduled_kwh=float(scheduled.sum()),
        metered_kwh=float(metered.sum()),
        scheduled_adaptation_kwh=scheduled_adaptation,
        factual_adaptation_kwh=float(metered_up.sum()),
        delivered_adaptation_kwh=delivered,
        imbalance_kwh=imbalance,
        tolerance_kwh=tolerance,
        penalised_kwh=penalised,
        time_flexibility_reward_cents=time_c,
        energy_flexibility_reward_cents=energy_c,
        flexible_kwh_reward_cents=flexible_c,
        activation_cents=activation_c,
        penalty_cents=penalty_c,
        total_cents=time_c + energy_c + flexible_c + activation_c - penalty_c,
        predicted_total_cents=time_c + energy_c + predicted_flexible_c + predicted_activation_c,
    )


def settle(
    prosumers: Sequence[ProsumerPeriod],
    *,
    period_start: datetime,
    period_steps: int,
    slice_s: int,
    market_revenue_eur: float,
) -> Settlement:
    """Bills for every offer of the period and the aggregator's statement; money balances to the cent.

    Each offer is settled once: an offer id given twice raises SettlementError.
    """
    if period_steps < 1:
        raise SettlementError(f"period_steps(={period_steps}) must be >= 1")
    if slice_s < 1:
        raise SettlementError(f"slice_s(={slice_s}) must be >= 1 (e.g. 900)")
    seen: set[str] = set()
    bills: list[Bill] = []
    for item in prosumers:
        if item.offer.id is None:
            raise SettlementError(f"an offer of {item.offer.issuer!r} has no id; settled offers must carry their id")
        if item.offer.id in seen:
            raise SettlementError(f"offer {item.offer.id!r} is listed twice; each offer is settled once")
        seen.add(item.offer.id)
        bills.append(_bill(item, period_start, period_steps, slice_s))
    revenue_c = _cents(market_revenue_eur, "market_revenue_eur")
    payments_c = sum(b.total_cents for b in bills)
    statement = AggregatorStatement(
        market_revenue_cents=revenue_c,
        payments_to_prosumers_cents=payments_c,
        margin_cents=revenue_c - payments_c,
        predicted_payments_cents=sum(b.predicted_total_cents for b in bills),
        n_bills=len(bills),
    )
    return Settlement(
        period_start=period_start,
        period_steps=period_steps,
        slice_s=slice_s,
        bills=tuple(bills),
        statement=statement,
    )


def settlement_period(
    offer: FlexOffer,
    *,
    delegated: Contract,
    metered_kwh: np.ndarray,
    schedule: Schedule | None = None,
    baseline_kwh: np.ndarray | None = None,
    scheduled_kwh: np.ndarray | None = None,
    covered: np.ndarray | None = None,
) -> ProsumerPeriod:
    """What the aggregator settles for one offer of its store, under the contract its mode calls for.

    A delegated offer: `delegated` (the aggregator's contract with its delegated prosumers)
    against `baseline_kwh` (None: the offer's default). A direct offer (a direct member of the
    FMAN's market bids): `DIRECT_MEMBER_CONTRACT`, its own ask per kWh of deviation both ways,
    always against its own default schedule (module docstring), so `baseline_kwh` is not used
    for it. The other arguments are those of `ProsumerPeriod`.
    """
    if offer.mode is Mode.DIRECT:
        return ProsumerPeriod(
            offer,
            DIRECT_MEMBER_CONTRACT,
            metered_kwh,
            schedule=schedule,
            scheduled_kwh=scheduled_kwh,
            covered=covered,
        )
    return ProsumerPeriod(
        offer,
        delegated,
        metered_kwh,
        schedule=schedule,
        baseline_kwh=baseline_kwh,
        scheduled_kwh=scheduled_kwh,
        covered=covered,
    )

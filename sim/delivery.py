"""Market awards settled on delivery: what the meters show of every FMAR award, and its money.

An award (`atp.fmar.Award`) sells a change of consumption against the default schedule of the
offer behind it: `deviation_kwh[i]` in the step `i` steps after `deviation_start` (else the
schedule's start), + = more consumption. The world does not pay it as awarded but as delivered
(docs/market.md "Settlement on delivery", docs/outputs.md "deliveries.parquet"):

- the award's offers: a direct prosumer's offer (the award's `offer_id`), or, for an
  aggregator's bid, the members of the aggregate it was bid from (`members` of the bid as the
  FMAR holds it: the member ids of that aggregate in `Aggregator.aggregates_used`);
- measured energy per step (`measured_kwh`): over the award's offers and every device step in
  which that offer is in force (`World.offer_ids`), metered minus the baseline in force
  (`World.metered_kwh - World.baseline_kwh`: the offer's default schedule, 0 where its schedule
  runs past the default's end); a step in which a newer offer of the device is in force
  measures nothing for the award;
- delivered energy per step (`delivered_part`): the measured energy in the awarded direction,
  capped at the awarded volume, and the whole award when the meter is within
  `DELIVERY_TOLERANCE_KWH` of it; never in the other direction, 0 where nothing was awarded;
- shortfall per step: |awarded| - |delivered| (>= 0).

Money, in cents under the ledger's rounding rule (half to even): the payment is the award's
price per kWh x the delivered kWh (summed over steps, absolute); the penalty is
`market.shortfall_penalty_eur_per_kwh` x the shortfall kWh, paid by the seller to the market
operator (the counterparty of every trade). sim/ledger.py books both; this module only measures
and prices.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atp.fmar import Award, SessionResult
from sim.world import World

__all__ = [
    "DELIVERY_TOLERANCE_KWH",
    "AwardDelivery",
    "Delivery",
    "buyer_weights",
    "delivered_part",
    "settle_awards",
    "settle_delivery",
]

DELIVERY_TOLERANCE_KWH = 1e-6
"""A step whose measured energy is within this of the award counts as delivered in full (the
spec's energy tolerance), so float noise on a followed schedule is no shortfall."""

_ONE_REQUEST_AT_A_TIME = frozenset({"one_sided_pool"})
"""Mechanisms that clear one request at a time: an award serves only the request it is listed with."""


def delivered_part(
    awarded_kwh: Sequence[float] | np.ndarray,
    measured_kwh: Sequence[float] | np.ndarray,
    *,
    tolerance_kwh: float = DELIVERY_TOLERANCE_KWH,
) -> np.ndarray:
    """Per step, the part of the award the meter shows: `measured` in the awarded direction,
    capped at `awarded`; the whole award when `measured` is within `tolerance_kwh` of it; 0 when
    nothing was awarded or the meter moved the other way. Signed like `awarded`."""
    awarded = np.asarray(awarded_kwh, dtype=float)
    measured = np.asarray(measured_kwh, dtype=float)
    if awarded.shape != measured.shape:
        raise ValueError(f"awarded ({awarded.shape}) and measured ({measured.shape}) energies differ in length")
    if not (np.isfinite(awarded).all() and np.isfinite(measured).all()):
        raise ValueError("awarded and measured energies must be finite numbers")
    up = np.minimum(np.maximum(measured, 0.0), awarded)  # awarded > 0: more consumption
    down = np.maximum(np.minimum(measured, 0.0), awarded)  # awarded < 0: less consumption
    out = np.where(awarded > 0, up, np.where(awarded < 0, down, 0.0))
    close = (awarded != 0) & (np.abs(measured - awarded) <= tolerance_kwh)
    return np.where(close, awarded, out) + 0.0


@dataclass(frozen=True)
class Delivery:
    """One award settled on what was delivered: energies per step (kWh) and money (cents)."""

    awarded_kwh: np.ndarray
    delivered_kwh: np.ndarray
    shortfall_kwh: np.ndarray
    payment_cents: int
    penalty_cents: int

    @property
    def awarded_total_kwh(self) -> float:
        return math.fsum(np.abs(self.awarded_kwh).tolist())

    @property
    def delivered_total_kwh(self) -> float:
        return math.fsum(np.abs(self.delivered_kwh).tolist())

    @property
    def shortfall_total_kwh(self) -> float:
        return math.fsum(self.shortfall_kwh.tolist())


def settle_delivery(
    awarded_kwh: Sequence[float] | np.ndarray,
    measured_kwh: Sequence[float] | np.ndarray,
    *,
    price_eur_per_kwh: float,
    penalty_eur_per_kwh: float,
) -> Delivery:
    """The settlement rule of one award: delivered part, shortfall, payment and penalty.

    payment = round(100 x price x delivered kWh) cents, penalty = round(100 x rate x shortfall
    kWh) cents (half to even); `penalty_eur_per_kwh` must be >= 0.
    """
    if not math.isfinite(penalty_eur_per_kwh) or penalty_eur_per_kwh < 0:
        raise ValueError(f"penalty_eur_per_kwh must be a finite number >= 0, got {penalty_eur_per_kwh!r}")
    if not math.isfinite(price_eur_per_kwh):
        raise ValueError(f"price_eur_per_kwh must be a finite number, got {price_eur_per_kwh!r}")
    awarded = np.asarray(awarded_kwh, dtype=float) + 0.0
    delivered = delivered_part(awarded, measured_kwh)
    shortfall = np.maximum(np.abs(awarded) - np.abs(delivered), 0.0)
    delivered_kwh = math.fsum(np.abs(delivered).tolist())
    shortfall_kwh = math.fsum(shortfall.tolist())
    return Delivery(
        awarded_kwh=awarded,
        delivered_kwh=delivered,
        shortfall_kwh=shortfall,
        payment_cents=round(price_eur_per_kwh * delivered_kwh * 100),
        penalty_cents=round(penalty_eur_per_kwh * shortfall_kwh * 100),
    )


@dataclass(frozen=True)
class AwardDelivery:
    """An award of the run, where it was listed, what its offers measured and how it settled.

    `first_step`: the world step of `delivery.awarded_kwh[0]` (a step past the end of the run
    measures nothing). `result`: the session result the award is listed with. `offers`: the
    offer ids whose meters count.
    """

    award: Award
    result: SessionResult
    offers: tuple[str, ...]
    first_step: int
    measured_kwh: np.ndarray
    delivery: Delivery

    @property
    def steps(self) -> range:
        """The world steps of the award's delivery span."""
        return range(self.first_step, self.first_step + len(self.measured_kwh))


def _cells(world: World) -> dict[str, list[tuple[int, int]]]:
    """Offer id -> the (prosumer, device) cells it covers in some step."""
    k, i, d = np.nonzero(world.offer_ids != None)  # noqa: E711 (elementwise on an object array)
    cells: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for offer_id, ii, dd in zip(world.offer_ids[k, i, d].tolist(), i.tolist(), d.tolist(), strict=True):
        cells[offer_id].add((ii, dd))
    return {offer_id: sorted(found) for offer_id, found in cells.items()}


def settle_awards(world: World, results: Sequence[SessionResult]) -> tuple[AwardDelivery, ...]:
    """Every award of `results` settled on delivery, in the order of the results and their awards."""
    penalty = world.config.market.shortfall_penalty_eur_per_kwh
    cells = _cells(world)
    bids = {r.offer.id: r.offer for r in world.market_operator.market.store.records()}
    net = world.metered_kwh - world.baseline_kwh
    out = []
    for result in results:
        for award in result.awards:
            bid = bids.get(award.offer_id)
            members = bid.members if bid is not None and award.issuer == world.aggregator.name else None
            offers = tuple(members) if members else (award.offer_id,)
            start = award.deviation_start or award.schedule.start
            first = int((start - world.start).total_seconds() // world.slice_s)
            awarded = np.asarray(award.deviation_kwh, dtype=float)
            steps = np.arange(first, first + len(awarded))
            inside = (steps >= 0) & (steps < world.n_steps)
            measured = np.zeros(len(awarded))
            ks = steps[inside]
            for offer_id in offers:
                for i, d in cells.get(offer_id, ()):
                    in_force = world.offer_ids[ks, i, d] == offer_id
                    measured[inside] += np.where(in_force, net[ks, i, d], 0.0)
            delivery = settle_delivery(
                awarded, measured, price_eur_per_kwh=award.price_eur_per_kwh, penalty_eur_per_kwh=penalty
            )
            out.append(AwardDelivery(award, result, offers, first, measured, delivery))
    return tuple(out)


def buyer_weights(results: Sequence[SessionResult], settled: AwardDelivery) -> np.ndarray:
    """Each result's share (summing to 1) of what `settled` delivered, among one session's results.

    The one-sided pool clears one request at a time: the award serves only the result it is
    listed with. The other mechanisms share every seller among the buyers of each step and
    direction in proportion to what they cleared there (atp.fmar `SessionResult`); a delivered
    step no result cleared in, and an award that delivered nothing, go to the listing result.
    """
    home = next(n for n, r in enumerate(results) if r is settled.result)
    weights = np.zeros(len(results))
    delivered = np.abs(settled.delivery.delivered_kwh)
    total = float(delivered.sum())
    if settled.result.mechanism in _ONE_REQUEST_AT_A_TIME or total <= 0:
        weights[home] = 1.0
        return weights
    slice_s = settled.result.slice_s
    direction = np.sign(settled.delivery.awarded_kwh)
    at = (settled.award.deviation_start or settled.award.schedule.start).timestamp()
    for j, kwh in enumerate(delivered.tolist()):
        if kwh <= 0:
            continue
        when = at + j * slice_s
        volume = np.zeros(len(results))
        for n, r in enumerate(results):
            t = round((when - r.start.timestamp()) / r.slice_s)
            if 0 <= t < len(r.cleared_kwh) and np.sign(r.cleared_kwh[t]) == direction[j]:
                volume[n] = abs(r.cleared_kwh[t])
        if volume.sum() > 0:
            weights += kwh * volume / volume.sum()
        else:
            weights[home] += kwh
    return weights / total

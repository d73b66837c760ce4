"""One-sided pool auction (D2.1 F2.FMAR1): supply offers cleared against one buyer's request.

KIBERnet FLEX style, pay-as-bid. Only `direct` offers with a `price.per_kwh_deviation` take
part. Each offer's deviation range per step is its inner box around its default schedule
(`inner_box_around`) minus the default, at the default's start: the pool changes *how much*
an offer consumes, never *when* it runs (time shifting belongs to the many-to-many clearing).
Offers form one price-volume merit order (cheapest first, ties broken by offer id). In every
step the requested volume is met at least cost from the offers priced at or under the
buyer's cut-off, taking each offer's capacity in the requested direction in merit order. The
steps are independent because the box couples none of them, so this greedy fill is optimal.
Seller i receives price_i * sum_t |deviation_i,t|; the buyer pays the same total, so the
surplus is 0 (recorded anyway, for comparison with the other mechanisms).

Every awarded schedule is the default energy plus the deviation, at the default start,
assigned at `now`, and is checked before it is emitted: slice bounds on arrays for offers
with box profiles, `check_schedule` for offers with joint constraints; an offer that would
fail is dropped and the pool filled again without it.

The hot path runs on numpy arrays over all offers and steps: the bids as flat per-step
arrays (bid k owns steps `seg[k]:seg[k + 1]`), the fill as an offers x steps matrix.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

import numpy as np

from atp.flexoffer import (
    TOLERANCE_KWH,
    DefaultSchedule,
    FlexOffer,
    Mode,
    Profile,
    Schedule,
    check_schedule,
    format_time,
    on_grid,
)
from atp.flexoffer.approx import inner_box_around
from atp.fmar.errors import MarketError
from atp.fmar.market import Mechanism, register_mechanism
from atp.fmar.model import Award, Bid, Rejection, Request, Session, SessionResult, result_header

__all__ = [
    "ALL_INFEASIBLE",
    "EMPTY_MARKET",
    "NAME",
    "NO_DIRECTION",
    "VERSION",
    "ZERO_VOLUME",
    "OneSidedPool",
    "bids_from_offers",
    "clear_one_sided_pool",
]

NAME = "one_sided_pool"
VERSION = "1.0.0"

_EPS_KWH = 1e-9  # deviations and capacities below this are treated as zero


class _Stage(enum.IntEnum):
    """Screening stages in the order an offer passes them.

    When nothing clears, the furthest stage any offer reached names the reason.
    """

    IDENTITY = 0
    MODE = 1
    PRICE = 2
    DEFAULT = 3
    GRID = 4
    CONGESTION = 5
    OVERLAP = 6
    TIMING = 7
    CUTOFF = 8
    BOUNDS = 9


def _no_bid_reason(stage: _Stage, request: Request, now: datetime) -> str:
    """Why nothing cleared, from the furthest stage any offer reached."""
    if stage <= _Stage.MODE:
        return "no direct offers: only direct offers with a price per kWh of deviation take part"
    return {
        _Stage.PRICE: "no direct offer carries a price per kWh of deviation",
        _Stage.DEFAULT: "no direct offer has a usable default schedule",
        _Stage.GRID: f"no offer lies on the request's {request.slice_s} s grid",
        _Stage.CONGESTION: f"no offer at congestion point {request.congestion_point!r}",
        _Stage.OVERLAP: "no offer's default schedule overlaps the request period "
        f"[{format_time(request.start)}, {format_time(request.end)})",
        _Stage.TIMING: f"no offer can still be scheduled at {format_time(now)} "
        "(operation started, outside its start window, or assignment_before passed)",
        _Stage.CUTOFF: "no crossing bids: every eligible offer asks more than the cut-off of "
        f"{request.cutoff_eur_per_kwh:g} EUR/kWh",
        _Stage.BOUNDS: "no offer's default schedule lies within its slice bounds",
    }[stage]


ZERO_VOLUME = "zero volume: the request asks for no change in any step"
EMPTY_MARKET = "empty market: no offers"
NO_DIRECTION = "no offer can deviate in the requested direction during the requested steps"
ALL_INFEASIBLE = "every candidate schedule failed the feasibility check"


# -- screening ---------------------------------------------------------------------------
def _timing_problem(offer: FlexOffer, start: datetime, now: datetime) -> str | None:
    """Why a schedule at `start` assigned at `now` would break rule 1 or 5, else None."""
    if offer.assignment_before is not None and offer.assignment_before < now:
        return f"assignment_before {format_time(offer.assignment_before)} has passed"
    if start < now:
        return f"its default schedule started at {format_time(start)}, before {format_time(now)}"
    window = offer.window(now)
    if (window.earliest is not None and start < window.earliest) or (
        window.latest is not None and start > window.latest
    ):
        return f"its default start {format_time(start)} is outside its start window at {format_time(now)}"
    return None


def _screen(offer: FlexOffer, *, now: datetime, request: Request | None) -> tuple[_Stage, str] | None:
    """The first stage the offer fails and why, or None when it may bid (box still to build)."""
    if offer.mode is not Mode.DIRECT:
        return _Stage.MODE, "delegated offer: only direct offers take part in the pool"
    price = offer.price.per_kwh_deviation if offer.price is not None else None
    if price is None:
        return _Stage.PRICE, "direct offer without price.per_kwh_deviation"
    if not math.isfinite(price):
        return _Stage.PRICE, f"price.per_kwh_deviation {price} is not a finite price"
    default = offer.default_schedule
    if default is None:
        return _Stage.DEFAULT, "no default schedule to deviate from"
    if not 0 <= default.profile < len(offer.profiles):
        return _Stage.DEFAULT, f"its default schedule runs profile {default.profile}, which does not exist"
    if not on_grid(default.start, offer.slice_s):
        return _Stage.DEFAULT, f"its default start {format_time(default.start)} is off its {offer.slice_s} s grid"
    if request is not None:
        slice_s = request.slice_s
        if offer.slice_s != slice_s:
            return _Stage.GRID, f"its slice_s {offer.slice_s} s differs from the request's {slice_s} s"
        lag_s = int((default.start - request.start).total_seconds())
        if lag_s % slice_s:
            return _Stage.GRID, f"its default start {format_time(default.start)} is off the request's grid"
        cp = request.congestion_point
        if cp is not None and (offer.location is None or offer.location.congestion_point != cp):
            return _Stage.CONGESTION, f"not located at the request's congestion point {cp!r}"
        first = lag_s // slice_s
        if first + len(default.energy) <= 0 or first >= request.n_steps:
            return _Stage.OVERLAP, "its default schedule does not overlap the request period"
    problem = _timing_problem(offer, default.start, now)
    if problem is not None:
        return _Stage.TIMING, problem
    if request is not None and price > request.cutoff_eur_per_kwh:
        return _Stage.CUTOFF, f"price {price:g} EUR/kWh is above the cut-off {request.cutoff_eur_per_kwh:g} EUR/kWh"
    return None


def _screen_all(
    offers: Sequence[FlexOffer], *, now: datetime, request: Request | None
) -> tuple[list[FlexOffer], list[Rejection], _Stage]:
    """Offers that may bid, the others rejected, and the furthest stage a rejected one reached."""
    passed: list[FlexOffer] = []
    rejected: list[Rejection] = []
    furthest = _Stage.IDENTITY
    seen: set[str] = set()
    for i, offer in enumerate(offers):
        if offer.id is None:
            rejected.append(
                Rejection(f"offers[{i}]", "the offer has no id; offers get theirs from the receiving store")
            )
            continue
        if offer.id in seen:
            rejected.append(Rejection(offer.id, "duplicate id: an earlier offer has the same id"))
            continue
        seen.add(offer.id)
        failed = _screen(offer, now=now, request=request)
        if failed is None:
            passed.append(offer)
        else:
            furthest = max(furthest, failed[0])
            rejected.append(Rejection(offer.id, failed[1]))
    return passed, rejected, furthest


# -- bids as flat arrays -----------------------------------------------------------------
def _default_of(offer: FlexOffer) -> DefaultSchedule:
    """The default schedule of a screened offer (screening guarantees one)."""
    if offer.default_schedule is None:
        raise MarketError(f"offer {offer.id} has no default schedule; screen offers before building bids")
    return offer.default_schedule


def _price_of(offer: FlexOffer) -> float:
    """The deviation price of a screened offer (screening guarantees one)."""
    if offer.price is None or offer.price.per_kwh_deviation is None:
        raise MarketError(f"offer {offer.id} has no price.per_kwh_deviation; screen offers before building bids")
    return offer.price.per_kwh_deviation


@dataclass
class _BidBlock:
    """Screened offers as flat per-step arrays; bid k owns steps `seg[k]:seg[k + 1]`."""

    offers: list[FlexOffer]
    defaults: list[DefaultSchedule]
    profiles: list[Profile]
    prices: np.ndarray  # EUR/kWh per bid
    seg: np.ndarray  # n + 1 offsets into the step arrays
    owner: np.ndarray  # bid index of every step
    joint: np.ndarray  # bid has total energy, polytope or dependency constraints
    ref_kwh: np.ndarray  # default energy per step
    slice_lower_kwh: np.ndarray
    slice_upper_kwh: np.ndarray
    dev_lower_kwh: np.ndarray  # <= 0: deviation bounds around the default (inner box)
    dev_upper_kwh: np.ndarray  # >= 0


def _build_block(offers: list[FlexOffer]) -> tuple[_BidBlock | None, dict[int, tuple[_Stage, str]]]:
    """The bids of screened offers, or None and the offers that cannot bid, with why.

    Checked here on arrays rather than per offer: the default schedule has as many steps as
    its profile, every slice lasts at least one step, and the default lies within its slice
    bounds.
    """
    n = len(offers)
    defaults = [_default_of(o) for o in offers]
    profiles = [o.profiles[d.profile] for o, d in zip(offers, defaults, strict=True)]
    n_steps = np.fromiter((len(d.energy) for d in defaults), np.int64, n)
    n_slices = np.fromiter((len(p.slices) for p in profiles), np.int64, n)
    total_slices = int(n_slices.sum())
    bounds = np.fromiter(
        chain.from_iterable(s.energy for p in profiles for s in p.slices), float, 2 * total_slices
    ).reshape(-1, 2)
    durations = np.fromiter((s.duration for p in profiles for s in p.slices), np.int64, total_slices)
    slice_owner = np.repeat(np.arange(n), n_slices)
    profile_steps = np.bincount(slice_owner, weights=durations, minlength=n).astype(np.int64)
    short = np.bincount(slice_owner[durations < 1], minlength=n) > 0
    malformed = short | (n_slices == 0) | (profile_steps != n_steps)
    if malformed.any():
        return None, {
            int(k): (
                _Stage.DEFAULT,
                f"its default schedule has {n_steps[k]} steps, its profile {profile_steps[k]} "
                "(or a slice shorter than one step)",
            )
            for k in np.flatnonzero(malformed)
        }
    seg = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(n_steps, out=seg[1:])
    slice_lower = np.repeat(bounds[:, 0], durations)
    slice_upper = np.repeat(bounds[:, 1], durations)
    ref = np.fromiter(chain.from_iterable(d.energy for d in defaults), float, int(seg[-1]))
    owner = np.repeat(np.arange(n), n_steps)
    outside = ~np.isfinite(ref) | (ref < slice_lower - TOLERANCE_KWH) | (ref > slice_upper + TOLERANCE_KWH)
    bad = np.bincount(owner[outside], minlength=n) > 0
    if bad.any():
        return None, {
            int(k): (_Stage.BOUNDS, "its default schedule breaks its slice bounds") for k in np.flatnonzero(bad)
        }
    box_lower = np.minimum(slice_lower, ref)
    box_upper = np.maximum(slice_upper, ref)
    joint = np.fromiter(
        (p.total_energy is not None or p.polytope is not None or p.dependency is not None for p in profiles), bool, n
    )
    for k in np.flatnonzero(joint):
        a, b = seg[k], seg[k + 1]
        box_lower[a:b], box_upper[a:b] = inner_box_around(profiles[k], ref[a:b])
    prices = np.fromiter((_price_of(o) for o in offers), float, n)
    block = _BidBlock(
        offers=offers,
        defaults=defaults,
        profiles=profiles,
        prices=prices,
        seg=seg,
        owner=owner,
        joint=joint,
        ref_kwh=ref,
        slice_lower_kwh=slice_lower,
        slice_upper_kwh=slice_upper,
        dev_lower_kwh=np.minimum(box_lower - ref, 0.0),
        dev_upper_kwh=np.maximum(box_upper - ref, 0.0),
    )
    return block, {}


def _bids_block(
    offers: Sequence[FlexOffer], *, now: datetime, request: Request | None
) -> tuple[_BidBlock | None, list[Rejection], _Stage]:
    """Screen the offers and lay the survivors out as bids; None when no offer may bid."""
    passed, rejected, furthest = _screen_all(offers, now=now, request=request)
    while passed:
        block, failures = _build_block(passed)
        if block is not None:
            return block, rejected, furthest
        for k, (stage, reason) in failures.items():
            rejected.append(Rejection(passed[k].id or "", reason))
            furthest = max(furthest, stage)
        passed = [o for k, o in enumerate(passed) if k not in failures]
    return None, rejected, furthest


def bids_from_offers(offers: Sequence[FlexOffer], *, now: datetime) -> tuple[list[Bid], list[Rejection]]:
    """The offers that may trade deviations at `now` as Bids, and the others with reasons.

    A bid's bounds are its inner box around the default schedule minus the default, at the
    default start: every deviation vector within them gives a feasible schedule.
    """
    block, rejected, _ = _bids_block(offers, now=now, request=None)
    if block is None:
        return [], rejected
    bids = []
    for k, offer in enumerate(block.offers):
        a, b = block.seg[k], block.seg[k + 1]
        bids.append(
            Bid(
                offer_id=offer.id or "",
                offer=offer,
                price_eur_per_kwh=float(block.prices[k]),
                start=block.defaults[k].start,
                lower_kwh=tuple(block.dev_lower_kwh[a:b].tolist()),
                upper_kwh=tuple(block.dev_upper_kwh[a:b].tolist()),
            )
        )
    return bids, rejected


# -- clearing ----------------------------------------------------------------------------
def _fill(capacity_kwh: np.ndarray, need_kwh: np.ndarray) -> np.ndarray:
    """Per step, take capacity row by row (merit order) until the need is met."""
    before = np.zeros_like(capacity_kwh)
    np.cumsum(capacity_kwh[:-1], axis=0, out=before[1:])
    take = np.clip(need_kwh[None, :] - before, 0.0, capacity_kwh)
    take[take < _EPS_KWH] = 0.0
    return take


def _schedule(offer: FlexOffer, energy_kwh: np.ndarray, *, now: datetime, price_eur: float) -> Schedule:
    default = _default_of(offer)
    return Schedule(
        flex_offer_id=offer.id or "",
        start=default.start,
        profile=default.profile,
        energy=tuple(energy_kwh.tolist()),
        assigned_at=now,
        price_eur=price_eur,
    )


def _infeasible(block: _BidBlock, energy_kwh: np.ndarray, awarded: np.ndarray, *, now: datetime) -> dict[int, str]:
    """Awarded bids whose schedule would be infeasible, with the first problem found."""
    failures: dict[int, str] = {}
    outside = (energy_kwh < block.slice_lower_kwh - TOLERANCE_KWH) | (
        energy_kwh > block.slice_upper_kwh + TOLERANCE_KWH
    )
    broken = np.bincount(block.owner[outside], minlength=len(block.offers)) > 0
    for k in awarded[broken[awarded] & ~block.joint[awarded]]:
        failures[int(k)] = "its schedule would break its slice bounds"
    for k in awarded[block.joint[awarded]]:
        offer = block.offers[k]
        a, b = block.seg[k], block.seg[k + 1]
        problems = check_schedule(offer, _schedule(offer, energy_kwh[a:b], now=now, price_eur=0.0))
        if problems:
            failures[int(k)] = f"its schedule would be infeasible: {problems[0]}"
    return failures


def _result(
    request: Request,
    *,
    now: datetime,
    session: Session | None,
    n_offers: int,
    n_bids: int = 0,
    cleared_kwh: np.ndarray | None = None,
    step_mean: list[float | None] | None = None,
    step_max: list[float | None] | None = None,
    awards: Sequence[Award] = (),
    rejected: Sequence[Rejection] = (),
    reason: str | None = None,
) -> SessionResult:
    n = request.n_steps
    paid = math.fsum(a.price_eur for a in awards)
    return SessionResult(
        **result_header(request, session=session, mechanism=NAME, version=VERSION, now=now),
        cleared_kwh=tuple(cleared_kwh.tolist()) if cleared_kwh is not None else (0.0,) * n,
        step_mean_price_eur_per_kwh=tuple(step_mean) if step_mean is not None else (None,) * n,
        step_max_price_eur_per_kwh=tuple(step_max) if step_max is not None else (None,) * n,
        n_offers=n_offers,
        n_bids=n_bids,
        awards=tuple(awards),
        rejected=tuple(rejected),
        buyer_pays_eur=paid,
        sellers_receive_eur=paid,
        surplus_eur=0.0,
        reason=reason,
    )


def clear_one_sided_pool(
    request: Request, offers: Sequence[FlexOffer], *, now: datetime, session: Session | None = None
) -> SessionResult:
    """Clear one buyer's request against the offers, pay-as-bid, at `now`.

    Never raises for market outcomes: zero volume, no offers, no direct offers, no offer at
    or under the cut-off, no overlap with the request period all give a SessionResult with
    an empty `awards` and the `reason`. `session` only labels the result.
    """
    requested = np.asarray(request.volume_kwh, dtype=float)
    sign = np.where(np.abs(requested) > _EPS_KWH, np.sign(requested), 0.0)
    need = np.abs(requested) * (sign != 0)
    done = functools.partial(_result, request, now=now, session=session, n_offers=len(offers))
    if not sign.any():
        return done(reason=ZERO_VOLUME)
    if not offers:
        return done(reason=EMPTY_MARKET)
    block, rejected, furthest = _bids_block(offers, now=now, request=request)
    if block is None:
        return done(rejected=rejected, reason=_no_bid_reason(furthest, request, now))

    n, n_req = len(block.offers), request.n_steps
    ids = [o.id or "" for o in block.offers]
    order = np.array(sorted(range(n), key=lambda k: (block.prices[k], ids[k])), dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)

    # Each bid step on the request grid, and its capacity in the requested direction.
    lag = np.fromiter(
        (int((d.start - request.start).total_seconds()) // request.slice_s for d in block.defaults), np.int64, n
    )
    col = np.arange(block.seg[-1]) - block.seg[:-1][block.owner] + lag[block.owner]
    on = (col >= 0) & (col < n_req)
    step_sign = np.zeros(len(col))
    step_sign[on] = sign[col[on]]
    capacity_flat = np.where(step_sign < 0, -block.dev_lower_kwh, np.where(step_sign > 0, block.dev_upper_kwh, 0.0))
    capacity_flat[capacity_flat < _EPS_KWH] = 0.0
    rows, cols = rank[block.owner[on]], col[on]
    capacity = np.zeros((n, n_req))
    capacity[rows, cols] = capacity_flat[on]

    dropped: dict[int, str] = {}
    while True:
        usable = capacity
        if dropped:
            usable = capacity.copy()
            usable[rank[list(dropped)]] = 0.0
        take = _fill(usable, need)
        deviation = np.zeros(len(col))
        deviation[on] = step_sign[on] * take[rows, cols]
        energy = block.ref_kwh + deviation
        delivered = take.sum(axis=1)  # kWh per bid, in merit order
        awarded = order[delivered > 0]  # bid indices, merit order
        failures = _infeasible(block, energy, awarded, now=now)
        if not failures:
            break
        dropped.update(failures)

    awards = []
    for k in awarded:
        offer = block.offers[k]
        a, b = block.seg[k], block.seg[k + 1]
        price = float(block.prices[k])
        price_eur = price * float(delivered[rank[k]])
        awards.append(
            Award(
                offer_id=ids[k],
                issuer=offer.issuer,
                schedule=_schedule(offer, energy[a:b], now=now, price_eur=price_eur),
                deviation_kwh=tuple(deviation[a:b].tolist()),
                price_eur_per_kwh=price,
                price_eur=price_eur,
            )
        )
    won = set(awarded.tolist())
    for k in order.tolist():
        if k in dropped:
            rejected.append(Rejection(ids[k], dropped[k]))
        elif k not in won:
            why = "not needed: cheaper offers met the request" if capacity[rank[k]].any() else NO_DIRECTION
            rejected.append(Rejection(ids[k], why))

    taken = take.sum(axis=0)
    used = take > 0
    prices_in_order = block.prices[order][:, None]
    step_max = np.where(used, prices_in_order, -np.inf).max(axis=0)
    step_mean = (take * prices_in_order).sum(axis=0) / np.where(taken > 0, taken, 1.0)
    cleared_any = used.any(axis=0)
    reason = None
    if not awards:
        reason = ALL_INFEASIBLE if dropped else NO_DIRECTION
    return done(
        n_bids=n,
        cleared_kwh=sign * taken + 0.0,
        step_mean=[float(m) if c else None for m, c in zip(step_mean, cleared_any, strict=True)],
        step_max=[float(m) if c else None for m, c in zip(step_max, cleared_any, strict=True)],
        awards=awards,
        rejected=rejected,
        reason=reason,
    )


@register_mechanism
class OneSidedPool(Mechanism):
    """The one-sided pool as a market mechanism: requests cleared one after another.

    The requests of a session are cleared in the order they were posted; an offer awarded to
    one request leaves the pool (it runs one schedule), the others stay for the next request.
    """

    name = NAME
    version = VERSION

    def clear(
        self,
        requests: Sequence[Request],
        offers: Sequence[FlexOffer],
        *,
        now: datetime,
        session: Session | None = None,
    ) -> list[SessionResult]:
        remaining = list(offers)
        results = []
        for request in requests:
            result = clear_one_sided_pool(request, remaining, now=now, session=session)
            won = {a.offer_id for a in result.awards}
            if won:
                remaining = [o for o in remaining if o.id not in won]
            results.append(result)
        return results

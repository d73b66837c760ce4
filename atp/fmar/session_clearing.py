"""A session cleared many-to-many: Flex-Offers and Requests as bids, the clearing as awards.

Sellers are direct Flex-Offers with a `price.per_kwh_deviation` (screened as in the pool,
`bids_from_offers`). Each becomes a `SellBid` whose options are its start times and profiles:

- the default profile at the default start, with the inner box around the default schedule
  (the continuous option, deviations around 0);
- the default profile at other starts in the offer's window (time flexibility), with the same
  box shifted along: the deviation against the default schedule is then forced in some steps,
  so the option is all or nothing;
- with `xor_profiles`, the offer's other profiles that have no joint constraints (slice bounds
  only), at the same starts.

At most `max_starts` starts are tried per offer, the default and those nearest to it. Every
start lies in the session's delivery period, at or after `now`, on the session grid.

Buyers are `Request`s (BRPs, DSOs): a signed volume per step and a limit (cut-off) price, in
the zone of their congestion point. Buyers do not submit Flex-Offers: a buyer that could also
deviate would be a seller with its own offer. Zones and transport: `atp.fmar.transport`.

Back from the clearing, each accepted offer gets an `Award` with its schedule (start, profile,
energy = default + deviation), checked with `check_schedule` before it is emitted (an offer
that would fail is dropped and the session cleared again without it). Each request gets a
`SessionResult`: its cleared volume per step, the price it pays per kWh per step, and its
share of the market's money (see `SessionResult`). A request that receives nothing says why in
its own terms (`reason`): no seller at or linked to its zone, no seller there with room in the
requested direction in its steps, every such seller above its cut-off, or else that crossing
bids were there but not profitable (with the deviations their options force in other steps,
fees, or other buyers' bids).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from atp.flexoffer import TOLERANCE_KWH, FlexOffer, Schedule, check_schedule
from atp.fmar.errors import MarketError
from atp.fmar.many_to_many import EMPTY_MARKET, NO_CROSSING, Clearing, clear_many_to_many
from atp.fmar.market import Mechanism, register_mechanism
from atp.fmar.market_problem import BuyBid, MarketProblem, SellBid, SellOption
from atp.fmar.model import Award, Bid, Rejection, Request, Session, SessionResult, result_header
from atp.fmar.one_sided_pool import ZERO_VOLUME, bids_from_offers
from atp.fmar.pricing import PRODUCT_DOWN, PRODUCT_UP, Pricing
from atp.fmar.transport import DEFAULT_ZONE, TransportLink, check_links, hub_links, zone_name

__all__ = ["ManyToMany", "SessionBids", "clear_session", "session_bids"]

_EPS_KWH = 1e-7


@dataclass(frozen=True)
class _Placement:
    """What one sell option means for its offer: start step on the market grid and profile."""

    start_step: int
    profile: int
    first_step: int  # market step of deviation entry 0
    base_kwh: np.ndarray  # the default schedule's energy over the option's entries
    n_profile_steps: int
    default_step: int  # market step of the default start


@dataclass(frozen=True, eq=False)
class SessionBids:
    """A session's bids: the packed problem and how its sell options map back to offers."""

    problem: MarketProblem
    start: datetime
    slice_s: int
    offers: tuple[FlexOffer, ...]  # one per sell bid
    placements: tuple[tuple[_Placement, ...], ...]  # per sell bid, per option
    requests: tuple[Request, ...]
    rejected: tuple[Rejection, ...]
    request_problems: tuple[str | None, ...]  # why a request cannot bid (None = it bids)


def _options(
    bid: Bid, *, step0: int, n_steps: int, earliest: int, latest: int, max_starts: int, xor_profiles: bool
) -> tuple[list[SellOption], list[_Placement]]:
    offer = bid.offer
    default = offer.default_schedule
    if default is None:  # screened by bids_from_offers
        raise MarketError(f"offer {bid.offer_id} has no default schedule")
    n = bid.n_steps
    ref = np.asarray(default.energy, float)
    lower = ref + np.asarray(bid.lower_kwh)
    upper = ref + np.asarray(bid.upper_kwh)
    candidates = [(lower, upper, default.profile)]
    if xor_profiles:
        for p, profile in enumerate(offer.profiles):
            joint = profile.total_energy is not None or profile.polytope is not None or profile.dependency is not None
            if p != default.profile and not joint and profile.n_steps > 0:
                candidates.append((profile.lower_kwh(), profile.upper_kwh(), p))
    starts = sorted((s for s in range(earliest, latest + 1)), key=lambda s: (abs(s - step0), s))[: max(1, max_starts)]
    if step0 not in starts:
        starts = [step0, *starts[:-1]]
    options, placements = [], []
    for s in starts:
        for lo, hi, p in candidates:
            m = len(lo)
            if s < 0 or s + m > n_steps:
                continue
            first, last = min(s, step0), max(s + m, step0 + n)
            base = np.zeros(last - first)
            base[step0 - first : step0 - first + n] = ref
            e_lo, e_hi = np.zeros(last - first), np.zeros(last - first)
            e_lo[s - first : s - first + m] = lo
            e_hi[s - first : s - first + m] = hi
            options.append(SellOption(first, tuple((e_lo - base).tolist()), tuple((e_hi - base).tolist())))
            placements.append(_Placement(s, p, first, base, m, step0))
    return options, placements


def session_bids(
    requests: Sequence[Request],
    offers: Sequence[FlexOffer],
    *,
    start: datetime,
    n_steps: int,
    slice_s: int,
    now: datetime,
    links: Sequence[TransportLink] = (),
    hub_fee_eur_per_kwh: float | None = 0.0,
    hub_capacity_kwh: float = math.inf,
    max_starts: int = 4,
    xor_profiles: bool = True,
) -> SessionBids:
    """The session's offers and requests as bids on the grid `start + k * slice_s`, k < n_steps.

    `hub_fee_eur_per_kwh` None = no implicit links into the default zone (only `links`).
    """
    bids, rejected = bids_from_offers(offers, now=now)
    rejected = list(rejected)
    sell: list[SellBid] = []
    kept_offers: list[FlexOffer] = []
    placements: list[tuple[_Placement, ...]] = []
    end = start + timedelta(seconds=slice_s * n_steps)

    def step_of(t: datetime) -> float:
        return (t - start).total_seconds() / slice_s

    now_step = math.ceil(step_of(now))
    for bid in bids:
        offer = bid.offer
        if offer.slice_s != slice_s:
            rejected.append(
                Rejection(bid.offer_id, f"its slice_s {offer.slice_s} s differs from the market's {slice_s}")
            )
            continue
        step0 = step_of(bid.start)
        if step0 != int(step0) or step0 < 0 or step0 + bid.n_steps > n_steps:
            rejected.append(Rejection(bid.offer_id, "its default schedule is off the session grid or period"))
            continue
        window = offer.window(now)
        earliest = max(now_step, 0, math.ceil(step_of(window.earliest)) if window.earliest else 0)
        latest = math.floor(step_of(window.latest)) if window.latest is not None else int(step0)
        latest = min(latest, n_steps - 1)
        options, where = _options(
            bid,
            step0=int(step0),
            n_steps=n_steps,
            earliest=earliest,
            latest=max(latest, int(step0)),
            max_starts=max_starts,
            xor_profiles=xor_profiles,
        )
        zone = zone_name(offer.location.congestion_point if offer.location is not None else None)
        sell.append(SellBid(bid.offer_id, zone, bid.price_eur_per_kwh, tuple(options)))
        kept_offers.append(offer)
        placements.append(tuple(where))

    buy: list[BuyBid] = []
    request_problems: list[str | None] = []
    for i, request in enumerate(requests):
        k0 = step_of(request.start)
        problem = None
        if request.slice_s != slice_s:
            problem = f"the request's slice_s {request.slice_s} s differs from the market's {slice_s} s"
        elif k0 != int(k0) or request.start < start or request.end > end:
            problem = "the request period lies off the session's grid or outside its delivery period"
        elif not any(abs(v) > _EPS_KWH for v in request.volume_kwh):
            problem = ZERO_VOLUME
        request_problems.append(problem)
        if problem is None:
            buy.append(
                BuyBid(
                    f"{i}:{request.id or request.buyer}",
                    zone_name(request.congestion_point),
                    request.cutoff_eur_per_kwh,
                    int(k0),
                    request.volume_kwh,
                )
            )
    links = check_links(links)
    if hub_fee_eur_per_kwh is not None:
        zones = {b.zone for b in sell} | {b.zone for b in buy}
        links = hub_links(zones, links, fee_eur_per_kwh=hub_fee_eur_per_kwh, capacity_kwh=hub_capacity_kwh)
    problem = MarketProblem.from_bids(sell, buy, n_steps=n_steps, links=links)
    return SessionBids(
        problem=problem,
        start=start,
        slice_s=slice_s,
        offers=tuple(kept_offers),
        placements=tuple(placements),
        requests=tuple(requests),
        rejected=tuple(rejected),
        request_problems=tuple(request_problems),
    )


def _award_schedules(
    bids: SessionBids, clearing: Clearing, *, now: datetime
) -> tuple[dict[int, tuple[Schedule, np.ndarray, _Placement]], dict[int, str]]:
    """Schedules of the accepted sell bids, and the bids whose schedule would be infeasible."""
    problem = bids.problem
    delta = clearing.delta_kwh
    schedules: dict[int, tuple[Schedule, np.ndarray, _Placement]] = {}
    failures: dict[int, str] = {}
    for k in np.flatnonzero(clearing.option >= 0):
        o = int(problem.opt_seg[k] + clearing.option[k])
        a, b = problem.ent_seg[o], problem.ent_seg[o + 1]
        where = bids.placements[k][clearing.option[k]]
        dev = delta[a:b].copy()
        dev[np.abs(dev) < _EPS_KWH] = 0.0
        offer = bids.offers[k]
        default = offer.default_schedule
        unchanged = default is not None and where.profile == default.profile and where.start_step == where.default_step
        if unchanged and not dev.any():  # accepted with nothing to deliver: it runs its default
            continue
        energy = (where.base_kwh + dev)[where.start_step - where.first_step :][: where.n_profile_steps]
        schedule = Schedule(
            flex_offer_id=offer.id or "",
            start=bids.start + timedelta(seconds=bids.slice_s * where.start_step),
            profile=where.profile,
            energy=tuple(energy.tolist()),
            assigned_at=now,
            price_eur=float(clearing.sell_receives_eur[k]),
        )
        problems = check_schedule(offer, schedule, now=now, tol=TOLERANCE_KWH * 10)
        if problems:
            failures[int(k)] = f"its schedule would be infeasible: {problems[0]}"
        else:
            schedules[int(k)] = (schedule, dev, where)
    return schedules, failures


def clear_session(
    bids: SessionBids,
    *,
    now: datetime,
    session: Session | None,
    mechanism: str,
    version: str,
    pricing: Pricing | str = Pricing.UNIFORM,
    time_limit_s: float = 60.0,
    mip_rel_gap: float = 1e-6,
) -> tuple[list[SessionResult], Clearing]:
    """Clear the session's bids and turn the clearing into one SessionResult per request."""
    dropped: dict[str, str] = {}
    while True:
        clearing = clear_many_to_many(bids.problem, pricing=pricing, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap)
        schedules, failures = _award_schedules(bids, clearing, now=now)
        if not failures:
            break
        for k, why in failures.items():
            dropped[bids.problem.sell_ids[k]] = why
        keep = [k for k in range(bids.problem.n_sell) if bids.problem.sell_ids[k] not in dropped]
        bids = _without(bids, keep)
    return _results(
        bids, clearing, schedules, dropped, now=now, session=session, mechanism=mechanism, version=version
    ), clearing


def _without(bids: SessionBids, keep: list[int]) -> SessionBids:
    """The same session with only the sell bids `keep`."""
    p = bids.problem
    sell = []
    for k in keep:
        opts = []
        for o in range(p.opt_seg[k], p.opt_seg[k + 1]):
            a, b = p.ent_seg[o], p.ent_seg[o + 1]
            opts.append(SellOption(int(p.ent_step[a]), tuple(p.ent_lower_kwh[a:b]), tuple(p.ent_upper_kwh[a:b])))
        sell.append(
            SellBid(
                p.sell_ids[k],
                p.zones[p.sell_zone[k]],
                float(p.sell_price_eur_per_kwh[k]),
                tuple(opts),
                float(p.sell_min_kwh[k]),
            )
        )
    buy = []
    for b in range(p.n_buy):
        a, e = p.buy_seg[b], p.buy_seg[b + 1]
        buy.append(
            BuyBid(
                p.buy_ids[b],
                p.zones[p.buy_zone[b]],
                float(p.buy_limit_eur_per_kwh[b]),
                int(p.buy_step[a]),
                tuple(p.buy_volume_kwh[a:e]),
            )
        )
    problem = MarketProblem.from_bids(sell, buy, n_steps=p.n_steps, links=p.links)
    return SessionBids(
        problem=problem,
        start=bids.start,
        slice_s=bids.slice_s,
        offers=tuple(bids.offers[k] for k in keep),
        placements=tuple(bids.placements[k] for k in keep),
        requests=bids.requests,
        rejected=bids.rejected,
        request_problems=bids.request_problems,
    )


def _results(
    bids: SessionBids,
    clearing: Clearing,
    schedules: dict[int, tuple[Schedule, np.ndarray, _Placement]],
    dropped: dict[str, str],
    *,
    now: datetime,
    session: Session | None,
    mechanism: str,
    version: str,
) -> list[SessionResult]:
    p = bids.problem
    n_t = p.n_steps
    y = clearing.buy_kwh
    buy_owner = p.buy_owner
    product = np.where(p.buy_volume_kwh < 0, PRODUCT_UP, PRODUCT_DOWN)
    # Each buyer's share of every step and product it bought in (the market is the counterparty).
    demand = np.zeros((n_t, 2))
    np.add.at(demand, (p.buy_step, product), y)
    share = np.zeros((p.n_buy, n_t, 2))
    np.add.at(share, (buy_owner, p.buy_step, product), y)
    share /= np.where(demand > 0, demand, 1.0)[None]
    ent_bid = p.opt_owner[p.ent_option]
    if clearing.price_eur_per_kwh is not None:
        zone = p.sell_zone[ent_bid]
        up_money = clearing.price_eur_per_kwh[zone, p.ent_step, PRODUCT_UP] * clearing.up_kwh
        down_money = clearing.price_eur_per_kwh[zone, p.ent_step, PRODUCT_DOWN] * clearing.down_kwh
    else:
        up_money = p.sell_price_eur_per_kwh[ent_bid] * clearing.up_kwh
        down_money = p.sell_price_eur_per_kwh[ent_bid] * clearing.down_kwh
    # money[t, p] sellers receive, fees[t, p]; volume[k, t, p] each seller delivers.
    money = np.zeros((n_t, 2))
    np.add.at(money, (p.ent_step, PRODUCT_UP), up_money)
    np.add.at(money, (p.ent_step, PRODUCT_DOWN), down_money)
    fees = (
        (p.link_fee_eur_per_kwh[:, None, None] * clearing.flow_kwh).sum(axis=0) if len(p.links) else np.zeros((n_t, 2))
    )
    accepted = sorted(schedules)
    volume = np.zeros((len(accepted), n_t, 2))
    index = {k: i for i, k in enumerate(accepted)}
    sel = np.isin(ent_bid, accepted)
    rows = np.array([index[int(k)] for k in ent_bid[sel]], dtype=np.int64)
    np.add.at(volume, (rows, p.ent_step[sel], PRODUCT_UP), clearing.up_kwh[sel])
    np.add.at(volume, (rows, p.ent_step[sel], PRODUCT_DOWN), clearing.down_kwh[sel])
    taken = np.einsum("ktp,btp->kb", volume, share) if accepted else np.zeros((0, p.n_buy))
    home = np.argmax(taken, axis=1) if p.n_buy else np.zeros(len(accepted), np.int64)
    buy_of_request: dict[int, int] = {}
    b = 0
    for i, problem in enumerate(bids.request_problems):
        if problem is None:
            buy_of_request[i] = b
            b += 1
    awards_of: dict[int, list[Award]] = {b: [] for b in range(p.n_buy)}
    for i, k in enumerate(accepted):
        schedule, dev, where = schedules[k]
        offer = bids.offers[k]
        delivered = float(np.abs(dev).sum())
        receives = float(clearing.sell_receives_eur[k])
        awards_of[int(home[i])].append(
            Award(
                offer_id=offer.id or "",
                issuer=offer.issuer,
                schedule=schedule,
                deviation_kwh=tuple(dev.tolist()),
                price_eur_per_kwh=receives / delivered if delivered > 0 else 0.0,
                price_eur=receives,
                deviation_start=bids.start + timedelta(seconds=bids.slice_s * where.first_step),
            )
        )
    rejected = list(bids.rejected)
    for k, offer in enumerate(bids.offers):
        if k not in schedules:
            rejected.append(Rejection(offer.id or "", "not accepted: the welfare-maximising clearing left it out"))
    rejected.extend(Rejection(i, why) for i, why in dropped.items())
    removed = set(clearing.removed)
    rejected = [
        Rejection(r.offer_id, "paradoxically accepted at the uniform price, removed") if r.offer_id in removed else r
        for r in rejected
    ]

    results = []
    for i, request in enumerate(bids.requests):
        n = request.n_steps
        base = dict(
            **result_header(request, session=session, mechanism=mechanism, version=version, now=now),
            n_offers=len(bids.offers) + len(bids.rejected),
            n_bids=p.n_sell,
            rejected=tuple(rejected) if i == 0 else (),
        )
        if i not in buy_of_request:
            results.append(_nothing(base, n, bids.request_problems[i] or EMPTY_MARKET))
            continue
        b = buy_of_request[i]
        a, e = p.buy_seg[b], p.buy_seg[b + 1]
        cleared = y[a:e] * np.sign(p.buy_volume_kwh[a:e]) + 0.0
        pays = float(clearing.buy_pays_eur[b])
        if clearing.price_eur_per_kwh is not None:
            unit = clearing.price_eur_per_kwh[p.buy_zone[b], p.buy_step[a:e], product[a:e]]
        else:
            unit = np.full(e - a, float(p.buy_limit_eur_per_kwh[b]))
        step_price = [float(u) if v > 0 else None for u, v in zip(unit, y[a:e], strict=True)]
        sellers = float((money * share[b]).sum())
        fee = float((fees * share[b]).sum())
        reason = None
        if y[a:e].sum() <= 0:
            reason = _why_nothing(p, b, clearing.reason)
        results.append(
            SessionResult(
                **base,
                cleared_kwh=tuple(cleared.tolist()),
                step_mean_price_eur_per_kwh=tuple(step_price),
                step_max_price_eur_per_kwh=tuple(step_price),
                awards=tuple(awards_of[b]),
                buyer_pays_eur=pays,
                sellers_receive_eur=sellers,
                surplus_eur=pays - sellers - fee,
                reason=reason,
                transport_fees_eur=fee,
            )
        )
    return results


def _reaching(p: MarketProblem, zone: int) -> np.ndarray:
    """The zones whose sellers can serve a buyer in `zone`: itself and every zone with a path
    of links (capacity above 0) into it."""
    reach = {zone}
    frontier = [zone]
    usable = p.link_capacity_kwh > _EPS_KWH
    while frontier:
        into = frontier.pop()
        for z in p.link_from[usable & (p.link_to == into)].tolist():
            if z not in reach:
                reach.add(z)
                frontier.append(z)
    return np.fromiter(sorted(reach), np.int64)


def _why_nothing(p: MarketProblem, b: int, market_reason: str | None) -> str:
    """Why buy bid b received nothing, as precisely as the problem tells: no seller at or linked
    to its zone, no seller there with room in the requested direction in the requested steps,
    every such seller above the cut-off, or (else) the clearing's own reason."""
    if market_reason is not None and market_reason != NO_CROSSING:
        return market_reason  # empty market, no sellers, solver trouble: the market's reason
    zone = int(p.buy_zone[b])
    where = f"congestion point {p.zones[zone]!r}" if p.zones[zone] != DEFAULT_ZONE else "the default zone"
    reach = _reaching(p, zone)
    sellers = np.flatnonzero(np.isin(p.sell_zone, reach))
    if not len(sellers):
        return f"no seller at or linked to {where}: no offer located there takes part"
    a, e = p.buy_seg[b], p.buy_seg[b + 1]
    asked = np.abs(p.buy_volume_kwh[a:e]) > _EPS_KWH
    steps, up = p.buy_step[a:e][asked], p.buy_volume_kwh[a:e][asked] < 0
    ent_bid = p.opt_owner[p.ent_option]
    less = np.isin(p.ent_step, steps[up]) & (-p.ent_lower_kwh > _EPS_KWH)
    more = np.isin(p.ent_step, steps[~up]) & (p.ent_upper_kwh > _EPS_KWH)
    room = less | more
    able = np.intersect1d(np.unique(ent_bid[room]), sellers)
    direction = "less" if up.all() else "more" if not up.any() else "the requested change of"
    if not len(able):
        return (
            f"no seller can deviate in the requested direction during the requested steps: none of the "
            f"{len(sellers)} offers at or linked to {where} can consume {direction} energy in those steps"
        )
    cheapest = float(p.sell_price_eur_per_kwh[able].min())
    limit = float(p.buy_limit_eur_per_kwh[b])
    if cheapest > limit:
        return (
            f"no crossing bids for this request: the cheapest of the {len(able)} offers at or linked to {where} "
            f"that can deviate in the requested steps asks {cheapest:g} EUR/kWh, above the cut-off {limit:g} EUR/kWh"
        )
    return (
        f"no crossing bids for this request: {len(able)} offers at or linked to {where} could deviate in the "
        "requested steps under the cut-off, but not profitably (with the deviations their options force in "
        "other steps, the transport fees, or other buyers' bids)"
    )


def _nothing(base: dict, n: int, reason: str) -> SessionResult:
    return SessionResult(
        **base,
        cleared_kwh=(0.0,) * n,
        step_mean_price_eur_per_kwh=(None,) * n,
        step_max_price_eur_per_kwh=(None,) * n,
        awards=(),
        buyer_pays_eur=0.0,
        sellers_receive_eur=0.0,
        surplus_eur=0.0,
        reason=reason,
    )


def _market_grid(requests: Sequence[Request], session: Session | None) -> tuple[datetime, int, int] | None:
    """The market grid (start, slice_s, n_steps): the session's delivery period, else the requests'."""
    if session is not None:
        return session.delivery_start, session.slice_s, session.n_steps
    if not requests:
        return None
    start = min(r.start for r in requests)
    end = max(r.end for r in requests)
    slice_s = requests[0].slice_s
    return start, slice_s, int((end - start).total_seconds() // slice_s)


@register_mechanism
class ManyToMany(Mechanism):
    """Many-to-many clearing of a session (F2.FMAR3, F2.FMAR4) as a market mechanism.

    Options: `pricing` ("uniform" or "pay_as_bid"), transport `links` between zones and the
    implicit hub links into the default zone (`hub_fee_eur_per_kwh`, None = none;
    `hub_capacity_kwh`), time flexibility (`max_starts` per offer, 1 = none), XOR profiles
    (`xor_profiles`), and the solver's `time_limit_s` and `mip_rel_gap`. `clearings` keeps
    every market-level Clearing (prices, flows, welfare) in clearing order.
    """

    name = "many_to_many"
    version = "1.0.0"

    def __init__(
        self,
        *,
        pricing: Pricing | str = Pricing.UNIFORM,
        links: Sequence[TransportLink] = (),
        hub_fee_eur_per_kwh: float | None = 0.0,
        hub_capacity_kwh: float | None = None,
        max_starts: int = 4,
        xor_profiles: bool = True,
        time_limit_s: float = 60.0,
        mip_rel_gap: float = 1e-4,
    ) -> None:
        try:
            self.pricing = Pricing(pricing)
        except ValueError:
            names = ", ".join(p.value for p in Pricing)
            raise MarketError(f"pricing {pricing!r} is not a pricing rule ({names})") from None
        self.links = check_links(links)
        self.hub_fee_eur_per_kwh = hub_fee_eur_per_kwh
        self.hub_capacity_kwh = math.inf if hub_capacity_kwh is None else float(hub_capacity_kwh)
        if not isinstance(max_starts, int) or max_starts < 1:
            raise MarketError(f"max_starts (={max_starts}) must be a whole number >= 1")
        self.max_starts = max_starts
        self.xor_profiles = bool(xor_profiles)
        self.time_limit_s = float(time_limit_s)
        self.mip_rel_gap = float(mip_rel_gap)
        self.clearings: list[Clearing] = []

    def clear(
        self,
        requests: Sequence[Request],
        offers: Sequence[FlexOffer],
        *,
        now: datetime,
        session: Session | None = None,
    ) -> list[SessionResult]:
        grid = _market_grid(requests, session)
        if grid is None:
            return []
        start, slice_s, n_steps = grid
        bids = session_bids(
            requests,
            offers,
            start=start,
            n_steps=n_steps,
            slice_s=slice_s,
            now=now,
            links=self.links,
            hub_fee_eur_per_kwh=self.hub_fee_eur_per_kwh,
            hub_capacity_kwh=self.hub_capacity_kwh,
            max_starts=self.max_starts,
            xor_profiles=self.xor_profiles,
        )
        results, clearing = clear_session(
            bids,
            now=now,
            session=session,
            mechanism=self.name,
            version=self.version,
            pricing=self.pricing,
            time_limit_s=self.time_limit_s,
            mip_rel_gap=self.mip_rel_gap,
        )
        self.clearings.append(clearing)
        return results

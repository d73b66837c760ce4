"""Many-to-many clearing (F2.FMAR3), pricing rules and implicit capacity trading (F2.FMAR4).

The welfare of the continuous case is checked against an independent linear program written
here with scipy (not the module's builder); random markets with integer parts are checked by a
feasibility checker written here too, for limit prices, transport capacity and money balance.
Both run also with the bid selection starting from no bid at all (`clear(from_nothing=True)`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from atp.fmar import (
    BuyBid,
    Clearing,
    InvalidRequestError,
    MarketProblem,
    Pricing,
    SellBid,
    SellOption,
    TransportLink,
    clear_many_to_many,
)
from atp.fmar.many_to_many import EMPTY_MARKET, NO_BUYERS, NO_CROSSING, NO_SELLERS

ZONES = ("", "a", "b")
TOL = 1e-6


# -- generated markets -------------------------------------------------------------------
@st.composite
def markets(draw: st.DrawFn, *, integer: bool) -> tuple[list[SellBid], list[BuyBid], list[TransportLink], int]:
    n_steps = draw(st.integers(1, 5))
    kwh = st.floats(0.0, 5.0, allow_nan=False).map(lambda x: round(x, 3))
    price = st.floats(0.0, 1.0, allow_nan=False).map(lambda x: round(x, 3))
    sell = []
    for k in range(draw(st.integers(0, 7))):
        zone = draw(st.sampled_from(ZONES))
        n_opt = draw(st.integers(1, 3)) if integer else 1
        options = []
        for _ in range(n_opt):
            d = draw(st.integers(1, n_steps))
            first = draw(st.integers(0, n_steps - d))
            kind = draw(st.sampled_from(["box", "block", "shifted"])) if integer else "box"
            lo = [-draw(kwh) for _ in range(d)]
            hi = [draw(kwh) for _ in range(d)]
            if kind == "block":
                hi = lo
            elif kind == "shifted":  # 0 outside the range: a forced deviation
                lo = [h / 2 for h in hi]
            options.append(SellOption(first, tuple(lo), tuple(hi)))
        min_kwh = draw(st.sampled_from([0.0, 0.0, 1.0])) if integer else 0.0
        sell.append(SellBid(f"s{k}", zone, draw(price), tuple(options), min_kwh))
    buy = []
    for b in range(draw(st.integers(0, 4))):
        d = draw(st.integers(1, n_steps))
        first = draw(st.integers(0, n_steps - d))
        volume = [draw(st.floats(-6.0, 6.0, allow_nan=False).map(lambda x: round(x, 3))) for _ in range(d)]
        buy.append(BuyBid(f"b{b}", draw(st.sampled_from(ZONES)), draw(price), first, tuple(volume)))
    links = []
    for i, (z1, z2) in enumerate([(a, b) for a in ZONES for b in ZONES if a != b]):
        if draw(st.booleans()):
            cap = draw(st.sampled_from([math.inf, 0.0, 1.0, 2.5]))
            links.append(TransportLink(z1, z2, draw(st.sampled_from([0.0, 0.01, 0.2])) + i * 1e-4, cap))
    return sell, buy, links, n_steps


def independent_lp_welfare(sell, buy, links, n_steps: int) -> float:
    """Max welfare of the continuous market, as a dense linprog written apart from the builder.

    Variables: each sell step's upward and downward deviation, each buy step's cleared volume,
    each link's flow per step and product; one equality per zone, step and product.
    """
    cost: list[float] = []
    ub: list[float] = []
    balance: dict[tuple[str, int, int], dict[int, float]] = defaultdict(dict)

    def var(c: float, upper: float) -> int:
        cost.append(c)
        ub.append(upper)
        return len(cost) - 1

    for bid in sell:
        (option,) = bid.options
        for i, (lo, hi) in enumerate(zip(option.lower_kwh, option.upper_kwh, strict=True)):
            t = option.first_step + i
            balance[bid.zone, t, 0][var(bid.price_eur_per_kwh, -lo)] = 1.0
            balance[bid.zone, t, 1][var(bid.price_eur_per_kwh, hi)] = 1.0
    for bid in buy:
        for i, v in enumerate(bid.volume_kwh):
            product = 0 if v < 0 else 1
            balance[bid.zone, bid.first_step + i, product][var(-bid.limit_eur_per_kwh, abs(v))] = -1.0
    cap_rows = []
    for link in links:
        for t in range(n_steps):
            pair = []
            for p in (0, 1):
                j = var(link.fee_eur_per_kwh, math.inf)
                balance[link.to_zone, t, p][j] = 1.0
                balance[link.from_zone, t, p][j] = -1.0
                pair.append(j)
            if math.isfinite(link.capacity_kwh):
                cap_rows.append((pair, link.capacity_kwh))
    n = len(cost)
    if n == 0:
        return 0.0
    a_eq = np.zeros((len(balance), n))
    for r, entries in enumerate(balance.values()):
        for j, v in entries.items():
            a_eq[r, j] = v
    a_ub = np.zeros((len(cap_rows), n))
    for r, (pair, _) in enumerate(cap_rows):
        a_ub[r, pair] = 1.0
    res = linprog(
        cost,
        A_ub=a_ub if cap_rows else None,
        b_ub=[c for _, c in cap_rows] if cap_rows else None,
        A_eq=a_eq,
        b_eq=np.zeros(len(balance)),
        bounds=[(0.0, None if math.isinf(u) else u) for u in ub],
        method="highs",
    )
    assert res.status == 0, res.message
    return -float(res.fun)


# -- a checker apart from the solver -----------------------------------------------------
def check_clearing(problem: MarketProblem, c: Clearing) -> None:
    """Every bid's constraints, transport capacity, limit prices and the money balance."""
    p = problem
    delta = c.down_kwh - c.up_kwh
    assert (c.up_kwh >= 0).all() and (c.down_kwh >= 0).all() and (c.buy_kwh >= 0).all()
    supply = np.zeros((len(p.zones), p.n_steps, 2))
    for k in range(p.n_sell):
        chosen = c.option[k]
        total = 0.0
        for i, o in enumerate(range(p.opt_seg[k], p.opt_seg[k + 1])):
            a, b = p.ent_seg[o], p.ent_seg[o + 1]
            if i != chosen:
                assert np.abs(delta[a:b]).max() < TOL and (c.up_kwh[a:b] + c.down_kwh[a:b]).max() < TOL
                continue
            lo, hi = p.ent_lower_kwh[a:b], p.ent_upper_kwh[a:b]
            assert (delta[a:b] >= lo - TOL).all() and (delta[a:b] <= hi + TOL).all()
            total = float((c.up_kwh[a:b] + c.down_kwh[a:b]).sum())
            for j in range(a, b):
                supply[p.sell_zone[k], p.ent_step[j], 0] += c.up_kwh[j]
                supply[p.sell_zone[k], p.ent_step[j], 1] += c.down_kwh[j]
        if chosen >= 0 and p.sell_min_kwh[k] > 0:
            assert total >= p.sell_min_kwh[k] - TOL
        if chosen < 0:
            assert c.sell_receives_eur[k] == pytest.approx(0.0, abs=TOL)
        # A seller never receives less than its own price asks for its volume.
        assert c.sell_receives_eur[k] >= c.sell_cost_eur[k] - 1e-6 * max(1.0, c.sell_cost_eur[k])
    demand = np.zeros_like(supply)
    for b in range(p.n_buy):
        a, e = p.buy_seg[b], p.buy_seg[b + 1]
        assert (c.buy_kwh[a:e] <= np.abs(p.buy_volume_kwh[a:e]) + TOL).all()
        for j in range(a, e):
            demand[p.buy_zone[b], p.buy_step[j], 0 if p.buy_volume_kwh[j] < 0 else 1] += c.buy_kwh[j]
        # A buyer never pays more than its limit for what it receives.
        limit = p.buy_limit_eur_per_kwh[b] * c.buy_kwh[a:e].sum()
        assert c.buy_pays_eur[b] <= limit + 1e-6 * max(1.0, limit)
    net = supply - demand
    for li in range(len(p.links)):
        flow = c.flow_kwh[li]
        assert (flow.sum(axis=1) <= p.link_capacity_kwh[li] + TOL).all()
        net[p.link_to[li]] += flow
        net[p.link_from[li]] -= flow
    assert np.abs(net).max() < 1e-5
    assert c.buyers_pay_eur == pytest.approx(c.sellers_receive_eur + c.transport_fees_eur + c.surplus_eur, abs=1e-9)
    if c.pricing is Pricing.UNIFORM:
        assert c.surplus_eur >= -1e-6  # congestion rent is never negative


# -- properties --------------------------------------------------------------------------
def clear(problem: MarketProblem, *, from_nothing: bool, **kw: object) -> Clearing:
    """Clear; with `from_nothing` the bid selection starts empty, so every bid has to come in
    through the pricing of the LP's duals (atp.fmar.bid_selection)."""
    if not from_nothing:
        return clear_many_to_many(problem, **kw)
    with mock.patch("atp.fmar.many_to_many.initial_selection", lambda p, **_: np.zeros(p.n_sell, bool)):
        return clear_many_to_many(problem, **kw)


@settings(max_examples=80)
@given(markets(integer=False), st.booleans())
def test_continuous_welfare_equals_an_independent_lp(market, from_nothing):
    sell, buy, links, n_steps = market
    problem = MarketProblem.from_bids(sell, buy, n_steps=n_steps, links=links)
    expected = independent_lp_welfare(sell, buy, links, n_steps)
    for pricing in Pricing:
        c = clear(problem, pricing=pricing, from_nothing=from_nothing)
        assert c.welfare_eur == pytest.approx(expected, rel=1e-6, abs=1e-9)
        assert c.removed == ()  # nothing is paradoxical without integer decisions
        check_clearing(problem, c)


@settings(max_examples=80)
@given(markets(integer=True), st.sampled_from(list(Pricing)), st.booleans())
def test_integer_markets_respect_every_constraint_limit_and_balance(market, pricing, from_nothing):
    sell, buy, links, n_steps = market
    problem = MarketProblem.from_bids(sell, buy, n_steps=n_steps, links=links)
    c = clear(problem, pricing=pricing, mip_rel_gap=1e-9, from_nothing=from_nothing)
    check_clearing(problem, c)
    assert c.welfare_eur >= -1e-9  # accepting nothing is always possible
    if c.reason is not None:
        assert c.cleared_kwh == 0.0


@settings(max_examples=25)
@given(markets(integer=True))
def test_uniform_welfare_never_beats_pay_as_bid(market):
    """Removing paradoxical bids only restricts the accepted set, so welfare cannot rise."""
    sell, buy, links, n_steps = market
    problem = MarketProblem.from_bids(sell, buy, n_steps=n_steps, links=links)
    free = clear_many_to_many(problem, pricing="pay_as_bid", mip_rel_gap=1e-9)
    uniform = clear_many_to_many(problem, pricing="uniform", mip_rel_gap=1e-9)
    assert uniform.welfare_eur <= free.welfare_eur + 1e-6 * max(1.0, abs(free.welfare_eur))


# -- known answers -----------------------------------------------------------------------
def one_step(zone: str, price: float, lower: float, upper: float = 0.0, name: str = "s", **kw) -> SellBid:
    return SellBid(name, zone, price, (SellOption(0, (lower,), (upper,)),), **kw)


def test_uniform_price_is_the_marginal_offer_and_pay_as_bid_keeps_the_margin():
    sell = [one_step("", 0.1, -5.0, name="cheap"), one_step("", 0.2, -5.0, name="dear")]
    buy = [BuyBid("brp", "", 0.5, 0, (-7.0,))]
    problem = MarketProblem.from_bids(sell, buy, n_steps=1)
    uniform = clear_many_to_many(problem, pricing="uniform")
    assert uniform.price_eur_per_kwh[0, 0, 0] == pytest.approx(0.2)
    assert uniform.buyers_pay_eur == pytest.approx(1.4) and uniform.surplus_eur == pytest.approx(0.0, abs=1e-9)
    assert list(uniform.sell_receives_eur) == pytest.approx([1.0, 0.4])
    pab = clear_many_to_many(problem, pricing="pay_as_bid")
    assert pab.buyers_pay_eur == pytest.approx(3.5) and pab.sellers_receive_eur == pytest.approx(0.9)
    assert pab.surplus_eur == pytest.approx(pab.welfare_eur) == pytest.approx(2.6)


def test_transport_fee_and_capacity_split_the_zonal_prices():
    sell = [one_step("a", 0.1, -5.0, name="far"), one_step("", 0.3, -5.0, name="near")]
    buy = [BuyBid("brp", "", 0.5, 0, (-7.0,))]
    link = TransportLink("a", "", 0.05, 3.0)
    problem = MarketProblem.from_bids(sell, buy, n_steps=1, links=[link])
    c = clear_many_to_many(problem)
    check_clearing(problem, c)
    assert c.flow_kwh[0, 0, 0] == pytest.approx(3.0)  # the link is full
    assert list(c.up_kwh) == pytest.approx([3.0, 4.0])
    a, home = c.price_eur_per_kwh[1, 0, 0], c.price_eur_per_kwh[0, 0, 0]
    assert (a, home) == pytest.approx((0.1, 0.3))
    assert c.transport_fees_eur == pytest.approx(0.15)
    assert c.surplus_eur == pytest.approx(3.0 * (0.3 - 0.1 - 0.05))  # congestion rent
    # Without a link the far offer cannot reach the buyer at all.
    alone = clear_many_to_many(MarketProblem.from_bids(sell, buy, n_steps=1))
    assert list(alone.up_kwh) == pytest.approx([0.0, 5.0])
    # A fee that lifts the far offer above the buyer's limit makes transport worthless.
    dear = MarketProblem.from_bids(sell, buy, n_steps=1, links=[TransportLink("a", "", 0.45, 3.0)])
    assert clear_many_to_many(dear).flow_kwh.sum() == pytest.approx(0.0)


def test_paradoxically_accepted_block_is_removed_under_uniform_pricing():
    sell = [one_step("", 0.3, -10.0, -10.0, name="block"), one_step("", 0.1, -5.0, name="cheap")]
    buy = [BuyBid("brp", "", 1.0, 0, (-10.0,))]
    problem = MarketProblem.from_bids(sell, buy, n_steps=1)
    pab = clear_many_to_many(problem, pricing="pay_as_bid")
    assert list(pab.option) == [0, -1] and pab.welfare_eur == pytest.approx(7.0)
    uniform = clear_many_to_many(problem, pricing="uniform")
    assert uniform.removed == ("block",) and uniform.rounds == 2
    assert list(uniform.option) == [-1, 0]
    check_clearing(problem, uniform)


def test_xor_options_time_shift_and_minimum_activation():
    # Moving a 2 kWh load from step 0 to step 2: less at 0, more at 2, all or nothing.
    shift = SellOption(0, (-2.0, 0.0, 2.0), (-2.0, 0.0, 2.0))
    stay = SellOption(0, (-1.0,), (0.0,))
    sell = [SellBid("load", "", 0.05, (stay, shift))]
    buy = [BuyBid("brp", "", 0.4, 0, (-2.0,)), BuyBid("dso", "", 0.4, 2, (2.0,))]
    problem = MarketProblem.from_bids(sell, buy, n_steps=3)
    c = clear_many_to_many(problem)
    check_clearing(problem, c)
    assert c.option[0] == 1 and c.cleared_kwh == pytest.approx(4.0)
    # A minimum activation above what buyers take keeps the bid out.
    big = [SellBid("big", "", 0.05, (SellOption(0, (-3.0,), (0.0,)),), min_activation_kwh=2.5)]
    small = [BuyBid("brp", "", 0.4, 0, (-2.0,))]
    c = clear_many_to_many(MarketProblem.from_bids(big, small, n_steps=1))
    assert c.option[0] == -1 and c.reason == NO_CROSSING


@pytest.mark.parametrize(
    ("sell", "buy", "reason"),
    [
        ([], [], EMPTY_MARKET),
        ([], [BuyBid("b", "", 1.0, 0, (-1.0,))], NO_SELLERS),
        ([one_step("", 0.1, -1.0)], [], NO_BUYERS),
        ([one_step("", 0.9, -1.0)], [BuyBid("b", "", 0.5, 0, (-1.0,))], NO_CROSSING),
        ([one_step("", 0.1, 0.0, 1.0)], [BuyBid("b", "", 0.5, 0, (-1.0,))], NO_CROSSING),  # wrong direction
        ([one_step("", 0.1, -1.0)], [BuyBid("b", "", 0.5, 0, (0.0,))], "zero volume"),
        ([one_step("a", 0.1, -1.0)], [BuyBid("b", "", 0.5, 0, (-1.0,))], NO_CROSSING),  # unreachable zone
    ],
)
def test_no_trade_gives_a_clean_result_with_the_reason(sell, buy, reason):
    c = clear_many_to_many(MarketProblem.from_bids(sell, buy, n_steps=1))
    assert c.reason is not None and c.reason.startswith(reason)
    assert c.cleared_kwh == 0.0 and c.buyers_pay_eur == 0.0 and (c.option == -1).all()


@pytest.mark.parametrize(
    ("sell", "buy", "links", "field"),
    [
        ([SellBid("s", "", 0.1, (SellOption(3, (-1.0,), (0.0,)),))], [], [], "sell[0].options[0]"),
        ([SellBid("s", "", 0.1, (SellOption(0, (1.0,), (0.0,)),))], [], [], "sell[0].options[0]"),
        ([SellBid("s", "", math.nan, (SellOption(0, (-1.0,), (0.0,)),))], [], [], "price_eur_per_kwh"),
        ([], [BuyBid("b", "", 0.1, 1, (1.0,))], [], "buy[0]"),
        ([], [], [TransportLink("a", "a", 0.1, 1.0)], "links[0]"),
        ([], [], [TransportLink("a", "b", -0.1, 1.0)], "links[0].fee_eur_per_kwh"),
        ([], [], [TransportLink("a", "b", 0.1, -1.0)], "links[0].capacity_kwh"),
    ],
)
def test_bad_bids_are_refused_naming_the_field(sell, buy, links, field):
    with pytest.raises(InvalidRequestError, match=field.replace("[", r"\[").replace("]", r"\]")):
        MarketProblem.from_bids(sell, buy, n_steps=1, links=links)

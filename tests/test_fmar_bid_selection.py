"""The many-to-many LP over a selection of bids (atp.fmar.bid_selection): same answer as over all.

The clearing starts with the bids that help at a merit-order guess of the prices and adds the
bids its LPs' prices call for. Starting from no bid at all is property-tested with the other
clearing properties (tests/test_fmar_many_to_many.py, `from_nothing`); here: the sub-problem,
the reduced costs, and a large market cleared with and without the selection.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.fmar import MarketProblem, Pricing, SellBid, SellOption, clear_many_to_many
from atp.fmar.bid_selection import initial_selection, merit_order_prices, missing_bids, reduced_cost_eur
from benchmarks.fmar import random_market
from tests.test_fmar_many_to_many import check_clearing, markets


@settings(max_examples=40)
@given(markets(integer=True), st.data())
def test_a_subset_is_the_market_of_the_selected_bids(market, data):
    sell, buy, links, n_steps = market
    problem = MarketProblem.from_bids(sell, buy, n_steps=n_steps, links=links)
    keep = sorted(data.draw(st.sets(st.integers(0, max(len(sell) - 1, 0)), max_size=len(sell))) if sell else [])
    sub, options, entries = problem.subset(np.array(keep, np.int64))
    packed = MarketProblem.from_bids([sell[k] for k in keep], buy, n_steps=n_steps, links=links)
    assert sub.sell_ids == packed.sell_ids and sub.zones == problem.zones
    for name in ("sell_price_eur_per_kwh", "sell_min_kwh", "opt_seg", "ent_seg", "ent_step", "ent_lower_kwh"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(packed, name))
    np.testing.assert_array_equal(sub.sell_zone, [problem.zones.index(sell[k].zone) for k in keep])
    np.testing.assert_array_equal(problem.ent_upper_kwh[entries], sub.ent_upper_kwh)
    np.testing.assert_array_equal(problem.opt_owner[options], np.repeat(keep, np.diff(sub.opt_seg)).astype(int))


def test_a_large_market_clears_alike_with_and_without_the_selection():
    problem = random_market(2_000, n_steps=48, seed=4)
    assert 0 < initial_selection(problem).sum() < problem.n_sell  # the selection leaves bids out
    for pricing in Pricing:
        selected = clear_many_to_many(problem, pricing=pricing, mip_rel_gap=1e-5)
        whole = clear_many_to_many(problem, pricing=pricing, mip_rel_gap=1e-5, select_bids=False)
        check_clearing(problem, selected)
        assert selected.welfare_eur == pytest.approx(whole.welfare_eur, rel=2e-5)
        # the same relaxation bound: the gap certificate covers the bids left out
        assert selected.mip_gap is not None and whole.mip_gap is not None
        bound = selected.welfare_eur / (1 - selected.mip_gap)
        assert bound == pytest.approx(whole.welfare_eur / (1 - whole.mip_gap), rel=1e-6)


def test_reduced_cost_prices_each_option_at_its_cheaper_end():
    problem = MarketProblem.from_bids(
        [  # 0..2 kWh of upward regulation each: at an up price of 0.30 only the cheap one helps
            SellBid("cheap", "", 0.10, (SellOption(0, (-2.0,), (0.0,)),)),
            SellBid("dear", "", 0.50, (SellOption(0, (-2.0,), (0.0,)),)),
        ],
        [],
        n_steps=1,
    )
    prices = np.zeros((1, 1, 2))
    prices[0, 0, 0] = 0.30
    np.testing.assert_allclose(reduced_cost_eur(problem, prices), [-0.4, 0.0])
    assert missing_bids(problem, prices, np.array([False, False])).tolist() == [True, False]
    assert missing_bids(problem, prices, np.array([True, False])).tolist() == [False, False]


def test_merit_order_prices_cover_the_buyers_volume():
    problem = random_market(500, n_steps=24, seed=2)
    guess = merit_order_prices(problem)
    assert guess.shape == (len(problem.zones), 24, 2)
    assert (guess >= 0).all() and (guess <= problem.sell_price_eur_per_kwh.max()).all()
    assert (guess[0] == guess[1]).all()  # zones are ignored by the guess

"""Which sell bids the many-to-many LP needs: bids priced against the balance prices.

Most bids of a large market lose: their price is above what flexibility is worth in their
zone and step. The clearing therefore solves its LP over a selection of the bids and prices
the rest out, as column generation does: given prices per zone, step and product (the duals
of the balance rows), a bid that is not in the LP could improve it only if one of its options
has a negative reduced cost,

    min over the option's range of  sum_j (price - pi_up) * up_j + (price - pi_down) * down_j

(each term at whichever end of the entry's range is cheaper; the minimum activation is left
out, which can only make the value lower, so a bid is never wrongly left out). When no bid
outside the selection has one, the selection's LP optimum is the optimum over all bids.

- `merit_order_prices(problem)`: a first guess of those prices (the merit order of all
  sell entries per step and product against the buyers' volume, zones ignored);
- `reduced_cost_eur(problem, prices)`: the value above per sell bid (<= 0; 0 = cannot help);
- `initial_selection(problem)`: the bids that help at the guess raised by a margin;
- `missing_bids(problem, prices, selected)`: the bids left out that would help at `prices`.
"""

from __future__ import annotations

import numpy as np

from atp.fmar.market_problem import MarketProblem
from atp.fmar.pricing import PRODUCT_DOWN, PRODUCT_UP

__all__ = ["SELECTION_MARGIN", "initial_selection", "merit_order_prices", "missing_bids", "reduced_cost_eur"]

SELECTION_MARGIN = 1.5  # the guess is raised by this factor: enough that one LP round usually suffices
_TOLERANCE_EUR = 1e-9


def _product_ranges(problem: MarketProblem) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (2, n_entries): the range of upward (row 0) and downward (row 1) volume."""
    lower, upper = problem.ent_lower_kwh, problem.ent_upper_kwh
    lo = np.stack((np.maximum(-upper, 0.0), np.maximum(lower, 0.0)))
    hi = np.stack((np.maximum(-lower, 0.0), np.maximum(upper, 0.0)))
    return lo, hi


def merit_order_prices(problem: MarketProblem) -> np.ndarray:
    """EUR/kWh per zone, step and product (n_zones, n_steps, 2): the marginal sell price of a
    merit order per step and product over all zones that covers the buyers' whole volume
    (0 where nobody asks; the dearest entry where supply falls short)."""
    n_t = problem.n_steps
    price = problem.sell_price_eur_per_kwh[problem.opt_owner[problem.ent_option]]
    _, hi = _product_ranges(problem)
    product = np.where(problem.buy_volume_kwh < 0, PRODUCT_UP, PRODUCT_DOWN)
    demand = np.zeros((2, n_t))
    np.add.at(demand, (product, problem.buy_step), np.abs(problem.buy_volume_kwh))
    out = np.zeros((len(problem.zones), n_t, 2))
    if problem.n_entries == 0:
        return out
    order = np.lexsort((price, problem.ent_step))
    sorted_price = price[order]
    first = np.searchsorted(problem.ent_step[order], np.arange(n_t + 1))
    has = first[1:] > first[:-1]
    for p in (PRODUCT_UP, PRODUCT_DOWN):
        cum = np.cumsum(hi[p][order])
        before = np.concatenate(([0.0], cum))[first[:-1]]
        at = np.searchsorted(cum, before + demand[p], side="left")  # the entry that covers the step
        at = np.clip(at, first[:-1], np.maximum(first[1:] - 1, first[:-1]))
        marginal = np.where(has & (demand[p] > 0), sorted_price[np.minimum(at, len(order) - 1)], 0.0)
        out[:, :, p] = marginal
    return out


def reduced_cost_eur(problem: MarketProblem, prices: np.ndarray) -> np.ndarray:
    """Per sell bid, the lowest reduced cost of its options at `prices` (n_zones, n_steps, 2),
    capped at 0 (not accepting costs nothing). Negative: the bid would improve the LP."""
    ent_bid = problem.opt_owner[problem.ent_option]
    price = problem.sell_price_eur_per_kwh[ent_bid]
    zone = problem.sell_zone[ent_bid]
    lo, hi = _product_ranges(problem)
    per_entry = np.zeros(problem.n_entries)
    for p in (PRODUCT_UP, PRODUCT_DOWN):
        margin = price - prices[zone, problem.ent_step, p]
        per_entry += np.minimum(margin * lo[p], margin * hi[p])
    per_option = np.bincount(problem.ent_option, weights=per_entry, minlength=problem.n_options)
    best = np.zeros(problem.n_sell)
    np.minimum.at(best, problem.opt_owner, per_option)
    return best


def initial_selection(problem: MarketProblem, *, margin: float = SELECTION_MARGIN) -> np.ndarray:
    """Boolean mask of the sell bids to start the LP with: those that help at the merit-order
    prices raised by `margin`."""
    return reduced_cost_eur(problem, merit_order_prices(problem) * margin) < -_TOLERANCE_EUR


def missing_bids(problem: MarketProblem, prices: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Boolean mask of the bids outside `selected` that would improve the LP at `prices`."""
    return ~selected & (reduced_cost_eur(problem, prices) < -_TOLERANCE_EUR)

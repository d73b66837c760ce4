"""The MILP of many-to-many clearing (atp.fmar.many_to_many), laid out for highspy.

`build_model` turns a `MarketProblem` into a column-wise sparse matrix with the columns
(per sell entry `up`, `down`; per option the binary `u`; per buyer step `y`; per link and step
the flows) and rows (balance per zone, step and product; link capacities; option bounds and
minimum activations) of the formulation in the docstring of `atp.fmar.many_to_many`; the build
is a handful of vectorised numpy operations. `anchor_estimate` gives the LP bound that keeps
the big-M rows of an option tight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np
from scipy import sparse

from atp.fmar.bid_selection import merit_order_prices
from atp.fmar.market_problem import EPS_KWH, MarketProblem
from atp.fmar.pricing import PRODUCT_DOWN, PRODUCT_UP

__all__ = ["MarketModel", "anchor_estimate", "build_model"]

_EPS_KWH = EPS_KWH


def _ro(a: np.ndarray, dtype: Any = None) -> np.ndarray:
    out = np.ascontiguousarray(a, dtype=dtype)
    out.setflags(write=False)
    return out


# -- the matrix --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MarketModel:
    """The MILP as a highspy HighsLp and where its columns and rows are.

    Columns: w_up (n_e), w_down (n_e), y (buy entries), flows (link, step, product), u (one
    per option of a binary bid, `u_option[i]` = its option). Rows: balances first, row
    `(zone * n_steps + step) * 2 + product`.

    An entry's volume of a product is `sign * w + anchor_kwh * u`: entries of
    continuous bids are their column (sign 1, anchor 0); an entry of a binary option is
    anchored at one end of its range, `lo * u + w` or `hi * u - w` with
    `0 <= w <= (hi - lo) * u`, so an option accepted whole (u = 1 at the anchors) has no
    column in the simplex basis. Which end is a matter of speed, not of the answer.
    """

    lp: Any = field(repr=False)
    n_entries: int
    n_buy_entries: int
    n_flows: int
    u_option: np.ndarray
    u_col0: int
    n_balance_rows: int
    bound_entries: tuple[np.ndarray, np.ndarray]  # entry of each bound row, up then down (after links)
    xor_bids: np.ndarray  # sell bid of each XOR row (after the bound rows)
    min_options: np.ndarray  # option of each minimum-activation row (last)
    binary_bid: np.ndarray
    ent_u: np.ndarray  # u index of every entry's option, -1 for continuous bids
    sign: np.ndarray  # (2, n_e): +1 or -1 per product (up, down) and entry
    anchor_kwh: np.ndarray  # (2, n_e): volume per unit of u per product and entry

    @property
    def y_col0(self) -> int:
        return 2 * self.n_entries

    @property
    def f_col0(self) -> int:
        return self.y_col0 + self.n_buy_entries


def anchor_estimate(problem: MarketProblem) -> np.ndarray:
    """Which product of which entry probably sells (2, n_e booleans): the build's anchors.

    Entries priced below the merit-order price of their step and product
    (`bid_selection.merit_order_prices`) are anchored at the top of their range, the others
    at the bottom. Only the solver's path depends on it, not the answer.
    """
    ent_bid = problem.opt_owner[problem.ent_option]
    price = problem.sell_price_eur_per_kwh[ent_bid]
    guess = merit_order_prices(problem)[problem.sell_zone[ent_bid], problem.ent_step]  # (n_e, 2)
    return price < guess.T


def build_model(problem: MarketProblem, anchor_high: np.ndarray | None = None) -> MarketModel:
    """The column-wise sparse MILP of `problem`, ready for `Highs.passModel`.

    `anchor_high` (2, n_e booleans; default `anchor_estimate`) picks which end of its range
    each binary entry's column counts from; every choice gives the same problem.
    """
    inf = highspy.kHighsInf
    n_t, n_z, n_e = problem.n_steps, len(problem.zones), problem.n_entries
    n_y, n_l = len(problem.buy_step), len(problem.links)
    ent_option = problem.ent_option
    ent_bid = problem.opt_owner[ent_option]
    binary_bid = problem.binary_bids()
    u_option = np.flatnonzero(binary_bid[problem.opt_owner])
    n_u = len(u_option)
    n_f = n_l * n_t * 2
    y0, f0, u0 = 2 * n_e, 2 * n_e + n_y, 2 * n_e + n_y + n_f
    n_cols = u0 + n_u
    lower, upper = problem.ent_lower_kwh, problem.ent_upper_kwh
    # Range of each product per entry: [lo, hi] (row 0 up, row 1 down).
    lo = np.stack((np.maximum(-upper, 0.0), np.maximum(lower, 0.0)))
    hi = np.stack((np.maximum(-lower, 0.0), np.maximum(upper, 0.0)))
    if anchor_high is None:
        anchor_high = anchor_estimate(problem)
    u_of_option = np.full(problem.n_options, -1, np.int64)
    u_of_option[u_option] = np.arange(n_u)
    ent_u = u_of_option[ent_option]
    binary = ent_u >= 0
    width = np.where(hi - lo > _EPS_KWH, hi - lo, 0.0)
    high = binary & np.asarray(anchor_high, bool) & (width > 0)  # a point needs no choice
    anchor = np.where(binary, np.where(high, hi, lo), 0.0)
    sign = np.where(high, -1.0, 1.0)
    w_upper = np.where(binary, width, hi)

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []

    def put(r: np.ndarray, c: np.ndarray, v: float | np.ndarray) -> None:
        rows.append(r)
        cols.append(c)
        vals.append(np.broadcast_to(np.asarray(v, float), r.shape))

    # Balances: a product's volume sign * w + anchor * u enters its row.
    n_bal = n_z * n_t * 2
    ent_row = (problem.sell_zone[ent_bid] * n_t + problem.ent_step) * 2
    ent_cols = np.arange(n_e)
    price = problem.sell_price_eur_per_kwh[ent_bid]
    u_cost = np.zeros(n_u)
    for p in (PRODUCT_UP, PRODUCT_DOWN):
        put(ent_row + p, p * n_e + ent_cols, sign[p])
        anchored = np.flatnonzero(anchor[p] > _EPS_KWH)
        put(ent_row[anchored] + p, u0 + ent_u[anchored], anchor[p][anchored])
        u_cost += np.bincount(ent_u[anchored], weights=price[anchored] * anchor[p][anchored], minlength=n_u)
    buy_product = np.where(problem.buy_volume_kwh < 0, PRODUCT_UP, PRODUCT_DOWN)
    buy_row = (problem.buy_zone[problem.buy_owner] * n_t + problem.buy_step) * 2 + buy_product
    put(buy_row, y0 + np.arange(n_y), -1.0)
    if n_l:
        lk, tk, pk = np.meshgrid(np.arange(n_l), np.arange(n_t), np.arange(2), indexing="ij")
        lk, tk, pk = lk.ravel(), tk.ravel(), pk.ravel()
        fcol = f0 + np.arange(n_f)
        put((problem.link_to[lk] * n_t + tk) * 2 + pk, fcol, 1.0)
        put((problem.link_from[lk] * n_t + tk) * 2 + pk, fcol, -1.0)
        put(n_bal + lk * n_t + tk, fcol, 1.0)  # capacity rows: f_up + f_down <= cap
    n_rows = n_bal + n_l * n_t
    row_lower = [np.zeros(n_bal), np.full(n_l * n_t, -inf)]
    row_upper = [
        np.zeros(n_bal),
        np.repeat(np.where(np.isfinite(problem.link_capacity_kwh), problem.link_capacity_kwh, inf), n_t),
    ]

    # Options with a binary u: w <= (hi - lo) * u per entry and product (u = 0 forces the
    # volume to 0; per entry, which keeps the relaxation tight).
    bound_entries = []
    for p in (PRODUCT_UP, PRODUCT_DOWN):
        sel = np.flatnonzero(binary & (width[p] > 0))
        bound_entries.append(_ro(sel, np.int64))
        r = n_rows + np.arange(len(sel))
        put(r, p * n_e + sel, 1.0)
        put(r, u0 + ent_u[sel], -width[p][sel])
        n_rows += len(sel)
        row_lower.append(np.full(len(sel), -inf))
        row_upper.append(np.zeros(len(sel)))
    # XOR: at most one option of a binary bid with several.
    u_bid = problem.opt_owner[u_option]
    n_opts = np.diff(problem.opt_seg)
    multi = np.flatnonzero(n_opts[u_bid] > 1)
    xor_bids = np.zeros(0, np.int64)
    if len(multi):
        xor_bids, xor_row = np.unique(u_bid[multi], return_inverse=True)
        put(n_rows + xor_row, u0 + multi, 1.0)
        n_rows += len(xor_bids)
        row_lower.append(np.full(len(xor_bids), -inf))
        row_upper.append(np.ones(len(xor_bids)))
    # Minimum activation: sum(sign * w) + (sum anchors - min) * u >= 0 per option.
    with_min = problem.sell_min_kwh[u_bid] > _EPS_KWH
    min_opts = u_option[with_min]
    if with_min.any():
        row_of = np.full(problem.n_options, -1, np.int64)
        row_of[min_opts] = n_rows + np.arange(len(min_opts))
        sel = np.flatnonzero(binary & (row_of[ent_option] >= 0))
        for p in (PRODUCT_UP, PRODUCT_DOWN):
            put(row_of[ent_option[sel]], p * n_e + sel, sign[p][sel])
        u_anchor_kwh = np.bincount(ent_u[binary], weights=anchor[0][binary] + anchor[1][binary], minlength=n_u)
        u_min = np.flatnonzero(with_min)
        put(n_rows + np.arange(len(min_opts)), u0 + u_min, u_anchor_kwh[u_min] - problem.sell_min_kwh[u_bid[u_min]])
        n_rows += len(min_opts)
        row_lower.append(np.zeros(len(min_opts)))
        row_upper.append(np.full(len(min_opts), inf))

    matrix = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n_cols)
    )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    cost = np.concatenate(
        (
            price * sign[0],
            price * sign[1],
            -problem.buy_limit_eur_per_kwh[problem.buy_owner],
            np.repeat(problem.link_fee_eur_per_kwh, n_t * 2),
            u_cost,
        )
    )
    cap = np.where(np.isfinite(problem.link_capacity_kwh), problem.link_capacity_kwh, inf)
    col_lower = np.zeros(n_cols)
    col_upper = np.concatenate(
        (w_upper[0], w_upper[1], np.abs(problem.buy_volume_kwh), np.repeat(cap, n_t * 2), np.ones(n_u))
    )
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_rows
    lp.col_cost_ = cost
    lp.col_lower_ = col_lower
    lp.col_upper_ = col_upper
    lp.row_lower_ = np.concatenate(row_lower)
    lp.row_upper_ = np.concatenate(row_upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = n_cols
    lp.a_matrix_.num_row_ = n_rows
    lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
    lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
    lp.a_matrix_.value_ = matrix.data
    if n_u:
        lp.integrality_ = _integrality(n_cols, u0)
    return MarketModel(
        lp=lp,
        n_entries=n_e,
        n_buy_entries=n_y,
        n_flows=n_f,
        u_option=_ro(u_option, np.int64),
        u_col0=u0,
        n_balance_rows=n_bal,
        bound_entries=(bound_entries[0], bound_entries[1]),
        xor_bids=_ro(xor_bids, np.int64),
        min_options=_ro(min_opts, np.int64),
        binary_bid=_ro(binary_bid, bool),
        ent_u=_ro(ent_u, np.int64),
        sign=_ro(sign, float),
        anchor_kwh=_ro(anchor, float),
    )


def _integrality(n_cols: int, first_integer: int) -> list[Any]:
    """HiGHS integrality list: continuous columns, then integer ones from `first_integer`."""
    cont, integer = highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger
    return [cont] * first_integer + [integer] * (n_cols - first_integer)

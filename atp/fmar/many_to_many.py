"""Many-to-many clearing (D2.1 F2.FMAR3, F2.FMAR4): welfare-maximising MILP solved by HiGHS.

Problem data (`atp.fmar.market_problem.MarketProblem`, flat numpy arrays; built from
`SellBid`s and `BuyBid`s by `MarketProblem.from_bids`) is kept apart from the solver:
`build_model` lays the MILP out as a column-wise sparse matrix for highspy directly (no
modelling layer: the build is a handful of vectorised numpy operations), `clear_many_to_many`
solves it over the bids that can matter (`atp.fmar.bid_selection`: the others are priced out
at the LP's balance duals and added when one would help), prices it and removes paradoxically
accepted bids.

Products and signs. A change of consumption is traded as two products per zone and step:
upward regulation (less consumption) and downward regulation (more). A sell bid entry j (one
step of one option) has deviation bounds `lower_kwh[j] <= delta <= upper_kwh[j]` (change of
consumption relative to the seller's default schedule) and is split into `up_j, down_j >= 0`
with `delta = down_j - up_j`; the seller is paid for `up_j + down_j` at its price. A buyer
(`BuyBid`, from a `Request`: a BRP or DSO) asks per step for a signed volume (negative =
upward) at a limit price; it may receive any part `0 <= y <= |volume|` of it.

Bid features with integer decisions (each option has a binary `u`, all deviations of the
option scale with it):

- XOR options: a sell bid has one or more options (a start time and profile of the
  Flex-Offer: time flexibility and XOR profiles); at most one is accepted. Not accepted = the
  default schedule (all deviations 0).
- Indivisible (block) bids: an option with `lower == upper` is all or nothing.
- Minimum activation: an accepted option delivers at least `min_activation_kwh` (sum over
  steps of `up + down`).
- Options whose bounds exclude 0 (a shifted start forces deviations) are all or nothing too.

A bid with one option, bounds around 0 and no minimum activation is continuous (no binary).

Maximise  sum_b limit_b * sum_t y_bt - sum_k price_k * sum_j (up_j + down_j) - sum_l fee_l * f_l
subject to, per zone z, step t and product p:
    supply_p(z, t) - demand_p(z, t) + sum_{l into z} f_lp - sum_{l out of z} f_lp = 0,
per link l and step t: f_l,up + f_l,down <= capacity_l.

Pricing (`atp.fmar.pricing`): pay-as-bid, or uniform per zone, step and product from the
duals of the balance rows in the LP with the accepted options fixed. Under uniform pricing, a
sell bid that would receive less than its own price asks (paradoxically accepted) is forbidden
and the MILP solved again, until no such bid is left (every paradoxical bid of a round is
removed at once; each round removes at least one, so the loop ends).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import highspy
import numpy as np

from atp.fman.planning import _new_highs
from atp.fmar.bid_selection import initial_selection, missing_bids
from atp.fmar.many_to_many_model import MarketModel, _ro, anchor_estimate, build_model
from atp.fmar.market_problem import EPS_KWH, MarketProblem
from atp.fmar.pricing import (
    PRODUCT_DOWN,
    PRODUCT_UP,
    Pricing,
    buyer_payments,
    paradoxical_sellers,
    seller_receipts,
)

__all__ = [
    "EMPTY_MARKET",
    "NO_BUYERS",
    "NO_CROSSING",
    "NO_SELLERS",
    "Clearing",
    "MarketModel",
    "build_model",
    "clear_many_to_many",
]

EMPTY_MARKET = "empty market: no bids"
NO_SELLERS = "no sell bids: nothing to buy from"
NO_BUYERS = "no buy bids: nobody asks for flexibility"
NO_CROSSING = "no crossing bids: no seller's price and the transport fees fit under any reachable buyer's limit"
_EPS_KWH = EPS_KWH


_DIVE_ROUNDS = 12
_OK = (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit)


def _lp(h: Any) -> tuple[str | None, np.ndarray | None, float]:
    """Run the (continuous) model; (why it failed or None, column values, welfare)."""
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return f"solver found no optimum ({h.modelStatusToString(h.getModelStatus())})", None, 0.0
    return None, np.asarray(h.getSolution().col_value, dtype=float), -float(h.getInfo().objective_function_value)


def _relax(h: Any, *, u_idx: np.ndarray, u_upper: np.ndarray) -> tuple[str | None, np.ndarray | None, float]:
    """The LP relaxation (u in [0, u_upper]): (why it failed or None, column values, welfare bound)."""
    n_u = len(u_idx)
    if n_u:
        h.changeColsBounds(n_u, u_idx, np.zeros(n_u), u_upper)
    return _lp(h)


def _fix_integers(
    h: Any, col: np.ndarray, bound: float, *, u_idx: np.ndarray, u_upper: np.ndarray, mip_rel_gap: float
) -> tuple[str | None, np.ndarray | None, float | None]:
    """Take the binaries u (columns `u_idx`, continuous in `h`) from the relaxation `col`.

    Relax-and-fix: the LP relaxation (welfare `bound`) is the start; a short dive (warm LP
    re-solves) fixes fractional u >= 1/2 to 1 where the LP stays feasible, the u still
    fractional go to 0 (always feasible: less supply only lowers what buyers receive). When
    that is within `mip_rel_gap` of the bound it is the answer; otherwise HiGHS's MILP branches
    over every u not at 1, starting from it (the gap reported is against the full relaxation,
    so it stays a certificate).
    On return the model's last solve is the LP with every u fixed, whose duals price.
    Returns (why it failed or None, column values, gap to the relaxation bound).
    """
    n_u = len(u_idx)
    if n_u == 0:
        return None, col, None
    # Dive: keep the relaxation's integral u, set fractional u >= 1/2 to 1 (or to 0 when that
    # makes the LP infeasible), solve the rest again; a few rounds, then the rest go to 0.
    lower, upper = np.zeros(n_u), u_upper.copy()
    u = u_relax = col[u_idx]
    open_u = np.flatnonzero((u_relax > 1e-6) & (u_relax < 1 - 1e-6))
    for _ in range(_DIVE_ROUNDS):
        fractional = (u > 1e-6) & (u < 1 - 1e-6)
        if not fractional.any():
            break
        up = fractional & (u >= 0.5)
        if not up.any():
            break
        trial_lower = np.where(up, 1.0, lower)
        h.changeColsBounds(n_u, u_idx, trial_lower, upper)
        failure, trial, _ = _lp(h)
        if failure is None and trial is not None:
            lower, col, u = trial_lower, trial, trial[u_idx]
        else:
            upper = np.where(up, 0.0, upper)
            h.changeColsBounds(n_u, u_idx, lower, upper)
            failure, col, _ = _lp(h)
            if failure is not None or col is None:
                return failure, None, None
            u = col[u_idx]
    fixed = np.where(u >= 1 - 1e-6, 1.0, 0.0) * (upper > 0)
    h.changeColsBounds(n_u, u_idx, fixed, fixed)
    failure, col, welfare = _lp(h)
    if failure is not None or col is None:
        return failure, None, None
    gap = (bound - welfare) / max(abs(bound), 1e-9)
    if gap > mip_rel_gap and len(open_u):  # the MILP decides the u the relaxation left open
        base = np.where(u_relax >= 1 - 1e-6, 1.0, 0.0) * (u_upper > 0)
        h.changeColsBounds(n_u, u_idx, base, base)
        free = u_idx[open_u].astype(np.int32)
        h.changeColsBounds(len(free), free, np.zeros(len(free)), u_upper[open_u])
        h.changeColsIntegrality(len(free), free, np.ones(len(free), np.uint8))
        h.setSolution(_solution(col))  # the dive's answer as a start, if it fits
        h.setOptionValue("presolve", "on")
        h.run()
        h.setOptionValue("presolve", "off")
        status = h.getModelStatus()
        has_solution = int(h.getInfo().primal_solution_status) == 2
        h.changeColsIntegrality(len(free), free, np.zeros(len(free), np.uint8))
        if has_solution and status in _OK:
            mip = np.asarray(h.getSolution().col_value, dtype=float)
            fixed = np.round(mip[u_idx]) * (u_upper > 0)
        h.changeColsBounds(n_u, u_idx, fixed, fixed)
        failure, col, welfare = _lp(h)
        if failure is not None or col is None:
            return failure, None, None
        gap = (bound - welfare) / max(abs(bound), 1e-9)
    return None, col, max(gap, 0.0)


def _solution(col: np.ndarray) -> Any:
    solution = highspy.HighsSolution()
    solution.col_value = col
    solution.value_valid = True
    return solution


# -- solve, price, remove paradoxical bids -----------------------------------------------
@dataclass(frozen=True, eq=False)
class Clearing:
    """The outcome of one many-to-many clearing, in the problem's index space.

    Volumes per sell entry (`up_kwh`, `down_kwh`; deviation = down - up), per buy entry
    (`buy_kwh` >= 0, in the direction the buyer asked for) and per link, step and product
    (`flow_kwh`). `option[k]` is the accepted option of sell bid k (-1 = not accepted: it runs
    its default). `price_eur_per_kwh[z, t, p]` holds the uniform prices (None under
    pay-as-bid). Money: `buyers_pay_eur` = `sellers_receive_eur` + `transport_fees_eur` +
    `surplus_eur`. `removed` names the paradoxically accepted sell bids that were forbidden.
    `bids_in_lp` counts the sell bids the final LP held.
    `reason` says why nothing cleared (None when something did).
    """

    pricing: Pricing
    status: str
    reason: str | None
    welfare_eur: float
    option: np.ndarray = field(repr=False)
    up_kwh: np.ndarray = field(repr=False)
    down_kwh: np.ndarray = field(repr=False)
    buy_kwh: np.ndarray = field(repr=False)
    flow_kwh: np.ndarray = field(repr=False)
    price_eur_per_kwh: np.ndarray | None = field(repr=False)
    sell_receives_eur: np.ndarray = field(repr=False)
    sell_cost_eur: np.ndarray = field(repr=False)
    buy_pays_eur: np.ndarray = field(repr=False)
    buy_value_eur: np.ndarray = field(repr=False)
    transport_fees_eur: float
    buyers_pay_eur: float
    sellers_receive_eur: float
    surplus_eur: float
    removed: tuple[str, ...]
    rounds: int
    build_s: float
    solve_s: float
    mip_gap: float | None
    bids_in_lp: int = 0  # sell bids the LP held (`select_bids`); the others were priced out

    @property
    def delta_kwh(self) -> np.ndarray:
        """Change of consumption per sell entry (down - up)."""
        return self.down_kwh - self.up_kwh

    @property
    def cleared_kwh(self) -> float:
        """Volume bought over all buyers and steps (kWh)."""
        return float(self.buy_kwh.sum())


def _empty(problem: MarketProblem, pricing: Pricing, reason: str, status: str = "not solved", **extra: Any) -> Clearing:
    n_s, n_b = problem.n_sell, problem.n_buy
    return Clearing(
        pricing=pricing,
        status=status,
        reason=reason,
        welfare_eur=0.0,
        option=_ro(np.full(n_s, -1), np.int64),
        up_kwh=_ro(np.zeros(problem.n_entries)),
        down_kwh=_ro(np.zeros(problem.n_entries)),
        buy_kwh=_ro(np.zeros(len(problem.buy_step))),
        flow_kwh=_ro(np.zeros((len(problem.links), problem.n_steps, 2))),
        price_eur_per_kwh=None,
        sell_receives_eur=_ro(np.zeros(n_s)),
        sell_cost_eur=_ro(np.zeros(n_s)),
        buy_pays_eur=_ro(np.zeros(n_b)),
        buy_value_eur=_ro(np.zeros(n_b)),
        transport_fees_eur=0.0,
        buyers_pay_eur=0.0,
        sellers_receive_eur=0.0,
        surplus_eur=0.0,
        removed=(),
        rounds=0,
        build_s=extra.get("build_s", 0.0),
        solve_s=extra.get("solve_s", 0.0),
        mip_gap=None,
    )


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.maximum(x, 0.0)
    x[x < _EPS_KWH] = 0.0
    return x


def clear_many_to_many(
    problem: MarketProblem,
    *,
    pricing: Pricing | str = Pricing.UNIFORM,
    time_limit_s: float = 60.0,
    mip_rel_gap: float = 1e-6,
    max_rounds: int = 50,
    select_bids: bool = True,
) -> Clearing:
    """Clear the market: maximise welfare, price the volumes, forbid paradoxical bids.

    Never raises for market outcomes: an empty market, no crossing bids, zero volumes or a
    solver without a solution give a Clearing with nothing accepted and the `reason`.
    `max_rounds` bounds the paradoxical-bid removal; if bids are still paradoxical after it,
    the clearing reports so in `reason` and accepts nothing.

    With `select_bids` (the default) the LP holds only the sell bids that can matter
    (`atp.fmar.bid_selection`): it starts with those that help at a merit-order guess of the
    prices, and whenever a solved LP's balance prices show a bid left out that would improve
    it (the relaxation, or the LP with the accepted options fixed), the clearing starts again
    with it added. The answer is the one over all bids; `select_bids=False` puts every bid in
    the LP from the start.
    """
    pricing = Pricing(pricing)
    if problem.n_sell == 0 and problem.n_buy == 0:
        return _empty(problem, pricing, EMPTY_MARKET)
    if problem.n_sell == 0:
        return _empty(problem, pricing, NO_SELLERS)
    if problem.n_buy == 0:
        return _empty(problem, pricing, NO_BUYERS)
    if not (np.abs(problem.buy_volume_kwh) > _EPS_KWH).any():
        return _empty(problem, pricing, "zero volume: no buyer asks for a change in any step")
    options: dict[str, Any] = {
        "time_limit": float(time_limit_s),
        "mip_rel_gap": float(mip_rel_gap),
        "random_seed": 0,
        "threads": 1,
        "presolve": "off",  # LP presolve costs more than it saves here; the MILP fallback turns it on
    }
    selected = initial_selection(problem) if select_bids else np.ones(problem.n_sell, bool)
    continuous = ~problem.binary_bids()
    anchor_high = anchor_estimate(problem)
    build_s = solve_s = 0.0
    basis: _Basis | None = None
    while True:
        attempt = _Attempt(problem, selected, options, start=basis, anchor_high=anchor_high)
        clearing, more = attempt.clear(pricing, max_rounds=max_rounds, continuous=continuous)
        build_s += attempt.build_s
        solve_s += attempt.solve_s
        if clearing is not None:
            return replace(clearing, build_s=build_s, solve_s=solve_s, bids_in_lp=int(attempt.selected.sum()))
        basis = attempt.basis()
        selected = attempt.selected | more


_STATUS = np.array([highspy.HighsBasisStatus(i) for i in range(5)], dtype=object)  # by their int values
_LOWER, _BASIC = int(highspy.HighsBasisStatus.kLower), int(highspy.HighsBasisStatus.kBasic)


@dataclass(frozen=True, eq=False)
class _Basis:
    """A simplex basis with its columns and rows named in the whole problem (`_Attempt`), so
    a larger selection can start from it: the added bids' columns sit at 0 (nonbasic), their
    rows' slacks are basic; that is a basis of the larger LP, feasible, the old solution."""

    col_key: np.ndarray
    row_key: np.ndarray
    col_status: np.ndarray
    row_status: np.ndarray

    def carried_to(self, col_key: np.ndarray, row_key: np.ndarray) -> Any:
        """This basis for a model whose keys (ascending) include this one's."""
        col_status = np.full(len(col_key), _LOWER, np.int8)
        col_status[np.searchsorted(col_key, self.col_key)] = self.col_status
        row_status = np.full(len(row_key), _BASIC, np.int8)
        row_status[np.searchsorted(row_key, self.row_key)] = self.row_status
        basis = highspy.HighsBasis()
        basis.col_status = _STATUS[col_status].tolist()
        basis.row_status = _STATUS[row_status].tolist()
        basis.valid = True
        return basis


class _Attempt:
    """The clearing's MILP over the `selected` sell bids of `whole`, in one HiGHS instance.

    Its results are in `whole`'s indices. Continuous bids that the LP with the options fixed
    calls for are added in place (a column per entry and product, no row: `_add_continuous`);
    a bid that the relaxation calls for ends the attempt (`clear` returns it), and the next
    one starts from this one's `basis()`. Columns and rows carry keys, their names in the
    whole problem: w_up / w_down of entry j are j / n_e + j, then buy entries and flows, then
    the u of option o; bound rows are named by entry, XOR rows by bid, minimum rows by option.
    """

    def __init__(
        self,
        whole: MarketProblem,
        selected: np.ndarray,
        options: dict[str, Any],
        *,
        start: _Basis | None,
        anchor_high: np.ndarray,
    ):
        t0 = time.perf_counter()
        self.whole, self.selected, self.options = whole, selected.copy(), options
        sell = np.flatnonzero(selected)
        sub, sub_options, entries = whole.subset(sell)
        model = self.model = build_model(sub, anchor_high[:, entries])  # the same anchors in every attempt
        h = self.h = _new_highs()
        for name, value in options.items():
            h.setOptionValue(name, value)
        h.passModel(model.lp)
        n_e, n_all, n_u = model.n_entries, whole.n_entries, len(model.u_option)
        self.u_idx = (model.u_col0 + np.arange(n_u)).astype(np.int32)
        if n_u:  # the integer decisions are taken by _fix_integers, which starts from the relaxation
            h.changeColsIntegrality(n_u, self.u_idx, np.zeros(n_u, np.uint8))
        # Where each entry of the whole problem gets its volume: sign * w + anchor * u.
        self.w_col = np.full((2, n_all), -1, np.int64)
        self.w_col[:, entries] = np.stack((np.arange(n_e), n_e + np.arange(n_e)))
        self.sign = np.ones((2, n_all))
        self.sign[:, entries] = model.sign
        self.anchor_kwh = np.zeros((2, n_all))
        self.anchor_kwh[:, entries] = model.anchor_kwh
        self.u_col = np.full(n_all, -1, np.int64)
        self.u_col[entries] = np.where(model.ent_u >= 0, model.u_col0 + model.ent_u, -1)
        self.u_bid = sell[sub.opt_owner[model.u_option]]  # the whole problem's bid of every u
        self.u_choice = sub_options[model.u_option] - whole.opt_seg[self.u_bid]  # its option there
        n_shared_cols = model.u_col0 - 2 * n_e  # buy entries and flows
        self.col_key = np.concatenate(
            (
                entries,
                n_all + entries,
                2 * n_all + np.arange(n_shared_cols),
                2 * n_all + n_shared_cols + sub_options[model.u_option],
            )
        )
        n_shared_rows = model.n_balance_rows + len(whole.links) * whole.n_steps  # balances and links
        self.row_key = np.concatenate(
            (
                np.arange(n_shared_rows),
                n_shared_rows + entries[model.bound_entries[0]],
                n_shared_rows + n_all + entries[model.bound_entries[1]],
                n_shared_rows + 2 * n_all + sell[model.xor_bids],
                n_shared_rows + 2 * n_all + whole.n_sell + sub_options[model.min_options],
            )
        )
        if start is not None:
            h.setBasis(start.carried_to(self.col_key, self.row_key))
        self.build_s = time.perf_counter() - t0
        self.solve_s = 0.0

    def basis(self) -> _Basis:
        """The basis of the last LP solved, named for the next attempt."""
        basis = self.h.getBasis()
        col_status = np.fromiter(map(int, basis.col_status), np.int8, len(self.col_key))
        row_status = np.fromiter(map(int, basis.row_status), np.int8, len(self.row_key))
        return _Basis(self.col_key, self.row_key, col_status, row_status)

    def _prices(self) -> np.ndarray:
        """Duals of the balance rows of the last LP solved, as (zone, step, product)."""
        duals = np.asarray(self.h.getSolution().row_dual, dtype=float)[: self.model.n_balance_rows]
        return duals.reshape(len(self.whole.zones), self.whole.n_steps, 2)

    def _add_continuous(self, bids: np.ndarray) -> None:
        """Put the continuous `bids` (mask over the whole problem) into the LP, in place."""
        whole = self.whole
        ents = np.flatnonzero(bids[whole.opt_owner[whole.ent_option]])
        n = len(ents)
        ent_bid = whole.opt_owner[whole.ent_option[ents]]
        row = (whole.sell_zone[ent_bid] * whole.n_steps + whole.ent_step[ents]) * 2
        hi = (np.maximum(-whole.ent_lower_kwh[ents], 0.0), np.maximum(whole.ent_upper_kwh[ents], 0.0))
        first_col = self.h.getNumCol()
        price = whole.sell_price_eur_per_kwh[ent_bid]
        self.h.addCols(
            2 * n,
            np.concatenate((price, price)),
            np.zeros(2 * n),
            np.concatenate(hi),
            2 * n,
            np.arange(2 * n, dtype=np.int32),
            np.concatenate((row + PRODUCT_UP, row + PRODUCT_DOWN)).astype(np.int32),
            np.ones(2 * n),
        )
        self.w_col[:, ents] = first_col + np.stack((np.arange(n), n + np.arange(n)))
        self.col_key = np.concatenate((self.col_key, ents, whole.n_entries + ents))
        self.selected |= bids

    def _volumes(self, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(up_kwh, down_kwh) per entry of the whole problem."""
        w = np.where(self.w_col >= 0, col[np.maximum(self.w_col, 0)], 0.0)
        u = np.where(self.u_col >= 0, col[np.maximum(self.u_col, 0)], 0.0)
        vol = self.sign * w + self.anchor_kwh * u
        return _clean(vol[0]), _clean(vol[1])

    def clear(
        self, pricing: Pricing, *, max_rounds: int, continuous: np.ndarray
    ) -> tuple[Clearing | None, np.ndarray | None]:
        """Solve, price, forbid paradoxical bids: (the clearing, None), or (None, the bids the
        relaxation calls for) when a bid left out would raise it."""
        whole, model, h = self.whole, self.model, self.h
        n_t, n_l = whole.n_steps, len(whole.links)
        mip_rel_gap = float(self.options["mip_rel_gap"])
        u_upper = np.ones(len(self.u_idx))
        ent_bid = whole.opt_owner[whole.ent_option]
        ent_zone = whole.sell_zone[ent_bid]
        removed: list[int] = []
        rounds = 0
        mip_gap: float | None = None
        while True:
            rounds += 1
            t1 = time.perf_counter()
            try:
                failure, col, bound = _relax(h, u_idx=self.u_idx, u_upper=u_upper)
                if failure is None and col is not None:
                    more = missing_bids(whole, self._prices(), self.selected)
                    if more.any():
                        return None, more
                    failure, col, mip_gap = _fix_integers(
                        h, col, bound, u_idx=self.u_idx, u_upper=u_upper, mip_rel_gap=mip_rel_gap
                    )
                # With the options fixed, continuous bids left out may still help: add them.
                while failure is None and col is not None:
                    more = missing_bids(whole, self._prices(), self.selected) & continuous
                    if not more.any():
                        break
                    self._add_continuous(more)
                    failure, col, welfare = _lp(h)
                    if mip_gap is not None:
                        mip_gap = max((bound - welfare) / max(abs(bound), 1e-9), 0.0)
            finally:
                self.solve_s += time.perf_counter() - t1
            status_text = h.modelStatusToString(h.getModelStatus())
            if failure is not None or col is None:
                return _empty(whole, pricing, failure or "no solution", status_text), None
            prices = self._prices() if pricing is Pricing.UNIFORM else None  # the LP with the options fixed
            up, down = self._volumes(col)
            y = _clean(col[model.y_col0 : model.f_col0])
            flow = _clean(col[model.f_col0 : model.u_col0]).reshape(n_l, n_t, 2)
            if prices is not None:
                up_price = prices[ent_zone, whole.ent_step, PRODUCT_UP]
                down_price = prices[ent_zone, whole.ent_step, PRODUCT_DOWN]
            else:
                up_price = down_price = None
            price = whole.sell_price_eur_per_kwh
            receipts = seller_receipts(
                owner=ent_bid,
                n_bids=whole.n_sell,
                up_kwh=up,
                down_kwh=down,
                price_eur_per_kwh=price,
                up_price=up_price,
                down_price=down_price,
            )
            cost = np.bincount(ent_bid, weights=price[ent_bid] * (up + down), minlength=whole.n_sell)
            paradox = paradoxical_sellers(receipts, cost) if prices is not None else np.zeros(0, np.int64)
            if len(paradox) == 0:
                break
            if rounds >= max_rounds:
                reason = f"{len(paradox)} bids still paradoxically accepted after {rounds} rounds"
                return _empty(whole, pricing, reason, status_text), None
            removed.extend(int(k) for k in paradox)
            u_upper[np.isin(self.u_bid, paradox)] = 0.0
            held = self.w_col[:, np.isin(ent_bid, paradox[continuous[paradox]])].ravel()
            held = held[held >= 0].astype(np.int32)
            if len(held):  # numerically paradoxical continuous bids: hold their volumes at 0
                h.changeColsBounds(len(held), held, np.zeros(len(held)), np.zeros(len(held)))
        return self._clearing(pricing, col, up, down, y, flow, prices, receipts, cost, removed, rounds, mip_gap), None

    def _clearing(
        self,
        pricing: Pricing,
        col: np.ndarray,
        up: np.ndarray,
        down: np.ndarray,
        y: np.ndarray,
        flow: np.ndarray,
        prices: np.ndarray | None,
        receipts: np.ndarray,
        cost: np.ndarray,
        removed: list[int],
        rounds: int,
        mip_gap: float | None,
    ) -> Clearing:
        """The Clearing of a solved round: options, payments, money balance."""
        whole, h = self.whole, self.h
        buy_owner = whole.buy_owner
        ent_bid = whole.opt_owner[whole.ent_option]
        option = np.full(whole.n_sell, -1, np.int64)
        chosen = np.flatnonzero(np.round(col[self.u_idx]) > 0.5) if len(self.u_idx) else np.zeros(0, np.int64)
        option[self.u_bid[chosen]] = self.u_choice[chosen]
        used = np.bincount(ent_bid, weights=up + down, minlength=whole.n_sell) > 0
        option[used & ~whole.binary_bids()] = 0
        if prices is not None:
            buy_product = np.where(whole.buy_volume_kwh < 0, PRODUCT_UP, PRODUCT_DOWN)
            buy_price = prices[whole.buy_zone[buy_owner], whole.buy_step, buy_product]
        else:
            buy_price = None
        pays = buyer_payments(
            owner=buy_owner,
            n_bids=whole.n_buy,
            cleared_kwh=y,
            limit_eur_per_kwh=whole.buy_limit_eur_per_kwh,
            price=buy_price,
        )
        value = np.bincount(buy_owner, weights=whole.buy_limit_eur_per_kwh[buy_owner] * y, minlength=whole.n_buy)
        fees = float((whole.link_fee_eur_per_kwh[:, None, None] * flow).sum()) if len(whole.links) else 0.0
        buyers_pay, sellers_receive = math.fsum(pays), math.fsum(receipts)
        return Clearing(
            pricing=pricing,
            status=h.modelStatusToString(h.getModelStatus()),
            reason=None if y.sum() > 0 else NO_CROSSING,
            welfare_eur=math.fsum(value) - math.fsum(cost) - fees,
            option=_ro(option),
            up_kwh=_ro(up),
            down_kwh=_ro(down),
            buy_kwh=_ro(y),
            flow_kwh=_ro(flow),
            price_eur_per_kwh=_ro(prices) if prices is not None else None,
            sell_receives_eur=_ro(receipts),
            sell_cost_eur=_ro(cost),
            buy_pays_eur=_ro(pays),
            buy_value_eur=_ro(value),
            transport_fees_eur=fees,
            buyers_pay_eur=buyers_pay,
            sellers_receive_eur=sellers_receive,
            surplus_eur=buyers_pay - sellers_receive - fees,
            removed=tuple(whole.sell_ids[k] for k in removed),
            rounds=rounds,
            build_s=self.build_s,
            solve_s=self.solve_s,
            mip_gap=mip_gap,
        )

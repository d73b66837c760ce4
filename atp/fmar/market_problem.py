"""The many-to-many market's problem data: sell and buy bids, packed into flat arrays.

`SellBid` (options with deviation bounds per market step, a price, a zone, a minimum
activation), `BuyBid` (a signed volume per step at a limit price, in a zone) and
`MarketProblem.from_bids`, which checks them and lays them out as numpy arrays for the
solver layer (`atp.fmar.many_to_many`). Signs and products: see that module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any

import numpy as np

from atp.errors import Problem
from atp.fmar.errors import InvalidRequestError
from atp.fmar.transport import DEFAULT_ZONE, TransportLink, check_links

__all__ = ["EPS_KWH", "BuyBid", "MarketProblem", "SellBid", "SellOption"]

EPS_KWH = 1e-7  # volumes below this count as zero
_EPS_KWH = EPS_KWH


@dataclass(frozen=True)
class SellOption:
    """One XOR alternative of a sell bid: deviation bounds from market step `first_step` on."""

    first_step: int
    lower_kwh: tuple[float, ...]
    upper_kwh: tuple[float, ...]


@dataclass(frozen=True)
class SellBid:
    """A seller's Flex-Offer as the market trades it: options, a price, a zone, a minimum.

    `price_eur_per_kwh` is paid per kWh of deviation in either direction;
    `min_activation_kwh` > 0 makes an accepted option deliver at least that much.
    """

    id: str
    zone: str
    price_eur_per_kwh: float
    options: tuple[SellOption, ...]
    min_activation_kwh: float = 0.0


@dataclass(frozen=True)
class BuyBid:
    """A buyer's wish per step from `first_step` on (signed: < 0 upward, > 0 downward)."""

    id: str
    zone: str
    limit_eur_per_kwh: float
    first_step: int
    volume_kwh: tuple[float, ...]


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges starts[i] : starts[i] + counts[i]."""
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    return (offsets + np.arange(int(counts.sum()))).astype(np.int64)


def _ro(a: np.ndarray, dtype: Any = None) -> np.ndarray:
    out = np.ascontiguousarray(a, dtype=dtype)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class MarketProblem:
    """A many-to-many market as flat arrays (the solver-independent problem data).

    Sell bid k owns options `opt_seg[k]:opt_seg[k+1]`; option o owns entries
    `ent_seg[o]:ent_seg[o+1]`, entry j is market step `ent_step[j]` with deviation bounds
    `ent_lower_kwh[j] <= delta <= ent_upper_kwh[j]`. Buy bid b owns entries
    `buy_seg[b]:buy_seg[b+1]` (step `buy_step`, signed `buy_volume_kwh`). Zones are indices
    into `zones` (0 = the default zone); links into `link_*`.
    """

    n_steps: int
    zones: tuple[str, ...]
    sell_ids: tuple[str, ...]
    sell_zone: np.ndarray
    sell_price_eur_per_kwh: np.ndarray
    sell_min_kwh: np.ndarray
    opt_seg: np.ndarray
    ent_seg: np.ndarray
    ent_step: np.ndarray
    ent_lower_kwh: np.ndarray
    ent_upper_kwh: np.ndarray
    buy_ids: tuple[str, ...]
    buy_zone: np.ndarray
    buy_limit_eur_per_kwh: np.ndarray
    buy_seg: np.ndarray
    buy_step: np.ndarray
    buy_volume_kwh: np.ndarray
    links: tuple[TransportLink, ...]
    link_from: np.ndarray
    link_to: np.ndarray
    link_fee_eur_per_kwh: np.ndarray
    link_capacity_kwh: np.ndarray

    @property
    def n_sell(self) -> int:
        return len(self.sell_ids)

    @property
    def n_buy(self) -> int:
        return len(self.buy_ids)

    @property
    def n_options(self) -> int:
        return len(self.ent_seg) - 1

    @property
    def n_entries(self) -> int:
        return len(self.ent_step)

    @property
    def opt_owner(self) -> np.ndarray:
        """Sell bid of every option."""
        return np.repeat(np.arange(self.n_sell), np.diff(self.opt_seg))

    @property
    def ent_option(self) -> np.ndarray:
        """Option of every sell entry."""
        return np.repeat(np.arange(self.n_options), np.diff(self.ent_seg))

    @property
    def buy_owner(self) -> np.ndarray:
        """Buy bid of every buy entry."""
        return np.repeat(np.arange(self.n_buy), np.diff(self.buy_seg))

    def binary_bids(self) -> np.ndarray:
        """Which sell bids need integer decisions (XOR, minimum activation, 0 outside a box)."""
        n_opt = np.diff(self.opt_seg)
        ent_bid = self.opt_owner[self.ent_option]
        off_zero = (self.ent_lower_kwh > _EPS_KWH) | (self.ent_upper_kwh < -_EPS_KWH)
        forced = np.bincount(ent_bid[off_zero], minlength=self.n_sell) > 0
        return (n_opt > 1) | (self.sell_min_kwh > _EPS_KWH) | forced

    def subset(self, sell: np.ndarray) -> tuple[MarketProblem, np.ndarray, np.ndarray]:
        """The same market with only the sell bids `sell` (indices, ascending), and the index
        in this problem of each of its options and entries. Zones, steps, buyers and links stay."""
        sell = np.asarray(sell, np.int64)
        options = _ranges(self.opt_seg[sell], np.diff(self.opt_seg)[sell])
        entries = _ranges(self.ent_seg[options], np.diff(self.ent_seg)[options])
        opt_seg = np.zeros(len(sell) + 1, np.int64)
        np.cumsum(np.diff(self.opt_seg)[sell], out=opt_seg[1:])
        ent_seg = np.zeros(len(options) + 1, np.int64)
        np.cumsum(np.diff(self.ent_seg)[options], out=ent_seg[1:])
        sub = replace(
            self,
            sell_ids=tuple(self.sell_ids[k] for k in sell),
            sell_zone=_ro(self.sell_zone[sell]),
            sell_price_eur_per_kwh=_ro(self.sell_price_eur_per_kwh[sell]),
            sell_min_kwh=_ro(self.sell_min_kwh[sell]),
            opt_seg=_ro(opt_seg),
            ent_seg=_ro(ent_seg),
            ent_step=_ro(self.ent_step[entries]),
            ent_lower_kwh=_ro(self.ent_lower_kwh[entries]),
            ent_upper_kwh=_ro(self.ent_upper_kwh[entries]),
        )
        return sub, options, entries

    @classmethod
    def from_bids(
        cls,
        sell: Sequence[SellBid],
        buy: Sequence[BuyBid],
        *,
        n_steps: int,
        links: Sequence[TransportLink] = (),
    ) -> MarketProblem:
        """Pack bids into arrays; InvalidRequestError lists every bad step, bound or price."""
        links = check_links(links)
        problems: list[Problem] = []
        if not isinstance(n_steps, int) or n_steps < 1:
            raise InvalidRequestError([Problem("n_steps", f"(={n_steps}) must be at least 1", "steps")])
        zone_set = {DEFAULT_ZONE}
        zone_set.update(b.zone for b in sell)
        zone_set.update(b.zone for b in buy)
        for link in links:
            zone_set.update((link.from_zone, link.to_zone))
        zones = (DEFAULT_ZONE, *sorted(zone_set - {DEFAULT_ZONE}))
        zone_index = {z: i for i, z in enumerate(zones)}

        n_s = len(sell)
        opt_counts = np.fromiter((len(b.options) for b in sell), np.int64, n_s)
        opt_seg = np.zeros(n_s + 1, np.int64)
        np.cumsum(opt_counts, out=opt_seg[1:])
        options = [o for b in sell for o in b.options]
        ent_counts = np.fromiter((len(o.lower_kwh) for o in options), np.int64, len(options))
        ent_seg = np.zeros(len(options) + 1, np.int64)
        np.cumsum(ent_counts, out=ent_seg[1:])
        n_e = int(ent_seg[-1])
        lower = np.fromiter(chain.from_iterable(o.lower_kwh for o in options), float, n_e)
        upper = np.fromiter(chain.from_iterable(o.upper_kwh for o in options), float, n_e)
        first = np.fromiter((o.first_step for o in options), np.int64, len(options))
        ent_option = np.repeat(np.arange(len(options)), ent_counts)
        step = first[ent_option] + (np.arange(n_e) - ent_seg[:-1][ent_option])
        prices = np.fromiter((b.price_eur_per_kwh for b in sell), float, n_s)
        mins = np.fromiter((b.min_activation_kwh for b in sell), float, n_s)
        opt_owner = np.repeat(np.arange(n_s), opt_counts)
        for k in np.flatnonzero(opt_counts == 0):
            problems.append(Problem(f"sell[{k}].options", "is empty; give at least one option", "options"))
        for k in np.flatnonzero(~np.isfinite(prices)):
            problems.append(Problem(f"sell[{k}].price_eur_per_kwh", f"{prices[k]} is not a finite price", "price"))
        for k in np.flatnonzero(~np.isfinite(mins) | (mins < 0)):
            problems.append(Problem(f"sell[{k}].min_activation_kwh", f"{mins[k]} must be >= 0 kWh", "volume"))
        for o in np.flatnonzero(ent_counts != np.fromiter((len(o.upper_kwh) for o in options), np.int64)):
            problems.append(
                Problem(f"sell[{opt_owner[o]}].options", "lower_kwh and upper_kwh differ in length", "bounds")
            )
        if not problems:
            bad = ~np.isfinite(lower) | ~np.isfinite(upper) | (lower > upper + 1e-12) | (step < 0) | (step >= n_steps)
            for j in np.flatnonzero(bad)[:5]:
                o = ent_option[j]
                problems.append(
                    Problem(
                        f"sell[{opt_owner[o]}].options[{o - opt_seg[opt_owner[o]]}]",
                        f"step {step[j]} must lie in [0, {n_steps}) with finite lower <= upper "
                        f"(got {lower[j]}, {upper[j]})",
                        "bounds",
                    )
                )

        n_b = len(buy)
        buy_counts = np.fromiter((len(b.volume_kwh) for b in buy), np.int64, n_b)
        buy_seg = np.zeros(n_b + 1, np.int64)
        np.cumsum(buy_counts, out=buy_seg[1:])
        volume = np.fromiter(chain.from_iterable(b.volume_kwh for b in buy), float, int(buy_seg[-1]))
        buy_owner = np.repeat(np.arange(n_b), buy_counts)
        buy_first = np.fromiter((b.first_step for b in buy), np.int64, n_b)
        buy_step = buy_first[buy_owner] + (np.arange(len(volume)) - buy_seg[:-1][buy_owner])
        limits = np.fromiter((b.limit_eur_per_kwh for b in buy), float, n_b)
        for b in np.flatnonzero(~np.isfinite(limits)):
            problems.append(Problem(f"buy[{b}].limit_eur_per_kwh", f"{limits[b]} is not a finite price", "price"))
        bad = ~np.isfinite(volume) | (buy_step < 0) | (buy_step >= n_steps)
        for j in np.flatnonzero(bad)[:5]:
            problems.append(
                Problem(f"buy[{buy_owner[j]}]", f"step {buy_step[j]} must lie in [0, {n_steps}) with a finite volume")
            )
        for name, ids in (("sell", [b.id for b in sell]), ("buy", [b.id for b in buy])):
            if len(set(ids)) != len(ids):
                problems.append(Problem(name, "bid ids must be unique", "id"))
        if problems:
            raise InvalidRequestError(problems)
        lower[np.abs(lower) < 1e-12] = 0.0  # float dust from subtractions, not a bound
        upper[np.abs(upper) < 1e-12] = 0.0
        volume[np.abs(volume) < 1e-12] = 0.0
        return cls(
            n_steps=n_steps,
            zones=zones,
            sell_ids=tuple(b.id for b in sell),
            sell_zone=_ro([zone_index[b.zone] for b in sell], np.int64),
            sell_price_eur_per_kwh=_ro(prices, float),
            sell_min_kwh=_ro(mins, float),
            opt_seg=_ro(opt_seg),
            ent_seg=_ro(ent_seg),
            ent_step=_ro(step, np.int64),
            ent_lower_kwh=_ro(lower, float),
            ent_upper_kwh=_ro(upper, float),
            buy_ids=tuple(b.id for b in buy),
            buy_zone=_ro([zone_index[b.zone] for b in buy], np.int64),
            buy_limit_eur_per_kwh=_ro(limits, float),
            buy_seg=_ro(buy_seg),
            buy_step=_ro(buy_step, np.int64),
            buy_volume_kwh=_ro(volume, float),
            links=links,
            link_from=_ro([zone_index[link.from_zone] for link in links], np.int64),
            link_to=_ro([zone_index[link.to_zone] for link in links], np.int64),
            link_fee_eur_per_kwh=_ro([link.fee_eur_per_kwh for link in links], float),
            link_capacity_kwh=_ro([link.capacity_kwh for link in links], float),
        )

"""Pricing rules of the many-to-many clearing: who pays and who receives what for the volumes.

Two products per zone and step: upward regulation (less consumption) and downward regulation
(more consumption). Given the cleared volumes:

- `PAY_AS_BID`: every accepted seller receives its own price per kWh it delivers, every buyer
  pays its own limit price per kWh it receives; the difference, the whole welfare less the
  transport fees, stays with the market operator as surplus.
- `UNIFORM`: one price per zone, step and product, the dual of the zone's balance in the
  linear problem with the integer decisions (accepted options) fixed; sellers receive and
  buyers pay that price. What buyers pay beyond what sellers receive covers the transport
  fees; the rest is congestion rent (surplus). A seller whose receipts fall short of its own
  price times its volume was *paradoxically accepted* (only possible for bids with integer
  decisions); `paradoxical_sellers` finds them so the clearing can forbid them and solve
  again, as power exchanges do.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["PRODUCT_DOWN", "PRODUCT_UP", "Pricing", "buyer_payments", "paradoxical_sellers", "seller_receipts"]

PRODUCT_UP = 0  # upward regulation: less consumption (a request's negative volume)
PRODUCT_DOWN = 1  # downward regulation: more consumption (positive volume)


class Pricing(enum.Enum):
    """How cleared volumes are paid: each at its own bid, or at one price per zone and step."""

    PAY_AS_BID = "pay_as_bid"
    UNIFORM = "uniform"


def seller_receipts(
    *,
    owner: np.ndarray,
    n_bids: int,
    up_kwh: np.ndarray,
    down_kwh: np.ndarray,
    price_eur_per_kwh: np.ndarray,
    up_price: np.ndarray | None,
    down_price: np.ndarray | None,
) -> np.ndarray:
    """EUR each sell bid receives. `owner[j]` = bid of entry j; `up_price[j]`/`down_price[j]` =
    the uniform price of entry j's zone and step (None = pay-as-bid at the bid's own price)."""
    if up_price is None or down_price is None:
        per_entry = price_eur_per_kwh[owner] * (up_kwh + down_kwh)
    else:
        per_entry = up_price * up_kwh + down_price * down_kwh
    return np.bincount(owner, weights=per_entry, minlength=n_bids)


def buyer_payments(
    *,
    owner: np.ndarray,
    n_bids: int,
    cleared_kwh: np.ndarray,
    limit_eur_per_kwh: np.ndarray,
    price: np.ndarray | None,
) -> np.ndarray:
    """EUR each buy bid pays; `price[j]` = uniform price of entry j (None = its own limit)."""
    per_entry = (limit_eur_per_kwh[owner] if price is None else price) * cleared_kwh
    return np.bincount(owner, weights=per_entry, minlength=n_bids)


def paradoxical_sellers(receipts_eur: np.ndarray, cost_eur: np.ndarray, *, tolerance_eur: float = 1e-6) -> np.ndarray:
    """Indices of sell bids that receive less than their own price asks for their volume."""
    slack = tolerance_eur * np.maximum(1.0, np.abs(cost_eur))
    return np.flatnonzero(receipts_eur < cost_eur - slack)

"""Direct trading prices and routing: a comfort priority becomes a price, peak power picks the receiver.

D2.1 3.3.2: in direct trading the EMS trigger carries a *priority*, the importance of the comfort
loss an adaptation causes, and the FOA converts it into the offer's price. The rule here:

    price_eur_per_kwh = base_eur_per_kwh * (1 + comfort_factor * priority),   priority in [0, 1]

- priority 0: the user is indifferent to the adaptation; the offer asks the base price.
- priority 1: "do not touch"; the offer asks `(1 + comfort_factor)` times the base price
  (4x with the default `comfort_factor` 3.0), which keeps it out of most trades without
  withdrawing the flexibility.
- In between the price grows linearly, so a market that clears the cheapest flexibility first
  (D2.1 3.3.2: lowest price for production first) adapts the least important loads first.

`PRIORITY_CLASSES` names three points of the scale for user interfaces and configuration files
(`low` 0.0, `normal` 0.5, `high` 1.0); `priority_of` turns a class name or a number into a
priority.

Routing (D2.1 3.1): delegated offers always go to the FMAN (the aggregator values them under the
contract). Direct offers of small loads go to the FMAN too, to be aggregated; an offer whose peak
power reaches `large_kw_threshold` is a "large load" and goes straight to the FMAR. The peak power
of an offer is the largest per-step energy bound in absolute value over all its profiles,
divided by the step length: `max |bound_kwh| / (slice_s / 3600)`.
"""

from __future__ import annotations

import enum
import math

from atp.flexoffer import FlexOffer, Mode
from atp.foa.errors import GenerationError

__all__ = [
    "DEFAULT_COMFORT_FACTOR",
    "PRIORITY_CLASSES",
    "PricingError",
    "Route",
    "peak_power_kw",
    "priority_of",
    "priority_to_price",
    "route_for",
]

DEFAULT_COMFORT_FACTOR = 3.0
PRIORITY_CLASSES: dict[str, float] = {"low": 0.0, "normal": 0.5, "high": 1.0}


class PricingError(GenerationError, ValueError):
    """A priority, base price or routing threshold is out of range; the message says which and why."""


class Route(enum.Enum):
    """Where an offer is submitted: the aggregator (FMAN) or the market (FMAR)."""

    FMAN = "fman"
    FMAR = "fmar"


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PricingError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def priority_of(value: float | str) -> float:
    """A priority in [0, 1] from a number or a class name of `PRIORITY_CLASSES`."""
    if isinstance(value, str):
        if value not in PRIORITY_CLASSES:
            known = ", ".join(f"{k} ({v:g})" for k, v in PRIORITY_CLASSES.items())
            raise PricingError(f"unknown priority class {value!r}; known classes: {known}, or a number in [0, 1]")
        return PRIORITY_CLASSES[value]
    priority = _finite("priority", value)
    if not 0.0 <= priority <= 1.0:
        raise PricingError(f"priority {priority:g} must lie within [0, 1] (0 = indifferent, 1 = do not touch)")
    return priority


def priority_to_price(
    priority: float | str, *, base_eur_per_kwh: float, comfort_factor: float = DEFAULT_COMFORT_FACTOR
) -> float:
    """The deviation price (EUR/kWh) a direct offer asks for an adaptation of this priority.

    `base_eur_per_kwh * (1 + comfort_factor * priority)` (module docstring); `priority` is a
    number in [0, 1] or a class name (`low`, `normal`, `high`).
    """
    p = priority_of(priority)
    base = _finite("base_eur_per_kwh", base_eur_per_kwh)
    if base < 0:
        raise PricingError(f"base_eur_per_kwh must not be negative, not {base:g}")
    factor = _finite("comfort_factor", comfort_factor)
    if factor < 0:
        raise PricingError(f"comfort_factor must not be negative, not {factor:g} (a higher priority never costs less)")
    return base * (1.0 + factor * p)


def peak_power_kw(offer: FlexOffer) -> float:
    """The largest power (kW) any schedule of `offer` can draw or inject: max |bound| / step hours."""
    step_h = offer.slice_s / 3600.0
    peak_kwh = max(
        (abs(bound) for profile in offer.profiles for s in profile.slices for bound in s.energy), default=0.0
    )
    return peak_kwh / step_h


def route_for(offer: FlexOffer, *, large_kw_threshold: float) -> Route:
    """FMAN or FMAR for `offer` (module docstring): direct offers of large loads go to the FMAR."""
    threshold = _finite("large_kw_threshold", large_kw_threshold)
    if threshold <= 0:
        raise PricingError(f"large_kw_threshold must be positive, not {threshold:g} kW")
    if offer.mode is not Mode.DIRECT:
        return Route.FMAN
    return Route.FMAR if peak_power_kw(offer) >= threshold else Route.FMAN

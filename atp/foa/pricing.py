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

`RoutedClient` is an FOA's exchange client that follows this rule: one `ExchangeInterface`
over two receivers, submitting each offer to the one `route_for` picks and sending every later
call about an offer to the receiver that holds it. A replacement (PUT) that would change
receivers is refused with ConflictError, which makes the FOA withdraw the old offer and submit
the new one (its replacement rule), so it lands where it belongs.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np

from atp.flexoffer import FlexOffer, Measurement, Mode
from atp.foa.errors import GenerationError
from atp.interface import ConflictError, Event, ExchangeInterface, FlexRequest, NotFoundError, TimeSeries

__all__ = [
    "DEFAULT_COMFORT_FACTOR",
    "PRIORITY_CLASSES",
    "PricingError",
    "Route",
    "RoutedClient",
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


def _threshold(large_kw_threshold: float) -> float:
    threshold = _finite("large_kw_threshold", large_kw_threshold)
    if threshold <= 0:
        raise PricingError(f"large_kw_threshold must be positive, not {threshold:g} kW")
    return threshold


def route_for(offer: FlexOffer, *, large_kw_threshold: float) -> Route:
    """FMAN or FMAR for `offer` (module docstring): direct offers of large loads go to the FMAR."""
    threshold = _threshold(large_kw_threshold)
    if offer.mode is not Mode.DIRECT:
        return Route.FMAN
    return Route.FMAR if peak_power_kw(offer) >= threshold else Route.FMAN


class RoutedClient:
    """One issuer's `ExchangeInterface` over an FMAN and an FMAR, routing by `route_for`.

    `fman` and `fmar` are the issuer's clients of the two receivers (the same party). `submit`
    sends an offer where `route_for(offer, large_kw_threshold=...)` says and remembers the
    receiver of its id; `update`, `withdraw`, `get` and measurements go to that receiver (an id
    it does not know is looked up at the FMAN, then the FMAR). `active`, `between` and `events`
    join both receivers (event sequence numbers are per receiver), `timeseries` sums them,
    `subscribe` follows both; buyers' requests go to the FMAR (only a market takes them).
    `routed` counts the offers submitted per route.
    """

    def __init__(self, fman: ExchangeInterface, fmar: ExchangeInterface, *, large_kw_threshold: float) -> None:
        if fman.party != fmar.party:
            raise PricingError(f"the FMAN client is party {fman.party!r}, the FMAR client {fmar.party!r}: one issuer")
        self.party = fman.party
        self.large_kw_threshold = _threshold(large_kw_threshold)
        self._clients = {Route.FMAN: fman, Route.FMAR: fmar}
        self._route_of: dict[str, Route] = {}
        self.routed = {Route.FMAN: 0, Route.FMAR: 0}

    def route(self, offer: FlexOffer) -> Route:
        """The receiver `offer` goes to."""
        return route_for(offer, large_kw_threshold=self.large_kw_threshold)

    def _holder(self, offer_id: str) -> Route:
        route = self._route_of.get(offer_id)
        if route is not None:
            return route
        for candidate in (Route.FMAN, Route.FMAR):
            try:
                self._clients[candidate].get(offer_id)
            except NotFoundError:
                continue
            self._route_of[offer_id] = candidate
            return candidate
        raise NotFoundError(f"no offer {offer_id!r} for party {self.party!r} at the FMAN or the FMAR")

    def submit(self, offer: FlexOffer, *, idempotency_key: str | None = None) -> FlexOffer:
        route = self.route(offer)
        answer = self._clients[route].submit(offer, idempotency_key=idempotency_key)
        if answer.id is not None:
            if answer.id not in self._route_of:
                self.routed[route] += 1
            self._route_of[answer.id] = route
        return answer

    def update(self, offer_id: str, offer: FlexOffer) -> FlexOffer:
        holder, route = self._holder(offer_id), self.route(offer)
        if route is not holder:
            raise ConflictError(
                f"offer {offer_id} is held by the {holder.value.upper()}; its replacement goes to the "
                f"{route.value.upper()} (peak power vs large_kw_threshold {self.large_kw_threshold:g} kW): "
                "withdraw it and submit the new offer"
            )
        return self._clients[holder].update(offer_id, offer)

    def withdraw(self, offer_id: str) -> FlexOffer:
        return self._clients[self._holder(offer_id)].withdraw(offer_id)

    def get(self, offer_id: str) -> FlexOffer:
        return self._clients[self._holder(offer_id)].get(offer_id)

    def active(self) -> list[FlexOffer]:
        return [o for c in self._clients.values() for o in c.active()]

    def between(self, start: datetime, end: datetime) -> list[FlexOffer]:
        return [o for c in self._clients.values() for o in c.between(start, end)]

    def post_measurements(self, measurements: Sequence[Measurement]) -> int:
        by_route: dict[Route, list[Measurement]] = {}
        for m in measurements:
            by_route.setdefault(self._holder(m.flex_offer_id), []).append(m)
        return sum(self._clients[route].post_measurements(ms) for route, ms in by_route.items())

    def timeseries(self, kind: str, start: datetime, end: datetime, *, slice_s: int) -> TimeSeries:
        series = [c.timeseries(kind, start, end, slice_s=slice_s) for c in self._clients.values()]
        values = np.sum([np.asarray(s.values, dtype=float) for s in series], axis=0)
        return TimeSeries(start, slice_s, tuple(float(v) for v in values))

    def events(self, *, after: int = 0) -> list[Event]:
        return sorted((e for c in self._clients.values() for e in c.events(after=after)), key=lambda e: e.time)

    def post_request(self, request: FlexRequest, *, idempotency_key: str | None = None) -> FlexRequest:
        return self._clients[Route.FMAR].post_request(request, idempotency_key=idempotency_key)

    def get_request(self, request_id: str) -> FlexRequest:
        return self._clients[Route.FMAR].get_request(request_id)

    def requests(self) -> list[FlexRequest]:
        return self._clients[Route.FMAR].requests()

    def withdraw_request(self, request_id: str) -> FlexRequest:
        return self._clients[Route.FMAR].withdraw_request(request_id)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        stops = [c.subscribe(callback) for c in self._clients.values()]

        def unsubscribe() -> None:
            for stop in stops:
                stop()

        return unsubscribe

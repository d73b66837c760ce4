"""Transport of flexibility between market zones (D2.1 F2.FMAR4, implicit capacity trading).

A zone is a congestion point (`offer.location.congestion_point`, `request.congestion_point`);
offers and requests without one sit in the default zone (`DEFAULT_ZONE`). Flexibility bought
in one zone may be delivered from another only over a `TransportLink` the DSO publishes: each
kWh moved from `from_zone` to `to_zone` costs `fee_eur_per_kwh`, and at most `capacity_kwh`
may move per step in that direction (a link per direction; both products, upward and downward
regulation, share the capacity). The clearing pays the fees, so the price of flexibility in a
zone implicitly carries the cost of bringing it there.

`hub_links` adds the links that let a request without a congestion point (a BRP balancing its
whole portfolio) buy from offers located at any congestion point, while a congestion point's
request (a DSO relieving it) can only be met by offers at that point: one link from every
congestion-point zone into the default zone, never back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from atp.errors import Problem
from atp.fmar.errors import InvalidRequestError

__all__ = ["DEFAULT_ZONE", "TransportLink", "check_links", "hub_links", "zone_name"]

DEFAULT_ZONE = ""  # the zone of offers and requests without a congestion point


def zone_name(congestion_point: str | None) -> str:
    """The zone of a congestion point; None (no congestion point) is the default zone."""
    return DEFAULT_ZONE if congestion_point is None else congestion_point


@dataclass(frozen=True)
class TransportLink:
    """Moving flexibility from one zone to another: a fee per kWh and a capacity per step.

    `capacity_kwh` is per `slice_s` step and per direction (math.inf = unlimited); the
    opposite direction is its own link.
    """

    from_zone: str
    to_zone: str
    fee_eur_per_kwh: float
    capacity_kwh: float


def check_links(links: Sequence[TransportLink]) -> tuple[TransportLink, ...]:
    """The links as a tuple, or InvalidRequestError listing every bad fee, capacity or duplicate."""
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for i, link in enumerate(links):
        where = f"links[{i}]"
        if not isinstance(link, TransportLink):
            problems.append(Problem(where, f"{link!r} is not a TransportLink", "link"))
            continue
        if link.from_zone == link.to_zone:
            problems.append(Problem(where, f"goes from zone {link.from_zone!r} to itself", "link"))
        fee, cap = link.fee_eur_per_kwh, link.capacity_kwh
        if isinstance(fee, bool) or not isinstance(fee, int | float) or not math.isfinite(fee) or fee < 0:
            problems.append(Problem(f"{where}.fee_eur_per_kwh", f"{fee!r} must be a finite fee >= 0 EUR/kWh", "fee"))
        if isinstance(cap, bool) or not isinstance(cap, int | float) or math.isnan(cap) or cap < 0:
            problems.append(Problem(f"{where}.capacity_kwh", f"{cap!r} must be >= 0 kWh per step (or inf)", "cap"))
        key = (link.from_zone, link.to_zone)
        if key in seen:
            problems.append(Problem(where, f"a second link {key[0]!r} -> {key[1]!r}; give one per direction", "link"))
        seen.add(key)
    if problems:
        raise InvalidRequestError(problems)
    return tuple(links)


def hub_links(
    zones: Iterable[str],
    links: Sequence[TransportLink] = (),
    *,
    fee_eur_per_kwh: float = 0.0,
    capacity_kwh: float = math.inf,
) -> tuple[TransportLink, ...]:
    """`links` plus a link from every other zone into the default zone where none is given."""
    have = {(link.from_zone, link.to_zone) for link in links}
    extra = [
        TransportLink(z, DEFAULT_ZONE, float(fee_eur_per_kwh), float(capacity_kwh))
        for z in sorted(set(zones))
        if z != DEFAULT_ZONE and (z, DEFAULT_ZONE) not in have
    ]
    return (*links, *extra)

"""The DOMS interface of the market (D2.1 F2.FMAR7): congestion points in, prosumers and bids out.

The DSO's Distribution Observability and Management System registers a congestion point with
the energy variation it wants per step and the price it pays (`CongestionPoint`); the market
turns every registration into a local flexibility request for that point (a DSO local session
on demand, see `atp.fmar.calendar`), posted through the exchange interface as the DSO's own
buyer's request (`FlexRequest`, the buy side: it is bought, never sold), so the DSO reads what
cleared with `get_request` like any buyer. On request the market returns the prosumers relevant to a
point (the issuers of open offers located there, `offer.location.congestion_point`) and a
summary of the completed bids for a point: one `CompletedBid` per cleared request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from atp.fmar.market import FlexOfferMarket
from atp.fmar.model import Session
from atp.interface import FlexRequest

__all__ = ["CompletedBid", "CongestionPoint", "DomsInterface"]


@dataclass(frozen=True)
class CongestionPoint:
    """A congestion location and what relieves it: the desired change of consumption per step
    (kWh, negative = less) from `start` on, at up to `price_eur_per_kwh`."""

    point: str
    dso: str
    start: datetime
    slice_s: int
    desired_kwh: tuple[float, ...]
    price_eur_per_kwh: float


@dataclass(frozen=True)
class CompletedBid:
    """A cleared local request, summarised for the DOMS."""

    point: str
    session: str
    request_id: str | None
    buyer: str
    requested_kwh: float
    cleared_kwh: float
    buyer_pays_eur: float
    awards: tuple[tuple[str, str, float, float], ...]  # (offer id, issuer, delivered kWh, EUR)
    reason: str | None


class DomsInterface:
    """The market's face to a DOMS: register congestion points, list prosumers, summarise bids."""

    def __init__(self, market: FlexOfferMarket) -> None:
        self.market = market
        self._points: dict[str, list[tuple[CongestionPoint, FlexRequest | None]]] = {}
        self._tracked: dict[str, str] = {}  # buyer -> point, for tracked (standing) registrations

    def register(self, point: CongestionPoint, *, session: Session | str | None = None) -> FlexRequest:
        """Record the congestion point and post its request as the DSO (to `session`, or the first
        open local session covering it); the answer carries the request's id and session.

        Refused like any posted request: InvalidOfferError (422) naming the field, or why no
        session takes it."""
        name = session.name if isinstance(session, Session) else session
        request = FlexRequest(
            buyer=point.dso,
            start=point.start,
            slice_s=point.slice_s,
            volume_kwh=point.desired_kwh,
            cutoff_eur_per_kwh=point.price_eur_per_kwh,
            congestion_point=point.point,
            session=name,
        )
        answer = self.market.client(point.dso).post_request(request)
        self._points.setdefault(point.point, []).append((point, answer))
        return answer

    def track(self, point: CongestionPoint) -> None:
        """Record a congestion point whose volume the market operator itself keeps asking for
        (standing requests re-posted in rolling sessions, as the simulation does): its completed
        bids are the cleared results of its buyer, `point.dso`, whatever the request ids."""
        self._points.setdefault(point.point, []).append((point, None))
        self._tracked[point.dso] = point.point

    @property
    def points(self) -> list[str]:
        """The registered congestion points, sorted."""
        return sorted(self._points)

    def registrations(self, point: str) -> list[CongestionPoint]:
        """What the DOMS registered for `point`, in order."""
        return [p for p, _ in self._points.get(point, [])]

    def relevant_prosumers(self, point: str, *, now: datetime | None = None) -> list[str]:
        """Issuers of the open offers located at `point`, sorted and unique."""
        return sorted(
            {
                o.issuer
                for o in self.market.store.open_offers(now=now)
                if o.location is not None and o.location.congestion_point == point
            }
        )

    def completed_bids(self, point: str | None = None) -> list[CompletedBid]:
        """The cleared local requests for `point` (all points when None), in clearing order."""
        ids = {
            r.id: p for p, regs in self._points.items() if point is None or p == point for _, r in regs if r is not None
        }
        buyers = {b: p for b, p in self._tracked.items() if point is None or p == point}
        out = []
        for result in self.market.results:
            at = ids.get(result.request_id) or buyers.get(result.buyer)
            if at is None:
                continue
            out.append(
                CompletedBid(
                    point=at,
                    session=result.session,
                    request_id=result.request_id,
                    buyer=result.buyer,
                    requested_kwh=result.requested_total_kwh,
                    cleared_kwh=result.cleared_total_kwh,
                    buyer_pays_eur=result.buyer_pays_eur,
                    awards=tuple(
                        (a.offer_id, a.issuer, math.fsum(abs(d) for d in a.deviation_kwh), a.price_eur)
                        for a in result.awards
                    ),
                    reason=result.reason,
                )
            )
        return out

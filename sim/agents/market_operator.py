"""Market operator agent: runs the FMAR (atp.fmar) with a rolling session every step.

Buyers (the BRP, the DSO) leave standing requests: volumes per step they still want. At each
step the operator opens an intraday session for delivery from the next step over the market
horizon, posts every buyer's remaining volume as a request, clears it with the configured
mechanism (`market.mechanism`, with its pricing rule, transport links and time flexibility
from the market group), and subtracts what cleared. Direct offers arrive one step before they start, so a
rolling clearing is what lets them trade.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import mesa
import numpy as np

from atp.fmar import FlexOfferMarket, Request, Session, SessionKind, SessionResult, create_mechanism
from atp.interface import InProcessClient

__all__ = ["MarketOperator", "StandingRequest"]

_GATE_AFTER = timedelta(seconds=0.5)  # requests are posted, then the gate closes and the pool clears


@dataclass
class StandingRequest:
    """What a buyer still wants per step (kWh, + = more consumption), with its cut-off."""

    buyer: str
    cutoff_eur_per_kwh: float
    remaining_kwh: np.ndarray
    congestion_point: str | None = None


class MarketOperator(mesa.Agent):
    """The Flex-Offer Market's operator: sessions, requests and clearing."""

    def __init__(
        self,
        model: mesa.Model,
        *,
        market: FlexOfferMarket,
        start: datetime,
        slice_s: int,
        n_steps: int,
        horizon_steps: int,
    ) -> None:
        super().__init__(model)
        market_config = getattr(getattr(model, "config", None), "market", None)
        if market_config is not None and market_config.mechanism_options():
            # The configured pricing rule, transport links and time flexibility (market group).
            market.mechanism = create_mechanism(market_config.mechanism, **market_config.mechanism_options())
        self.market = market
        self.start = start
        self.slice_s = slice_s
        self.n_steps = n_steps
        self.horizon_steps = horizon_steps
        self.standing: dict[str, StandingRequest] = {}
        self.requested_kwh = np.zeros(n_steps)
        self.cleared_kwh = np.zeros(n_steps)

    def client(self, party: str) -> InProcessClient:
        return self.market.client(party)

    def post(self, request: Request, *, congestion_point: str | None = None) -> None:
        """Add a buyer's request to its standing volumes (a later request for a step replaces it)."""
        k0 = int((request.start - self.start).total_seconds() // self.slice_s)
        standing = self.standing.setdefault(
            request.buyer,
            StandingRequest(request.buyer, request.cutoff_eur_per_kwh, np.zeros(self.n_steps), congestion_point),
        )
        standing.cutoff_eur_per_kwh = request.cutoff_eur_per_kwh
        for i, v in enumerate(request.volume_kwh):
            if 0 <= k0 + i < self.n_steps:
                standing.remaining_kwh[k0 + i] = v
                self.requested_kwh[k0 + i] += abs(v)

    def clear(self, k: int, now: datetime) -> list[SessionResult]:
        """Open, fill and clear the rolling session of step k (delivery from step k+1)."""
        first = k + 1
        last = min(first + self.horizon_steps, self.n_steps)
        if first >= last:
            return []
        delivery_start = self.start + timedelta(seconds=first * self.slice_s)
        session = Session(
            name=f"intraday-{k:05d}",
            kind=SessionKind.INTRADAY,
            gate_closure=now + _GATE_AFTER,
            delivery_start=delivery_start,
            delivery_end=self.start + timedelta(seconds=last * self.slice_s),
            slice_s=self.slice_s,
            opens_at=None,
        )
        self.market.add_session(session)
        for standing in self.standing.values():
            volume = standing.remaining_kwh[first:last]
            if not np.any(np.abs(volume) > 1e-9):
                continue
            self.market.post_request(
                Request(
                    buyer=standing.buyer,
                    start=delivery_start,
                    slice_s=self.slice_s,
                    volume_kwh=tuple(float(v) for v in volume),
                    cutoff_eur_per_kwh=standing.cutoff_eur_per_kwh,
                    congestion_point=standing.congestion_point,
                    id=f"{standing.buyer}-{k:05d}",
                ),
                session=session,
            )
        results = self.market.run_session(session, now=session.gate_closure) if self.market.requests_of(session) else []
        for result in results:
            cleared = np.asarray(result.cleared_kwh, dtype=float)
            k0 = int((result.start - self.start).total_seconds() // self.slice_s)
            span = slice(k0, k0 + len(cleared))
            self.standing[result.buyer].remaining_kwh[span] -= cleared
            self.cleared_kwh[span] += np.abs(cleared)
        # Offers that lost their last chance hear it now: `rejected`, and they run their default.
        self.market.reject_expired(session.gate_closure)
        return results

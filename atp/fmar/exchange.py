"""The market's side of the exchange interface's buy side: buyers' requests in, results out.

A buyer posts a `FlexRequest` to the market's store (`POST /request`, `ExchangeInterface.post_request`).
The store validates it and hands it to the market's `RequestDesk` (the store's
`RequestHandler`), which turns it into a `Request` (`request_from_wire`) and posts it to a
session with `FlexOfferMarket.post_request`; a session that cannot take it refuses the post
(422, naming `session` or `start`). After the session clears, the market writes each result
back to the store (`result_to_wire`), where the buyer reads it (`GET /request/{id}`).

A buyer's demand never enters the market as an offer: `buy_side_offer_problems`, installed on
the market's store, refuses a Flex-Offer that is a buyer's request in the shape of an offer
(the DOMS FOA's label `doms`: a DSO's congestion request, whose energies are the reduction it
wants). Cleared as an offer it would be sold to the other buyers, and the DSO paid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atp.errors import InvalidOfferError, Problem
from atp.flexoffer import FlexOffer
from atp.fmar.errors import InvalidRequestError, SessionError
from atp.fmar.model import Request, SessionResult
from atp.foa.doms import DOMS_DEVICE
from atp.interface import FlexRequest, RequestAward, RequestResult

if TYPE_CHECKING:
    from atp.fmar.market import FlexOfferMarket

__all__ = ["RequestDesk", "buy_side_offer_problems", "request_from_wire", "result_to_wire"]


def request_from_wire(message: FlexRequest) -> Request:
    """The market's `Request` for a buyer's posted request (same buyer, grid, volumes, cut-off, id)."""
    return Request(
        buyer=message.buyer,
        start=message.start,
        slice_s=message.slice_s,
        volume_kwh=message.volume_kwh,
        cutoff_eur_per_kwh=message.cutoff_eur_per_kwh,
        congestion_point=message.congestion_point,
        id=message.id,
    )


def result_to_wire(result: SessionResult) -> RequestResult:
    """What the buyer reads of its cleared request: volumes per step, money, awards."""
    awards = tuple(
        RequestAward(
            offer_id=a.offer_id,
            issuer=a.issuer,
            deviation_start=a.deviation_start if a.deviation_start is not None else a.schedule.start,
            deviation_kwh=a.deviation_kwh,
            price_eur_per_kwh=a.price_eur_per_kwh,
            price_eur=a.price_eur,
        )
        for a in result.awards
    )
    return RequestResult(
        cleared_at=result.cleared_at,
        cleared_kwh=result.cleared_kwh,
        buyer_pays_eur=result.buyer_pays_eur,
        sellers_receive_eur=result.sellers_receive_eur,
        transport_fees_eur=result.transport_fees_eur,
        surplus_eur=result.surplus_eur,
        awards=awards,
        reason=result.reason,
    )


def buy_side_offer_problems(offer: FlexOffer) -> list[Problem]:
    """Why a market refuses `offer` as supply: it is a buyer's request (empty otherwise)."""
    if offer.device != DOMS_DEVICE:
        return []
    return [
        Problem(
            "device",
            f"{DOMS_DEVICE!r} marks a DSO's congestion request (DOMS FOA): a market buys it and never sells it. "
            "Post it as a buyer's request (POST /request, ExchangeInterface.post_request; "
            "atp.foa.doms.DomsFoa.submit does)",
            "side",
        )
    ]


class RequestDesk:
    """The `RequestHandler` of a market's store: places posted requests in the market's sessions."""

    def __init__(self, market: FlexOfferMarket) -> None:
        self.market = market
        self.ids: set[str] = set()  # the requests that came through the store, for their results

    def place(self, request: FlexRequest) -> str:
        """Post the request to its named session, or the open one that covers it; the session's name."""
        try:
            session = self.market.post_request(request_from_wire(request), session=request.session)
        except InvalidRequestError as exc:
            raise InvalidOfferError(exc.problems, what="request") from None
        except SessionError as exc:
            field = "session" if request.session is not None else "start"
            raise InvalidOfferError([Problem(field, str(exc), "session")], what="request") from None
        assert request.id is not None  # the store numbers a request before placing it
        self.ids.add(request.id)
        return session.name

    def withdraw(self, request: FlexRequest) -> None:
        """Take the request out of its session (ConflictError once the session's gate has closed)."""
        assert request.id is not None
        self.market.withdraw_request(request.id)

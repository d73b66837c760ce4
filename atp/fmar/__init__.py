"""The Flex-Offer Market (FMAR): market data, clearing mechanisms and the market service."""

from atp.fmar.errors import InvalidRequestError, InvalidSessionError, MarketError, SessionError, UnknownMechanismError
from atp.fmar.market import (
    RESULT_COLUMNS,
    FlexOfferMarket,
    Mechanism,
    SessionState,
    create_mechanism,
    mechanism_names,
    register_mechanism,
    results_frame,
)
from atp.fmar.model import Award, Bid, Rejection, Request, Session, SessionKind, SessionResult
from atp.fmar.one_sided_pool import OneSidedPool, bids_from_offers, clear_one_sided_pool

__all__ = [
    "RESULT_COLUMNS",
    "Award",
    "Bid",
    "FlexOfferMarket",
    "InvalidRequestError",
    "InvalidSessionError",
    "MarketError",
    "Mechanism",
    "OneSidedPool",
    "Rejection",
    "Request",
    "Session",
    "SessionError",
    "SessionKind",
    "SessionResult",
    "SessionState",
    "UnknownMechanismError",
    "bids_from_offers",
    "clear_one_sided_pool",
    "create_mechanism",
    "mechanism_names",
    "register_mechanism",
    "results_frame",
]

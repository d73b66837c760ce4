"""The Flex-Offer Market (FMAR): market data, clearing mechanisms and the market service."""

from atp.fmar.calendar import MarketCalendar, open_days
from atp.fmar.doms import CompletedBid, CongestionPoint, DomsInterface
from atp.fmar.errors import InvalidRequestError, InvalidSessionError, MarketError, SessionError, UnknownMechanismError
from atp.fmar.many_to_many import Clearing, MarketModel, build_model, clear_many_to_many
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
from atp.fmar.market_problem import BuyBid, MarketProblem, SellBid, SellOption
from atp.fmar.model import Award, Bid, Rejection, Request, Session, SessionKind, SessionResult
from atp.fmar.one_sided_pool import OneSidedPool, bids_from_offers, clear_one_sided_pool
from atp.fmar.pricing import Pricing
from atp.fmar.session_clearing import ManyToMany, SessionBids, clear_session, session_bids
from atp.fmar.transport import DEFAULT_ZONE, TransportLink, check_links, hub_links, zone_name
from atp.fmar.two_sided_pool import TwoSidedPool

__all__ = [
    "DEFAULT_ZONE",
    "RESULT_COLUMNS",
    "Award",
    "Bid",
    "BuyBid",
    "Clearing",
    "CompletedBid",
    "CongestionPoint",
    "DomsInterface",
    "FlexOfferMarket",
    "InvalidRequestError",
    "InvalidSessionError",
    "ManyToMany",
    "MarketCalendar",
    "MarketError",
    "MarketModel",
    "MarketProblem",
    "Mechanism",
    "OneSidedPool",
    "Pricing",
    "Rejection",
    "Request",
    "SellBid",
    "SellOption",
    "Session",
    "SessionBids",
    "SessionError",
    "SessionKind",
    "SessionResult",
    "SessionState",
    "TransportLink",
    "TwoSidedPool",
    "UnknownMechanismError",
    "bids_from_offers",
    "build_model",
    "check_links",
    "clear_many_to_many",
    "clear_one_sided_pool",
    "clear_session",
    "create_mechanism",
    "hub_links",
    "mechanism_names",
    "open_days",
    "register_mechanism",
    "results_frame",
    "session_bids",
    "zone_name",
]

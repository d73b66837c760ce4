"""The Flex-Offer Exchange Interface: one protocol, a receiver store, and its bindings.

Offers (supply) and buyers' requests (`FlexRequest`, demand) each have their own message and
routes, so a buyer's demand can never be read as an offer.

Bindings: `InProcessClient` (direct calls into an `OfferStore`) and the HTTP binding
(`create_app` serves a store, `HttpClient` talks to it, `ServerThread` runs a server on a
background thread). What a served receiver composes above the ATP parts (its KPIs, contracts
and bills, its FMAN or market and their loops) is in `atp.services`; this package imports
nothing from fman, fmar or foa.
"""

from atp.interface.auth import TokenFileError, TokenTable, load_tokens
from atp.interface.errors import (
    CommunicationError,
    ConflictError,
    ForbiddenError,
    InterfaceError,
    NotFoundError,
    UnauthorizedError,
)
from atp.interface.http_client import HttpClient
from atp.interface.http_server import PayloadTooLargeError, create_app
from atp.interface.inprocess import InProcessClient
from atp.interface.protocol import ExchangeInterface
from atp.interface.requests import (
    FlexRequest,
    RequestAward,
    RequestHandler,
    RequestRecord,
    RequestResult,
    RequestState,
    cleared_problems,
    validate_request,
)
from atp.interface.store import OPERATOR, Event, OfferCheck, OfferRecord, OfferStore, TimeSeries

__all__ = [
    "OPERATOR",
    "CommunicationError",
    "ConflictError",
    "Event",
    "ExchangeInterface",
    "FlexRequest",
    "ForbiddenError",
    "HttpClient",
    "InProcessClient",
    "InterfaceError",
    "NotFoundError",
    "OfferCheck",
    "OfferRecord",
    "OfferStore",
    "PayloadTooLargeError",
    "RequestAward",
    "RequestHandler",
    "RequestRecord",
    "RequestResult",
    "RequestState",
    "TimeSeries",
    "TokenFileError",
    "TokenTable",
    "UnauthorizedError",
    "cleared_problems",
    "create_app",
    "load_tokens",
    "validate_request",
]

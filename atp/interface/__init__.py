"""The Flex-Offer Exchange Interface: one protocol, a receiver store, and its bindings."""

from atp.interface.errors import ConflictError, ForbiddenError, InterfaceError, NotFoundError, UnauthorizedError
from atp.interface.inprocess import InProcessClient
from atp.interface.protocol import ExchangeInterface
from atp.interface.store import OPERATOR, Event, OfferRecord, OfferStore, TimeSeries

__all__ = [
    "OPERATOR",
    "ConflictError",
    "Event",
    "ExchangeInterface",
    "ForbiddenError",
    "InProcessClient",
    "InterfaceError",
    "NotFoundError",
    "OfferRecord",
    "OfferStore",
    "TimeSeries",
    "UnauthorizedError",
]

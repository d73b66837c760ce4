"""The Flex-Offer Exchange Interface (spec/interface.md) as one protocol class.

Everything that issues offers (an FOA, an FMAN bidding into an FMAR) and every buyer posting
requests to a market (a BRP, a DSO's DOMS FOA) talks to its receiver only through an
`ExchangeInterface`. Bindings implement it: `InProcessClient`
(a direct call into the receiver's `OfferStore`), the HTTP client (`HttpClient`), and the MQTT binding of a later issue.
Tests use the in-process binding, never a mock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from atp.flexoffer import FlexOffer, Measurement
from atp.interface.capacity import PublishedCapacity
from atp.interface.requests import FlexRequest
from atp.interface.store import Event, TimeSeries

__all__ = ["ExchangeInterface"]


@runtime_checkable
class ExchangeInterface(Protocol):
    """One issuing party's view of one receiver (D2.1 Table 6), and a buyer's (the `*_request` methods)."""

    party: str

    def submit(self, offer: FlexOffer, *, idempotency_key: str | None = None) -> FlexOffer:
        """POST /flexoffer: the accepted offer with its id, or InvalidOfferError (422)."""
        ...

    def update(self, offer_id: str, offer: FlexOffer) -> FlexOffer:
        """PUT /flexoffer/{id}: replace while not assigned; ConflictError (409) after."""
        ...

    def withdraw(self, offer_id: str) -> FlexOffer:
        """DELETE /flexoffer/{id}: withdraw before the operation starts; ConflictError after."""
        ...

    def get(self, offer_id: str) -> FlexOffer:
        """GET /flexoffer/{id}: the offer with its state and schedule; NotFoundError (404)."""
        ...

    def active(self) -> list[FlexOffer]:
        """GET /flexoffer: the caller's offers not yet settled."""
        ...

    def between(self, start: datetime, end: datetime) -> list[FlexOffer]:
        """GET /flexoffer/{from}/{to}: offers submitted or updated in [start, end)."""
        ...

    def post_measurements(self, measurements: Sequence[Measurement]) -> int:
        """POST /flexoffer/measurement: returns how many were stored."""
        ...

    def timeseries(self, kind: str, start: datetime, end: datetime, *, slice_s: int) -> TimeSeries:
        """GET /timeseries/{kind}/{from}/{to}: measurement, baseline or schedule."""
        ...

    def events(self, *, after: int = 0) -> list[Event]:
        """GET /flexoffer/stream: the caller's events after sequence number `after`."""
        ...

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Push the caller's events to `callback`; returns the unsubscribe function."""
        ...

    def post_request(self, request: FlexRequest, *, idempotency_key: str | None = None) -> FlexRequest:
        """POST /request: a buyer's request, answered open with its id and session; 422 naming
        every bad field; 404 from a receiver that takes no requests."""
        ...

    def get_request(self, request_id: str) -> FlexRequest:
        """GET /request/{id}: the request with its state and, once cleared, its result and awards."""
        ...

    def requests(self) -> list[FlexRequest]:
        """GET /request: the caller's requests, in posting order."""
        ...

    def withdraw_request(self, request_id: str) -> FlexRequest:
        """DELETE /request/{id}: withdraw before its session clears; ConflictError (409) after."""
        ...

    def publish_capacity(self, capacity: PublishedCapacity) -> PublishedCapacity:
        """PUT /capacity/{name}: a DSO publishes (or replaces) a grid capacity for the receiver's
        plan; answered with its publisher and time; 422 naming every bad field; 403 for a party
        that is not one of the receiver's grid operators."""
        ...

    def get_capacity(self, name: str) -> PublishedCapacity:
        """GET /capacity/{name}: the caller's capacity of that name."""
        ...

    def capacities(self) -> list[PublishedCapacity]:
        """GET /capacity: the caller's capacities in force, in publication order."""
        ...

    def withdraw_capacity(self, name: str) -> PublishedCapacity:
        """DELETE /capacity/{name}: withdraw it; the receiver plans without it from then on."""
        ...

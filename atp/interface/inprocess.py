"""In-process binding of the exchange interface: direct calls into a receiver's OfferStore.

The simulation's agents use it; it behaves exactly as the HTTP binding would (same errors,
same ownership rules), only without serialisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from atp.flexoffer import FlexOffer, Measurement
from atp.interface.capacity import PublishedCapacity
from atp.interface.requests import FlexRequest
from atp.interface.store import Event, OfferStore, TimeSeries

__all__ = ["InProcessClient"]


class InProcessClient:
    """`ExchangeInterface` for `party` against `store`, in the same process."""

    def __init__(self, store: OfferStore, party: str) -> None:
        self.store = store
        self.party = party

    def submit(self, offer: FlexOffer, *, idempotency_key: str | None = None) -> FlexOffer:
        return self.store.submit(self.party, offer, idempotency_key=idempotency_key)

    def update(self, offer_id: str, offer: FlexOffer) -> FlexOffer:
        return self.store.update(self.party, offer_id, offer)

    def withdraw(self, offer_id: str) -> FlexOffer:
        return self.store.withdraw(self.party, offer_id)

    def get(self, offer_id: str) -> FlexOffer:
        return self.store.get(self.party, offer_id)

    def active(self) -> list[FlexOffer]:
        return self.store.active(self.party)

    def between(self, start: datetime, end: datetime) -> list[FlexOffer]:
        return self.store.between(self.party, start, end)

    def post_measurements(self, measurements: Sequence[Measurement]) -> int:
        return self.store.post_measurements(self.party, measurements)

    def timeseries(self, kind: str, start: datetime, end: datetime, *, slice_s: int) -> TimeSeries:
        return self.store.timeseries(self.party, kind, start, end, slice_s=slice_s)

    def events(self, *, after: int = 0) -> list[Event]:
        return self.store.events(self.party, after=after)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        return self.store.subscribe(callback, party=self.party)

    def post_request(self, request: FlexRequest, *, idempotency_key: str | None = None) -> FlexRequest:
        return self.store.post_request(self.party, request, idempotency_key=idempotency_key)

    def get_request(self, request_id: str) -> FlexRequest:
        return self.store.get_request(self.party, request_id)

    def requests(self) -> list[FlexRequest]:
        return self.store.requests(self.party)

    def withdraw_request(self, request_id: str) -> FlexRequest:
        return self.store.withdraw_request(self.party, request_id)

    def publish_capacity(self, capacity: PublishedCapacity) -> PublishedCapacity:
        return self.store.publish_capacity(self.party, capacity)[0]

    def get_capacity(self, name: str) -> PublishedCapacity:
        return self.store.get_capacity(self.party, name)

    def capacities(self) -> list[PublishedCapacity]:
        return self.store.capacities(self.party)

    def withdraw_capacity(self, name: str) -> PublishedCapacity:
        return self.store.withdraw_capacity(self.party, name)

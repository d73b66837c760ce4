"""The receiver's own clock over the offer life cycle: offers start executing when their
operation begins and settle when it ends (spec/interface.md, offer states).

    accepted / assigned --(operation starts)--> executing --(operation ends)--> settled

A receiver (an FMAN or an FMAR) moves its offers by time, not on a client's word: an offer
whose operation (its assigned schedule, else its default schedule, else its earliest start)
has begun starts executing; one whose schedule has ended by `until` settles, so its
measurements are billed and it leaves the active lists. An offer with no schedule at all
settles as soon as it starts (there is nothing to execute). The simulation calls `advance`
at the end of every step (`until` = the step's end); a served receiver runs a `LifecycleLoop`
on wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from atp.flexoffer import OfferState
from atp.interface.periodic import PeriodicTask
from atp.interface.store import OfferStore

__all__ = ["LifecycleLoop", "Moved", "advance"]

_OPEN = (OfferState.ACCEPTED, OfferState.ASSIGNED, OfferState.EXECUTING)


@dataclass(frozen=True)
class Moved:
    """What one `advance` changed: the ids that started executing and those that settled."""

    started: tuple[str, ...]
    settled: tuple[str, ...]


def advance(store: OfferStore, now: datetime, *, until: datetime | None = None) -> Moved:
    """Start the offers whose operation has begun by `now` and settle those whose schedule
    ends by `until` (default `now`); each change is the store's own operation (committed, and
    told to subscribers, as it happens)."""
    until = until if until is not None else now
    started: list[str] = []
    settled: list[str] = []
    for record in store.records(_OPEN):
        offer_id = record.offer.id
        if offer_id is None:
            continue
        if record.state is not OfferState.EXECUTING:
            start = record.operation_start()
            if start is None or start > now:
                continue
            store.start(offer_id)
            started.append(offer_id)
        schedule = record.schedule or record.offer.default_schedule
        if schedule is None:
            store.settle(offer_id)
            settled.append(offer_id)
            continue
        end = schedule.start + timedelta(seconds=record.offer.slice_s * len(schedule.energy))
        if end <= until:
            store.settle(offer_id)
            settled.append(offer_id)
    return Moved(tuple(started), tuple(settled))


class LifecycleLoop(PeriodicTask[Moved]):
    """`advance` every `every_s` seconds of wall-clock time on a background thread (a served
    receiver), holding `lock` (the HTTP app's store lock) while it works; a failed round is
    logged and kept in `errors`, and the loop goes on."""

    name = "lifecycle"

    def __init__(self, store: OfferStore, **options: Any) -> None:
        super().__init__(**options)
        self.store = store

    def work(self, now: datetime) -> Moved:
        """Start and settle what `now` has reached."""
        return advance(self.store, now)

    def advance_now(self) -> Moved | None:
        """One round at the clock's time (None when it failed; the error is in `errors`)."""
        return self.run_now()

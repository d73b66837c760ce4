"""The FMAN's portfolio: start-aligned aggregates kept up to date as offers come and go.

`aggregate_start_aligned` aggregates a list of offers from scratch. A `Portfolio` gives the
same aggregates (the same members in the same order, the same bounds) but keeps them between
planning rounds and, when offers arrive, change or leave, rebuilds only the aggregates the
change reaches (F2.FMAN1, incremental aggregation):

- changes are collected (`put`, `remove`, or `on_event` fed by the store's event stream) and
  applied by `refresh(now)`, which also re-boxes members whose box depends on time (implicit
  or conditional offers, or an earliest start that `now` has passed) and drops offers whose
  assignment deadline has passed;
- within one group key (slice, mode, congestion point, price band, keeps profile; `member_key`)
  members are split greedily in
  `member_order`, and the greedy scan starts afresh at every aggregate's first member. So
  after a change at position p of the sorted members, the aggregates before the one holding
  position p - 1 are unchanged; the scan restarts there and stops as soon as a new aggregate
  begins at a member that began an old aggregate in the unchanged tail. Everything after is
  reused as it was, ids included.

Every offer put is in exactly one aggregate, in `unaggregated` with the reason (an offer of a
mode the portfolio does not hold included: it is listed, never dropped silently), or dropped
because its deadline passed; `result(now)` equals the from-scratch aggregation of the same
offers at `now` (tested as a property over random sequences of changes).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from atp.flexoffer import FlexOffer, Mode
from atp.fman.aggregation import (
    Aggregate,
    AggregationParams,
    AggregationResult,
    MemberBox,
    Unaggregated,
    build_aggregate,
    ceil_to_grid,
    member_box,
    member_key,
    member_order,
    member_size_kwh,
    starts_new_group,
)
from atp.interface.store import Event

__all__ = ["Portfolio", "RefreshStats"]

_GroupKey = tuple[int, str, str, int, bool]
_LEAVING = frozenset({"assigned", "executing", "settled", "rejected", "withdrawn"})


@dataclass(frozen=True)
class RefreshStats:
    """What one `refresh` did: members changed (added, replaced, re-boxed or removed) and
    aggregates rebuilt versus kept as they were."""

    changed_members: int
    rebuilt_aggregates: int
    kept_aggregates: int


@dataclass
class _Bucket:
    """The members of one group key, sorted, and their aggregates (one per group, in order)."""

    members: list[MemberBox]
    groups: list[tuple[MemberBox, ...]]
    aggregates: list[Aggregate]


def _same_box(a: MemberBox, b: MemberBox) -> bool:
    return (
        a.offer is b.offer
        and a.profile == b.profile
        and a.earliest == b.earliest
        and a.flexibility_steps == b.flexibility_steps
        and a.keeps_profile == b.keeps_profile
        and np.array_equal(a.lower_kwh, b.lower_kwh)
        and np.array_equal(a.upper_kwh, b.upper_kwh)
    )


def _time_dependent(offer: FlexOffer) -> bool:
    """Whether the offer's box depends on `now` beyond clipping its earliest start."""
    return offer.start_after is None or offer.start_before is None or offer.conditional is not None


class Portfolio:
    """Aggregates of the offers put in, maintained incrementally (see the module docstring).

    `modes` limits the aggregates to offers of those trading modes; an offer of another mode
    is held in `unaggregated` with the reason (never dropped silently).
    """

    def __init__(
        self,
        *,
        params: AggregationParams | None = None,
        issuer: str = "fman",
        modes: Collection[Mode] | None = None,
    ) -> None:
        self.params = params or AggregationParams()
        self.issuer = issuer
        self.modes = frozenset(modes) if modes is not None else None
        self._offers: dict[str, FlexOffer] = {}  # every offer in the portfolio, by id
        self._boxes: dict[str, MemberBox] = {}  # offers that are members of an aggregate
        self._unaggregated: dict[str, str] = {}  # offers that are not, with the reason
        self._pending: dict[str, FlexOffer | None] = {}  # changes since the last refresh (None = removal)
        self._buckets: dict[_GroupKey, _Bucket] = {}
        self._now: datetime | None = None
        self._next_id = 1

    # -- changes ------------------------------------------------------------------------------
    def put(self, offer: FlexOffer) -> None:
        """Add an offer, or replace the offer with its id; applied at the next `refresh`."""
        if offer.id is None:
            raise ValueError("offer.id: the portfolio keeps offers by id; this offer has none")
        self._pending[offer.id] = offer

    def remove(self, offer_id: str) -> None:
        """Take an offer out (assigned, withdrawn, rejected...); applied at the next `refresh`."""
        if offer_id in self._offers or offer_id in self._pending:
            self._pending[offer_id] = None

    def on_event(self, event: Event) -> None:
        """Follow an offer store's event stream: accepted or updated offers are put, offers
        that leave the accepted state are removed (subscribe this to `OfferStore.subscribe`)."""
        offer_id = event.offer.id or ""
        if event.kind in ("accepted", "updated"):
            self.put(event.offer)
        elif event.kind in _LEAVING:
            self.remove(offer_id)

    def __len__(self) -> int:
        """Offers in the portfolio after the pending changes."""
        ids = set(self._offers)
        for offer_id, offer in self._pending.items():
            (ids.add if offer is not None else ids.discard)(offer_id)
        return len(ids)

    # -- refresh ------------------------------------------------------------------------------
    def refresh(self, now: datetime) -> RefreshStats:
        """Apply pending changes and the passing of time up to `now`; rebuild what they reach."""
        changed: dict[str, FlexOffer | None] = dict(self._pending)
        self._pending.clear()
        moved = self._now is None or now != self._now
        if moved:
            for offer_id, offer in self._offers.items():
                if offer_id in changed:
                    continue
                if offer.assignment_before is not None and offer.assignment_before < now:
                    changed[offer_id] = None  # its deadline passed: the FMAN may no longer plan it
                    continue
                box = self._boxes.get(offer_id)
                if box is None or _time_dependent(offer) or box.earliest < ceil_to_grid(now, offer.slice_s):
                    changed[offer_id] = offer
        self._now = now

        # New boxes of the changed offers, and the buckets they touch.
        touched: dict[_GroupKey, dict[str, MemberBox | None]] = {}
        n_changed = 0
        for offer_id, offer in changed.items():
            old = self._boxes.get(offer_id)
            new: MemberBox | None = None
            if offer is None or (offer.assignment_before is not None and offer.assignment_before < now):
                self._offers.pop(offer_id, None)
                self._unaggregated.pop(offer_id, None)
            else:
                self._offers[offer_id] = offer
                box = self._box(offer, now)
                if isinstance(box, str):
                    self._unaggregated[offer_id] = box
                else:
                    self._unaggregated.pop(offer_id, None)
                    new = old if old is not None and _same_box(old, box) else box
            if new is old:
                continue
            n_changed += 1
            if old is not None:
                touched.setdefault(member_key(old), {})[offer_id] = None
                del self._boxes[offer_id]
            if new is not None:
                touched.setdefault(member_key(new), {})[offer_id] = new
                self._boxes[offer_id] = new

        rebuilt = 0
        for key, changes in touched.items():
            rebuilt += self._resplit(key, changes, now)
        kept = sum(len(b.aggregates) for b in self._buckets.values()) - rebuilt
        return RefreshStats(changed_members=n_changed, rebuilt_aggregates=rebuilt, kept_aggregates=kept)

    def _box(self, offer: FlexOffer, now: datetime) -> MemberBox | str:
        """The offer's member box, or why it is not aggregated (its mode, or `member_box`'s reason)."""
        if self.modes is not None and offer.mode not in self.modes:
            held = ", ".join(sorted(m.value for m in self.modes)) or "no"
            return f"it is a {offer.mode.value} offer; this portfolio aggregates {held} offers only"
        return member_box(
            offer,
            now,
            min_box_share=self.params.min_box_share,
            price_band_eur_per_kwh=self.params.price_band_eur_per_kwh,
        )

    def _resplit(self, key: _GroupKey, changes: dict[str, MemberBox | None], now: datetime) -> int:
        """Re-split one bucket after `changes` (offer id -> its new box, None = gone); returns
        the number of aggregates built."""
        bucket = self._buckets.get(key) or _Bucket([], [], [])
        old = bucket.members
        kept = [m for m in old if m.offer_id not in changes]
        new = sorted(kept + [b for b in changes.values() if b is not None], key=member_order)
        if not new:
            self._buckets.pop(key, None)
            return 0

        # Common prefix and suffix of the old and new member lists (by identity).
        p = 0
        while p < min(len(old), len(new)) and old[p] is new[p]:
            p += 1
        q = 0
        while q < min(len(old), len(new)) - p and old[-1 - q] is new[-1 - q]:
            q += 1

        # Where each old group starts in the old list; the groups that end before position
        # p - 1 are kept, the scan restarts at the start of the group holding p - 1.
        starts: list[int] = []
        i = 0
        for g in bucket.groups:
            starts.append(i)
            i += len(g)
        first_group = 0
        while first_group + 1 < len(starts) and starts[first_group + 1] <= p - 1:
            first_group += 1
        groups = list(bucket.groups[:first_group])
        aggregates = list(bucket.aggregates[:first_group])
        old_group_at = {start: n for n, start in enumerate(starts)}
        tail = len(new) - q  # new[j] is old[j - len(new) + len(old)] for every j >= tail

        built = 0
        j = starts[first_group] if starts else 0
        while j < len(new):
            n_old = old_group_at.get(j - len(new) + len(old)) if j >= tail else None
            if n_old is not None:  # the scan has realigned with an old aggregate: reuse the rest
                groups.extend(bucket.groups[n_old:])
                aggregates.extend(bucket.aggregates[n_old:])
                break
            current = [new[j]]
            size_kwh = member_size_kwh(new[j])
            j += 1
            while j < len(new) and not starts_new_group(current, size_kwh, new[j], self.params):
                current.append(new[j])
                size_kwh += member_size_kwh(new[j])
                j += 1
            groups.append(tuple(current))
            aggregates.append(self._build(current, now))
            built += 1
        self._buckets[key] = _Bucket(new, groups, aggregates)
        return built

    def _build(self, members: list[MemberBox], now: datetime) -> Aggregate:
        agg_id = f"{self.issuer}-agg-{self._next_id:06d}"
        self._next_id += 1
        return build_aggregate(members, issuer=self.issuer, agg_id=agg_id, now=now)

    # -- results ------------------------------------------------------------------------------
    def result(self, now: datetime) -> AggregationResult:
        """Refresh to `now` and return the aggregates (in group-key order, as
        `aggregate_start_aligned` gives them) and the offers that could not be aggregated."""
        self.refresh(now)
        aggregates = tuple(a for key in sorted(self._buckets) for a in self._buckets[key].aggregates)
        unaggregated = tuple(Unaggregated(i, r) for i, r in self._unaggregated.items())
        return AggregationResult(aggregates, unaggregated)

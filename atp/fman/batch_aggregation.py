"""Start-aligned aggregation and disaggregation over arrays: the fast path for many offers.

The object path (`aggregation.py`) handles one `MemberBox` at a time; this module does the same
work on a structure of arrays, with numpy over all members at once (`aggregate_batch` and
`disaggregate_batch` loop in Python only over cache-sized chunks of members, about 2^15 at a
time, and over the O(log n) levels of binary lifting and pointer doubling, never over members
or aggregates):

- `MemberBatch`: member boxes (after box reduction) as arrays: group key, `slice_s`, earliest
  start (seconds since the epoch, on the grid), time flexibility in steps, a tie-break rank and
  the per-step bounds in CSR layout (`step_offset`, `lower_kwh`, `upper_kwh`).
- `aggregate_batch(members, params)` -> `AggregateBatch`: per aggregate its start, time
  flexibility, per-step bounds (CSR), losses and members; per member its aggregate and offset.
- `disaggregate_batch(members, aggregates, shift_steps, energy_kwh)` -> `MemberSchedules`: a
  start and an energy vector per member, for one schedule (shift + energy) per aggregate.

Same rule, same numbers as the object path. Members are sorted by (key, earliest, flexibility,
rank) and grouped greedily exactly as `aggregation.split_members` does: a member opens a new aggregate
when its earliest start lies more than `start_tolerance_s` after the aggregate's first, when
the spread (max - min) of the time flexibilities of the aggregate with it would exceed
`max_time_flex_loss_s // slice_s` steps, when its duration differs from the first member's by
more than `max_duration_diff_steps`, or when the aggregate is full (`max_group_size`; the
energy bound `max_group_energy_kwh` is refused here: use the object path). The greedy scan is
computed without a scan: for every position i, `next[i]` is where an aggregate opened at i
would end (the minimum of the key's end, the tolerance end by `searchsorted`, i +
`max_group_size`, and the flexibility-spread end by binary lifting over a sparse table of
running max/min); the aggregates then open at the positions reachable from each key's first
member by following `next`, found by pointer doubling in O(n log n). Bounds are summed with
`np.bincount` in member order, i.e. in the same order of additions as the object path, so the
sums are bitwise equal; disaggregation uses the same fraction formula, so member schedules are
bitwise equal too (tests/test_fman_batch.py checks both). Only `energy_flex_loss_kwh` is summed
in another order (equal up to float rounding).

Conversions: `member_boxes(offers, now=)` reduces offers to boxes as `aggregate_start_aligned`
does; `MemberBatch.from_boxes` lays boxes out (key codes in the object path's key order, rank =
offer-id order); `aggregate_start_aligned_batch` gives the very `AggregationResult` of
`aggregate_start_aligned` (aggregates built by the object builder from the batch grouping, so
box reduction and building the objects still cost what they cost on the object path: the speed
is in the arrays); `batch_from_aggregates` and `disaggregate_many` disaggregate many
`Aggregate` schedules at once into the `Schedule` lists `disaggregate` gives (about 3x the
per-aggregate loop, which is dominated by making the Schedule objects).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.errors import ValidationError
from atp.flexoffer import TOLERANCE_KWH, DefaultSchedule, FlexOffer, Schedule
from atp.fman.aggregation import (
    Aggregate,
    AggregationParams,
    AggregationResult,
    MemberBox,
    Unaggregated,
    build_aggregate,
    member_box,
    member_key,
)
from atp.fman.errors import DisaggregationError

__all__ = [
    "AggregateBatch",
    "MemberBatch",
    "MemberSchedules",
    "aggregate_batch",
    "aggregate_start_aligned_batch",
    "batch_from_aggregates",
    "disaggregate_batch",
    "disaggregate_many",
    "member_boxes",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WIDTH_EPS_KWH = 1e-12  # the object path's threshold for an empty range
_DEFAULT_PARAMS = AggregationParams()


def _ints(a: object) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64).reshape(-1))


def _floats(a: object) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64).reshape(-1))


def _read_only(obj: object) -> None:
    for value in vars(obj).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _seconds(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(seconds=1)


# -- members ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MemberBatch:
    """Member boxes as arrays, one row per member (read-only).

    Attributes:
        key: int64 group code; only members with the same code share an aggregate, and
            aggregates come in order of code (the object path's (slice_s, mode, congestion
            point, keeps profile) order when built by `from_boxes`).
        slice_s: int64 step length in seconds (the same for every member of a key).
        earliest_s: int64 earliest start, seconds since the Unix epoch, on the `slice_s` grid.
        flexibility_steps: int64 allowed shifts minus one (>= 0).
        rank: int64 tie-break among equal (key, earliest, flexibility): the offer-id order.
        step_offset: int64 CSR offsets into the per-step arrays (n_members + 1 entries).
        lower_kwh, upper_kwh: float64 box bounds per step, upper >= lower.
        profile_flex_kwh: float64 per member, sum(upper - lower) of its chosen profile's slice
            bounds (for the energy-flexibility loss; the box's own range when not known).
        alone: bool per member, True when it keeps its profile (`MemberBox.keeps_profile`):
            it forms an aggregate of its own (None: no member does).
    """

    key: np.ndarray
    slice_s: np.ndarray
    earliest_s: np.ndarray
    flexibility_steps: np.ndarray
    rank: np.ndarray
    step_offset: np.ndarray
    lower_kwh: np.ndarray
    upper_kwh: np.ndarray
    profile_flex_kwh: np.ndarray
    alone: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.key)
        alone = np.zeros(n, dtype=bool) if self.alone is None else np.asarray(self.alone, dtype=bool).reshape(-1)
        if len(alone) != n:
            raise ValidationError(f"MemberBatch.alone has {len(alone)} entries for {n} members")
        object.__setattr__(self, "alone", np.ascontiguousarray(alone))
        for name in ("slice_s", "earliest_s", "flexibility_steps", "rank", "profile_flex_kwh"):
            if len(getattr(self, name)) != n:
                raise ValidationError(f"MemberBatch.{name} has {len(getattr(self, name))} entries for {n} members")
        if len(self.step_offset) != n + 1 or self.step_offset[0] != 0:
            raise ValidationError(f"MemberBatch.step_offset must have {n + 1} entries starting at 0")
        steps = np.diff(self.step_offset)
        if np.any(steps < 1):
            raise ValidationError(f"MemberBatch member {int(np.flatnonzero(steps < 1)[0])} has no steps")
        total = int(self.step_offset[-1])
        if len(self.lower_kwh) != total or len(self.upper_kwh) != total:
            raise ValidationError(f"MemberBatch.lower_kwh and upper_kwh must have {total} entries (step_offset[-1])")
        if np.any(self.slice_s <= 0):
            raise ValidationError("MemberBatch.slice_s must be positive (e.g. 900)")
        if np.any(self.flexibility_steps < 0):
            raise ValidationError("MemberBatch.flexibility_steps must not be negative")
        if np.any(self.earliest_s % self.slice_s):
            bad = int(np.flatnonzero(self.earliest_s % self.slice_s)[0])
            raise ValidationError(f"MemberBatch.earliest_s[{bad}] is not on the {int(self.slice_s[bad])} s grid")
        if np.any(self.upper_kwh < self.lower_kwh):
            raise ValidationError("MemberBatch.upper_kwh must not be below lower_kwh")
        if n:
            order = np.argsort(self.key, kind="stable")
            k, s = self.key[order], self.slice_s[order]
            same = k[1:] == k[:-1]
            if np.any(same & (s[1:] != s[:-1])):
                raise ValidationError("MemberBatch: members with the same key must have the same slice_s")
        _read_only(self)

    @property
    def n_members(self) -> int:
        """Number of members."""
        return len(self.key)

    def __len__(self) -> int:
        return self.n_members

    @property
    def n_steps(self) -> np.ndarray:
        """Steps of each member's box."""
        return np.diff(self.step_offset)

    @classmethod
    def from_arrays(
        cls,
        *,
        key: object,
        slice_s: object,
        earliest_s: object,
        flexibility_steps: object,
        n_steps: object,
        lower_kwh: object,
        upper_kwh: object,
        rank: object | None = None,
        profile_flex_kwh: object | None = None,
    ) -> MemberBatch:
        """A batch from plain arrays (`n_steps` per member; rank defaults to the row number,
        profile_flex_kwh to the box's own range, i.e. no energy-flexibility loss)."""
        k = _ints(key)
        counts = _ints(n_steps)
        lower, upper = _floats(lower_kwh), _floats(upper_kwh)
        offsets = _offsets(counts)
        if profile_flex_kwh is None:
            width = upper - lower
            profile_flex = np.add.reduceat(width, offsets[:-1]) if len(k) and len(width) else np.zeros(len(k))
        else:
            profile_flex = _floats(profile_flex_kwh)
        return cls(
            key=k,
            slice_s=_ints(slice_s),
            earliest_s=_ints(earliest_s),
            flexibility_steps=_ints(flexibility_steps),
            rank=np.arange(len(k), dtype=np.int64) if rank is None else _ints(rank),
            step_offset=offsets,
            lower_kwh=lower,
            upper_kwh=upper,
            profile_flex_kwh=profile_flex,
        )

    @classmethod
    def from_boxes(cls, boxes: Sequence[MemberBox]) -> MemberBatch:
        """The boxes as a batch: key codes in the object path's key order, rank in offer-id order."""
        keys = [member_key(b) for b in boxes]
        distinct = sorted(set(keys))
        code = {k: i for i, k in enumerate(distinct)}
        ids = np.array([b.offer_id for b in boxes], dtype=str)
        rank = np.empty(len(boxes), dtype=np.int64)
        rank[np.argsort(ids, kind="stable")] = np.arange(len(boxes))
        profile_flex = [
            float((b.offer.profiles[b.profile].upper_kwh() - b.offer.profiles[b.profile].lower_kwh()).sum())
            for b in boxes
        ]
        return cls(
            key=_ints([code[k] for k in keys]),
            slice_s=_ints([b.offer.slice_s for b in boxes]),
            earliest_s=_ints([_seconds(b.earliest) for b in boxes]),
            flexibility_steps=_ints([b.flexibility_steps for b in boxes]),
            rank=rank,
            step_offset=_offsets(_ints([b.n_steps for b in boxes])),
            lower_kwh=_floats(np.concatenate([b.lower_kwh for b in boxes]) if boxes else []),
            upper_kwh=_floats(np.concatenate([b.upper_kwh for b in boxes]) if boxes else []),
            profile_flex_kwh=_floats(profile_flex),
            alone=np.array([b.keeps_profile for b in boxes], dtype=bool),
        )


def member_boxes(
    offers: Sequence[FlexOffer],
    *,
    now: datetime,
    min_box_share: float | None = _DEFAULT_PARAMS.min_box_share,
    price_band_eur_per_kwh: float | None = _DEFAULT_PARAMS.price_band_eur_per_kwh,
) -> tuple[list[MemberBox], list[Unaggregated]]:
    """The offers reduced to boxes exactly as `aggregate_start_aligned` does (conditional offers
    expanded, inner box of the default's profile, on-grid window; repeated ids left out; members
    that keep their profile by `min_box_share`; direct members' asks banded by
    `price_band_eur_per_kwh`), and the offers left out with the reason."""
    boxes: list[MemberBox] = []
    left: list[Unaggregated] = []
    seen: set[str] = set()
    for offer in offers:
        if offer.id is not None and offer.id in seen:
            left.append(Unaggregated(offer.id, "another offer with the same id came first"))
            continue
        if offer.id is not None:
            seen.add(offer.id)
        box = member_box(offer, now, min_box_share=min_box_share, price_band_eur_per_kwh=price_band_eur_per_kwh)
        if isinstance(box, str):
            left.append(Unaggregated(offer.id, box))
        else:
            boxes.append(box)
    return boxes, left


# -- aggregates ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AggregateBatch:
    """Aggregates of a MemberBatch as arrays (read-only).

    Per aggregate (n_aggregates rows, in the object path's order):
        key, slice_s: int64 of its members.
        start_s: int64 earliest start (the first member's), seconds since the epoch.
        flexibility_steps: int64 the smallest member flexibility.
        step_offset: int64 CSR offsets into `lower_kwh` / `upper_kwh` (n_aggregates + 1).
        lower_kwh, upper_kwh: float64 summed bounds per aggregate step.
        time_flex_loss_steps: int64 sum over members of (own flexibility - aggregate's).
        energy_flex_loss_kwh: float64 sum over members of profile range minus box range.
        member_offset: int64 CSR offsets into `member_index` (n_aggregates + 1).
        member_index: int64 member rows of each aggregate, in aggregate member order.
    Per member (rows of the MemberBatch):
        member_aggregate: int64 the member's aggregate.
        member_offset_steps: int64 where the member's first step sits in the aggregate profile.
    """

    key: np.ndarray
    slice_s: np.ndarray
    start_s: np.ndarray
    flexibility_steps: np.ndarray
    step_offset: np.ndarray
    lower_kwh: np.ndarray
    upper_kwh: np.ndarray
    time_flex_loss_steps: np.ndarray
    energy_flex_loss_kwh: np.ndarray
    member_offset: np.ndarray
    member_index: np.ndarray
    member_aggregate: np.ndarray
    member_offset_steps: np.ndarray

    def __post_init__(self) -> None:
        _read_only(self)

    @property
    def n_aggregates(self) -> int:
        """Number of aggregates."""
        return len(self.start_s)

    def __len__(self) -> int:
        return self.n_aggregates

    @property
    def n_steps(self) -> np.ndarray:
        """Steps of each aggregate profile."""
        return np.diff(self.step_offset)

    @property
    def n_members(self) -> np.ndarray:
        """Members of each aggregate."""
        return np.diff(self.member_offset)


def _grow(values: np.ndarray, window: int, fits: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """For each i, i + the largest length L <= `window` such that `fits(max, min)` holds for
    values[i:i+L] (binary lifting over a sparse table of block max/min; `fits` must be
    monotone: a run that fits stays fitting when shortened)."""
    n = len(values)
    maxs, mins = [values], [values]
    for p in range(1, max(0, int(window).bit_length() - 1) + 1):
        h = 1 << (p - 1)
        m = len(maxs[-1]) - h
        if m <= 0:
            break
        maxs.append(np.maximum(maxs[-1][:m], maxs[-1][h : h + m]))
        mins.append(np.minimum(mins[-1][:m], mins[-1][h : h + m]))
    idx = np.arange(n, dtype=np.int64)
    length = np.ones(n, dtype=np.int64)
    cur_max, cur_min = values.copy(), values.copy()
    for p in range(len(maxs) - 1, -1, -1):
        block = 1 << p
        pos = idx + length  # the block to try is values[pos:pos + block]
        valid = (pos <= n - block) & (length <= window - block)
        np.minimum(pos, len(maxs[p]) - 1, out=pos)
        bmax = np.maximum(cur_max, maxs[p][pos])
        bmin = np.minimum(cur_min, mins[p][pos])
        ok = valid & fits(bmax, bmin)
        length += ok * block
        np.copyto(cur_max, bmax, where=ok)
        np.copyto(cur_min, bmin, where=ok)
    return idx + length


def _flex_spread_end(flex: np.ndarray, limit: np.ndarray, window: int) -> np.ndarray:
    """For each i, i + the largest length L <= `window` such that max - min of flex[i:i+L] is
    at most limit[i]."""
    small = np.int32 if int(flex.max(initial=0)) < 2**31 else np.int64
    lim = np.minimum(limit, np.iinfo(small).max).astype(small)
    return _grow(flex.astype(small), window, lambda hi, lo: hi - lo <= lim)


def _band_end(values: np.ndarray, low: np.ndarray, high: np.ndarray, window: int) -> np.ndarray:
    """For each i, i + the largest length L <= `window` such that every value of values[i:i+L]
    lies in [low[i], high[i]]."""
    return _grow(values, window, lambda hi, lo: (hi <= high) & (lo >= low))


def _group_starts(
    key: np.ndarray,
    earliest_s: np.ndarray,
    flex: np.ndarray,
    slice_s: np.ndarray,
    params: AggregationParams,
    n_steps: np.ndarray | None = None,
    alone: np.ndarray | None = None,
) -> np.ndarray:
    """Positions (in sorted order) at which the greedy scan opens an aggregate."""
    n = len(key)
    idx = np.arange(n, dtype=np.int64)
    new_key = np.ones(n, dtype=bool)
    new_key[1:] = key[1:] != key[:-1]
    key_first = np.flatnonzero(new_key)
    key_end = np.repeat(np.append(key_first[1:], n), np.diff(np.append(key_first, n)))
    # earliest starts more than the tolerance after position i: searchsorted on (key, earliest)
    key_rank = np.cumsum(new_key) - 1
    e0 = earliest_s - earliest_s.min()
    span = int(e0.max()) + int(params.start_tolerance_s) + 1
    if span * (int(key_rank[-1]) + 1) < 2**62:
        composite = key_rank * span + e0
        tol_end = np.searchsorted(composite, composite + params.start_tolerance_s, side="right")
    else:  # keys times span do not fit an int64: search key by key
        tol_end = np.empty(n, dtype=np.int64)
        for a, b in zip(key_first, np.append(key_first[1:], n), strict=True):
            e = earliest_s[a:b]
            tol_end[a:b] = a + np.searchsorted(e, e + params.start_tolerance_s, side="right")
    nxt = np.minimum(np.minimum(key_end, tol_end), idx + params.max_group_size)
    if params.max_time_flex_loss_s is not None:
        limit = params.max_time_flex_loss_s // slice_s
        nxt = np.minimum(nxt, _flex_spread_end(flex, limit, min(params.max_group_size, n)))
    if params.max_duration_diff_steps is not None and n_steps is not None:
        d = params.max_duration_diff_steps
        nxt = np.minimum(nxt, _band_end(n_steps, n_steps - d, n_steps + d, min(params.max_group_size, n)))
    if alone is not None and alone.any():
        # an aggregate ends before the next member that is alone; that member's ends after it
        next_alone = np.minimum.accumulate(np.where(alone, idx, n)[::-1])[::-1]
        after = np.append(next_alone[1:], n)
        nxt = np.where(alone, idx + 1, np.minimum(nxt, after))
    # aggregates open at the positions reached from each key's first member along nxt
    jump = np.append(nxt, n)
    opened = np.zeros(n + 1, dtype=bool)
    opened[key_first] = True
    while True:
        at = np.flatnonzero(opened[:n])
        opened[jump[at]] = True
        jump = jump[jump]
        if np.all(jump[key_first] == n):
            break
    return np.flatnonzero(opened[:n])


_CHUNK_MEMBERS = 1 << 15  # members summed per chunk: keeps the step temporaries in cache


def _member_order(members: MemberBatch) -> np.ndarray:
    """Stable order of the members by (key, earliest, flexibility, rank): one argsort of a packed
    int64 key when the four fields fit 63 bits, else a lexsort."""
    fields = []
    for a in (members.key, members.earliest_s, members.flexibility_steps, members.rank):
        lo = int(a.min())
        fields.append((a - lo, int(a.max()) - lo))
    step = int(np.gcd.reduce(members.slice_s))
    e, e_max = fields[1]
    fields[1] = (e // step, e_max // step)
    bits = [max(1, top.bit_length()) for _, top in fields]
    if sum(bits) > 63:
        return np.lexsort((members.rank, members.flexibility_steps, members.earliest_s, members.key))
    packed = np.zeros(members.n_members, dtype=np.int64)
    for (values, _), b in zip(fields, bits, strict=True):
        packed <<= b
        packed |= values
    return np.argsort(packed, kind="stable")


def _sum_bounds(
    members: MemberBatch,
    order: np.ndarray,
    counts: np.ndarray,
    starts: np.ndarray,
    agg_step_offset: np.ndarray,
    first_step: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per aggregate step, the sums of the member bounds, added member by member in aggregate
    member order (`order`, sorted members; `first_step` = where each lands): the object path's
    order of additions. Members go in chunks of whole aggregates, so that the per-step index
    arrays stay in cache."""
    total = int(agg_step_offset[-1])
    lower = np.empty(total)
    upper = np.empty(total)
    n = len(order)
    step_first = members.step_offset[:-1][order]
    # chunk boundaries: the first aggregate opening at or before every multiple of the chunk size
    cuts = np.unique(np.searchsorted(starts, np.arange(0, n, _CHUNK_MEMBERS), side="right") - 1)
    group_cuts = np.append(cuts, len(starts)).tolist()
    member_cuts = np.append(starts[cuts], n).tolist()
    step_cuts = agg_step_offset[group_cuts].tolist()
    for i in range(len(group_cuts) - 1):
        a, b = member_cuts[i], member_cuts[i + 1]
        s0, s1 = step_cuts[i], step_cuts[i + 1]
        c = counts[a:b]
        # step q of the chunk belongs to member m: src = step_first[m] + q - cum[m], dst likewise
        src = np.arange(int(c.sum()), dtype=np.int64) + np.repeat(step_first[a:b] - _offsets(c)[:-1], c)
        dst = src + np.repeat(first_step[a:b] - s0 - step_first[a:b], c)
        lo = np.bincount(dst, weights=members.lower_kwh[src], minlength=s1 - s0)
        hi = np.bincount(dst, weights=members.upper_kwh[src], minlength=s1 - s0)
        lower[s0:s1] = lo
        upper[s0:s1] = np.maximum(hi, lo)
    return lower, upper


def aggregate_batch(members: MemberBatch, params: AggregationParams = _DEFAULT_PARAMS) -> AggregateBatch:
    """Start-aligned aggregation of the member boxes: the grouping and sums of
    `aggregate_start_aligned`, on arrays."""
    if params.max_group_energy_kwh is not None:
        raise ValidationError(
            "max_group_energy_kwh: the batch path groups by start tolerance, time-flexibility loss, duration "
            "and group size; use aggregate_start_aligned or Portfolio for an energy bound per aggregate"
        )
    n = members.n_members
    if n == 0:
        zero_i, zero_f, one = np.zeros(0, np.int64), np.zeros(0), np.zeros(1, np.int64)
        return AggregateBatch(
            zero_i, zero_i, zero_i, zero_i, one, zero_f, zero_f, zero_i, zero_f, one, zero_i, zero_i, zero_i
        )
    order = _member_order(members)
    key = members.key[order]
    earliest = members.earliest_s[order]
    flex = members.flexibility_steps[order]
    slice_s = members.slice_s[order]
    counts = members.n_steps[order]
    starts = _group_starts(key, earliest, flex, slice_s, params, counts.astype(np.int64), members.alone[order])
    n_agg = len(starts)
    size = np.diff(np.append(starts, n))
    group = np.repeat(np.arange(n_agg, dtype=np.int64), size)
    agg_start = earliest[starts]
    agg_slice = slice_s[starts]
    agg_flex = np.minimum.reduceat(flex, starts)
    offset = (earliest - agg_start[group]) // slice_s
    agg_steps = np.maximum.reduceat(offset + counts, starts)
    agg_step_offset = _offsets(agg_steps)
    lower, upper = _sum_bounds(members, order, counts, starts, agg_step_offset, agg_step_offset[:-1][group] + offset)
    box_flex = np.add.reduceat(members.upper_kwh - members.lower_kwh, members.step_offset[:-1])
    energy_loss = np.add.reduceat((members.profile_flex_kwh - box_flex)[order], starts)
    time_loss = np.add.reduceat(flex, starts) - size * agg_flex
    member_aggregate = np.empty(n, dtype=np.int64)
    member_aggregate[order] = group
    member_offset_steps = np.empty(n, dtype=np.int64)
    member_offset_steps[order] = offset
    return AggregateBatch(
        key=key[starts],
        slice_s=agg_slice,
        start_s=agg_start,
        flexibility_steps=agg_flex,
        step_offset=agg_step_offset,
        lower_kwh=lower,
        upper_kwh=upper,
        time_flex_loss_steps=time_loss,
        energy_flex_loss_kwh=energy_loss,
        member_offset=_offsets(size),
        member_index=order.astype(np.int64),
        member_aggregate=member_aggregate,
        member_offset_steps=member_offset_steps,
    )


# -- disaggregation --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MemberSchedules:
    """One schedule per member (rows of the MemberBatch): `start_s` (seconds since the epoch)
    and the energy per step in the member's CSR layout (`step_offset`, `energy_kwh`)."""

    start_s: np.ndarray
    step_offset: np.ndarray
    energy_kwh: np.ndarray

    def __post_init__(self) -> None:
        _read_only(self)

    def energy(self, member: int) -> np.ndarray:
        """Energy per step of one member."""
        return self.energy_kwh[self.step_offset[member] : self.step_offset[member + 1]]


def disaggregate_batch(
    members: MemberBatch,
    aggregates: AggregateBatch,
    shift_steps: object,
    energy_kwh: object,
    *,
    tol: float = TOLERANCE_KWH,
    names: Sequence[str] | None = None,
) -> MemberSchedules:
    """Member schedules for one schedule per aggregate: aggregate g starts `shift_steps[g]` steps
    after its `start_s` and runs `energy_kwh[step_offset[g]:step_offset[g + 1]]`.

    Every member starts the aggregate's shift after its own earliest start and takes, at every
    aggregate step, the aggregate's fraction of its own range (as `disaggregate`). Raises
    DisaggregationError naming the first aggregate whose shift is outside 0..flexibility or
    whose energy leaves its bounds by more than `tol` (by `names[g]` when given, else by index).
    """

    def name(g: int) -> str:
        return names[g] if names is not None else f"aggregate {g}"

    shift = _ints(shift_steps)
    x = _floats(energy_kwh)
    if len(shift) != aggregates.n_aggregates:
        raise DisaggregationError(f"{len(shift)} shifts for {aggregates.n_aggregates} aggregates")
    if len(x) != len(aggregates.lower_kwh):
        raise DisaggregationError(
            f"{len(x)} energy values for {len(aggregates.lower_kwh)} aggregate steps (step_offset[-1])"
        )
    bad_shift = np.flatnonzero((shift < 0) | (shift > aggregates.flexibility_steps))
    if len(bad_shift):
        g = int(bad_shift[0])
        raise DisaggregationError(
            f"{name(g)}: shift {int(shift[g])} is outside its window "
            f"(allowed 0..{int(aggregates.flexibility_steps[g])})"
        )
    lo, hi = aggregates.lower_kwh, aggregates.upper_kwh
    bad = np.flatnonzero((x < lo - tol) | (x > hi + tol))
    if len(bad):
        i = int(bad[0])
        g = int(np.searchsorted(aggregates.step_offset, i, side="right") - 1)
        k = i - int(aggregates.step_offset[g])
        raise DisaggregationError(
            f"{name(g)}: energy[{k}] = {x[i]:.6g} kWh is outside its bounds [{lo[i]:.6g}, {hi[i]:.6g}] kWh"
        )
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(width > _WIDTH_EPS_KWH, np.clip((x - lo) / width, 0.0, 1.0), 0.0)
    counts = members.n_steps
    agg = aggregates.member_aggregate
    first = aggregates.step_offset[:-1][agg] + aggregates.member_offset_steps
    energy = np.empty(len(members.lower_kwh))
    cuts = members.step_offset[::_CHUNK_MEMBERS].tolist()
    member_cuts = list(range(0, members.n_members, _CHUNK_MEMBERS))
    for i, a in enumerate(member_cuts):  # chunks of members: the index arrays stay in cache
        b = min(a + _CHUNK_MEMBERS, members.n_members)
        s0, s1 = cuts[i], int(members.step_offset[b])
        c = counts[a:b]
        pos = np.arange(s0, s1, dtype=np.int64) + np.repeat(first[a:b] - members.step_offset[a:b], c)
        lo = members.lower_kwh[s0:s1]
        energy[s0:s1] = lo + fraction[pos] * (members.upper_kwh[s0:s1] - lo)
    start = members.earliest_s + shift[agg] * members.slice_s
    return MemberSchedules(start_s=start, step_offset=members.step_offset, energy_kwh=energy)


# -- the object path through the batch -------------------------------------------------------
def aggregate_start_aligned_batch(
    offers: Sequence[FlexOffer],
    *,
    now: datetime,
    params: AggregationParams = _DEFAULT_PARAMS,
    issuer: str = "fman",
) -> AggregationResult:
    """`aggregate_start_aligned` with the grouping done by `aggregate_batch`: the same
    AggregationResult (aggregates, their ids and order, unaggregated offers and reasons)."""
    boxes, left = member_boxes(
        offers, now=now, min_box_share=params.min_box_share, price_band_eur_per_kwh=params.price_band_eur_per_kwh
    )
    batch = MemberBatch.from_boxes(boxes)
    result = aggregate_batch(batch, params)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    index = result.member_index.tolist()
    bounds = result.member_offset.tolist()
    aggregates = [
        build_aggregate(
            [boxes[i] for i in index[bounds[g] : bounds[g + 1]]],
            issuer=issuer,
            agg_id=f"{issuer}-agg-{stamp}-{g + 1:05d}",
            now=now,
        )
        for g in range(result.n_aggregates)
    ]
    return AggregationResult(tuple(aggregates), tuple(left))


def batch_from_aggregates(aggregates: Sequence[Aggregate]) -> tuple[MemberBatch, AggregateBatch]:
    """The members and aggregates of `Aggregate` objects as arrays (members in aggregate order),
    for `disaggregate_batch`. Keys are the aggregates' positions; ranks the member order."""
    members = [m for a in aggregates for m in a.members]
    sizes = _ints([len(a.members) for a in aggregates])
    agg_of = np.repeat(np.arange(len(aggregates), dtype=np.int64), sizes)
    steps = _ints([m.n_steps for m in members])
    batch = MemberBatch(
        key=agg_of,
        slice_s=_ints([m.offer.slice_s for m in members]),
        earliest_s=_ints([_seconds(m.earliest) for m in members]),
        flexibility_steps=_ints([m.flexibility_steps for m in members]),
        rank=np.arange(len(members), dtype=np.int64),
        step_offset=_offsets(steps),
        lower_kwh=_floats(np.concatenate([m.lower_kwh for m in members]) if members else []),
        upper_kwh=_floats(np.concatenate([m.upper_kwh for m in members]) if members else []),
        profile_flex_kwh=np.zeros(len(members)),
    )
    aggs = AggregateBatch(
        key=np.arange(len(aggregates), dtype=np.int64),
        slice_s=_ints([a.slice_s for a in aggregates]),
        start_s=_ints([_seconds(a.earliest) for a in aggregates]),
        flexibility_steps=_ints([a.flexibility_steps for a in aggregates]),
        step_offset=_offsets(_ints([a.n_steps for a in aggregates])),
        lower_kwh=_floats(np.concatenate([a.lower_kwh for a in aggregates]) if aggregates else []),
        upper_kwh=_floats(np.concatenate([a.upper_kwh for a in aggregates]) if aggregates else []),
        time_flex_loss_steps=_ints([a.time_flex_loss_steps for a in aggregates]),
        energy_flex_loss_kwh=_floats([a.energy_flex_loss_kwh for a in aggregates]),
        member_offset=_offsets(sizes),
        member_index=np.arange(len(members), dtype=np.int64),
        member_aggregate=agg_of,
        member_offset_steps=_ints([m.offset_steps for m in members]),
    )
    return batch, aggs


def disaggregate_many(
    aggregates: Sequence[Aggregate],
    schedules: Sequence[Schedule | DefaultSchedule],
    *,
    assigned_at: datetime | None = None,
    tol: float = TOLERANCE_KWH,
) -> list[list[Schedule]]:
    """`disaggregate(aggregates[g], schedules[g])` for every g at once: the same member schedules
    (bitwise), one list per aggregate in member order. Raises DisaggregationError naming the
    aggregate whose schedule is not feasible for it (off the grid or window, wrong length,
    energy outside the bounds by more than `tol`)."""
    if len(schedules) != len(aggregates):
        raise DisaggregationError(f"{len(schedules)} schedules for {len(aggregates)} aggregates")
    shifts = []
    for a, s in zip(aggregates, schedules, strict=True):
        offset_s = (s.start - a.earliest).total_seconds()
        if offset_s % a.slice_s:
            raise DisaggregationError(f"{a.id}: start {s.start.isoformat()} is not on the {a.slice_s} s grid")
        if len(s.energy) != a.n_steps:
            raise DisaggregationError(f"{a.id}: schedule has {len(s.energy)} steps, the aggregate {a.n_steps}")
        shifts.append(int(offset_s // a.slice_s))
    members, aggs = batch_from_aggregates(aggregates)
    energy = _floats([v for s in schedules for v in s.energy])
    out = disaggregate_batch(members, aggs, shifts, energy, tol=tol, names=[a.id for a in aggregates])
    starts = out.start_s.tolist()
    values = out.energy_kwh.tolist()
    bounds = out.step_offset.tolist()
    result: list[list[Schedule]] = []
    i = 0
    for a in aggregates:
        row = []
        for m in a.members:
            row.append(
                Schedule(
                    flex_offer_id=m.offer_id,
                    start=_EPOCH + timedelta(seconds=starts[i]),
                    profile=m.profile,
                    energy=tuple(values[bounds[i] : bounds[i + 1]]),
                    assigned_at=assigned_at,
                )
            )
            i += 1
        result.append(row)
    return result

"""Balance-aligned aggregation of Flex-Offers: consumption and production offset each other.

Balance alignment (Valsomatzis et al., "Balancing energy flexibilities through aggregation"):
instead of aligning members at their earliest starts, each member may be delayed inside its
own time flexibility so that consumption (positive energy) and production (negative energy)
cancel in the aggregate's baseline.

Members are reduced to boxes exactly as in start-aligned aggregation (`aggregate_start_aligned`
is called with groups of one, so conditional expansion, inner boxes, the on-grid start window
and the reasons for leaving an offer out are the same). They are grouped by `slice_s`, `mode`
and `location.congestion_point` and, in order of earliest start, split into groups by
`AggregationParams` exactly like start alignment (start tolerance, time-flexibility spread,
group size).

Within a group, the member **baseline** is its default energy when the default runs the chosen
profile (clipped into the box), otherwise the middle of its box. The members are placed
greedily, the one with the largest sum |baseline| first: each takes the delay d (steps after its
own earliest start) that minimises, lexicographically, the peak |sum| of the baseline placed so
far, then its sum over steps of |sum|, then d. Delays are bounded so that no member loses more
than `max_time_flex_loss_s` of time flexibility (none beyond its own flexibility without a
limit). If the greedy placement has a larger (peak, sum) than start alignment (all delays 0),
start alignment is kept: balance alignment is never worse than start alignment for a group.

A member delayed by d is kept as a `MemberBox` whose `earliest` is d steps after its own
earliest start and whose `flexibility_steps` is d smaller; the aggregate is then the box of the
sums, exactly like start alignment, and `disaggregate` from `atp.fman.aggregation` applies
unchanged (every member starts the aggregate's shift after its delayed earliest start, which
stays inside its own window). The small builders of aggregation.py that are private there
(runs of bounds as slices, the aggregate default) are reproduced here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.flexoffer import DefaultSchedule, FlexOffer, Location, Mode, Price, Profile, Slice
from atp.fman.aggregation import (
    Aggregate,
    AggregationParams,
    AggregationResult,
    MemberBox,
    Unaggregated,
    aggregate_start_aligned,
)

__all__ = ["aggregate_balance_aligned", "aggregate_baseline_kwh", "member_baseline_kwh"]

_BOX_TOL_KWH = 1e-9
_SINGLETONS = AggregationParams(start_tolerance_s=0, max_time_flex_loss_s=0, max_group_size=1)


def member_baseline_kwh(member: MemberBox) -> np.ndarray:
    """The member's baseline energy per step: its default (clipped into the box) when the
    default runs the chosen profile with the right length, else the middle of its box."""
    d = member.offer.default_schedule
    if d is not None and d.profile == member.profile and len(d.energy) == member.n_steps:
        return np.clip(np.asarray(d.energy, dtype=float), member.lower_kwh, member.upper_kwh)
    return 0.5 * (member.lower_kwh + member.upper_kwh)


def aggregate_baseline_kwh(aggregate: Aggregate) -> np.ndarray:
    """Sum of the member baselines placed at their offsets: the aggregate's baseline per step."""
    out = np.zeros(aggregate.n_steps)
    for m in aggregate.members:
        out[m.offset_steps : m.offset_steps + m.n_steps] += member_baseline_kwh(m)
    return out


# -- grouping --------------------------------------------------------------------------------
def _steps(a: datetime, b: datetime, slice_s: int) -> int:
    return round((b - a).total_seconds() / slice_s)


def _group_key(offer: FlexOffer) -> tuple[int, str, str]:
    cp = offer.location.congestion_point if offer.location is not None else None
    return (offer.slice_s, offer.mode.value, cp or "")


def _split(boxes: list[MemberBox], params: AggregationParams) -> list[list[MemberBox]]:
    """Greedy grouping of one key's members in order of earliest start (as start alignment)."""
    boxes = sorted(boxes, key=lambda m: (m.earliest, m.flexibility_steps, m.offer_id))
    groups: list[list[MemberBox]] = []
    current: list[MemberBox] = []
    for m in boxes:
        if current:
            too_late = (m.earliest - current[0].earliest).total_seconds() > params.start_tolerance_s
            full = len(current) >= params.max_group_size
            flex = [c.flexibility_steps for c in current] + [m.flexibility_steps]
            loss_s = (max(flex) - min(flex)) * m.offer.slice_s
            too_lossy = params.max_time_flex_loss_s is not None and loss_s > params.max_time_flex_loss_s
            if too_late or full or too_lossy:
                groups.append(current)
                current = []
        current.append(m)
    if current:
        groups.append(current)
    return groups


# -- alignment -------------------------------------------------------------------------------
def _cost(total: np.ndarray) -> tuple[float, float]:
    a = np.abs(total)
    return (float(a.max(initial=0.0)), float(a.sum()))


def _delays(members: list[MemberBox], params: AggregationParams) -> list[int]:
    """Greedy delay (steps after its own earliest start) of every member, in member order."""
    slice_s = members[0].offer.slice_s
    base = min(m.earliest for m in members)
    offsets = [_steps(base, m.earliest, slice_s) for m in members]
    flex = [m.flexibility_steps for m in members]
    baselines = [member_baseline_kwh(m) for m in members]
    floor_flex = 0
    if params.max_time_flex_loss_s is not None:
        floor_flex = max(0, max(flex) - params.max_time_flex_loss_s // slice_s)
    max_delay = [max(0, f - floor_flex) for f in flex]
    length = max(o + d + m.n_steps for o, d, m in zip(offsets, max_delay, members, strict=True))

    zero = np.zeros(length)
    for o, b in zip(offsets, baselines, strict=True):
        zero[o : o + len(b)] += b

    order = sorted(range(len(members)), key=lambda i: (-float(np.abs(baselines[i]).sum()), members[i].offer_id))
    total = np.zeros(length)
    delays = [0] * len(members)
    for i in order:
        b, o, n_cand = baselines[i], offsets[i], max_delay[i] + 1
        cand = np.broadcast_to(total, (n_cand, length)).copy()
        rows = np.arange(n_cand)[:, None]
        cand[rows, o + rows + np.arange(len(b))[None, :]] += b
        a = np.abs(cand)
        peak, l1 = a.max(axis=1), a.sum(axis=1)
        # lexicographic (peak, l1, d), with a tolerance so float noise does not decide
        best = np.lexsort((np.arange(n_cand), np.round(l1, 9), np.round(peak, 9)))[0]
        delays[i] = int(best)
        total = cand[best]
    if _cost(total) > _cost(zero):
        return [0] * len(members)
    return delays


# -- building --------------------------------------------------------------------------------
def _slices(lower: np.ndarray, upper: np.ndarray) -> tuple[Slice, ...]:
    """Runs of equal per-step bounds as slices."""
    slices: list[Slice] = []
    i = 0
    n = len(lower)
    while i < n:
        j = i + 1
        while j < n and lower[j] == lower[i] and upper[j] == upper[i]:
            j += 1
        slices.append(Slice(duration=j - i, energy=(float(lower[i]), float(upper[i]))))
        i = j
    return tuple(slices)


def _aggregate_default(
    members: Sequence[MemberBox], start_after: datetime, flex: int, n: int
) -> DefaultSchedule | None:
    """Sum of the member defaults when all sit at the same shift inside their boxes, else None."""
    shifts = set()
    energy = np.zeros(n)
    for m in members:
        d = m.offer.default_schedule
        if d is None or d.profile != m.profile or len(d.energy) != m.n_steps:
            return None
        e = np.asarray(d.energy, dtype=float)
        if np.any(e < m.lower_kwh - _BOX_TOL_KWH) or np.any(e > m.upper_kwh + _BOX_TOL_KWH):
            return None
        offset_s = (d.start - m.earliest).total_seconds()
        if offset_s % m.offer.slice_s:
            return None
        shifts.add(int(offset_s // m.offer.slice_s))
        energy[m.offset_steps : m.offset_steps + m.n_steps] += e
    if len(shifts) != 1:
        return None
    (shift,) = shifts
    if not 0 <= shift <= flex:
        return None
    start = start_after + timedelta(seconds=shift * members[0].offer.slice_s)
    return DefaultSchedule(start=start, profile=0, energy=tuple(float(v) for v in energy))


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.flags.writeable = False
    return a


def _build(members: list[MemberBox], delays: list[int], *, issuer: str, agg_id: str, now: datetime) -> Aggregate:
    first = members[0].offer
    slice_s = first.slice_s
    shifted = [
        (m, m.earliest + timedelta(seconds=d * slice_s), m.flexibility_steps - d)
        for m, d in zip(members, delays, strict=True)
    ]
    start_after = min(e for _, e, _ in shifted)
    flex = min(f for _, _, f in shifted)
    placed = [
        MemberBox(
            offer=m.offer,
            profile=m.profile,
            offset_steps=_steps(start_after, e, slice_s),
            earliest=e,
            flexibility_steps=f,
            lower_kwh=m.lower_kwh,
            upper_kwh=m.upper_kwh,
        )
        for m, e, f in shifted
    ]
    n = max(m.offset_steps + m.n_steps for m in placed)
    lower = np.zeros(n)
    upper = np.zeros(n)
    for m in placed:
        lower[m.offset_steps : m.offset_steps + m.n_steps] += m.lower_kwh
        upper[m.offset_steps : m.offset_steps + m.n_steps] += m.upper_kwh
    upper = np.maximum(upper, lower)
    # Time flexibility lost against each member's own (undelayed) flexibility.
    time_loss = sum(m.flexibility_steps - flex for m in members)
    energy_loss = 0.0
    for m in placed:
        profile = m.offer.profiles[m.profile]
        energy_loss += float((profile.upper_kwh() - profile.lower_kwh()).sum()) - m.energy_flexibility_kwh
    devices = {m.offer.device for m in placed}
    cp = first.location.congestion_point if first.location is not None else None
    deadlines = [m.offer.assignment_before for m in placed if m.offer.assignment_before is not None]
    price = None
    if first.mode is Mode.DIRECT:
        asks = [m.offer.price.per_kwh_deviation for m in placed if m.offer.price and m.offer.price.per_kwh_deviation]
        price = Price(per_kwh_deviation=max(asks) if asks else 0.0)
    offer = FlexOffer(
        issuer=issuer,
        mode=first.mode,
        profiles=(Profile(slices=_slices(lower, upper)),),
        id=agg_id,
        device=devices.pop() if len(devices) == 1 else "aggregate",
        location=Location(meter_id=f"{issuer}:aggregate", congestion_point=cp),
        created_at=now,
        assignment_before=min(deadlines) if deadlines else None,
        start_after=start_after,
        start_before=start_after + timedelta(seconds=flex * slice_s),
        slice_s=slice_s,
        default_schedule=_aggregate_default(placed, start_after, flex, n),
        price=price,
        members=tuple(m.offer_id for m in placed),
    )
    return Aggregate(
        offer=offer,
        members=tuple(placed),
        time_flex_loss_steps=int(time_loss),
        energy_flex_loss_kwh=float(energy_loss),
        lower_kwh=_frozen(lower),
        upper_kwh=_frozen(upper),
    )


def aggregate_balance_aligned(
    offers: Sequence[FlexOffer],
    *,
    now: datetime,
    params: AggregationParams,
    issuer: str = "fman",
) -> AggregationResult:
    """Aggregate offers balance-aligned into boxes; every offer ends up in exactly one aggregate
    or in `unaggregated` with the reason. Deterministic: same input, same output."""
    singles = aggregate_start_aligned(offers, now=now, params=_SINGLETONS, issuer=issuer)
    unaggregated: list[Unaggregated] = list(singles.unaggregated)
    groups: dict[tuple[int, str, str], list[MemberBox]] = {}
    for single in singles:
        (box,) = single.members
        groups.setdefault(_group_key(box.offer), []).append(box)
    aggregates: list[Aggregate] = []
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    for key in sorted(groups):
        for members in _split(groups[key], params):
            agg_id = f"{issuer}-bal-{stamp}-{len(aggregates) + 1:05d}"
            aggregates.append(_build(members, _delays(members, params), issuer=issuer, agg_id=agg_id, now=now))
    return AggregationResult(tuple(aggregates), tuple(unaggregated))

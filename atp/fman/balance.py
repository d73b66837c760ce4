"""Balance-aligned aggregation of Flex-Offers: consumption and production offset each other.

Balance alignment (Valsomatzis et al., "Balancing energy flexibilities through aggregation"):
instead of aligning members at their earliest starts, each member may be delayed inside its
own time flexibility so that consumption (positive energy) and production (negative energy)
cancel in the aggregate's baseline.

Members are reduced to boxes exactly as in start-aligned aggregation (`aggregate_start_aligned`
is called with groups of one, so conditional expansion, inner boxes, the on-grid start window
and the reasons for leaving an offer out are the same). They are grouped by `slice_s`, `mode`,
`location.congestion_point` and price band (`member_key`) and, in order of earliest start,
split into groups by `AggregationParams` exactly like start alignment (start tolerance,
time-flexibility spread, group size).

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
stays inside its own window). The aggregate itself is built by aggregation.py's builder, given
the delays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from atp.flexoffer import FlexOffer
from atp.fman.aggregation import (
    Aggregate,
    AggregationParams,
    AggregationResult,
    MemberBox,
    Unaggregated,
    _steps,
    aggregate_start_aligned,
    build_aggregate,
    member_key,
    split_members,
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
def aggregate_balance_aligned(
    offers: Sequence[FlexOffer],
    *,
    now: datetime,
    params: AggregationParams,
    issuer: str = "fman",
) -> AggregationResult:
    """Aggregate offers balance-aligned into boxes; every offer ends up in exactly one aggregate
    or in `unaggregated` with the reason. Deterministic: same input, same output."""
    boxing = dataclasses.replace(
        _SINGLETONS, min_box_share=params.min_box_share, price_band_eur_per_kwh=params.price_band_eur_per_kwh
    )
    singles = aggregate_start_aligned(offers, now=now, params=boxing, issuer=issuer)
    unaggregated: list[Unaggregated] = list(singles.unaggregated)
    groups: dict[tuple[int, str, str, int, bool], list[MemberBox]] = {}
    for single in singles:
        (box,) = single.members
        groups.setdefault(member_key(box), []).append(box)
    aggregates: list[Aggregate] = []
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    for key in sorted(groups):
        for members in split_members(groups[key], params):
            agg_id = f"{issuer}-bal-{stamp}-{len(aggregates) + 1:05d}"
            delays = _delays(members, params)
            aggregates.append(build_aggregate(members, issuer=issuer, agg_id=agg_id, now=now, delays=delays))
    return AggregationResult(tuple(aggregates), tuple(unaggregated))

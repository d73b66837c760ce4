"""The batch path of start-aligned aggregation: equal to the object path, sound, nothing lost."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.errors import ValidationError
from atp.flexoffer import FlexOffer, Location, Mode, Profile, Schedule, Slice, check_schedule
from atp.flexoffer.batch import OfferBatch, ScheduleBatch
from atp.flexoffer.batch_checks import check_schedules_batch, explain
from atp.fman import (
    AggregationParams,
    DisaggregationError,
    MemberBatch,
    aggregate_batch,
    aggregate_start_aligned,
    aggregate_start_aligned_batch,
    batch_aggregation,
    batch_from_aggregates,
    disaggregate,
    disaggregate_batch,
    disaggregate_many,
    member_boxes,
)
from tests.strategies import aggregate_energy, cases, rebase

T0 = datetime(2026, 3, 2, tzinfo=UTC)

params_strategy = st.builds(
    AggregationParams,
    start_tolerance_s=st.sampled_from([0, 900, 3600, 86_400]),
    max_time_flex_loss_s=st.sampled_from([None, 0, 900, 3600, 86_400]),
    max_group_size=st.integers(1, 7),
    max_duration_diff_steps=st.sampled_from([None, 0, 1, 3]),
    min_box_share=st.sampled_from([None, 0.9]),
)


@st.composite
def member_offers(draw: st.DrawFn, *, max_size: int = 24, spread_h: int = 6) -> list[FlexOffer]:
    """Offers with total-energy, polytope, dependency, XOR and conditional constraints, several
    congestion points and modes, earliest starts within `spread_h` hours of T0, unique ids."""
    n = draw(st.integers(1, max_size))
    out = []
    for i in range(n):
        case = draw(cases(conditional=draw(st.booleans())))
        quarter = draw(st.integers(0, 4 * spread_h))
        offer = rebase(case.offer, T0 + timedelta(minutes=15 * quarter))
        cp = draw(st.sampled_from(["cp-1", "cp-1", "cp-2", None]))
        location = Location(meter_id=f"M-{i}", congestion_point=cp)
        out.append(dataclasses.replace(offer, id=f"fo-{draw(st.integers(0, 10**6)):07d}-{i}", location=location))
    return out


def _random_schedule(lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lam = rng.random(len(lower))
    lam[rng.random(len(lower)) < 0.2] = 0.0
    lam[rng.random(len(lower)) < 0.2] = 1.0
    return lower + lam * (upper - lower)


def _same_aggregates(a, b) -> None:
    assert a.unaggregated == b.unaggregated
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.offer == y.offer
        assert [(m.offer, m.profile, m.offset_steps, m.earliest, m.flexibility_steps) for m in x.members] == [
            (m.offer, m.profile, m.offset_steps, m.earliest, m.flexibility_steps) for m in y.members
        ]
        assert np.array_equal(x.lower_kwh, y.lower_kwh) and np.array_equal(x.upper_kwh, y.upper_kwh)
        assert x.time_flex_loss_steps == y.time_flex_loss_steps
        assert x.energy_flex_loss_kwh == y.energy_flex_loss_kwh


# -- equal to the object path ----------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(member_offers(), params_strategy, st.integers(-2, 4))
def test_batch_grouping_and_sums_equal_the_object_path(offers, params, now_h):
    now = T0 + timedelta(hours=now_h)
    expected = aggregate_start_aligned(offers, now=now, params=params, issuer="fman-t")
    _same_aggregates(aggregate_start_aligned_batch(offers, now=now, params=params, issuer="fman-t"), expected)

    boxes, _ = member_boxes(offers, now=now, min_box_share=params.min_box_share)
    members = MemberBatch.from_boxes(boxes)
    result = aggregate_batch(members, params)
    assert result.n_aggregates == len(expected)
    ids = [b.offer_id for b in boxes]
    for g, agg in enumerate(expected):
        rows = result.member_index[result.member_offset[g] : result.member_offset[g + 1]]
        assert [ids[i] for i in rows] == list(agg.offer.members)
        o, p = result.step_offset[g], result.step_offset[g + 1]
        # bitwise: the sums are made in the same order
        assert np.array_equal(result.lower_kwh[o:p], agg.lower_kwh)
        assert np.array_equal(result.upper_kwh[o:p], agg.upper_kwh)
        assert datetime.fromtimestamp(int(result.start_s[g]), UTC) == agg.earliest
        assert result.flexibility_steps[g] == agg.flexibility_steps
        assert result.time_flex_loss_steps[g] == agg.time_flex_loss_steps
        assert result.energy_flex_loss_kwh[g] == pytest.approx(agg.energy_flex_loss_kwh, abs=1e-9)
        for m, row in zip(agg.members, rows, strict=True):
            assert result.member_aggregate[row] == g
            assert result.member_offset_steps[row] == m.offset_steps


@settings(max_examples=25, deadline=None)
@given(member_offers(max_size=16), params_strategy, st.integers(-2, 4), st.integers(0, 2**32 - 1))
def test_disaggregation_is_feasible_exact_and_equal_to_the_object_path(offers, params, now_h, seed):
    now = T0 + timedelta(hours=now_h)
    rng = np.random.default_rng(seed)
    aggregates = aggregate_start_aligned(offers, now=now, params=params)
    schedules = []
    for agg in aggregates:
        shift = int(rng.integers(0, agg.flexibility_steps + 1))
        energy = aggregate_energy(agg, rng)
        start = agg.earliest + timedelta(seconds=shift * agg.slice_s)
        schedules.append(Schedule(agg.id, start, 0, tuple(energy.tolist())))
    fast = disaggregate_many(aggregates.aggregates, schedules, assigned_at=now)
    member_offers_, member_schedules = [], []
    for agg, schedule, got in zip(aggregates, schedules, fast, strict=True):
        assert got == disaggregate(agg, schedule, assigned_at=now)  # bitwise the same schedules
        total = np.zeros(agg.n_steps)
        for m, ms in zip(agg.members, got, strict=True):
            assert check_schedule(m.offer, ms, now=now) == [], (m.offer_id, ms)
            total[m.offset_steps : m.offset_steps + m.n_steps] += ms.energy
            member_offers_.append(m.offer)
            member_schedules.append(ms)
        assert np.abs(total - np.asarray(schedule.energy)).max(initial=0.0) <= 1e-9
    if member_offers_:
        batch = OfferBatch.from_offers(member_offers_, now=now)
        masks = check_schedules_batch(batch, ScheduleBatch.from_schedules(member_schedules, batch), now=now)
        assert not masks.any(), [explain(int(m)) for m in masks if m]


# -- arrays at scale -------------------------------------------------------------------------
def _random_members(rng: np.random.Generator, n: int) -> MemberBatch:
    """n random member boxes of 1-12 steps on two grids and three keys, starts within a day."""
    key = rng.integers(0, 3, n)
    slice_s = np.where(key == 2, 3600, 900)
    earliest_s = int(T0.timestamp()) + slice_s * rng.integers(0, 86_400 // slice_s, n)
    flex = rng.integers(0, 12, n)
    steps = rng.integers(1, 13, n)
    total = int(steps.sum())
    lower = np.round(rng.uniform(-2.0, 2.0, total), 3)
    upper = lower + np.where(rng.random(total) < 0.2, 0.0, np.round(rng.uniform(0.0, 3.0, total), 3))
    return MemberBatch.from_arrays(
        key=key,
        slice_s=slice_s,
        earliest_s=earliest_s,
        flexibility_steps=flex,
        n_steps=steps,
        lower_kwh=lower,
        upper_kwh=upper,
        rank=rng.permutation(n),
    )


def _greedy_reference(members: MemberBatch, params: AggregationParams) -> list[list[int]]:
    """The object path's greedy rule (`aggregation.split_members`), written out as a plain loop."""
    order = sorted(
        range(members.n_members),
        key=lambda i: (members.key[i], members.earliest_s[i], members.flexibility_steps[i], members.rank[i]),
    )
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current:
            first = current[0]
            flex = [int(members.flexibility_steps[j]) for j in [*current, i]]
            loss_s = (max(flex) - min(flex)) * int(members.slice_s[i])
            if (
                members.key[i] != members.key[first]
                or members.earliest_s[i] - members.earliest_s[first] > params.start_tolerance_s
                or len(current) >= params.max_group_size
                or (params.max_time_flex_loss_s is not None and loss_s > params.max_time_flex_loss_s)
                or (
                    params.max_duration_diff_steps is not None
                    and abs(int(members.n_steps[i]) - int(members.n_steps[first])) > params.max_duration_diff_steps
                )
            ):
                groups.append(current)
                current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


chunk_strategy = st.sampled_from([1, 3, 64, 1 << 15])  # members per chunk of the batch loops


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400), params_strategy, chunk_strategy)
def test_batch_grouping_equals_the_greedy_rule_and_loses_no_member(seed, n, params, chunk):
    members = _random_members(np.random.default_rng(seed), n)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batch_aggregation, "_CHUNK_MEMBERS", chunk)
        result = aggregate_batch(members, params)
    reference = aggregate_batch(members, params)
    assert np.array_equal(result.lower_kwh, reference.lower_kwh)
    assert np.array_equal(result.upper_kwh, reference.upper_kwh)
    groups = _greedy_reference(members, params)
    assert [
        result.member_index[result.member_offset[g] : result.member_offset[g + 1]].tolist()
        for g in range(result.n_aggregates)
    ] == groups
    assert np.array_equal(np.sort(result.member_index), np.arange(n))  # every member exactly once
    assert np.array_equal(
        result.member_aggregate[result.member_index], np.repeat(np.arange(len(groups)), result.n_members)
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400), params_strategy, chunk_strategy)
def test_batch_disaggregation_is_feasible_and_exact_for_random_aggregate_schedules(seed, n, params, chunk):
    rng = np.random.default_rng(seed)
    members = _random_members(rng, n)
    aggs = aggregate_batch(members, params)
    shift = rng.integers(0, aggs.flexibility_steps + 1)
    x = _random_schedule(aggs.lower_kwh, aggs.upper_kwh, rng)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batch_aggregation, "_CHUNK_MEMBERS", chunk)
        out = disaggregate_batch(members, aggs, shift, x)
    assert np.array_equal(out.energy_kwh, disaggregate_batch(members, aggs, shift, x).energy_kwh)
    # every member inside its box, inside its own window, shifted with its aggregate
    assert np.all(out.energy_kwh >= members.lower_kwh) and np.all(out.energy_kwh <= members.upper_kwh)
    delay_steps = (out.start_s - members.earliest_s) // members.slice_s
    assert np.array_equal(delay_steps, shift[aggs.member_aggregate])
    assert np.all(delay_steps <= members.flexibility_steps)
    # the member energies sum exactly to the aggregate's, step by step
    counts = members.n_steps
    k = np.arange(int(counts.sum())) - np.repeat(members.step_offset[:-1], counts)
    pos = np.repeat(aggs.step_offset[:-1][aggs.member_aggregate] + aggs.member_offset_steps, counts) + k
    total = np.bincount(pos, weights=out.energy_kwh, minlength=len(x))
    assert np.abs(total - x).max() <= 1e-9


# -- errors ----------------------------------------------------------------------------------
def _offer(i: int, start: datetime, flex_steps: int, cp: str = "cp-1") -> FlexOffer:
    return FlexOffer(
        issuer="foss-p001",
        id=f"fo-{i}",
        mode=Mode.DELEGATED,
        profiles=(Profile(slices=(Slice(2, (0.0, 2.0)), Slice(1, (1.0, 1.0)))),),
        location=Location(meter_id=f"M-{i}", congestion_point=cp),
        start_after=start,
        start_before=start + timedelta(minutes=15 * flex_steps),
    )


def test_disaggregation_refuses_infeasible_aggregate_schedules_naming_the_aggregate():
    offers = [_offer(0, T0, 4), _offer(1, T0 + timedelta(minutes=15), 2)]
    aggregates = aggregate_start_aligned(offers, now=T0 - timedelta(hours=1)).aggregates
    (agg,) = aggregates
    members, aggs = batch_from_aggregates(aggregates)
    ok = (agg.lower_kwh + agg.upper_kwh) / 2
    with pytest.raises(DisaggregationError, match="shift 3 is outside"):
        disaggregate_batch(members, aggs, [3], ok)
    with pytest.raises(DisaggregationError, match=r"energy\[1\]"):
        disaggregate_batch(members, aggs, [0], ok + np.array([0.0, 9.0, 0.0, 0.0]))
    late = Schedule(agg.id, agg.earliest + timedelta(minutes=45), 0, tuple(ok.tolist()))
    with pytest.raises(DisaggregationError, match=agg.id):
        disaggregate_many(aggregates, [late])
    with pytest.raises(DisaggregationError, match="not on the 900 s grid"):
        disaggregate_many(aggregates, [dataclasses.replace(late, start=agg.earliest + timedelta(minutes=5))])


def test_member_batch_refuses_inconsistent_arrays_with_a_sentence():
    good = {
        "key": [0, 0],
        "slice_s": [900, 900],
        "earliest_s": [0, 900],
        "flexibility_steps": [1, 2],
        "n_steps": [1, 2],
        "lower_kwh": [0.0, 0.0, 0.0],
        "upper_kwh": [1.0, 1.0, 1.0],
    }
    assert MemberBatch.from_arrays(**good).n_members == 2
    for change, match in (
        ({"slice_s": [900, 450]}, "same slice_s"),
        ({"earliest_s": [0, 100]}, "not on the 900 s grid"),
        ({"flexibility_steps": [-1, 0]}, "must not be negative"),
        ({"n_steps": [0, 3]}, "has no steps"),
        ({"upper_kwh": [1.0, -1.0, 1.0]}, "must not be below"),
        ({"lower_kwh": [0.0]}, "must have 3 entries"),
    ):
        with pytest.raises(ValidationError, match=match):
            MemberBatch.from_arrays(**{**good, **change})


def test_empty_batch_gives_no_aggregates():
    members = MemberBatch.from_arrays(
        key=[], slice_s=[], earliest_s=[], flexibility_steps=[], n_steps=[], lower_kwh=[], upper_kwh=[]
    )
    result = aggregate_batch(members)
    assert result.n_aggregates == 0
    assert disaggregate_batch(members, result, [], []).energy_kwh.size == 0


def test_the_batch_path_refuses_an_energy_bound_with_a_sentence():
    members = _random_members(np.random.default_rng(1), 5)
    with pytest.raises(ValidationError, match="max_group_energy_kwh"):
        aggregate_batch(members, AggregationParams(max_group_energy_kwh=10.0))

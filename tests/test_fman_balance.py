"""Balance-aligned aggregation and flexibility-loss measures of the Flex-Offer Manager."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import DefaultSchedule, FlexOffer, Location, Mode, Profile, Schedule, Slice, check_schedule
from atp.fman.aggregation import AggregationParams, aggregate_start_aligned, disaggregate
from atp.fman.balance import aggregate_balance_aligned, aggregate_baseline_kwh
from atp.fman.flexloss import (
    FlexibilityError,
    aggregate_loss,
    box_flexibility,
    offer_flexibility,
    portfolio_loss,
)
from tests.strategies import aggregate_energy, cases, rebase

T0 = datetime(2026, 3, 2, tzinfo=UTC)


@st.composite
def delegated_offers(draw: st.DrawFn, *, max_size: int = 8, spread_h: int = 6) -> list[FlexOffer]:
    """Valid delegated offers with ids, earliest starts within `spread_h` hours of T0."""
    n = draw(st.integers(1, max_size))
    out = []
    for i in range(n):
        case = draw(cases(conditional=draw(st.booleans())))
        offer = rebase(case.offer, T0 + timedelta(hours=draw(st.integers(0, spread_h))))
        out.append(dataclasses.replace(offer, mode=Mode.DELEGATED, id=f"fo-{i:04d}"))
    return out


params_strategy = st.builds(
    AggregationParams,
    start_tolerance_s=st.sampled_from([0, 3600, 86_400]),
    max_time_flex_loss_s=st.sampled_from([None, 0, 3600, 86_400]),
    max_group_size=st.integers(1, 6),
    min_box_share=st.sampled_from([None, 0.9]),
)


def _random_schedule(agg, rng: np.random.Generator) -> Schedule:
    shift = int(rng.integers(0, agg.flexibility_steps + 1))
    energy = aggregate_energy(agg, rng)
    return Schedule(agg.id, agg.earliest + timedelta(seconds=shift * agg.slice_s), 0, tuple(map(float, energy)))


def _offer(oid: str, energy: tuple[float, ...], *, flex_steps: int, start: datetime = T0, slack: float = 0.0):
    """A box-only offer: per-step bounds energy +- slack, default at the earliest start."""
    return FlexOffer(
        id=oid,
        issuer="p",
        mode=Mode.DELEGATED,
        profiles=(Profile(slices=tuple(Slice(1, (e - slack, e + slack)) for e in energy)),),
        location=Location(meter_id=f"M-{oid}", congestion_point="cp-1"),
        created_at=start - timedelta(hours=1),
        start_after=start,
        start_before=start + timedelta(seconds=900 * flex_steps),
        slice_s=900,
        default_schedule=DefaultSchedule(start, 0, energy),
    )


def _mix() -> list[FlexOffer]:
    """Consumption in the morning block, production that can move onto it."""
    return [
        _offer("c-1", (0.0, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 3.0), flex_steps=2, slack=0.5),
        _offer("c-2", (2.0, 2.0, 0.0, 0.0), flex_steps=1, slack=0.25),
        _offer("p-1", (-3.0, -3.0, -3.0), flex_steps=8, slack=1.0),
        _offer("p-2", (-2.0, -2.0), flex_steps=6, slack=0.5),
    ]


# -- balance alignment -----------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(delegated_offers(), params_strategy, st.integers(-2, 4), st.integers(0, 2**32 - 1))
def test_balance_aggregation_keeps_offers_and_disaggregates_exactly(offers, params, now_h, seed):
    now = T0 + timedelta(hours=now_h)
    rng = np.random.default_rng(seed)
    result = aggregate_balance_aligned(offers, now=now, params=params, issuer="fman-b")
    members = [m for agg in result for m in agg.offer.members]
    assert sorted(members + [u.offer_id for u in result.unaggregated]) == sorted(o.id for o in offers)
    assert all(u.reason for u in result.unaggregated)
    for agg in result:
        assert agg.offer.issuer == "fman-b"
        assert len(agg.members) <= params.max_group_size
        assert agg.flexibility_steps == min(m.flexibility_steps for m in agg.members)
        schedule = _random_schedule(agg, rng)
        assert check_schedule(agg.offer, schedule, now=now) == []
        parts = disaggregate(agg, schedule, assigned_at=now)
        total = np.zeros(agg.n_steps)
        for member, ms in zip(agg.members, parts, strict=True):
            assert check_schedule(member.offer, ms, now=now) == [], (member.offer_id, ms)
            total[member.offset_steps : member.offset_steps + member.n_steps] += ms.energy
        assert np.abs(total - np.asarray(schedule.energy)).max() <= 1e-6
        loss = aggregate_loss(agg)
        assert loss.time_steps >= 0
        assert loss.time_steps == agg.time_flex_loss_steps
        assert loss.energy_kwh >= -1e-9
        assert loss.area_kwh_steps >= -1e-9
    total_loss = portfolio_loss(result)
    assert total_loss.n_members == len(members)
    assert total_loss.time_steps == result.time_flex_loss_steps
    assert total_loss.energy_kwh == pytest.approx(result.energy_flex_loss_kwh, abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(delegated_offers(), params_strategy)
def test_start_aligned_flexibility_loss_is_non_negative(offers, params):
    result = aggregate_start_aligned(offers, now=T0, params=params)
    for agg in result:
        loss = aggregate_loss(agg)
        assert loss.time_steps == agg.time_flex_loss_steps >= 0
        assert loss.energy_kwh == pytest.approx(agg.energy_flex_loss_kwh, abs=1e-6)
        assert loss.area_kwh_steps >= -1e-9
        assert loss.aggregated.energy_kwh == pytest.approx(loss.kept.energy_kwh, abs=1e-6)


def test_balance_alignment_lowers_the_baseline_peak_of_a_mix():
    params = AggregationParams(start_tolerance_s=3600, max_time_flex_loss_s=None, max_group_size=10)
    now = T0 - timedelta(hours=1)
    start = aggregate_start_aligned(_mix(), now=now, params=params)
    balance = aggregate_balance_aligned(_mix(), now=now, params=params)
    assert len(start) == len(balance) == 1
    peak_start = np.abs(aggregate_baseline_kwh(start[0])).max()
    peak_balance = np.abs(aggregate_baseline_kwh(balance[0])).max()
    assert peak_balance <= peak_start
    assert peak_balance < peak_start  # production moved onto the consumption
    rng = np.random.default_rng(1)
    for _ in range(20):
        schedule = _random_schedule(balance[0], rng)
        parts = disaggregate(balance[0], schedule, assigned_at=now)
        for member, ms in zip(balance[0].members, parts, strict=True):
            assert check_schedule(member.offer, ms, now=now) == []


def test_balance_alignment_respects_the_time_flexibility_limit():
    params = AggregationParams(start_tolerance_s=3600, max_time_flex_loss_s=3600, max_group_size=10)
    now = T0 - timedelta(hours=1)
    offers = [_offer("c", (3.0,) * 4 + (0.0,) * 4, flex_steps=8), _offer("p", (-3.0,) * 4, flex_steps=8)]
    (agg,) = aggregate_balance_aligned(offers, now=now, params=params)
    assert agg.flexibility_steps >= 8 - 4  # no member loses more than 4 quarter-hours
    assert agg.time_flex_loss_steps == 2 * (8 - agg.flexibility_steps)
    assert agg.time_flex_loss_steps == aggregate_loss(agg).time_steps


# -- flexibility measures --------------------------------------------------------------------
def test_single_box_offer_loses_nothing():
    offer = _offer("solo", (1.0, 2.0, 0.5), flex_steps=4, slack=0.5)
    now = T0 - timedelta(hours=1)
    (agg,) = aggregate_start_aligned([offer], now=now, params=AggregationParams())
    loss = aggregate_loss(agg)
    assert (loss.time_steps, loss.energy_kwh, loss.area_kwh_steps) == (0, 0.0, 0.0)
    assert loss.original == offer_flexibility(offer, now=now)
    assert loss.area_kept_fraction == 1.0


def test_box_measures():
    lower = np.array([0.0, 1.0])
    upper = np.array([1.0, 3.0])
    f0 = box_flexibility(lower, upper, 0)
    assert (f0.time_steps, f0.energy_kwh, f0.area_kwh_steps) == (0, 3.0, 3.0)
    # shifts 0 and 1: step 0 [0,1], step 1 [0,3], step 2 [1,3]
    f1 = box_flexibility(lower, upper, 1)
    assert (f1.time_steps, f1.energy_kwh, f1.area_kwh_steps) == (1, 3.0, 6.0)
    assert box_flexibility(np.ones(3), np.ones(3), 0).area_kwh_steps == 0.0
    with pytest.raises(FlexibilityError):
        box_flexibility(lower, upper, -1)


def test_implicit_window_needs_now():
    offer = dataclasses.replace(
        _offer("imp", (1.0,), flex_steps=2),
        start_after=None,
        start_before=None,
        start_before_duration_s=1800,
        default_schedule=None,
    )
    with pytest.raises(FlexibilityError):
        offer_flexibility(offer)
    assert offer_flexibility(offer, now=T0).time_steps == 2

"""Members that keep their profile: joint constraints as rows, exact aggregates, nothing lost.

- `atp.flexoffer.rows.joint_rows` describes the same schedules as the profile's total-energy,
  polytope and dependency constraints (checked against `check_profile_energy` on vectors
  drawn around feasible points, and on both forms of real battery offers);
- aggregating with `min_box_share` keeps every offer exactly once, never loses more
  flexibility than boxing every member, and a member that keeps its profile loses none;
- an aggregate of a member that keeps its profile is the member's own profile: its schedules
  are the member's, `disaggregate` refuses one that breaks a row.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import Profile, Schedule, Slice, check_schedule
from atp.flexoffer.feasibility import check_profile_energy
from atp.flexoffer.rows import joint_rows
from atp.fman import AggregationParams, DisaggregationError, aggregate_start_aligned, disaggregate, member_losses
from tests.strategies import aggregate_energy, cases, profiles
from tests.test_foa_storage_pv import battery_offers, battery_setups

MARGIN = 1e-5  # vectors closer than this to a constraint's edge are not judged


def _slack(profile: Profile, x: np.ndarray) -> float:
    """Smallest margin of x to the rows (negative: a row is broken)."""
    rows = joint_rows(profile)
    assert rows is not None
    a, lo, hi = rows
    if not len(a):
        return np.inf
    ax = a @ x
    return float(min(np.min(hi - ax), np.min(ax - lo)))


def _vectors(profile: Profile, points: tuple[np.ndarray, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Vectors inside the slice bounds: the feasible points, their mixes and random pushes."""
    lower, upper = profile.lower_kwh(), profile.upper_kwh()
    out = [*points]
    for _ in range(12):
        w = rng.random()
        base = w * points[0] + (1 - w) * points[-1]
        push = rng.normal(scale=rng.choice([0.01, 0.3, 2.0]), size=len(lower))
        out.append(np.clip(base + push, lower, upper))
    out.append(lower + rng.random(len(lower)) * (upper - lower))
    return out


@settings(max_examples=120)
@given(profiles(), st.integers(0, 2**32 - 1))
def test_joint_rows_describe_the_same_schedules_as_the_constraints(drawn, seed):
    profile, x, y = drawn
    rng = np.random.default_rng(seed)
    for v in _vectors(profile, (x, y), rng):
        slack = _slack(profile, v)
        problems = check_profile_energy(profile, v, tol=0.0)
        if slack > MARGIN:
            assert problems == [], (slack, problems)
        elif slack < -MARGIN:
            assert problems != [], slack


@settings(max_examples=60)
@given(battery_setups(), st.integers(0, 2**32 - 1))
def test_a_battery_dependency_is_a_polytope_and_its_rows_agree_with_both_forms(setup, seed):
    dep, poly, _, _ = battery_offers(setup, energy_neutral=True)
    if dep is None:
        return
    rng = np.random.default_rng(seed)
    profile = dep.profiles[0]
    assert joint_rows(profile) is not None  # concave upper, convex lower bounds: convex
    default = np.asarray(dep.default_schedule.energy)
    for v in _vectors(profile, (default,), rng):
        slack = _slack(profile, v)
        if abs(slack) <= MARGIN:
            continue
        feasible = slack > 0
        assert (check_profile_energy(profile, v, tol=0.0) == []) == feasible
        assert (check_profile_energy(poly.profiles[0], v, tol=1e-9) == []) == feasible


def test_a_non_convex_dependency_has_no_rows():
    # upper bound 1 at d = 0, 0 at d = 1, 1 at d = 2: a valley, not concave
    profile = Profile(
        slices=(Slice(2, (0.0, 1.0)),),
        dependency=(((0.0, 0.0, 1.0),), ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (2.0, 0.0, 1.0))),
    )
    assert joint_rows(profile) is None


@settings(max_examples=60)
@given(st.lists(cases(total=True, max_profiles=1), min_size=1, max_size=6), st.integers(0, 2**32 - 1))
def test_kept_profiles_lose_nothing_and_disaggregate_exactly(drawn, seed):
    offers = [c.offer for c in drawn]
    offers = [dataclasses.replace(o, id=f"fo-{i}") for i, o in enumerate(offers)]
    now = min(o.created_at for o in offers)
    rng = np.random.default_rng(seed)
    boxed = aggregate_start_aligned(offers, now=now, params=AggregationParams(min_box_share=None))
    kept = aggregate_start_aligned(offers, now=now, params=AggregationParams())
    # every offer once, as before
    in_kept = sorted([m for a in kept for m in a.offer.members] + [u.offer_id for u in kept.unaggregated])
    assert in_kept == sorted(o.id for o in offers)
    loss_boxed = {r.offer_id: r for r in member_losses(boxed)}
    for r in member_losses(kept):
        assert r.loss.energy_kwh >= -1e-9
        if r.keeps_profile:
            assert r.loss.energy_kwh == pytest.approx(0.0, abs=1e-9) and r.loss.time_steps == 0
        if r.offer_id in loss_boxed:  # keeping profiles never loses more than boxing
            assert r.loss.energy_kwh <= loss_boxed[r.offer_id].loss.energy_kwh + 1e-9
    for agg in kept:
        if agg.joint is None:
            continue
        (member,) = agg.members
        assert member.keeps_profile
        shift = int(rng.integers(0, agg.flexibility_steps + 1))
        start = agg.earliest + timedelta(seconds=shift * agg.slice_s)
        x = aggregate_energy(agg, rng)
        schedule = Schedule(agg.id, start, 0, tuple(float(v) for v in x))
        assert check_schedule(agg.offer, schedule, now=now) == []
        (got,) = disaggregate(agg, schedule, assigned_at=now)
        assert check_schedule(member.offer, got, now=now) == []
        assert np.allclose(got.energy, x, atol=1e-12, rtol=0)
        # a vector that breaks a row is refused, not passed on
        a, lo, hi = agg.joint.a, agg.joint.lo, agg.joint.hi
        i = int(np.argmax(np.abs(a).sum(axis=1)))
        direction = np.sign(a[i])
        if np.isfinite(hi[i]):
            bad = x + direction * (hi[i] - a[i] @ x + 1.0) / max(np.abs(a[i]).sum(), 1e-9)
        else:
            bad = x - direction * (a[i] @ x - lo[i] + 1.0) / max(np.abs(a[i]).sum(), 1e-9)
        breaks = agg.joint.violations(bad).size > 0
        inside = np.all(bad >= agg.lower_kwh - 1e-9) and np.all(bad <= agg.upper_kwh + 1e-9)
        if breaks and inside:
            with pytest.raises(DisaggregationError, match="joint row"):
                disaggregate(agg, Schedule(agg.id, start, 0, tuple(float(v) for v in bad)))

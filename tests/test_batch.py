"""The batch form agrees with the per-object forms: check_schedule and validate_offer."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atp.errors import ValidationError
from atp.flexoffer import (
    Conditional,
    DefaultSchedule,
    FlexOffer,
    Limits,
    Mode,
    Polytope,
    Profile,
    Schedule,
    Slice,
    batch_checks,
    check_schedule,
    validate_offer,
)
from atp.flexoffer.batch import MAX_TIME_US, MIN_TIME_US, OfferBatch, ScheduleBatch, from_epoch_us, to_epoch_us
from atp.flexoffer.batch_checks import (
    DEFAULT_INFEASIBLE,
    FLAG_CLASS,
    NO_PROFILES,
    RULE_1,
    RULE_2,
    RULE_3,
    RULE_4,
    RULE_5,
    RULE_BIT,
    check_schedules_batch,
    explain,
    validate_batch,
)
from tests.strategies import EPOCH_2026, Case, cases, feasible_schedule

SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Property tests parametrised by the kind of change: a few examples per kind.
PER_KIND = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNSOUND_CLASSES = {"empty", "duration", "shape", "order"}


def rule_bits(problems) -> int:
    return sum({RULE_BIT[p.rule] for p in problems})


def flag_classes(mask: int) -> set[str]:
    return {cls for flag, cls in FLAG_CLASS.items() if mask & flag}


# ------------------------------------------------------------------------ schedule perturbations

SCHEDULE_CHANGES = [
    "none",
    "off_grid",
    "early",
    "late",
    "profile_high",
    "profile_negative",
    "longer",
    "shorter",
    "above_upper",
    "below_lower",
    "assigned_late",
    "no_assigned_at",
    "assigned_early",
    "total_high",
    "total_low",
    "polytope",
    "dependency_bound",
    "dependency_range",
]


def perturb(data: st.DataObject, case: Case, s: Schedule, how: str) -> tuple[FlexOffer, Schedule]:
    """A schedule changed so that (usually) one rule breaks; the offer may change too."""
    offer = case.offer
    window = offer.window(offer.created_at)
    n = len(s.energy)
    energy = np.array(s.energy)
    profile = offer.profiles[s.profile]
    step = timedelta(seconds=offer.slice_s)
    if how == "off_grid":
        s = dataclasses.replace(s, start=s.start + timedelta(seconds=data.draw(st.sampled_from([1, 60]))))
    elif how == "early":
        s = dataclasses.replace(s, start=window.earliest - step)
    elif how == "late":
        s = dataclasses.replace(s, start=window.latest + step)
    elif how == "profile_high":
        s = dataclasses.replace(s, profile=len(offer.profiles))
    elif how == "profile_negative":
        s = dataclasses.replace(s, profile=-1)
    elif how == "longer":
        s = dataclasses.replace(s, energy=(*s.energy, 0.0))
    elif how == "shorter":
        s = dataclasses.replace(s, energy=s.energy[:-1])
    elif how in ("above_upper", "below_lower"):
        i = data.draw(st.integers(0, n - 1))
        if how == "above_upper":
            energy[i] = profile.upper_kwh()[i] + 0.5
        else:
            energy[i] = profile.lower_kwh()[i] - 0.5
        s = dataclasses.replace(s, energy=tuple(energy.tolist()))
    elif how == "assigned_late":
        if offer.assignment_before is None:
            offer = dataclasses.replace(offer, assignment_before=s.assigned_at)
        late = timedelta(microseconds=data.draw(st.sampled_from([1, 1_000_000])))
        s = dataclasses.replace(s, assigned_at=offer.assignment_before + late)
    elif how == "no_assigned_at":
        s = dataclasses.replace(s, assigned_at=None)
    elif how == "assigned_early":
        # Moves "now" of an implicit window: the start may fall outside it.
        s = dataclasses.replace(s, assigned_at=s.assigned_at - step * data.draw(st.integers(1, 50)))
    elif how in ("total_high", "total_low") and profile.total_energy is not None:
        lo, hi = profile.total_energy
        target = hi + 0.5 if how == "total_high" else lo - 0.5
        energy = energy + (target - energy.sum()) / n
        s = dataclasses.replace(s, energy=tuple(energy.tolist()))
    elif how == "polytope" and profile.polytope is not None:
        a = np.array(profile.polytope.A)
        r = data.draw(st.integers(0, len(a) - 1))
        if np.any(a[r]):
            t = (profile.polytope.b[r] - a[r] @ energy + 0.5) / (a[r] @ a[r])
            s = dataclasses.replace(s, energy=tuple((energy + t * a[r]).tolist()))
    elif how == "dependency_bound" and profile.dependency is not None:
        i = data.draw(st.integers(0, n - 1))
        energy[i] = max(p[2] for p in profile.dependency[i]) + 0.5
        s = dataclasses.replace(s, energy=tuple(energy.tolist()))
    elif how == "dependency_range" and profile.dependency is not None and n > 1:
        energy[0] += 50.0
        s = dataclasses.replace(s, energy=tuple(energy.tolist()))
    return offer, s


def _features(how: str) -> dict[str, bool | None]:
    """Offer features a perturbation needs (None = random)."""
    return {
        "polytope": True if how.startswith("polytope") else None,
        "dependency": True if how.startswith("dependency") else None,
        "total": True if how.startswith("total") else None,
    }


@pytest.mark.parametrize("how", SCHEDULE_CHANGES)
@PER_KIND
@given(data=st.data())
def test_rule_bits_agree_with_check_schedule(how, data):
    """Random offers with 1-3 schedules each; the first is perturbed by `how`, the others at
    random. Rule bit k is set iff check_schedule reports rule "k"."""
    drawn = data.draw(st.lists(cases(**_features(how)), min_size=1, max_size=3))
    offers: list[FlexOffer] = []
    schedules: list[Schedule] = []
    owners: list[int] = []
    for case in drawn:
        offer = case.offer
        for j in range(data.draw(st.integers(1, 3))):
            s = data.draw(feasible_schedule(case))
            change = how if j == 0 else data.draw(st.sampled_from(SCHEDULE_CHANGES))
            offer, s = perturb(data, dataclasses.replace(case, offer=offer), s, change)
            schedules.append(s)
            owners.append(len(offers))
        offers.append(offer)
    batch = OfferBatch.from_offers(offers)
    sched = ScheduleBatch.from_schedules(schedules, batch, offer_index=owners)
    got = check_schedules_batch(batch, sched)
    for i, (owner, s) in enumerate(zip(owners, schedules, strict=True)):
        expected = rule_bits(check_schedule(offers[owner], s))
        assert int(got[i]) == expected, (i, explain(got[i]), check_schedule(offers[owner], s))
    # An explicit `now` overrides assigned_at and created_at for implicit windows.
    now = offers[0].created_at + timedelta(seconds=offers[0].slice_s * data.draw(st.integers(-3, 3)))
    got = check_schedules_batch(batch, sched, now=now)
    for i, (owner, s) in enumerate(zip(owners, schedules, strict=True)):
        assert int(got[i]) == rule_bits(check_schedule(offers[owner], s, now=now))


@SLOW
@given(st.data())
def test_one_schedule_per_offer_in_order(data):
    drawn = data.draw(st.lists(cases(max_profiles=data.draw(st.sampled_from([1, 2]))), min_size=2, max_size=4))
    offers = [c.offer for c in drawn]
    schedules = [data.draw(feasible_schedule(c)) for c in drawn]
    schedules = [
        perturb(data, c, s, data.draw(st.sampled_from(SCHEDULE_CHANGES)))[1]
        for c, s in zip(drawn, schedules, strict=True)
    ]
    batch = OfferBatch.from_offers(offers)
    expected = [rule_bits(check_schedule(o, s)) for o, s in zip(offers, schedules, strict=True)]
    # In order (schedule i runs profile i: the aligned fast path when every offer has one
    # profile) and reversed (the general path).
    got = check_schedules_batch(batch, ScheduleBatch.from_schedules(schedules, batch))
    assert got.tolist() == expected
    back = list(range(len(offers)))[::-1]
    got = check_schedules_batch(batch, ScheduleBatch.from_schedules(schedules[::-1], batch, offer_index=back))
    assert got.tolist() == expected[::-1]


@SLOW
@given(st.data(), st.sampled_from([1, 3, 64]))
def test_chunked_paths_agree(data, chunk):
    """The polytope, dependency and aligned-bounds checks run in chunks; tiny chunks agree too."""
    drawn = data.draw(st.lists(cases(max_profiles=1, polytope=True, dependency=True), min_size=1, max_size=4))
    offers = [c.offer for c in drawn]
    schedules = [
        perturb(data, c, data.draw(feasible_schedule(c)), data.draw(st.sampled_from(SCHEDULE_CHANGES)))[1]
        for c in drawn
    ]
    batch = OfferBatch.from_offers(offers)
    with patch.object(batch_checks, "_CHUNK", chunk):
        got = check_schedules_batch(batch, ScheduleBatch.from_schedules(schedules, batch))
    assert got.tolist() == [rule_bits(check_schedule(o, s)) for o, s in zip(offers, schedules, strict=True)]


# ---------------------------------------------------------------------------- offer mutations

OFFER_CHANGES = [
    "slice_s_7000",
    "slice_s_0",
    "slice_s_double",
    "start_after_off_grid",
    "start_before_off_grid",
    "duration_off_grid",
    "both_window_fields",
    "no_window_field",
    "negative_duration",
    "reversed_window",
    "assignment_after_start",
    "direct_without_price",
    "conditional_out_of_range",
    "conditional_ok",
    "no_profiles",
    "no_slices",
    "zero_duration",
    "slice_lower_above_upper",
    "total_lower_above_upper",
    "total_unreachable",
    "polytope_missing_b",
    "polytope_missing_column",
    "dependency_missing_entry",
    "dependency_empty_entry",
    "dependency_unsorted",
    "dependency_point_bounds",
    "default_above_upper",
    "default_off_grid",
    "default_missing",
    "created_at_later",
]


def _replace_profile(offer: FlexOffer, k: int, profile: Profile) -> FlexOffer:
    profiles = list(offer.profiles)
    profiles[k] = profile
    return dataclasses.replace(offer, profiles=tuple(profiles))


def mutate(data: st.DataObject, offer: FlexOffer, how: str) -> FlexOffer:
    """The offer changed in one way that (usually) makes one validation class fire."""
    step = timedelta(seconds=offer.slice_s)
    k = data.draw(st.integers(0, len(offer.profiles) - 1)) if offer.profiles else 0
    profile = offer.profiles[k] if offer.profiles else None
    if how == "slice_s_7000":
        return dataclasses.replace(offer, slice_s=7000)
    if how == "slice_s_0":
        return dataclasses.replace(offer, slice_s=0)
    if how == "slice_s_double":
        return dataclasses.replace(offer, slice_s=2 * offer.slice_s)
    if how == "start_after_off_grid" and offer.start_after is not None:
        return dataclasses.replace(offer, start_after=offer.start_after + timedelta(seconds=60))
    if how == "start_before_off_grid" and offer.start_before is not None:
        return dataclasses.replace(offer, start_before=offer.start_before + timedelta(seconds=60))
    if how == "duration_off_grid" and offer.start_before_duration_s is not None:
        return dataclasses.replace(offer, start_before_duration_s=offer.start_before_duration_s + 60)
    if how == "both_window_fields":
        # An offer that has neither field (after no_window_field) has no latest start: take its
        # earliest start plus one step, so the change always sets both fields.
        window = offer.window(offer.created_at)
        latest = window.latest if window.latest is not None else window.earliest + step
        return dataclasses.replace(
            offer,
            start_before=latest,
            start_before_duration_s=int((latest - window.earliest).total_seconds()),
        )
    if how == "no_window_field":
        return dataclasses.replace(offer, start_before=None, start_before_duration_s=None)
    if how == "negative_duration":
        return dataclasses.replace(offer, start_before=None, start_before_duration_s=-offer.slice_s)
    if how == "reversed_window" and offer.start_after is not None:
        return dataclasses.replace(offer, start_before=offer.start_after - step, start_before_duration_s=None)
    if how == "assignment_after_start" and offer.start_before is not None:
        return dataclasses.replace(offer, assignment_before=offer.start_before + step)
    if how == "direct_without_price":
        return dataclasses.replace(offer, mode=Mode.DIRECT, price=None)
    if how == "conditional_out_of_range":
        return dataclasses.replace(offer, conditional=Conditional(-1, 1.5, 900, float("nan")))
    if how == "conditional_ok":
        return dataclasses.replace(offer, conditional=Conditional(900, 0.5, 1800, 1.0))
    if how == "no_profiles":
        return dataclasses.replace(offer, profiles=())
    if profile is None or not profile.slices:
        return offer
    slices = list(profile.slices)
    j = data.draw(st.integers(0, len(slices) - 1))
    if how == "no_slices":
        return _replace_profile(offer, k, dataclasses.replace(profile, slices=()))
    if how == "zero_duration":
        slices[j] = dataclasses.replace(slices[j], duration=data.draw(st.sampled_from([0, -1])))
        return _replace_profile(offer, k, dataclasses.replace(profile, slices=tuple(slices)))
    if how == "slice_lower_above_upper":
        lo, hi = slices[j].energy
        slices[j] = dataclasses.replace(slices[j], energy=(hi + 1.0, lo))
        return _replace_profile(offer, k, dataclasses.replace(profile, slices=tuple(slices)))
    if how == "total_lower_above_upper" and profile.total_energy is not None:
        lo, hi = profile.total_energy
        return _replace_profile(offer, k, dataclasses.replace(profile, total_energy=(hi + 1.0, lo)))
    if how == "total_unreachable" and all(sl.duration >= 1 for sl in slices):
        upper_sum = float(profile.upper_kwh().sum())
        return _replace_profile(offer, k, dataclasses.replace(profile, total_energy=(upper_sum + 1.0, upper_sum + 2.0)))
    poly = profile.polytope
    if how == "polytope_missing_b" and poly is not None:
        return _replace_profile(offer, k, dataclasses.replace(profile, polytope=Polytope(poly.A, poly.b[:-1])))
    if how == "polytope_missing_column" and poly is not None and poly.A:
        a = (poly.A[0][:-1], *poly.A[1:])
        return _replace_profile(offer, k, dataclasses.replace(profile, polytope=Polytope(a, poly.b)))
    dep = profile.dependency
    if dep and how.startswith("dependency_"):
        i = data.draw(st.integers(0, len(dep) - 1))
        entries = list(dep)
        if how == "dependency_missing_entry":
            entries.pop(i)
        elif how == "dependency_empty_entry":
            entries[i] = ()
        elif how == "dependency_unsorted":
            entries[i] = tuple(reversed(entries[i]))
        elif how == "dependency_point_bounds" and entries[i]:
            d, lo, hi = entries[i][0]
            entries[i] = ((d, hi + 1.0, lo), *entries[i][1:])
        return _replace_profile(offer, k, dataclasses.replace(profile, dependency=tuple(entries)))
    default = offer.default_schedule
    if how == "default_above_upper" and default is not None and default.energy:
        energy = (default.energy[0] + 100.0, *default.energy[1:])
        return dataclasses.replace(offer, default_schedule=dataclasses.replace(default, energy=energy))
    if how == "default_off_grid" and default is not None:
        start = default.start + timedelta(seconds=1)
        return dataclasses.replace(offer, default_schedule=dataclasses.replace(default, start=start))
    if how == "default_missing":
        return dataclasses.replace(offer, default_schedule=None)
    if how == "created_at_later" and offer.created_at is not None:
        return dataclasses.replace(offer, created_at=offer.created_at + step * data.draw(st.integers(1, 40)))
    return offer


@pytest.mark.parametrize("how", OFFER_CHANGES)
@PER_KIND
@given(data=st.data())
def test_validate_batch_agrees_with_validate_offer(how, data):
    """1-3 offers, each changed by `how` and by up to one random change; limits and the
    build-time `now` vary.

    Sound offers: the batch flags exactly the classes validate_offer reports. Unsound ones:
    the batch flags a superset (validate_offer skips profiles after an unsound one).
    """
    offers = []
    for case in data.draw(st.lists(cases(**_features(how.removeprefix("default_"))), min_size=1, max_size=3)):
        offer = mutate(data, case.offer, how)
        for extra in data.draw(st.lists(st.sampled_from(OFFER_CHANGES), max_size=1)):
            offer = mutate(data, offer, extra)
        offers.append(offer)
    _assert_validation_agrees(data, offers)


WINDOW_CHANGES = [
    "start_after_off_grid",
    "start_before_off_grid",
    "duration_off_grid",
    "both_window_fields",
    "no_window_field",
    "negative_duration",
    "reversed_window",
    "assignment_after_start",
]


@pytest.mark.parametrize(("first", "second"), [(a, b) for a in WINDOW_CHANGES for b in WINDOW_CHANGES])
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_window_changes_compose(first, second, data):
    """Every pair of changes to the start window composes (the second sees what the first left,
    e.g. no window field at all) and the batch still agrees with validate_offer."""
    case = data.draw(cases())
    _assert_validation_agrees(data, [mutate(data, mutate(data, case.offer, first), second)])


def _assert_validation_agrees(data: st.DataObject, offers: list[FlexOffer]) -> None:
    limits = data.draw(
        st.sampled_from([Limits(), Limits(max_profiles=1), Limits(max_profile_s=20 * 900), Limits(max_profile_s=0)])
    )
    now = data.draw(st.sampled_from([None, EPOCH_2026 + timedelta(days=200), EPOCH_2026 + timedelta(days=400)]))
    masks = validate_batch(OfferBatch.from_offers(offers, now=now), limits=limits)
    for offer, mask in zip(offers, masks, strict=True):
        expected = {p.rule for p in validate_offer(offer, limits=limits, now=now or offer.created_at)}
        got = flag_classes(int(mask))
        if expected & UNSOUND_CLASSES:
            assert expected <= got, (expected, explain(mask))
        else:
            assert got == expected, (expected, explain(mask))
        assert (mask != 0) == bool(expected)


@SLOW
@given(cases())
def test_generated_offers_are_valid_in_batch(case):
    assert validate_batch(OfferBatch.from_offers([case.offer])).tolist() == [0]


# ------------------------------------------------------------------------- dependency interpolation


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_dependency_interpolation_matches_np_interp(data):
    """Entries of 1-5 points (repeated d allowed), d at and around the points."""
    n = data.draw(st.integers(1, 6))
    entries = []
    for _ in range(n):
        ds = sorted(data.draw(st.lists(st.integers(-8, 8), min_size=1, max_size=5)))
        entries.append(
            tuple(
                (float(d) / 2, float(data.draw(st.integers(-6, 0))) / 2, float(data.draw(st.integers(0, 6))) / 2)
                for d in ds
            )
        )
    profile = Profile(slices=(Slice(n, (-10.0, 10.0)),), dependency=tuple(entries))
    offer = FlexOffer(
        issuer="x",
        mode=Mode.DELEGATED,
        profiles=(profile,),
        start_after=EPOCH_2026,
        start_before=EPOCH_2026,
        slice_s=900,
    )
    schedules = [
        Schedule(
            "x",
            EPOCH_2026,
            0,
            tuple(float(v) / 4 for v in data.draw(st.lists(st.integers(-12, 12), min_size=n, max_size=n))),
        )
        for _ in range(5)
    ]
    batch = OfferBatch.from_offers([offer])
    got = check_schedules_batch(batch, ScheduleBatch.from_schedules(schedules, batch, offer_index=[0] * 5))
    assert [int(m) for m in got] == [rule_bits(check_schedule(offer, s)) for s in schedules]


# ------------------------------------------------------------------------------------ unit tests


def _offer(profiles: tuple[Profile, ...], **kwargs) -> FlexOffer:
    base = {
        "issuer": "foss-p001",
        "mode": Mode.DELEGATED,
        "profiles": profiles,
        "created_at": EPOCH_2026,
        "start_after": EPOCH_2026,
        "start_before": EPOCH_2026 + timedelta(hours=2),
        "assignment_before": EPOCH_2026,
        "slice_s": 900,
    }
    return FlexOffer(**(base | kwargs))


XOR = _offer(
    (
        Profile(slices=(Slice(2, (0.0, 1.0)),), total_energy=(0.5, 2.0)),
        Profile(slices=(Slice(1, (1.0, 3.0)), Slice(2, (0.0, 0.5))), polytope=Polytope(((1.0, -1.0, 0.0),), (2.0,))),
        Profile(slices=(Slice(1, (-2.0, 0.0)),)),
    ),
    default_schedule=DefaultSchedule(EPOCH_2026, 1, (2.0, 0.5, 0.0)),
)


def _schedule(profile: int, energy: tuple[float, ...], *, minutes: int = 0, assigned_at=EPOCH_2026) -> Schedule:
    return Schedule("fo", EPOCH_2026 + timedelta(minutes=minutes), profile, energy, assigned_at=assigned_at)


def test_empty_batches():
    batch = OfferBatch.from_offers([])
    assert batch.n_offers == 0 and len(batch) == 0
    assert validate_batch(batch).shape == (0,)
    assert validate_batch(batch).dtype == np.uint32
    schedules = ScheduleBatch.from_schedules([], batch)
    assert schedules.n_schedules == 0
    result = check_schedules_batch(batch, schedules)
    assert result.shape == (0,) and result.dtype == np.uint32
    # Offers without schedules, and an empty schedule list against them.
    batch = OfferBatch.from_offers([XOR])
    assert check_schedules_batch(batch, ScheduleBatch.from_schedules([], batch, offer_index=[])).shape == (0,)


def test_offer_without_profiles_and_schedule_against_it():
    offer = _offer(())
    batch = OfferBatch.from_offers([offer])
    assert int(validate_batch(batch)[0]) & NO_PROFILES
    got = check_schedules_batch(batch, ScheduleBatch.from_schedules([_schedule(0, (1.0,))], batch))
    assert int(got[0]) == rule_bits(check_schedule(offer, _schedule(0, (1.0,)))) == RULE_2


def test_xor_profiles():
    batch = OfferBatch.from_offers([XOR])
    assert batch.n_profiles.tolist() == [3]
    assert batch.n_steps.tolist() == [2, 3, 1]
    assert validate_batch(batch).tolist() == [0]
    schedules = [
        _schedule(0, (0.5, 0.5)),  # feasible
        _schedule(0, (0.1, 0.1)),  # total below 0.5
        _schedule(1, (2.0, 0.5, 0.0)),  # feasible, the default
        _schedule(1, (3.0, 0.5, 0.0)),  # polytope: 3 - 0.5 > 2
        _schedule(1, (2.0, 0.9, 0.0)),  # slice bound 0.5
        _schedule(2, (-1.0,)),  # feasible
        _schedule(2, (-1.0, 0.0)),  # length
        _schedule(3, (0.0,)),  # no profile 3
        _schedule(0, (0.5, 0.5), minutes=135),  # after start_before
        _schedule(0, (0.5, 0.5), minutes=7),  # off grid
        _schedule(0, (0.5, 0.5), assigned_at=EPOCH_2026 + timedelta(microseconds=1)),  # assigned late
    ]
    expected = [0, RULE_4, 0, RULE_4, RULE_3, 0, RULE_2, RULE_2, RULE_1, RULE_1, RULE_5]
    sched = ScheduleBatch.from_schedules(schedules, batch, offer_index=[0] * len(schedules))
    got = check_schedules_batch(batch, sched).tolist()
    assert got == expected
    assert got == [rule_bits(check_schedule(XOR, s)) for s in schedules]


def test_default_schedule_is_checked():
    bad = dataclasses.replace(XOR, default_schedule=DefaultSchedule(EPOCH_2026, 0, (0.0, 0.0)))
    masks = validate_batch(OfferBatch.from_offers([XOR, bad]))
    assert masks.tolist() == [0, DEFAULT_INFEASIBLE]
    assert {p.rule for p in validate_offer(bad)} == {"default"}
    assert explain(masks[1]) == ["the default schedule is infeasible"]


def test_implicit_window_resolves_against_now():
    offer = _offer(XOR.profiles, start_after=None, start_before=None, start_before_duration_s=3600)
    batch = OfferBatch.from_offers([offer])
    assert batch.start_after_us[0] == to_epoch_us(EPOCH_2026)
    assert from_epoch_us(batch.start_before_us[0]) == EPOCH_2026 + timedelta(hours=1)
    later = EPOCH_2026 + timedelta(hours=5)
    batch_later = OfferBatch.from_offers([offer], now=later)
    assert from_epoch_us(batch_later.start_after_us[0]) == later
    # Without created_at and now, implicit bounds are unbounded.
    unknown = OfferBatch.from_offers([dataclasses.replace(offer, created_at=None)])
    assert unknown.start_after_us[0] == MIN_TIME_US and unknown.start_before_us[0] == MAX_TIME_US
    s = _schedule(0, (0.5, 0.5), minutes=90, assigned_at=None)
    for b in (batch, batch_later, unknown):
        got = int(check_schedules_batch(b, ScheduleBatch.from_schedules([s], b))[0])
        now = from_epoch_us(b.now_us[0]) if b.now_us[0] != MIN_TIME_US else None
        expected_offer = offer if now is not None else dataclasses.replace(offer, created_at=None)
        assert got == rule_bits(check_schedule(expected_offer, s, now=now))
    assert int(check_schedules_batch(batch, ScheduleBatch.from_schedules([s], batch))[0]) == RULE_1


def test_from_schedules_rejects_bad_owners():
    batch = OfferBatch.from_offers([XOR])
    with pytest.raises(ValidationError, match="offer_index"):
        ScheduleBatch.from_schedules([_schedule(0, (0.5, 0.5))] * 2, batch)
    with pytest.raises(ValidationError, match="not an offer row"):
        ScheduleBatch.from_schedules([_schedule(0, (0.5, 0.5))], batch, offer_index=[1])
    with pytest.raises(ValidationError, match="entries"):
        ScheduleBatch.from_schedules([_schedule(0, (0.5, 0.5))], batch, offer_index=[0, 0])


def test_arrays_are_read_only():
    batch = OfferBatch.from_offers([XOR])
    with pytest.raises(ValueError, match="read-only"):
        batch.lower_kwh[0] = 5.0
    owners = np.zeros(1, dtype=np.int64)
    schedules = ScheduleBatch.from_schedules([_schedule(0, (0.5, 0.5))], batch, offer_index=owners)
    owners[0] = 0  # the caller's array stays writable
    with pytest.raises(ValueError, match="read-only"):
        schedules.energy_kwh[0] = 1.0


def test_explain_reads_both_kinds_of_mask():
    assert explain(0) == []
    assert explain(RULE_1 | RULE_5) == [
        "rule 1: start is off the slice_s grid or outside the start window",
        "rule 5: assigned_at is after assignment_before",
    ]
    assert explain(NO_PROFILES) == ["the offer has no profiles"]
    assert explain(1 << 31) == ["unknown bits 0x80000000"]

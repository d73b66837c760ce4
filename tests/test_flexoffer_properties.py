"""Property tests of the Flex-Offer model: round trip, default feasibility, feasible/perturbed schedules."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import (
    FlexOffer,
    check_schedule,
    decode,
    encode,
    expand_conditional,
    offer_from_json,
    offer_to_json,
    validate_offer,
)
from tests.strategies import cases, feasible_schedule


@given(cases())
def test_json_round_trip_is_identity(case):
    assert offer_from_json(offer_to_json(case.offer)) == case.offer


@given(cases())
def test_generated_offers_are_valid_and_default_is_feasible(case):
    assert validate_offer(case.offer) == []
    assert check_schedule(case.offer, case.offer.default_schedule) == []


@given(st.data())
def test_random_feasible_schedule_passes(data):
    case = data.draw(cases())
    schedule = data.draw(feasible_schedule(case))
    assert check_schedule(case.offer, schedule) == []


@given(st.data(), st.sampled_from(["off_grid", "early", "late", "profile", "length", "bounds", "assigned"]))
def test_perturbed_schedule_fails_the_right_rule(data, how):
    case = data.draw(cases())
    s = data.draw(feasible_schedule(case))
    offer = case.offer
    window = offer.window(offer.created_at)
    expected = {
        "off_grid": "1",
        "early": "1",
        "late": "1",
        "profile": "2",
        "length": "2",
        "bounds": "3",
        "assigned": "5",
    }[how]
    if how == "off_grid":
        s = dataclasses.replace(s, start=s.start + timedelta(seconds=60))
    elif how == "early":
        s = dataclasses.replace(s, start=window.earliest - timedelta(seconds=offer.slice_s))
    elif how == "late":
        s = dataclasses.replace(s, start=window.latest + timedelta(seconds=offer.slice_s))
    elif how == "profile":
        s = dataclasses.replace(s, profile=len(offer.profiles))
    elif how == "length":
        s = dataclasses.replace(s, energy=(*s.energy, 0.0))
    elif how == "bounds":
        i = data.draw(st.integers(0, len(s.energy) - 1))
        upper = offer.profiles[s.profile].upper_kwh()[i]
        s = dataclasses.replace(s, energy=tuple(upper + 0.5 if j == i else v for j, v in enumerate(s.energy)))
    elif how == "assigned":
        if offer.assignment_before is None:
            offer = dataclasses.replace(offer, assignment_before=s.assigned_at)
        s = dataclasses.replace(s, assigned_at=offer.assignment_before + timedelta(seconds=1))
    rules = {p.rule for p in check_schedule(offer, s)}
    assert expected in rules


@settings(max_examples=50)
@given(cases(conditional=True))
def test_conditional_expansion_is_pure_valid_and_keeps_default(case):
    expanded = expand_conditional(case.offer)
    assert expand_conditional(case.offer) == expanded
    assert expanded.conditional is None
    assert len(expanded.profiles) == 2 * len(case.offer.profiles)
    assert validate_offer(expanded) == []
    # Every expanded profile has the same length as the normal one and the intervention
    # schedule returns prior+after portions of the curtailed energy.
    for p in range(len(case.offer.profiles)):
        assert expanded.profiles[2 * p].n_steps == expanded.profiles[2 * p + 1].n_steps


@given(cases())
def test_decode_encode_agree(case):
    offer, problems = decode(FlexOffer, encode(case.offer))
    assert problems == [] and offer == case.offer

"""Unit tests: one per validation rule and per feasibility rule of spec/flexoffer.md."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from atp.errors import InvalidOfferError
from atp.flexoffer import (
    Limits,
    Schedule,
    check_schedule,
    expand_conditional,
    offer_from_json,
    validate_offer,
    validate_offer_data,
    validate_offer_json,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "flexoffers"
BASE = {
    "issuer": "foss-p001",
    "mode": "delegated",
    "location": {"meter_id": "M-001"},
    "start_after": "2026-11-25T18:00:00Z",
    "start_before": "2026-11-25T20:00:00Z",
    "slice_s": 900,
    "profiles": [{"slices": [{"duration": 2, "energy": [0.0, 1.0]}]}],
}


def problems_of(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    _, problems = validate_offer_data(data)
    return {(p.path, p.message) for p in problems}


def paths_of(**changes):
    return {path for path, _ in problems_of(**changes)}


def test_base_offer_is_valid():
    assert problems_of() == set()


def test_malformed_json_is_one_problem_not_an_exception():
    offer, problems = validate_offer_json("{not json")
    assert offer is None and problems[0].message.startswith("malformed JSON")
    with pytest.raises(InvalidOfferError, match="malformed JSON"):
        offer_from_json("[1,")


def test_missing_unknown_and_wrong_types_are_all_reported():
    data = copy.deepcopy(BASE)
    del data["issuer"]
    data["colour"] = "red"
    data["slice_s"] = "900"
    data["profiles"][0]["slices"][0]["duration"] = 1.5
    _, problems = validate_offer_data(data)
    assert {p.path for p in problems} == {"issuer", "colour", "slice_s", "profiles[0].slices[0].duration"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_are_rejected(bad):
    text = json.dumps({**BASE, "profiles": [{"slices": [{"duration": 1, "energy": [0.0, bad]}]}]})
    _, problems = validate_offer_json(text)
    assert [p.path for p in problems] == ["profiles[0].slices[0].energy[1]"]
    assert "finite" in problems[0].message


def test_lower_above_upper_names_both_values():
    assert problems_of(profiles=[{"slices": [{"duration": 1, "energy": [3.0, 2.75]}]}]) == {
        ("profiles[0].slices[0].energy", "lower 3 kWh is above upper 2.75 kWh")
    }


def test_empty_profiles_and_empty_slices():
    assert paths_of(profiles=[]) == {"profiles"}
    assert paths_of(profiles=[{"slices": []}]) == {"profiles[0].slices"}


@pytest.mark.parametrize("duration", [0, -2])
def test_zero_or_negative_duration(duration):
    assert paths_of(profiles=[{"slices": [{"duration": duration, "energy": [0, 1]}]}]) == {
        "profiles[0].slices[0].duration"
    }


def test_start_before_before_start_after():
    assert paths_of(start_before="2026-11-25T17:45:00Z") == {"start_before"}


def test_times_off_grid_and_slice_s_not_dividing_a_day():
    assert paths_of(start_after="2026-11-25T18:05:00Z") == {"start_after"}
    assert paths_of(slice_s=3600, start_after="2026-11-25T18:15:00Z") == {"start_after"}
    assert paths_of(slice_s=7000) == {"slice_s"}
    assert paths_of(slice_s=0) == {"slice_s"}


def test_both_or_neither_start_before_forms():
    assert paths_of(start_before_duration_s=3600) == {"start_before"}
    assert paths_of(start_before=None) == {"start_before"}
    assert paths_of(start_before=None, start_before_duration_s=3600) == set()
    assert paths_of(start_before=None, start_before_duration_s=100) == {"start_before_duration_s"}


def test_null_counts_as_absent():
    data = {**BASE, "start_before_duration_s": None, "device": None}
    assert validate_offer_data(data)[1] == []


def test_direct_offer_needs_a_price():
    assert paths_of(mode="direct") == {"price"}
    assert paths_of(mode="direct", price={"per_kwh_deviation": 0.1}) == set()


def test_infeasible_default_schedule():
    bad = {"start": "2026-11-25T18:00:00Z", "profile": 0, "energy": [2.0, 0.5]}
    assert paths_of(default_schedule=bad) == {"default_schedule.energy[0]"}
    late = {"start": "2026-11-25T21:00:00Z", "profile": 0, "energy": [1.0, 0.5]}
    assert paths_of(default_schedule=late) == {"default_schedule.start"}


def test_polytope_shape_must_match():
    profile = {"slices": [{"duration": 2, "energy": [0, 1]}], "polytope": {"A": [[1, 1, 1]], "b": [1, 2]}}
    assert paths_of(profiles=[profile]) == {"profiles[0].polytope", "profiles[0].polytope.A[0]"}


def test_dependency_points_sorted_and_sized():
    unsorted = {"slices": [{"duration": 2, "energy": [0, 1]}], "dependency": [[[1, 0, 1], [0, 0, 1]], [[0, 0, 1]]]}
    assert paths_of(profiles=[unsorted]) == {"profiles[0].dependency[0]"}
    short = {"slices": [{"duration": 2, "energy": [0, 1]}], "dependency": [[[0, 0, 1]]]}
    assert paths_of(profiles=[short]) == {"profiles[0].dependency"}


def test_profile_length_limit_is_configurable():
    long_profile = [{"slices": [{"duration": 700, "energy": [0, 1]}]}]
    assert paths_of(profiles=long_profile) == {"profiles[0].slices"}
    data = {**BASE, "profiles": long_profile}
    assert validate_offer_data(data, limits=Limits(max_profile_s=8 * 86400))[1] == []


def test_time_without_offset_is_rejected():
    assert paths_of(start_after="2026-11-25T18:00:00") == {"start_after"}


# -- feasibility: the five rules ---------------------------------------------------------


@pytest.fixture
def ev():
    return offer_from_json((EXAMPLES / "ev_charge.json").read_text())


def sched(**kw):
    base = dict(
        flex_offer_id="fo-foss-ev-0001",
        start=datetime(2026, 11, 25, 19, tzinfo=UTC),
        profile=0,
        energy=(2.75,) * 8,
        assigned_at=datetime(2026, 11, 25, 17, 45, tzinfo=UTC),
    )
    base.update(kw)
    return Schedule(**base)


def rules(offer, schedule):
    return sorted({p.rule for p in check_schedule(offer, schedule)})


def test_feasible_schedule(ev):
    assert rules(ev, sched()) == []


def test_rule_1_grid_and_window(ev):
    assert rules(ev, sched(start=datetime(2026, 11, 25, 19, 5, tzinfo=UTC))) == ["1"]
    assert rules(ev, sched(start=datetime(2026, 11, 25, 17, 45, tzinfo=UTC))) == ["1"]
    assert rules(ev, sched(start=datetime(2026, 11, 25, 23, 15, tzinfo=UTC))) == ["1"]


def test_rule_2_profile_and_length(ev):
    assert rules(ev, sched(profile=1)) == ["2"]
    assert rules(ev, sched(energy=(2.75,) * 7)) == ["2"]


def test_rule_3_slice_bounds_with_position(ev):
    problems = check_schedule(ev, sched(energy=(2.75,) * 6 + (1.0, 2.9)))
    assert [(p.rule, p.path) for p in problems] == [("3", "energy[7]")]


def test_rule_4_total_polytope_dependency():
    hp = offer_from_json((EXAMPLES / "heat_pump_polytope.json").read_text())
    start = datetime(2026, 11, 25, 6, tzinfo=UTC)
    ok = Schedule("fo-esr-hp-0001", start, 0, (0.5,) * 8)
    assert rules(hp, ok) == []
    ramp = Schedule("fo-esr-hp-0001", start, 0, (0.0, 0.75, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5))
    assert rules(hp, ramp) == ["4"]
    late_heat = Schedule("fo-esr-hp-0001", start, 0, (0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75))
    assert rules(hp, late_heat) == ["4"]  # comfort row: too little energy in the first hour
    bat = offer_from_json((EXAMPLES / "battery_dependency.json").read_text())
    bstart = datetime(2026, 11, 25, 12, tzinfo=UTC)
    # 5 kWh stored of 10 kWh: four full charging steps fill it, a fifth would overfill it.
    assert rules(bat, Schedule("x", bstart, 0, (1.25,) * 4 + (0.0,) * 4)) == []
    assert rules(bat, Schedule("x", bstart, 0, (1.25,) * 5 + (0.0,) * 3)) == ["4"]
    assert rules(bat, Schedule("x", bstart, 0, (-1.25,) * 4 + (0.0,) * 4)) == []
    assert rules(bat, Schedule("x", bstart, 0, (-1.25,) * 5 + (0.0,) * 3)) == ["4"]


def test_rule_5_assignment_deadline(ev):
    assert rules(ev, sched(assigned_at=datetime(2026, 11, 25, 17, 46, tzinfo=UTC))) == ["5"]


def test_implicit_window_resolves_against_now():
    fz = offer_from_json((EXAMPLES / "freezer_conditional.json").read_text())
    now = datetime(2026, 11, 25, 14, tzinfo=UTC)
    s = Schedule("x", now + timedelta(hours=1), 0, (0.0,) * 4, assigned_at=now)
    assert rules(fz, s) == []
    assert rules(fz, dataclasses.replace(s, start=now + timedelta(hours=2, minutes=15))) == ["1"]
    assert rules(fz, dataclasses.replace(s, start=now - timedelta(minutes=15))) == ["1"]


def test_conditional_expansion_of_the_freezer_example():
    fz = offer_from_json((EXAMPLES / "freezer_conditional.json").read_text())
    ex = expand_conditional(fz)
    assert len(ex.profiles) == 2
    normal, intervention = ex.profiles
    assert normal.n_steps == intervention.n_steps == 1 + 4 + 2
    # Curtailed energy: default 4 x 0.04 = 0.16 kWh above the lower bounds 0.
    assert intervention.lower_kwh().tolist() == pytest.approx([0.032, 0, 0, 0, 0, 0.08, 0.08])
    assert ex.start_after == datetime(2026, 11, 25, 11, 45, tzinfo=UTC)
    assert ex.default_schedule.start == datetime(2026, 11, 25, 11, 45, tzinfo=UTC)
    assert check_schedule(ex, ex.default_schedule) == []


def test_every_profile_is_checked_even_after_an_unsound_one():
    profiles = [
        {"slices": [{"duration": 0, "energy": [0, 1]}]},
        {"slices": [{"duration": 2, "energy": [0, 1]}], "total_energy": [5.0, 6.0]},
    ]
    assert paths_of(profiles=profiles) == {"profiles[0].slices[0].duration", "profiles[1].total_energy"}


def test_conditional_expansion_off_grid_now_rounds_the_window_onto_the_grid():
    fz = dataclasses.replace(
        offer_from_json((EXAMPLES / "freezer_conditional.json").read_text()), default_schedule=None
    )
    ex = expand_conditional(fz, now=datetime(2026, 11, 25, 12, 5, tzinfo=UTC))
    assert ex.start_after == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # 12:15 rounded up, minus the pre-load step
    assert ex.start_before == datetime(2026, 11, 25, 13, 45, tzinfo=UTC)  # 14:05 rounded down, minus the pre-load
    assert validate_offer(ex) == []

"""Import and export of the GOFLEX field format: round trips, hand-written documents, problems."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from atp.errors import Problem, ValidationError
from atp.flexoffer import FlexOffer, Location, Mode, OfferState, Polytope, Schedule, validate_offer
from atp.flexoffer.goflex import (
    DERIVED_ID_PREFIX,
    offer_from_goflex,
    offer_to_goflex,
    read_goflex_offer,
    schedule_from_goflex,
    schedule_to_goflex,
)
from tests.strategies import cases

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "flexoffers" / "goflex" / "ev_goflex.json"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# A heat-pump offer as the GOFLEX FMAN writes it: 15-min intervals, a 2-interval slice, tariffs,
# a default schedule and an assigned flexOfferSchedule.
HEAT_PUMP = {
    "id": "b2d7c0de-5a4f-4e8b-9c3d-1f6a2b7e9d10",
    "label": "heat_pump",
    "state": "Assigned",
    "stateReason": "scheduled by FMAN",
    "offeredById": "foa-hp-042",
    "locationId": "DK-AAU-M-0042",
    "creationTime": "2020-02-27T20:15:00.000+0000",
    "creationInterval": 1758705,
    "acceptanceBeforeTime": "2020-02-27T20:30:00.000+0000",
    "acceptanceBeforeInterval": 1758706,
    "assignmentBeforeTime": "2020-02-27T20:30:00.000+0000",
    "assignmentBeforeInterval": 1758706,
    "startAfterTime": "2020-02-27T20:30:00.000+0000",
    "startAfterInterval": 1758706,
    "startBeforeTime": "2020-02-27T22:00:00.000+0000",
    "startBeforeInterval": 1758712,
    "numSecondsPerInterval": 900,
    "flexOfferProfileConstraints": [
        {
            "minDuration": 1,
            "maxDuration": 1,
            "energyConstraintList": [{"lower": 0.5, "upper": 1.0}],
            "tariffConstraint": {"minTariff": -0.04, "maxTariff": 0.10},
        },
        {
            "minDuration": 2,
            "maxDuration": 2,
            "energyConstraintList": [{"lower": 1.0, "upper": 3.0}],
            "tariffConstraint": {"minTariff": -0.06, "maxTariff": 0.08},
        },
        {
            "minDuration": 1,
            "maxDuration": 1,
            "energyConstraintList": [{"lower": 0.0, "upper": 0.75}],
            "tariffConstraint": {"minTariff": 0.02, "maxTariff": 0.03},
        },
    ],
    "totalEnergyConstraint": {"lower": 2.0, "upper": 4.0},
    "defaultSchedule": {
        "startTime": "2020-02-27T20:30:00.000+0000",
        "startInterval": 1758706,
        "scheduleSlices": [
            {"duration": 1, "energyAmount": 0.75, "tariff": 0.0},
            {"duration": 2, "energyAmount": 2.0, "tariff": 0.0},
            {"duration": 1, "energyAmount": 0.5, "tariff": 0.0},
        ],
    },
    "flexOfferSchedule": {
        "startTime": "2020-02-27T21:00:00.000+0000",
        "startInterval": 1758708,
        "scheduleId": 7,
        "updateId": 1,
        "scheduleSlices": [
            {"duration": 1, "energyAmount": 1.0, "tariff": 0.1},
            {"duration": 2, "energyAmount": 3.0, "tariff": 0.08},
            {"duration": 1, "energyAmount": 0.0, "tariff": 0.03},
        ],
    },
}


def doc(**changes: object) -> dict:
    """A deep copy of HEAT_PUMP with top-level fields changed (None removes a field)."""
    out = copy.deepcopy(HEAT_PUMP)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def paths(problems: list[Problem]) -> list[str]:
    return [p.path for p in problems]


def representable(offer: FlexOffer) -> FlexOffer:
    """The offer without what GOFLEX cannot hold: bus/congestion point, a delegated offer's price."""
    price = offer.price if offer.mode is Mode.DIRECT else None
    return dataclasses.replace(offer, location=Location(meter_id=offer.location.meter_id), price=price)


def assert_same_goflex_fields(got: FlexOffer, want: FlexOffer) -> None:
    """Every field the GOFLEX format holds, floats within 1e-9."""
    for name in ("id", "issuer", "device", "mode", "location", "created_at", "assignment_before", "start_after"):
        assert getattr(got, name) == getattr(want, name), name
    assert got.start_before == want.start_before
    assert got.slice_s == want.slice_s
    assert got.state == want.state
    assert len(got.profiles) == 1
    g, w = got.profiles[0], want.profiles[0]
    np.testing.assert_allclose(g.lower_kwh(), w.lower_kwh(), atol=1e-9, rtol=0)
    np.testing.assert_allclose(g.upper_kwh(), w.upper_kwh(), atol=1e-9, rtol=0)
    if w.total_energy is None:
        assert g.total_energy is None
    else:
        np.testing.assert_allclose(g.total_energy, w.total_energy, atol=1e-9, rtol=0)
    assert got.default_schedule.start == want.default_schedule.start
    assert got.default_schedule.profile == want.default_schedule.profile == 0
    np.testing.assert_allclose(got.default_schedule.energy, want.default_schedule.energy, atol=1e-9, rtol=0)
    if want.price is None:
        assert got.price is None
    else:
        assert got.price.per_kwh is None
        assert abs(got.price.per_kwh_deviation - want.price.per_kwh_deviation) <= 1e-9


# --- round trips --------------------------------------------------------------------------------


@settings(max_examples=150)
@given(cases(max_profiles=1, polytope=False, dependency=False, implicit=False))
def test_v1_to_goflex_to_v1_keeps_every_field_goflex_holds(case):
    want = representable(case.offer)
    data = json.loads(json.dumps(offer_to_goflex(want), allow_nan=False))
    got, problems = offer_from_goflex(data)
    assert problems == []
    assert_same_goflex_fields(got, want)
    assert validate_offer(got) == []


@settings(max_examples=100)
@given(cases())
def test_lossy_export_of_any_offer_imports_as_a_valid_relaxation(case):
    data = json.loads(json.dumps(offer_to_goflex(case.offer, lossy=True)))
    got, problems = offer_from_goflex(data)
    assert problems == []
    np.testing.assert_allclose(got.profiles[0].lower_kwh(), case.offer.profiles[0].lower_kwh(), atol=1e-9)
    np.testing.assert_allclose(got.profiles[0].upper_kwh(), case.offer.profiles[0].upper_kwh(), atol=1e-9)
    assert got.location == Location(meter_id=case.offer.location.meter_id)


def test_goflex_document_round_trips_through_v1():
    offer, problems = offer_from_goflex(HEAT_PUMP)
    assert problems == []
    out = offer_to_goflex(offer)
    for key in ("id", "label", "state", "offeredById", "locationId", "numSecondsPerInterval"):
        assert out[key] == HEAT_PUMP[key]
    for stem in ("creation", "assignmentBefore", "startAfter", "startBefore", "acceptanceBefore"):
        assert out[f"{stem}Time"] == HEAT_PUMP[f"{stem}Time"]
        assert out[f"{stem}Interval"] == HEAT_PUMP[f"{stem}Interval"]
    # The 2-interval slice comes back as one slice with its whole-slice bounds.
    assert [c["minDuration"] for c in out["flexOfferProfileConstraints"]] == [1, 2, 1]
    assert [c["energyConstraintList"] for c in out["flexOfferProfileConstraints"]] == [
        [{"lower": 0.5, "upper": 1.0}],
        [{"lower": 1.0, "upper": 3.0}],
        [{"lower": 0.0, "upper": 0.75}],
    ]
    assert out["totalEnergyConstraint"] == {"lower": 2.0, "upper": 4.0}
    for key in ("defaultSchedule", "flexOfferSchedule"):
        got = [(s["duration"], s["energyAmount"]) for s in out[key]["scheduleSlices"]]
        assert got == [(s["duration"], s["energyAmount"]) for s in HEAT_PUMP[key]["scheduleSlices"]]
        assert out[key]["startTime"] == HEAT_PUMP[key]["startTime"]


def test_standalone_schedule_round_trip():
    schedule = Schedule("fo-1", t("2020-02-27T21:00:00+00:00"), 0, (1.0, 1.5, 1.5, 0.0))
    data = schedule_to_goflex(schedule, slice_s=900)
    assert data["startTime"] == "2020-02-27T21:00:00.000+0000"
    assert data["startInterval"] == 1758708
    assert [s["duration"] for s in data["scheduleSlices"]] == [1, 1, 1, 1]
    back, problems = schedule_from_goflex(data, flex_offer_id="fo-1", slice_s=900)
    assert problems == []
    assert back == schedule


def test_schedule_export_follows_the_goflex_slices_of_the_profile():
    offer, _ = offer_from_goflex(HEAT_PUMP)
    data = schedule_to_goflex(offer.schedule, slice_s=900, profile=offer.profiles[0])
    assert [(s["duration"], s["energyAmount"]) for s in data["scheduleSlices"]] == [(1, 1.0), (2, 3.0), (1, 0.0)]
    uneven = dataclasses.replace(offer.schedule, energy=(1.0, 1.0, 2.0, 0.0))
    with pytest.raises(ValidationError, match="one rate"):
        schedule_to_goflex(uneven, slice_s=900, profile=offer.profiles[0])


# --- import of hand-written documents -----------------------------------------------------------


def test_import_of_a_realistic_goflex_document():
    offer, problems = offer_from_goflex(HEAT_PUMP)
    assert problems == []
    assert offer.id == "b2d7c0de-5a4f-4e8b-9c3d-1f6a2b7e9d10"
    assert offer.issuer == "foa-hp-042"
    assert offer.device == "heat_pump"
    assert offer.location == Location(meter_id="DK-AAU-M-0042")
    assert offer.state is OfferState.ASSIGNED
    assert offer.slice_s == 900
    assert offer.created_at == t("2020-02-27T20:15:00+00:00")
    assert offer.assignment_before == t("2020-02-27T20:30:00+00:00")
    assert offer.start_after == t("2020-02-27T20:30:00+00:00")
    assert offer.start_before == t("2020-02-27T22:00:00+00:00")
    profile = offer.profiles[0]
    # Whole-slice bounds of the 2-interval slice are spread evenly over its two steps ...
    assert [(s.duration, s.energy) for s in profile.slices] == [(1, (0.5, 1.0)), (2, (0.5, 1.5)), (1, (0.0, 0.75))]
    # ... and the two steps are tied together: a GOFLEX slice runs at one rate.
    assert profile.polytope == Polytope(A=((0.0, 1.0, -1.0, 0.0), (0.0, -1.0, 1.0, 0.0)), b=(0.0, 0.0))
    assert profile.total_energy == (2.0, 4.0)
    # Tariffs: direct, deviation price = max over slices of max(maxTariff, -minTariff).
    assert offer.mode is Mode.DIRECT
    assert offer.price.per_kwh_deviation == pytest.approx(0.10)
    assert offer.default_schedule.start == t("2020-02-27T20:30:00+00:00")
    assert offer.default_schedule.energy == (0.75, 1.0, 1.0, 0.5)
    assert offer.schedule == Schedule(offer.id, t("2020-02-27T21:00:00+00:00"), 0, (1.0, 1.5, 1.5, 0.0))


def test_example_document_imports_without_problems():
    offer, problems = offer_from_goflex(json.loads(EXAMPLE.read_text()))
    assert problems == []
    assert offer.device == "ev"
    assert offer.profiles[0].n_steps == 8
    assert offer.profiles[0].total_energy == (16.0, 22.0)
    assert validate_offer(offer) == []


def test_later_specification_spellings_lower_bound_and_price_constraint():
    data = doc()
    data["flexOfferProfileConstraints"] = [
        {
            "minDuration": 1,
            "maxDuration": 1,
            "energyConstraintList": [{"lowerBound": 0.5, "upperBound": 1.0}],
            "priceConstraint": {"minPrice": -0.02, "maxPrice": 0.07},
        },
        {"energyConstraintList": [{"lowerBound": 1.0, "upperBound": 1.5}]},
        {"energyConstraintList": [{"lower": 0.5, "upper": 1.5}]},
        {"energyConstraintList": [{"lower": 0.0, "upper": 0.75}]},
    ]
    data["totalEnergyConstraint"] = {"lowerBound": 2.0, "upperBound": 4.0}
    offer, problems = offer_from_goflex(data)
    assert problems == []
    assert [s.energy for s in offer.profiles[0].slices] == [(0.5, 1.0), (1.0, 1.5), (0.5, 1.5), (0.0, 0.75)]
    assert offer.profiles[0].total_energy == (2.0, 4.0)
    assert offer.mode is Mode.DIRECT
    assert offer.price.per_kwh_deviation == pytest.approx(0.07)


def test_no_tariff_means_delegated():
    data = doc()
    for c in data["flexOfferProfileConstraints"]:
        del c["tariffConstraint"]
    offer, problems = offer_from_goflex(data)
    assert problems == []
    assert offer.mode is Mode.DELEGATED
    assert offer.price is None


def test_interval_only_times():
    data = doc()
    for stem in ("creation", "acceptanceBefore", "assignmentBefore", "startAfter", "startBefore"):
        del data[f"{stem}Time"]
    for key in ("defaultSchedule", "flexOfferSchedule"):
        del data[key]["startTime"]
    offer, problems = offer_from_goflex(data)
    assert problems == []
    assert offer.created_at == t("2020-02-27T20:15:00+00:00")
    assert offer.start_after == t("2020-02-27T20:30:00+00:00")
    assert offer.start_before == t("2020-02-27T22:00:00+00:00")
    assert offer.default_schedule.start == t("2020-02-27T20:30:00+00:00")
    assert offer.schedule.start == t("2020-02-27T21:00:00+00:00")


def test_intervals_count_in_num_seconds_per_interval():
    data = doc(numSecondsPerInterval=3600, startAfterInterval=None, startBeforeInterval=439678)
    for key in ("creationInterval", "acceptanceBeforeInterval", "assignmentBeforeInterval"):
        del data[key]
    for key in ("defaultSchedule", "flexOfferSchedule"):
        del data[key]
    data["startAfterTime"] = "2020-02-27T20:00:00.000+0000"
    data["assignmentBeforeTime"] = "2020-02-27T20:00:00.000+0000"
    del data["startBeforeTime"]
    offer, problems = offer_from_goflex(data)
    assert problems == []
    assert offer.slice_s == 3600
    assert offer.start_before == t("2020-02-27T22:00:00+00:00")


def test_mismatching_time_and_interval_twins():
    offer, problems = offer_from_goflex(doc(startAfterInterval=1758707))
    assert offer is None
    assert paths(problems) == ["startAfterInterval"]
    assert "disagrees with startAfterTime" in problems[0].message
    assert problems[0].rule == "twin"


def test_variable_duration_slice_is_a_problem():
    data = doc()
    data["flexOfferProfileConstraints"][1]["maxDuration"] = 4
    offer, problems = offer_from_goflex(data)
    assert offer is None
    assert paths(problems) == ["flexOfferProfileConstraints[1]"]
    assert "variable duration (minDuration 2, maxDuration 4" in problems[0].message


def test_unknown_fields_are_problems():
    data = doc(flexibilityPrice=0.3)
    data["flexOfferProfileConstraints"][0]["energyConstraintList"][0]["phases"] = 3
    offer, problems = offer_from_goflex(data)
    assert offer is None
    assert paths(problems) == ["flexibilityPrice", "flexOfferProfileConstraints[0].energyConstraintList[0].phases"]
    assert all(p.rule == "unknown" for p in problems)


def test_missing_required_field():
    offer, problems = offer_from_goflex(doc(offeredById=None))
    assert offer is None
    assert [str(p) for p in problems] == ["offeredById: is required but missing"]


def test_every_problem_has_its_json_path():
    data = doc(numSecondsPerInterval=7000, state="Adaptation")
    data["flexOfferProfileConstraints"][2]["energyConstraintList"][0]["lower"] = "0.0"
    data["flexOfferProfileConstraints"][0]["energyConstraintList"][0]["lowerBound"] = 0.5
    data["defaultSchedule"]["scheduleSlices"][1]["energyAmount"] = None
    offer, problems = offer_from_goflex(data, path="flexOffer[0]")
    assert offer is None
    messages = [str(p) for p in problems]
    assert "flexOffer[0].numSecondsPerInterval: (=7000) must divide 86400 (e.g. 900 or 3600)" in messages
    assert "flexOffer[0].flexOfferProfileConstraints[2].energyConstraintList[0].lower: must be a number, " in (
        " ".join(messages)
    )
    assert (
        "flexOffer[0].flexOfferProfileConstraints[0].energyConstraintList[0].lowerBound: "
        "give either lower or lowerBound, not both"
    ) in messages
    assert "flexOffer[0].defaultSchedule.scheduleSlices[1].energyAmount: is required but missing" in messages
    assert any(m.startswith("flexOffer[0].state: 'Adaptation' is not a GOFLEX state") for m in messages)


def test_semantic_problems_carry_goflex_paths():
    data = doc()
    data["defaultSchedule"]["scheduleSlices"][2]["energyAmount"] = 2.0
    offer, problems = offer_from_goflex(data)
    assert offer is None
    # 2.0 kWh breaks the slice bound of its slice, and the sum 4.75 kWh the total energy.
    assert paths(problems) == ["defaultSchedule.scheduleSlices[2].energyAmount", "defaultSchedule.scheduleSlices"]
    assert "outside the slice bounds [0, 0.75] kWh" in problems[0].message
    assert "outside total_energy [2, 4] kWh" in problems[1].message


def test_infeasible_assigned_schedule_is_a_problem():
    data = doc()
    data["flexOfferSchedule"]["startInterval"] = 1758713  # 22:15, after startBeforeTime
    del data["flexOfferSchedule"]["startTime"]
    offer, problems = offer_from_goflex(data)
    assert offer is None
    assert paths(problems) == ["flexOfferSchedule.startTime"]
    assert problems[0].message == "infeasible schedule: is after the latest start (start_before)"


def test_bounds_lower_above_upper():
    data = doc()
    data["flexOfferProfileConstraints"][0]["energyConstraintList"][0] = {"lower": 3.0, "upper": 2.0}
    _, problems = offer_from_goflex(data)
    assert [str(p) for p in problems] == [
        "flexOfferProfileConstraints[0].energyConstraintList[0]: lower 3 kWh is above upper 2 kWh"
    ]


def test_not_an_object():
    assert offer_from_goflex([1, 2]) == (None, [Problem("", "must be an object, not a list", "type")])


# --- export refusals -----------------------------------------------------------------------------


def test_export_refuses_a_polytope_offer():
    offer, _ = offer_from_goflex(HEAT_PUMP)
    n = offer.profiles[0].n_steps
    poly = Polytope(A=((1.0,) * n,), b=(3.5,))
    polytope_offer = dataclasses.replace(offer, profiles=(dataclasses.replace(offer.profiles[0], polytope=poly),))
    with pytest.raises(ValidationError, match=r"profiles\[0\]\.polytope: GOFLEX has no linear constraints"):
        offer_to_goflex(polytope_offer)
    relaxed = offer_to_goflex(polytope_offer, lossy=True)
    assert [c["minDuration"] for c in relaxed["flexOfferProfileConstraints"]] == [1, 1, 1, 1]


def test_export_names_every_feature_it_cannot_hold():
    offer, _ = offer_from_goflex(HEAT_PUMP)
    rich = dataclasses.replace(
        offer,
        profiles=offer.profiles * 2,
        location=Location(meter_id="M-1", bus=3),
        start_after=None,
        members=("a", "b"),
    )
    with pytest.raises(ValidationError) as err:
        offer_to_goflex(rich)
    text = str(err.value)
    for field in ("profiles:", "start_after:", "location.bus/congestion_point:", "members:", "lossy=True"):
        assert field in text
    lossy = offer_to_goflex(rich, lossy=True)
    assert lossy["startAfterTime"] == "2020-02-27T20:15:00.000+0000"  # resolved against created_at
    assert lossy["locationId"] == "M-1"


# --- offers without an id -------------------------------------------------------------------------

PILOT = EXAMPLE.with_name("pilot_assigned_null_ids.json")


def test_an_assigned_offer_without_id_gets_a_deterministic_id_and_a_notice():
    null_id = doc()
    null_id["id"] = None  # as the GOFLEX pilots wrote them
    read = read_goflex_offer(null_id)
    assert read.problems == []
    offer = read.offer
    assert offer.id.startswith(DERIVED_ID_PREFIX) and len(offer.id) == len(DERIVED_ID_PREFIX) + 24
    assert offer.schedule is not None and offer.schedule.flex_offer_id == offer.id
    assert [(n.path, n.rule) for n in read.notices] == [("id", "derived_id")]
    assert "null" in read.notices[0].message and offer.id in read.notices[0].message
    # Same content, same id: read again, or with the id field left out; the 2-tuple reader agrees.
    assert read_goflex_offer(copy.deepcopy(null_id)).offer.id == offer.id
    absent = read_goflex_offer(doc(id=None))
    assert absent.offer.id == offer.id and "absent" in absent.notices[0].message
    assert offer_from_goflex(null_id) == (offer, [])
    # Other content, another id.
    other = copy.deepcopy(null_id)
    other["offeredById"] = "foa-hp-043"
    assert read_goflex_offer(other).offer.id != offer.id
    # Under a prefix the notice's path is prefixed like the problems.
    assert read_goflex_offer(null_id, path="flexOffer[3]").notices[0].path == "flexOffer[3].id"


def test_offers_that_need_no_derived_id_get_none_and_no_notice():
    with_id = read_goflex_offer(HEAT_PUMP)
    assert with_id.offer.id == HEAT_PUMP["id"] and with_id.notices == []
    unassigned = read_goflex_offer(doc(id=None, flexOfferSchedule=None))
    assert unassigned.offer.id is None and unassigned.offer.schedule is None and unassigned.notices == []
    broken = doc(id=None, offeredById=None)
    read = read_goflex_offer(broken)
    assert read.offer is None and read.notices == [] and paths(read.problems) == ["offeredById"]


def test_the_pilot_file_validates_and_converts_with_the_same_ids_every_time(tmp_path):
    def cli(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "atp.cli", *map(str, args)], capture_output=True, text=True, timeout=60
        )
        assert "Traceback" not in proc.stderr + proc.stdout
        return proc

    proc = cli("validate", "--format", "goflex", PILOT)
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[-1] == "1 file, 3 offers: 3 valid, 0 invalid"
    (notice,) = lines[:-1]
    assert notice.startswith(f"{PILOT}: offer 1: notice: id: is null on an assigned offer; derived from its content:")
    outs = []
    for name in ("a.jsonl", "b.jsonl"):
        assert cli("convert", "--from", "goflex", "--to", "v1", PILOT, tmp_path / name).returncode == 0
        outs.append((tmp_path / name).read_text())
    assert outs[0] == outs[1]
    converted = [json.loads(line) for line in outs[0].splitlines()]
    assert converted[0]["id"] == "b2d7c0de-5a4f-4e8b-9c3d-1f6a2b7e9d10"
    assert converted[1]["id"].startswith(DERIVED_ID_PREFIX) and converted[1]["id"] in notice
    assert converted[1]["schedule"]["flex_offer_id"] == converted[1]["id"]
    assert "id" not in converted[2] and "schedule" not in converted[2]

"""aggregates.jsonl: every aggregate the FMAN planned or bid, and its exact disaggregation in schedules.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from atp.flexoffer import TOLERANCE_KWH, FlexOffer, Schedule, check_schedule, decode, validate_offer
from atp.flexoffer.schema import SCHEMA_PATH
from sim.kpi import compute_kpis
from sim.outputs import write_outputs
from sim.world import World
from tests.test_world import SHORT, config_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=[("foss", "fman=least_cost"), ("sww", "fman=market_bidding")], ids=str)
def written(request, tmp_path_factory):
    """A short real run (planning only, or bidding into the FMAR) and its run folder."""
    site, fman = request.param
    world = World(config_for(f"scenario={site}", fman, *SHORT))
    world.run()
    out = tmp_path_factory.mktemp(f"aggregates-{site}")
    write_outputs(world, out, compute_kpis(world))
    return world, out


def _lines(path: Path, cls):
    out = []
    for line in path.read_text().splitlines():
        obj, problems = decode(cls, json.loads(line))
        assert problems == [], problems
        out.append(obj)
    return out


def _sum_by_time(members: list[Schedule], aggregate: Schedule, slice_s: int) -> np.ndarray:
    """The members' energies summed per step of the aggregate schedule (0 where a member does not run)."""
    total = np.zeros(len(aggregate.energy))
    for s in members:
        offset_s = (s.start - aggregate.start).total_seconds()
        assert offset_s % slice_s == 0
        k0 = int(offset_s // slice_s)
        assert k0 >= 0 and k0 + len(s.energy) <= len(total), s.flex_offer_id
        total[k0 : k0 + len(s.energy)] += s.energy
    return total


def test_every_aggregate_planned_or_bid_is_one_line(written):
    world, out = written
    aggregator = world.aggregator
    aggregates = _lines(out / "aggregates.jsonl", FlexOffer)
    ids = [a.id for a in aggregates]
    assert ids and len(ids) == len(set(ids))
    planned = {agg.id for plan in aggregator.plans for agg, _ in plan.aggregate_schedules}
    assert planned <= set(ids)
    awarded = {a.id for a in aggregates if a.schedule is not None} - planned
    assert len(awarded) == aggregator.bids_awarded
    if aggregator.bidding is not None:
        assert aggregator.bids_awarded > 0
        assert {u.aggregate.id for u in aggregator.aggregates_used if u.bid} == set(ids) - planned
    schema = json.loads(SCHEMA_PATH.read_text())
    for line, agg in zip((out / "aggregates.jsonl").read_text().splitlines(), aggregates, strict=True):
        jsonschema.validate(json.loads(line), schema)
        assert validate_offer(agg) == [], agg.id
        assert agg.issuer == aggregator.name and agg.members and agg.state is None


def test_members_exist_and_their_schedules_sum_to_the_aggregate_schedule(written):
    _, out = written
    offers = {o.id: o for o in _lines(out / "flexoffers.jsonl", FlexOffer)}
    schedules = {s.flex_offer_id: s for s in _lines(out / "schedules.jsonl", Schedule)}
    aggregates = _lines(out / "aggregates.jsonl", FlexOffer)
    n_scheduled = 0
    for agg in aggregates:
        assert all(m in offers for m in agg.members), agg.id
        if agg.schedule is None:
            continue
        n_scheduled += 1
        assert schedules[agg.id] == agg.schedule
        assert check_schedule(agg, agg.schedule) == [], agg.id
        members = [schedules[m] for m in agg.members]
        for m in members:
            assert check_schedule(offers[m.flex_offer_id], m) == [], m.flex_offer_id
        total = _sum_by_time(members, agg.schedule, agg.slice_s)
        np.testing.assert_allclose(total, agg.schedule.energy, rtol=0, atol=TOLERANCE_KWH)
    assert n_scheduled > 0


def test_every_fman_schedule_is_the_disaggregation_of_one_aggregate_schedule(written):
    world, out = written
    schedules = _lines(out / "schedules.jsonl", Schedule)
    scheduled = [a for a in _lines(out / "aggregates.jsonl", FlexOffer) if a.schedule is not None]
    owner: dict[str, str] = {}
    for agg in scheduled:
        for m in agg.members:
            assert m not in owner, f"{m} is a member of {owner.get(m)} and {agg.id}"
            owner[m] = agg.id
    fman_ids = {r.offer.id for r in world.aggregator.store.records()}
    fman_schedules = [s for s in schedules if s.flex_offer_id in fman_ids]
    assert fman_schedules
    assert {s.flex_offer_id for s in fman_schedules} == set(owner)


def test_awarded_bids_are_copies_of_their_aggregates(written):
    world, out = written
    by_members = {a.members: a for a in _lines(out / "aggregates.jsonl", FlexOffer) if a.schedule is not None}
    market_ids = {r.offer.id for r in world.market_operator.market.store.records()}
    bids = [o for o in _lines(out / "flexoffers.jsonl", FlexOffer) if o.id in market_ids and o.members]
    awarded = [b for b in bids if b.schedule is not None]
    assert len(awarded) == world.aggregator.bids_awarded
    for bid in awarded:
        agg = by_members[bid.members]
        assert bid.schedule.start == agg.schedule.start
        np.testing.assert_allclose(bid.schedule.energy, agg.schedule.energy, rtol=0, atol=TOLERANCE_KWH)


def test_goflex_atp_validates_aggregates_jsonl(written):
    _, out = written
    proc = subprocess.run(
        [sys.executable, "-m", "atp.cli", "validate", str(out / "aggregates.jsonl")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 invalid" in proc.stdout

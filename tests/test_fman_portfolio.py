"""Incremental aggregation: the portfolio equals from-scratch aggregation after any changes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import DefaultSchedule, FlexOffer, Location, Mode, Profile, Slice
from atp.fman import AggregationParams, FlexOfferManager, Portfolio, aggregate_start_aligned
from atp.interface import InProcessClient, OfferStore

T0 = datetime(2026, 3, 2, tzinfo=UTC)
SLICE_S = 900


@st.composite
def offers(draw: st.DrawFn, offer_id: str) -> FlexOffer:
    """A small offer near T0: explicit or implicit window, maybe a congestion point, a deadline."""
    start_step = draw(st.integers(0, 24))
    flex_steps = draw(st.integers(0, 8))
    n = draw(st.integers(1, 5))
    lo = draw(st.floats(0, 2).map(lambda v: round(v, 2)))
    hi = lo + draw(st.floats(0, 3).map(lambda v: round(v, 2)))
    start_after = T0 + timedelta(seconds=start_step * SLICE_S)
    implicit = draw(st.booleans())
    cp = draw(st.sampled_from([None, "feeder-1", "feeder-2"]))
    deadline_steps = draw(st.one_of(st.none(), st.integers(0, start_step)))
    return FlexOffer(
        issuer=f"p-{offer_id}",
        id=offer_id,
        mode=draw(st.sampled_from([Mode.DELEGATED, Mode.DELEGATED, Mode.DIRECT])),
        profiles=(Profile(slices=(Slice(duration=n, energy=(lo, hi)),)),),
        start_after=None if implicit else start_after,
        start_before=None if implicit else start_after + timedelta(seconds=flex_steps * SLICE_S),
        start_before_duration_s=(start_step + flex_steps) * SLICE_S if implicit else None,
        assignment_before=None if deadline_steps is None else T0 + timedelta(seconds=deadline_steps * SLICE_S),
        slice_s=SLICE_S,
        location=Location(meter_id=f"m-{offer_id}", congestion_point=cp),
        default_schedule=None
        if implicit
        else DefaultSchedule(start=start_after, profile=0, energy=tuple([round((lo + hi) / 2, 3)] * n)),
    )


def _partition(result) -> list[tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...], datetime, int]]:
    return [
        (a.offer.members, tuple(a.lower_kwh), tuple(a.upper_kwh), a.offer.start_after, a.flexibility_steps)
        for a in result
    ]


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Operations on a pool of ids: put (new or replacement), remove, advance time, refresh."""
    ops: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["put", "put", "put", "remove", "advance", "refresh"]))
        if kind == "put":
            offer_id = f"o{draw(st.integers(0, 14))}"
            ops.append(("put", draw(offers(offer_id))))
        elif kind == "remove":
            ops.append(("remove", f"o{draw(st.integers(0, 14))}"))
        elif kind == "advance":
            ops.append(("advance", draw(st.integers(1, 7)) * 300))
        else:
            ops.append(("refresh", None))
    return ops


PARAMS = [
    AggregationParams(start_tolerance_s=3600, max_time_flex_loss_s=1800, max_group_size=3),
    AggregationParams(start_tolerance_s=7200, max_time_flex_loss_s=None, max_group_size=100),
    AggregationParams(
        start_tolerance_s=5400,
        max_time_flex_loss_s=3600,
        max_group_size=4,
        max_duration_diff_steps=1,
        max_group_energy_kwh=12.0,
    ),
]


@settings(max_examples=150, deadline=None)
@given(history=histories(), params_index=st.integers(0, len(PARAMS) - 1))
def test_portfolio_equals_from_scratch_after_any_changes(history, params_index) -> None:
    params = PARAMS[params_index]
    portfolio = Portfolio(params=params, issuer="agg", modes={Mode.DELEGATED})
    current: dict[str, FlexOffer] = {}
    now = T0 - timedelta(hours=2)
    for kind, arg in [*history, ("refresh", None)]:
        if kind == "put":
            portfolio.put(arg)
            current[arg.id] = arg  # direct offers too: the modes filter lists them, with the reason
        elif kind == "remove":
            portfolio.remove(arg)
            current.pop(arg, None)
        elif kind == "advance":
            now += timedelta(seconds=arg)
        else:
            result = portfolio.result(now)
            live = [o for o in current.values() if o.assignment_before is None or o.assignment_before >= now]
            delegated = [o for o in live if o.mode is Mode.DELEGATED]
            reference = aggregate_start_aligned(delegated, now=now, params=params, issuer="agg")
            assert _partition(result) == _partition(reference)
            direct = {o.id for o in live if o.mode is Mode.DIRECT}
            assert {u.offer_id for u in result.unaggregated} == {u.offer_id for u in reference.unaggregated} | direct
            assert all("delegated offers only" in u.reason for u in result.unaggregated if u.offer_id in direct)
            # No offer lost or counted twice.
            members = [m for a in result for m in a.offer.members]
            assert len(members) == len(set(members))
            assert set(members) | {u.offer_id for u in result.unaggregated} == {o.id for o in live}


def test_a_direct_replacement_is_listed_not_dropped() -> None:
    """A direct offer put with the id of a delegated one replaces it; outside the portfolio's
    modes it is listed in `unaggregated` with the reason, never dropped silently."""
    portfolio = Portfolio(modes={Mode.DELEGATED})
    start = T0 + timedelta(hours=1)
    offer = FlexOffer(
        issuer="p",
        id="x",
        profiles=(Profile(slices=(Slice(duration=2, energy=(0.0, 1.0)),)),),
        start_after=start,
        start_before=start + timedelta(hours=1),
        slice_s=SLICE_S,
        mode=Mode.DELEGATED,
    )
    portfolio.put(offer)
    assert [a.offer.members for a in portfolio.result(T0)] == [("x",)]
    portfolio.put(dataclasses.replace(offer, mode=Mode.DIRECT))
    result = portfolio.result(T0)
    assert list(result) == [] and [u.offer_id for u in result.unaggregated] == ["x"]
    assert "direct offer; this portfolio aggregates delegated offers only" in result.unaggregated[0].reason


def test_a_change_rebuilds_only_the_aggregates_it_reaches() -> None:
    """Forty offers an hour apart form forty aggregates; one new offer rebuilds at most two."""
    portfolio = Portfolio(params=AggregationParams(start_tolerance_s=0, max_group_size=10), issuer="agg")

    def offer(i: int, minute: int = 0) -> FlexOffer:
        start = T0 + timedelta(hours=i, minutes=minute)
        return FlexOffer(
            issuer="p",
            id=f"o{i}-{minute}",
            profiles=(Profile(slices=(Slice(duration=2, energy=(0.0, 1.0)),)),),
            start_after=start,
            start_before=start + timedelta(hours=1),
            slice_s=SLICE_S,
            mode=Mode.DELEGATED,
        )

    for i in range(40):
        portfolio.put(offer(i))
    first = portfolio.refresh(T0)
    assert first.rebuilt_aggregates == 40
    portfolio.put(dataclasses.replace(offer(20), id="twin"))
    stats = portfolio.refresh(T0)
    assert stats.changed_members == 1
    assert stats.rebuilt_aggregates <= 2
    assert stats.kept_aggregates >= 38
    groups = [a.offer.members for a in portfolio.result(T0)]
    assert sum(len(g) for g in groups) == 41
    assert ("o20-0", "twin") in groups


def test_manager_plans_from_its_portfolio_as_the_store_changes() -> None:
    """The FMAN follows its store's events: submitted offers are planned, withdrawn ones are not,
    and planned ones leave the portfolio."""
    store = OfferStore("agg", clock=lambda: T0)
    fman = FlexOfferManager(store, name="agg", params=AggregationParams())
    prices = np.linspace(0.3, 0.1, 96)

    def submit(party: str, hours: int) -> FlexOffer:
        start = T0 + timedelta(hours=hours)
        return InProcessClient(store, party).submit(
            FlexOffer(
                issuer=party,
                profiles=(Profile(slices=(Slice(duration=4, energy=(1.0, 2.0)),)),),
                start_after=start,
                start_before=start + timedelta(hours=3),
                slice_s=SLICE_S,
                mode=Mode.DELEGATED,
            )
        )

    a = submit("a", 1)
    b = submit("b", 1)
    InProcessClient(store, "b").withdraw(b.id)
    result = fman.plan(T0, prices, prices_start=T0, prices_slice_s=SLICE_S)
    assert {s.flex_offer_id for s in result.schedules} == {a.id}
    assert len(fman.portfolio) == 0
    c = submit("c", 2)
    again = fman.plan(T0, prices, prices_start=T0, prices_slice_s=SLICE_S)
    assert {s.flex_offer_id for s in again.schedules} == {c.id}


def test_put_without_id_is_refused() -> None:
    with pytest.raises(ValueError, match=r"offer\.id"):
        Portfolio().put(
            FlexOffer(
                issuer="p",
                profiles=(Profile(slices=(Slice(duration=1, energy=(0.0, 1.0)),)),),
                slice_s=900,
                mode=Mode.DELEGATED,
            )
        )

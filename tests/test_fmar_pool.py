"""The one-sided pool (F2.FMAR1) and the market service (F2.FMAR5, F2.FMAR6).

Properties over random offers (tests/strategies.py, made direct with a price), hand-made
markets with known answers, the clean no-trade results, and the service end to end with a
real OfferStore and in-process clients.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import (
    DefaultSchedule,
    FlexOffer,
    Location,
    Mode,
    OfferState,
    Polytope,
    Price,
    Profile,
    Slice,
    check_schedule,
)
from atp.fmar import (
    RESULT_COLUMNS,
    FlexOfferMarket,
    InvalidRequestError,
    InvalidSessionError,
    MarketError,
    Mechanism,
    OneSidedPool,
    Request,
    Session,
    SessionError,
    SessionKind,
    SessionResult,
    UnknownMechanismError,
    bids_from_offers,
    clear_one_sided_pool,
    create_mechanism,
    mechanism_names,
    register_mechanism,
    results_frame,
)
from atp.fmar.one_sided_pool import NAME, VERSION
from tests.strategies import cases

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=900)
HOUR = timedelta(hours=1)


def box_offer(
    offer_id: str | None,
    *,
    lower: float | list[float] = 0.0,
    upper: float | list[float] = 2.0,
    default: float | list[float] = 1.0,
    price: float | None = 0.1,
    start: datetime = T0 + HOUR,
    n_steps: int = 4,
    issuer: str = "foa-1",
    mode: Mode = Mode.DIRECT,
    slice_s: int = 900,
    congestion_point: str | None = None,
    assignment_before: datetime | None = None,
    total_energy: tuple[float, float] | None = None,
    polytope: Polytope | None = None,
) -> FlexOffer:
    """A direct offer with one-step slices, its default at `start` (start window = that step)."""

    def per_step(v: float | list[float]) -> list[float]:
        return [float(x) for x in v] if isinstance(v, list) else [float(v)] * n_steps

    lo, hi, ref = per_step(lower), per_step(upper), per_step(default)
    return FlexOffer(
        id=offer_id,
        issuer=issuer,
        mode=mode,
        location=Location(meter_id=f"M-{offer_id}", congestion_point=congestion_point),
        created_at=T0,
        assignment_before=assignment_before if assignment_before is not None else start,
        start_after=start,
        start_before=start,
        slice_s=slice_s,
        profiles=(
            Profile(
                slices=tuple(Slice(1, (a, b)) for a, b in zip(lo, hi, strict=True)),
                total_energy=total_energy,
                polytope=polytope,
            ),
        ),
        default_schedule=DefaultSchedule(start=start, profile=0, energy=tuple(ref)),
        price=Price(per_kwh_deviation=price) if price is not None else None,
    )


def request(volume: list[float], *, cutoff: float = 0.2, start: datetime = T0 + HOUR, **kw: object) -> Request:
    return Request(buyer="brp-1", start=start, slice_s=900, volume_kwh=tuple(volume), cutoff_eur_per_kwh=cutoff, **kw)


# -- invariants ----------------------------------------------------------------------------
def _grid(req: Request, start: datetime, values: np.ndarray) -> np.ndarray:
    """Values of a series that starts at `start`, placed on the request's steps (0 outside)."""
    out = np.zeros(req.n_steps)
    lag = int((start - req.start).total_seconds()) // req.slice_s
    for i, v in enumerate(values):
        if 0 <= lag + i < req.n_steps:
            out[lag + i] += v
    return out


def assert_sound(result: SessionResult, req: Request, offers: list[FlexOffer], now: datetime) -> None:
    """Every invariant of a one-sided pool result."""
    by_id = {o.id: o for o in offers}
    requested = np.array(req.volume_kwh)
    cleared = np.array(result.cleared_kwh)
    assert result.mechanism == NAME and result.mechanism_version == VERSION
    assert result.requested_kwh == req.volume_kwh
    # Volume: never more than asked, always in the asked direction.
    assert np.all(np.abs(cleared) <= np.abs(requested) + 1e-9)
    assert np.all(cleared * requested >= -1e-12)
    assert np.all(cleared[requested == 0] == 0)
    delivered_on_grid = np.zeros(req.n_steps)
    for award in result.awards:
        offer = by_id[award.offer_id]
        schedule = award.schedule
        assert check_schedule(offer, schedule) == [], award
        assert schedule.assigned_at == now
        assert schedule.start == offer.default_schedule.start
        assert schedule.profile == offer.default_schedule.profile
        deviation = np.array(schedule.energy) - np.array(offer.default_schedule.energy)
        assert np.allclose(deviation, award.deviation_kwh, atol=1e-9)
        # Pay as bid, at or under the cut-off, never less than the price per kWh delivered.
        assert award.price_eur_per_kwh == offer.price.per_kwh_deviation
        assert award.price_eur_per_kwh <= req.cutoff_eur_per_kwh
        assert award.price_eur >= award.price_eur_per_kwh * award.delivered_kwh - 1e-9
        assert award.delivered_kwh > 0
        assert schedule.price_eur == award.price_eur
        delivered_on_grid += _grid(req, schedule.start, deviation)
    assert np.allclose(delivered_on_grid, cleared, atol=1e-7)
    # Money balances to the cent.
    assert abs(result.buyer_pays_eur - result.sellers_receive_eur - result.surplus_eur) < 0.005
    assert abs(result.sellers_receive_eur - math.fsum(a.price_eur for a in result.awards)) < 0.005
    assert result.surplus_eur == 0.0
    assert (result.reason is None) == bool(result.awards)
    awarded = {a.offer_id for a in result.awards}
    rejected = {r.offer_id for r in result.rejected}
    assert not awarded & rejected
    if result.reason is None or "zero volume" not in result.reason:
        assert awarded | rejected == {o.id for o in offers}
    else:
        assert not rejected
    assert_merit_order(result, req, offers, now)


def assert_merit_order(result: SessionResult, req: Request, offers: list[FlexOffer], now: datetime) -> None:
    """A cheaper eligible offer is never left with spare capacity while a dearer one is used."""
    if not result.awards:
        return
    sign = np.sign(req.volume_kwh)
    used = {a.offer_id: a for a in result.awards}
    bids, _ = bids_from_offers(offers, now=now)
    rows = []  # (price, spare capacity per request step, used per request step)
    for bid in bids:
        lag_s = (bid.start - req.start).total_seconds()
        cp = req.congestion_point
        location_cp = bid.offer.location.congestion_point if bid.offer.location else None
        if (
            bid.offer.slice_s != req.slice_s
            or lag_s % req.slice_s
            or bid.price_eur_per_kwh > req.cutoff_eur_per_kwh
            or (cp is not None and location_cp != cp)
        ):
            continue
        capacity = np.where(
            sign < 0,
            -_grid(req, bid.start, np.array(bid.lower_kwh)),
            np.where(sign > 0, _grid(req, bid.start, np.array(bid.upper_kwh)), 0.0),
        )
        award = used.get(bid.offer_id)
        taken = np.abs(_grid(req, bid.start, np.array(award.deviation_kwh))) if award else np.zeros(req.n_steps)
        rows.append((bid.price_eur_per_kwh, capacity - taken, taken))
    for price_i, spare_i, _ in rows:
        for price_j, _, taken_j in rows:
            if price_i < price_j:
                assert not np.any((spare_i > 1e-7) & (taken_j > 1e-7)), "a dearer offer was used first"


# -- random markets ------------------------------------------------------------------------
def _retime(offer: FlexOffer, now: datetime) -> FlexOffer:
    """Shift every time of a generated offer so that it was created at `now`."""
    delta = now - offer.created_at

    def shift(t: datetime | None) -> datetime | None:
        return t + delta if t is not None else None

    return dataclasses.replace(
        offer,
        created_at=now,
        assignment_before=shift(offer.assignment_before),
        start_after=shift(offer.start_after),
        start_before=shift(offer.start_before),
        default_schedule=dataclasses.replace(offer.default_schedule, start=offer.default_schedule.start + delta),
    )


@st.composite
def markets(draw: st.DrawFn) -> tuple[Request, list[FlexOffer]]:
    """Up to 6 random offers created at T0 (mostly direct, with a price) and one request."""
    offers = []
    for i in range(draw(st.integers(0, 6))):
        offer = _retime(draw(cases(max_profiles=2)).offer, T0)
        if draw(st.sampled_from([True, True, True, False])):
            price = draw(st.sampled_from([0.0, 0.05, 0.1, 0.1, 0.25, 0.6]))
            offer = dataclasses.replace(offer, mode=Mode.DIRECT, price=Price(per_kwh_deviation=price))
        else:
            offer = dataclasses.replace(offer, mode=Mode.DELEGATED)
        offers.append(dataclasses.replace(offer, id=f"fo-{i:03d}"))
    slice_s = draw(st.sampled_from([900, 1800, 3600]))
    start = T0 + timedelta(seconds=slice_s * draw(st.integers(0, 12)))
    if offers and draw(st.integers(0, 3)):  # mostly on some offer's grid, near its default schedule
        anchor = draw(st.sampled_from(offers))
        slice_s = anchor.slice_s
        steps_in = int((anchor.default_schedule.start - T0).total_seconds()) // slice_s + draw(st.integers(-4, 2))
        start = T0 + timedelta(seconds=slice_s * max(steps_in, 0))
    n_steps = draw(st.integers(1, 16))
    kwh = st.builds(lambda size, sign: round(size * sign, 2), st.floats(0.05, 6.0), st.sampled_from([-1.0, 1.0]))
    volume = draw(st.lists(st.one_of(kwh, kwh, st.just(0.0)), min_size=n_steps, max_size=n_steps))
    req = Request(
        buyer="dso-1",
        start=start,
        slice_s=slice_s,
        volume_kwh=tuple(volume),
        cutoff_eur_per_kwh=draw(st.sampled_from([0.0, 0.05, 0.2, 1.0, 1.0])),
    )
    return req, offers


@given(markets())
def test_random_markets_clear_soundly(market):
    req, offers = market
    result = clear_one_sided_pool(req, offers, now=T0)
    assert_sound(result, req, offers, T0)


@settings(max_examples=50)
@given(markets(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_offer_order(market, rnd):
    req, offers = market
    shuffled = list(offers)
    rnd.shuffle(shuffled)
    first = clear_one_sided_pool(req, offers, now=T0)
    second = clear_one_sided_pool(req, shuffled, now=T0)
    assert first.awards == second.awards
    assert first.cleared_kwh == second.cleared_kwh
    assert first.reason == second.reason


@given(st.lists(st.sampled_from([0.05, 0.1, 0.1, 0.2]), min_size=1, max_size=8), st.floats(-12.0, 12.0))
def test_equal_prices_tie_break_by_offer_id(prices, volume):
    offers = [box_offer(f"fo-{i}", price=p) for i, p in enumerate(prices)]
    req = request([volume] * 4, cutoff=1.0)
    result = clear_one_sided_pool(req, offers, now=T0)
    assert_sound(result, req, offers, T0)
    order = [(a.price_eur_per_kwh, a.offer_id) for a in result.awards]
    assert order == sorted(order)


def test_many_offers_over_a_day_clear_soundly():
    rng = np.random.default_rng(7)
    offers = []
    for i in range(400):
        n_steps = int(rng.integers(4, 40))
        lower = rng.uniform(0.0, 1.0, n_steps)
        upper = lower + rng.uniform(0.0, 2.0, n_steps)
        start = T0 + STEP * int(rng.integers(0, 96 - n_steps))
        offers.append(
            box_offer(
                f"fo-{i:04d}",
                lower=lower.tolist(),
                upper=upper.tolist(),
                default=((lower + upper) / 2).tolist(),
                price=round(float(rng.uniform(0.0, 0.4)), 3),
                start=start,
                n_steps=n_steps,
            )
        )
    req = request(rng.uniform(-60.0, 60.0, 96).tolist(), cutoff=0.3, start=T0)
    result = clear_one_sided_pool(req, offers, now=T0)
    assert result.reason is None and result.n_bids > 100
    assert_sound(result, req, offers, T0)


# -- hand-made markets ---------------------------------------------------------------------
def test_merit_order_cutoff_and_pay_as_bid():
    offers = [
        box_offer("fo-a", default=1.5, upper=2.0, price=0.05),  # down 1.5, up 0.5 per step
        box_offer("fo-d", default=2.0, upper=3.0, price=0.10),  # ties with fo-b, loses on id
        box_offer("fo-b", default=2.0, upper=3.0, price=0.10),  # down 2.0, up 1.0
        box_offer("fo-c", default=1.0, price=0.30),  # above the cut-off
    ]
    req = request([-3.0, -1.0, 0.0, 1.2], cutoff=0.2)
    result = clear_one_sided_pool(req, offers, now=T0)
    assert_sound(result, req, offers, T0)
    assert [a.offer_id for a in result.awards] == ["fo-a", "fo-b"]
    a, b = result.awards
    assert a.schedule.energy == pytest.approx((0.0, 0.5, 1.5, 2.0))
    assert b.schedule.energy == pytest.approx((0.5, 2.0, 2.0, 2.7))
    assert a.price_eur == pytest.approx(0.05 * 3.0)
    assert b.price_eur == pytest.approx(0.10 * 2.2)
    assert result.cleared_kwh == pytest.approx((-3.0, -1.0, 0.0, 1.2))
    assert result.buyer_pays_eur == pytest.approx(0.37)
    assert result.step_max_price_eur_per_kwh == pytest.approx((0.10, 0.05, None, 0.10))
    assert result.step_mean_price_eur_per_kwh[0] == pytest.approx(0.075)
    assert result.max_price_eur_per_kwh == 0.10
    assert result.mean_price_eur_per_kwh == pytest.approx(0.37 / 5.2)
    reasons = {r.offer_id: r.reason for r in result.rejected}
    assert "above the cut-off" in reasons["fo-c"]
    assert "not needed" in reasons["fo-d"]
    assert result.n_offers == 4 and result.n_bids == 3


def test_short_market_clears_what_it_can():
    offers = [box_offer("fo-a", default=1.0, price=0.1)]
    req = request([-5.0, -5.0, 0.5, 3.0], cutoff=0.2)
    result = clear_one_sided_pool(req, offers, now=T0)
    assert_sound(result, req, offers, T0)
    assert result.cleared_kwh == pytest.approx((-1.0, -1.0, 0.5, 1.0))
    assert result.reason is None


def test_offer_overlapping_part_of_the_request_deviates_only_there():
    offers = [box_offer("fo-a", start=T0 + HOUR - 2 * STEP, default=1.0)]
    req = request([-1.0, -1.0, -1.0, -1.0])
    result = clear_one_sided_pool(req, offers, now=T0)
    assert_sound(result, req, offers, T0)
    assert result.awards[0].deviation_kwh == pytest.approx((0.0, 0.0, -1.0, -1.0))
    assert result.cleared_kwh == pytest.approx((-1.0, -1.0, 0.0, 0.0))


def test_joint_constraints_keep_awards_feasible():
    # Total energy at least 3.5 kWh over 4 steps from a default of 4 kWh: the inner box
    # lets the offer give up only 0.5 kWh in all; the polytope caps step 0 + step 1 at 2.5.
    polytope = Polytope(A=((1.0, 1.0, 0.0, 0.0),), b=(2.5,))
    offers = [box_offer("fo-t", default=1.0, total_energy=(3.5, 6.0), polytope=polytope, price=0.05)]
    for volume in ([-2.0] * 4, [2.0] * 4, [1.0, -1.0, 1.0, -1.0]):
        req = request(volume)
        result = clear_one_sided_pool(req, offers, now=T0)
        assert_sound(result, req, offers, T0)
        assert result.awards


def test_congestion_point_limits_a_local_request():
    offers = [
        box_offer("fo-here", congestion_point="cp-3", price=0.2),
        box_offer("fo-there", congestion_point="cp-9", price=0.01),
    ]
    req = request([-1.0] * 4, cutoff=0.5, congestion_point="cp-3")
    result = clear_one_sided_pool(req, offers, now=T0)
    assert_sound(result, req, offers, T0)
    assert [a.offer_id for a in result.awards] == ["fo-here"]


def _only(reason: str, offers: list[FlexOffer], req: Request, *, now: datetime = T0) -> SessionResult:
    result = clear_one_sided_pool(req, offers, now=now)
    assert result.awards == ()
    assert result.reason is not None and reason in result.reason, result.reason
    assert result.cleared_kwh == (0.0,) * req.n_steps
    assert result.buyer_pays_eur == result.sellers_receive_eur == result.surplus_eur == 0.0
    assert result.mean_price_eur_per_kwh is None and result.max_price_eur_per_kwh is None
    assert set(result.step_max_price_eur_per_kwh) == {None}
    return result


def test_zero_volume_is_a_clean_result():
    _only("zero volume", [box_offer("fo-a")], request([0.0, 0.0]))


def test_empty_market_is_a_clean_result():
    _only("empty market", [], request([-1.0]))


def test_no_direct_offers_is_a_clean_result():
    offers = [box_offer("fo-a", mode=Mode.DELEGATED, price=None), box_offer("fo-b", mode=Mode.DELEGATED)]
    result = _only("no direct offers", offers, request([-1.0] * 4))
    assert {r.offer_id for r in result.rejected} == {"fo-a", "fo-b"}


def test_direct_offers_without_deviation_price_is_a_clean_result():
    offer = dataclasses.replace(box_offer("fo-a"), price=Price(per_kwh=0.3))
    _only("price per kWh of deviation", [offer], request([-1.0] * 4))


def test_every_offer_above_the_cutoff_is_a_clean_result():
    offers = [box_offer("fo-a", price=0.3), box_offer("fo-b", price=0.25)]
    result = _only("no crossing bids", offers, request([-1.0] * 4, cutoff=0.2))
    assert all("above the cut-off" in r.reason for r in result.rejected)


def test_request_outside_every_offer_is_a_clean_result():
    offers = [box_offer("fo-a"), box_offer("fo-b", start=T0 + 2 * HOUR)]
    _only("overlaps the request period", offers, request([-1.0] * 4, start=T0 + 5 * HOUR))


def test_offers_that_cannot_move_the_requested_way_are_a_clean_result():
    offers = [box_offer("fo-a", default=0.0)]  # already at its lower bound
    result = _only("requested direction", offers, request([-1.0] * 4))
    assert result.n_bids == 1


def test_other_grid_and_other_congestion_point_are_clean_results():
    _only("grid", [box_offer("fo-a", slice_s=3600, n_steps=1)], request([-1.0] * 4))
    _only("congestion point", [box_offer("fo-a")], request([-1.0] * 4, congestion_point="cp-1"))


def test_offers_past_assignment_or_started_are_clean_results():
    late = box_offer("fo-a", assignment_before=T0 + HOUR - STEP)
    _only("scheduled", [late], request([-1.0] * 4), now=T0 + HOUR - STEP + timedelta(seconds=1))
    started = box_offer("fo-b", start=T0, assignment_before=T0 + HOUR)
    result = _only("scheduled", [started], request([-1.0] * 4, start=T0), now=T0 + STEP)
    assert "started" in result.rejected[0].reason


def test_broken_offers_are_rejected_not_raised():
    no_id = box_offer(None)
    bad_default = dataclasses.replace(
        box_offer("fo-b"), default_schedule=DefaultSchedule(start=T0 + HOUR, profile=0, energy=(5.0, 5.0, 5.0, 5.0))
    )
    wrong_length = dataclasses.replace(
        box_offer("fo-c"), default_schedule=DefaultSchedule(start=T0 + HOUR, profile=0, energy=(1.0,))
    )
    twin = box_offer("fo-d")
    offers = [no_id, bad_default, wrong_length, twin, twin, box_offer("fo-e")]
    result = clear_one_sided_pool(request([-1.0] * 4), offers, now=T0)
    reasons = {r.offer_id: r.reason for r in result.rejected}
    assert "no id" in reasons["offers[0]"]
    assert "slice bounds" in reasons["fo-b"]
    assert "steps" in reasons["fo-c"]
    assert "duplicate" in reasons["fo-d"]
    assert [a.offer_id for a in result.awards] == ["fo-d"]


def test_bids_are_the_inner_box_around_the_default():
    offer = box_offer("fo-a", lower=0.5, upper=2.0, default=[1.0, 0.5, 2.0, 1.5], price=0.07)
    (bid,), rejected = bids_from_offers([offer, box_offer("fo-x", mode=Mode.DELEGATED)], now=T0)
    assert [r.offer_id for r in rejected] == ["fo-x"]
    assert bid.offer_id == "fo-a" and bid.price_eur_per_kwh == 0.07 and bid.start == T0 + HOUR
    assert bid.lower_kwh == pytest.approx((-0.5, 0.0, -1.5, -1.0))
    assert bid.upper_kwh == pytest.approx((1.0, 1.5, 0.0, 0.5))


# -- data checks -----------------------------------------------------------------------------
def test_request_lists_every_problem():
    with pytest.raises(InvalidRequestError) as err:
        Request(
            buyer="",
            start=datetime(2026, 3, 2, 12, 7),
            slice_s=7000,
            volume_kwh=(1.0, float("nan")),
            cutoff_eur_per_kwh=-1.0,
        )
    paths = {p.path for p in err.value.problems}
    assert paths == {"buyer", "start", "slice_s", "volume_kwh[1]", "cutoff_eur_per_kwh"}
    with pytest.raises(InvalidRequestError, match="not on the 900 s grid"):
        request([1.0], start=T0 + timedelta(minutes=5))
    with pytest.raises(InvalidRequestError, match="no steps"):
        request([])


def test_session_checks_its_times_and_kind():
    session = Session("s", "intraday", T0, T0 + HOUR, T0 + 2 * HOUR)
    assert session.kind is SessionKind.INTRADAY and session.n_steps == 4
    with pytest.raises(InvalidSessionError) as err:
        Session("", "weekly", T0 + 3 * HOUR, T0 + 2 * HOUR, T0 + HOUR, opens_at=T0 + 4 * HOUR)
    paths = {p.path for p in err.value.problems}
    assert paths == {"name", "kind", "delivery_end", "gate_closure", "opens_at"}


# -- mechanisms ------------------------------------------------------------------------------
def test_mechanism_registry():
    assert "one_sided_pool" in mechanism_names()
    pool = create_mechanism("one_sided_pool")
    assert isinstance(pool, OneSidedPool) and (pool.name, pool.version) == (NAME, VERSION)
    with pytest.raises(UnknownMechanismError, match="one_sided_pool"):
        create_mechanism("two_sided_pool_v0")

    class Impostor(Mechanism):
        name = "one_sided_pool"
        version = "0"

        def clear(self, requests, offers, *, now, session=None):
            return []

    with pytest.raises(MarketError, match="taken"):
        register_mechanism(Impostor)


def test_pool_mechanism_clears_requests_in_turn_without_reusing_offers():
    offers = [box_offer("fo-a", price=0.05), box_offer("fo-b", price=0.1)]
    first, second = request([-1.0] * 4, id="r1"), request([-1.0] * 4, id="r2")
    results = OneSidedPool().clear([first, second], offers, now=T0)
    assert [[a.offer_id for a in r.awards] for r in results] == [["fo-a"], ["fo-b"]]
    assert [r.request_id for r in results] == ["r1", "r2"]


# -- the market service end to end -------------------------------------------------------------
class Clock:
    """A settable clock for the store and the market."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_market_end_to_end_with_store_and_clients():
    clock = Clock(T0)
    market = FlexOfferMarket("fmar-test", clock=clock)
    gate = T0 + HOUR - 2 * STEP
    day_ahead = market.add_session(Session("da-1", "day_ahead", gate, T0 + HOUR, T0 + 2 * HOUR))
    later = market.add_session(Session("id-2", "intraday", T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR))
    local = market.add_session(Session("local-1", SessionKind.LOCAL, gate, T0 + HOUR, T0 + 2 * HOUR, opens_at=T0))
    foa1, foa2 = market.client("foa-1"), market.client("foa-2")
    events = []
    foa1.subscribe(events.append)
    foa2.subscribe(events.append)

    def submit(client, offer_id, **kw):
        offer = dataclasses.replace(box_offer(offer_id, issuer=client.party, **kw), id=None, created_at=None)
        return client.submit(offer)

    o1 = submit(foa1, "x1", default=1.5, price=0.05, assignment_before=T0 + HOUR)
    o2 = submit(foa2, "x2", default=2.0, upper=3.0, price=0.10, assignment_before=T0 + HOUR)
    dear = submit(foa2, "x3", price=0.9, assignment_before=T0 + HOUR)
    elsewhere = submit(foa1, "x4", start=T0 + 3 * HOUR, assignment_before=T0 + 3 * HOUR)
    expired = submit(foa1, "x5", price=0.01, assignment_before=gate - STEP)
    assert market.post_request(request([-3.0] * 4, id="brp-r1")) == day_ahead
    assert market.post_request(request([-0.1] * 4, congestion_point="cp-1")) == local
    status = {row["session"]: row for row in market.status()}
    assert status["da-1"]["state"] == "open" and status["da-1"]["n_bids"] == 4
    assert status["id-2"]["n_bids"] == 1 and status["da-1"]["n_requests"] == 1
    assert market.sessions_due() == []
    with pytest.raises(SessionError, match="closes its gate"):
        market.run_session("da-1")

    clock.now = gate
    assert market.sessions_due() == [day_ahead, local]
    with pytest.raises(SessionError, match="closed its gate"):
        market.post_request(request([-1.0] * 4), session="da-1")
    results = market.run_session(day_ahead, now=gate)
    (result,) = results
    assert [a.offer_id for a in result.awards] == [o1.id, o2.id]
    assert result.session == "da-1" and result.kind is SessionKind.DAY_AHEAD and result.gate_closure == gate
    assert result.cleared_kwh == pytest.approx((-3.0,) * 4)

    for client, offer in ((foa1, o1), (foa2, o2)):
        got = client.get(offer.id)
        assert got.state is OfferState.ASSIGNED
        assert check_schedule(got, got.schedule) == []
    assert {(e.kind, e.offer.id) for e in events if e.kind == "assigned"} == {("assigned", o1.id), ("assigned", o2.id)}
    for client, offer in ((foa2, dear), (foa1, elsewhere), (foa1, expired)):
        assert client.get(offer.id).state is OfferState.ACCEPTED
        assert client.get(offer.id).schedule is None

    with pytest.raises(SessionError, match="already cleared"):
        market.run_session("da-1")
    market.run_due()
    status = {row["session"]: row for row in market.status()}
    assert status["da-1"]["state"] == "cleared" and status["da-1"]["n_awards"] == 2
    assert status["da-1"]["cleared_kwh"] == pytest.approx(12.0)
    assert status["local-1"]["state"] == "cleared" and status["id-2"]["state"] == "open"
    assert market.sessions_due() == [] and later in market.sessions

    frame = results_frame(market.results)
    assert list(frame.columns) == list(RESULT_COLUMNS) and len(frame) == 2
    row = frame.iloc[0]
    assert (row["session"], row["kind"], row["mechanism"], row["version"]) == ("da-1", "day_ahead", NAME, VERSION)
    assert row["n_awards"] == 2 and row["cleared_kwh"] == pytest.approx(12.0)
    assert row["buyer_pays_eur"] == pytest.approx(row["sellers_receive_eur"] + row["surplus_eur"])
    assert "no offer at congestion point" in frame.iloc[1]["reason"]
    assert results_frame([]).columns.tolist() == list(RESULT_COLUMNS)


def test_market_calendar_refusals():
    clock = Clock(T0)
    market = FlexOfferMarket(clock=clock)
    session = Session("s", "day_ahead", T0 + HOUR, T0 + HOUR, T0 + 2 * HOUR, opens_at=T0 + STEP)
    market.add_session(session)
    with pytest.raises(SessionError, match="already on the calendar"):
        market.add_session(session)
    with pytest.raises(SessionError, match="opens at"):
        market.post_request(request([-1.0] * 4), session="s")
    clock.now = T0 + STEP
    assert market.status()[0]["state"] == "open"
    with pytest.raises(SessionError, match="outside"):
        market.post_request(request([-1.0] * 8), session="s")
    with pytest.raises(SessionError, match="no open session"):
        market.post_request(request([-1.0] * 4, start=T0 + 3 * HOUR))
    with pytest.raises(SessionError, match="no session 'nope'"):
        market.run_session("nope")
    clock.now = T0 + HOUR
    assert market.run_session("s") == []
    assert market.status()[0]["state"] == "cleared"

"""The DOMS FOA: congestion forecasts become reduction requests, posted to a real market as buyer's requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.errors import InvalidOfferError
from atp.flexoffer import Location, Mode, check_schedule, offer_from_json, validate_offer
from atp.fmar import FlexOfferMarket, Session, SessionKind
from atp.foa import CommunicationError, GenerationError
from atp.foa.doms import DOMS_DEVICE, DomsFoa, GridForecast
from atp.interface import InProcessClient, RequestState

T0 = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
NOW = T0 - timedelta(hours=2)
CP = Location(meter_id="TR-ESR-3", bus=3, congestion_point="cp-esr-3")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flexoffers" / "dso_congestion_request.json"


def store_and_client(party: str = "dso-esr") -> tuple[FlexOfferMarket, InProcessClient]:
    """A market with a local session per request grid (900, 1800, 3600 s) over two days from T0."""
    market = FlexOfferMarket("fmar", clock=lambda: NOW)
    for slice_s in (900, 1800, 3600):
        gate = T0 - timedelta(hours=1)
        market.add_session(Session(f"local-{slice_s}", SessionKind.LOCAL, gate, T0, T0 + timedelta(days=2), slice_s))
    return market, market.client(party)


def forecast(values, *, limit=10.0, step_s=900, start=T0, price=0.25) -> GridForecast:
    return GridForecast(
        start=start, step_s=step_s, forecast_kwh=tuple(values), limit_kwh=limit, location=CP, price_eur_per_kwh=price
    )


def test_two_congested_runs_become_two_requests_with_the_example_shape() -> None:
    market, client = store_and_client()
    doms = DomsFoa(client, issuer="dso-esr", slice_s=900)
    fc = forecast([5, 12, 14, 14, 9, 10, 13])
    offers = doms.requests(fc, now=NOW)  # the requests in the Flex-Offer shape of D2.1
    assert len(offers) == 2
    first, second = offers
    example = offer_from_json(EXAMPLE.read_text())
    for a in offers:
        assert (a.mode, a.device, a.location, a.issuer) == (Mode.DIRECT, DOMS_DEVICE, CP, "dso-esr")
        assert a.mode is example.mode and a.device == example.device
        assert a.start_after == a.start_before and a.assignment_before == a.start_after - timedelta(hours=1)
        assert a.price.per_kwh_deviation == 0.25
        assert validate_offer(a, now=NOW) == []
    assert first.start_after == T0 + timedelta(minutes=15)
    assert [s.energy for s in first.profiles[0].slices] == [(-2.0, 0.0), (-4.0, 0.0)]
    assert [s.duration for s in first.profiles[0].slices] == [1, 2]  # equal steps merged
    assert first.profiles[0].total_energy == (-10.0, 0.0)
    assert first.default_schedule.energy == (-2.0, -4.0, -4.0)  # the whole excess removed
    assert second.start_after == T0 + timedelta(minutes=90) and second.default_schedule.energy == (-3.0,)
    # Posted to the market, they are the DSO's buyer's requests: bought, never offered.
    answers = doms.submit(fc, now=NOW)
    assert [a.state for a in answers] == [RequestState.OPEN] * 2 and all(a.id for a in answers)
    assert [(a.start, a.volume_kwh) for a in answers] == [
        (first.start_after, (-2.0, -4.0, -4.0)),
        (second.start_after, (-3.0,)),
    ]
    for a in answers:
        assert (a.buyer, a.congestion_point, a.cutoff_eur_per_kwh, a.session) == (
            "dso-esr",
            "cp-esr-3",
            0.25,
            "local-900",
        )
        assert client.get_request(a.id) == a
    assert market.store.records() == [] and [r.id for r in market.requests_of("local-900")] == [a.id for a in answers]
    # Submitted as an offer instead, the market refuses it: it would be sold to the other buyers.
    with pytest.raises(InvalidOfferError, match="POST /request"):
        client.submit(first)


def test_no_request_when_nothing_exceeds_the_limit() -> None:
    market, client = store_and_client()
    doms = DomsFoa(client, issuer="dso-esr")
    assert doms.submit(forecast([9.0, 10.0, 3.0, 10.0]), now=NOW) == []
    assert market.store.request_records() == []


def test_a_minimum_share_cannot_be_posted() -> None:
    _, client = store_and_client()
    doms = DomsFoa(client, issuer="dso-esr", min_share=0.5)
    assert doms.requests(forecast([20, 20]), now=NOW)[0].profiles[0].total_energy == (-20.0, -10.0)
    with pytest.raises(GenerationError, match="min_share"):
        doms.submit(forecast([20, 20]), now=NOW)


def test_hourly_resolution_sums_the_quarter_hours_and_min_share_sets_the_total() -> None:
    _, client = store_and_client()
    doms = DomsFoa(client, issuer="dso-esr", slice_s=3600, min_share=0.5)
    values = [12, 12, 12, 12, 12, 8, 8, 8]  # hour 1: 48 vs 40; hour 2: 36 vs 40
    [request] = doms.requests(forecast(values), now=NOW)
    assert request.slice_s == 3600 and request.profiles[0].slices[0].energy == (-8.0, 0.0)
    assert request.profiles[0].total_energy == (-8.0, -4.0)
    np.testing.assert_allclose(doms.excess_kwh(forecast(values)), [8.0, 0.0])
    assert check_schedule(request, request.default_schedule) == []


def test_slices_inside_the_gate_lead_are_not_requested() -> None:
    _, client = store_and_client()
    doms = DomsFoa(client, issuer="dso-esr", gate_lead_s=3600)
    now = T0 - timedelta(minutes=30)  # the first 30 min of the forecast are within the gate lead
    [request] = doms.requests(forecast([20, 20, 20, 20, 20, 20]), now=now)
    assert request.start_after == T0 + timedelta(minutes=30)
    assert request.profiles[0].n_steps == 4


def test_repeated_forecast_is_idempotent_and_a_lost_reply_is_retried() -> None:
    market, client = store_and_client()
    records = market.store.request_records

    class LossyClient:
        """The in-process client whose first reply of each post is lost (after storing)."""

        party = client.party

        def __init__(self) -> None:
            self.calls = 0

        def post_request(self, request, *, idempotency_key=None):
            self.calls += 1
            answer = client.post_request(request, idempotency_key=idempotency_key)
            if self.calls % 2 == 1:
                raise CommunicationError("reply lost")
            return answer

    lossy = LossyClient()
    slept: list[float] = []
    doms = DomsFoa(lossy, issuer="dso-esr", sleep=slept.append)
    first = doms.submit(forecast([20, 20]), now=NOW)
    again = doms.submit(forecast([20, 20]), now=NOW)
    assert [a.id for a in first] == [a.id for a in again] and len(records()) == 1
    assert slept == [0.5, 0.5]
    changed = DomsFoa(client, issuer="dso-esr").submit(forecast([20, 25]), now=NOW)
    assert changed[0].id != first[0].id and len(records()) == 2


@settings(max_examples=60)
@given(
    st.lists(st.floats(0.0, 50.0), min_size=4, max_size=96).map(lambda v: v[: len(v) - len(v) % 4]),
    st.floats(0.0, 40.0),
    st.sampled_from([900, 1800, 3600]),
    st.floats(0.0, 1.0),
)
def test_requests_cover_exactly_the_excess(values, limit, slice_s, share) -> None:
    market, client = store_and_client()
    doms = DomsFoa(client, issuer="dso-esr", slice_s=slice_s, min_share=share)
    fc = forecast(values, limit=limit)
    excess = doms.excess_kwh(fc)
    offers = doms.requests(fc, now=NOW)
    requested = np.zeros(len(excess))
    for a in offers:
        assert validate_offer(a, now=NOW) == []
        k = int((a.start_after - T0).total_seconds() // slice_s)
        lower = a.profiles[0].lower_kwh()
        requested[k : k + len(lower)] += -lower
        assert np.all(a.profiles[0].upper_kwh() == 0.0)
        lo, hi = a.profiles[0].total_energy
        assert lo == pytest.approx(lower.sum()) and hi == pytest.approx(share * lower.sum())
    np.testing.assert_allclose(requested, np.where(excess > 1e-6, excess, 0.0), atol=1e-9)
    # What is posted (without a minimum share) asks for the same reductions, as buyer's requests.
    posted = DomsFoa(client, issuer="dso-esr", slice_s=slice_s).submit(fc, now=NOW)
    assert [(p.start, p.volume_kwh) for p in posted] == [(o.start_after, o.default_schedule.energy) for o in offers]
    assert all(v < 0 for p in posted for v in p.volume_kwh)
    assert len(market.store.request_records()) == len(posted) and market.store.records() == []


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: DomsFoa(store_and_client()[1], issuer="d", slice_s=600), r"within \[900, 3600\]"),
        (lambda: DomsFoa(store_and_client()[1], issuer="d", slice_s=3500), "divide 86400"),
        (lambda: DomsFoa(store_and_client()[1], issuer="d", min_share=1.5), "min_share"),
        (lambda: forecast([1.0, 2.0], limit=(1.0,)), "1 values for 2 forecast steps"),
        (lambda: forecast([1.0, float("nan")]), r"forecast_kwh\[1\]"),
        (
            lambda: GridForecast(
                start=T0, step_s=900, forecast_kwh=(1.0,), limit_kwh=1.0, location=Location("m"), price_eur_per_kwh=0.1
            ),
            "congestion_point",
        ),
        (
            lambda: DomsFoa(store_and_client()[1], issuer="d", slice_s=3600).requests(forecast([1.0] * 6), now=NOW),
            "do not fill whole 3600 s slices",
        ),
        (
            lambda: DomsFoa(store_and_client()[1], issuer="d").requests(forecast([1.0] * 4, step_s=1800), now=NOW),
            "multiple of the forecast's step_s",
        ),
        (
            lambda: DomsFoa(store_and_client()[1], issuer="d", slice_s=3600).requests(
                forecast([1.0] * 4, start=T0 + timedelta(minutes=15)), now=NOW
            ),
            "not on the 3600 s grid",
        ),
    ],
)
def test_bad_forecasts_and_settings_are_refused(build, match) -> None:
    with pytest.raises(GenerationError, match=match):
        build()

"""FMAN KPIs (D2.1 7.6): adaptation, adaptability, savings, EUR/MW/year and projections."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from atp.errors import ValidationError
from atp.fman import KpiInputs, compute_kpis

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def test_a_hand_computed_day() -> None:
    baseline = np.full(96, 25.0)  # 100 kW flat
    optimised = baseline.copy()
    optimised[68:72] = 0.0  # one evening hour off (25 kWh x 4 = 100 kWh less)
    optimised[8:12] = 50.0  # moved to a night hour
    prices = np.full(96, 0.10)
    prices[68:72] = 0.40
    k = compute_kpis(
        KpiInputs(
            start=T0,
            slice_s=900,
            baseline_kwh=baseline,
            optimised_kwh=optimised,
            prices_eur_per_kwh=prices,
            participants=10,
            offers=12,
            market_cleared_kwh=40.0,
            market_requested_kwh=1000.0,
            market_revenue_eur=8.0,
            market_deals=4,
            prosumer_payments_eur=5.0,
        )
    )
    assert k["hourly_adaptation_projected_mwh"][17] == pytest.approx(-0.1)
    assert k["hourly_adaptation_projected_mwh"][2] == pytest.approx(0.1)
    assert k["load_adaptability_level_max"] == pytest.approx(1.0)  # 0.1 MWh/h over a 0.1 MWh/h peak
    assert k["valuation"]["savings_projected_eur"] == pytest.approx(100 * 0.40 - 100 * 0.10)
    # the margin is cash: market revenue minus payments; savings are a valuation beside it
    assert k["money"]["aggregator_margin_eur"] == pytest.approx(8.0 - 5.0)
    assert k["flexible_capacity_mw"] == pytest.approx(0.1)
    # one day is extrapolated to a year: the figures sit under `extrapolated`, with their basis
    extrapolated = k["extrapolated"]
    assert "money_per_mw_year" not in k and "projections" not in k
    assert extrapolated["basis"] == "1 day(s) from 2026-03-02 (March), scaled by 365/1"
    assert "1 day(s) from 2026-03-02 (March)" in extrapolated["caveat"]
    assert extrapolated["valuation_per_mw_year"]["savings_projected_eur_per_mw_year"] == pytest.approx(30.0 / 0.1 * 365)
    assert extrapolated["money_per_mw_year"]["aggregator_margin_eur_per_mw_year"] == pytest.approx(3.0 / 0.1 * 365)
    x10, x100 = extrapolated["projections"]["x10"], extrapolated["projections"]["x100"]
    assert x10["market_cleared_kwh"] == pytest.approx(400.0) and not x10["market_capped_by_requested_kwh"]
    assert x100["market_cleared_kwh"] == pytest.approx(1000.0) and x100["market_capped_by_requested_kwh"]
    assert x100["market_revenue_eur"] == pytest.approx(8.0 * 100 * 1000 / 4000)
    assert x100["flexible_energy_shifted_kwh"] == pytest.approx(100 * 100.0)
    assert x100["aggregator_margin_eur"] == pytest.approx(8.0 * 100 * 1000 / 4000 - 5.0 * 100)
    assert k["hourly_adaptation_factual_mwh"] is None and k["valuation"]["savings_factual_eur"] is None


def test_a_week_or_more_is_not_flagged_as_extrapolated() -> None:
    n = 7 * 96 + 96 * 25  # 32 days from 2026-03-02: March and April
    k = compute_kpis(
        KpiInputs(
            start=T0,
            slice_s=900,
            baseline_kwh=np.full(n, 1.0),
            optimised_kwh=np.full(n, 1.0),
            prices_eur_per_kwh=np.full(n, 0.1),
            participants=1,
            offers=1,
        )
    )
    assert "extrapolated" not in k
    assert k["extrapolation_basis"] == "32 day(s) from 2026-03-02 (March-April), scaled by 365/32"
    assert set(k["projections"]) == {"x10", "x100", "x1000"} and "money_per_mw_year" in k


@settings(max_examples=60, deadline=None)
@given(
    arrays(float, 24, elements=st.floats(0, 10)),
    arrays(float, 24, elements=st.floats(0, 10)),
    arrays(float, 24, elements=st.floats(-0.1, 0.5)),
    st.floats(0, 100),
    st.floats(0, 500),
)
def test_kpis_are_consistent(baseline, optimised, prices, cleared, requested) -> None:
    k = compute_kpis(
        KpiInputs(
            start=T0,
            slice_s=900,
            baseline_kwh=baseline,
            optimised_kwh=optimised,
            prices_eur_per_kwh=prices,
            metered_kwh=optimised,
            participants=3,
            offers=5,
            market_cleared_kwh=cleared,
            market_requested_kwh=requested,
            market_revenue_eur=cleared * 0.1,
            market_deals=2,
        )
    )
    assert sum(k["hourly_adaptation_projected_mwh"]) == pytest.approx((optimised - baseline).sum() / 1000, abs=1e-5)
    assert k["valuation"]["savings_factual_eur"] == pytest.approx(k["valuation"]["savings_projected_eur"], abs=1e-5)
    assert k["valuation"]["savings_projected_eur"] == pytest.approx(float(prices @ (baseline - optimised)), abs=1e-5)
    assert k["money"]["aggregator_margin_eur"] == pytest.approx(cleared * 0.1, abs=1e-5)  # nothing paid out
    assert all(level >= 0 for level in k["load_adaptability_level"])
    previous = 0.0
    for factor in (10, 100, 1000):
        p = k["extrapolated"]["projections"][f"x{factor}"]
        assert p["market_cleared_kwh"] <= requested + 1e-6
        assert p["market_cleared_kwh"] >= previous - 1e-6  # more participants never sell less
        previous = p["market_cleared_kwh"]


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(ValidationError, match="optimised_kwh"):
        KpiInputs(
            start=T0,
            slice_s=900,
            baseline_kwh=np.zeros(4),
            optimised_kwh=np.zeros(3),
            prices_eur_per_kwh=np.zeros(4),
            participants=1,
            offers=1,
        )
    with pytest.raises(ValidationError, match="prices_eur_per_kwh"):
        KpiInputs(
            start=T0,
            slice_s=900,
            baseline_kwh=np.zeros(4),
            optimised_kwh=np.zeros(4),
            prices_eur_per_kwh=np.array([0, 0, np.nan, 0]),
            participants=1,
            offers=1,
        )


def test_kpis_from_a_store_follow_its_offers_and_scope() -> None:
    """Baseline = defaults, optimised = schedules (else defaults), metered = measurements; a party
    sees its own offers, the operator all."""
    from datetime import timedelta

    from atp.flexoffer import DefaultSchedule, FlexOffer, Measurement, Mode, Profile, Schedule, Slice
    from atp.fman import kpi_inputs_from_store
    from atp.interface import OPERATOR, InProcessClient, OfferStore

    store = OfferStore("fman", clock=lambda: T0)
    start = T0 + timedelta(hours=1)

    def submit(party: str) -> FlexOffer:
        return InProcessClient(store, party).submit(
            FlexOffer(
                issuer=party,
                mode=Mode.DELEGATED,
                profiles=(Profile(slices=(Slice(duration=4, energy=(0.0, 2.0)),)),),
                start_after=start,
                start_before=start + timedelta(hours=2),
                default_schedule=DefaultSchedule(start, 0, (1.0,) * 4),
            )
        )

    a, b = submit("a"), submit("b")
    later = start + timedelta(hours=1)
    store.assign(a.id, Schedule(flex_offer_id=a.id, start=later, profile=0, energy=(2.0,) * 4))
    InProcessClient(store, "a").post_measurements(
        [Measurement(a.id, "m-a", later + timedelta(minutes=15 * k), 1.5) for k in range(4)]
    )
    end = T0 + timedelta(hours=4)
    mine = kpi_inputs_from_store(store, party="a", start=T0, end=end, slice_s=900)
    assert mine.participants == 1 and mine.offers == 1
    assert mine.baseline_kwh.sum() == pytest.approx(4.0) and mine.optimised_kwh.sum() == pytest.approx(8.0)
    assert mine.metered_kwh is not None and mine.metered_kwh.sum() == pytest.approx(6.0)
    everyone = kpi_inputs_from_store(store, party=OPERATOR, start=T0, end=end, slice_s=900)
    assert everyone.participants == 2 and everyone.baseline_kwh.sum() == pytest.approx(8.0)
    assert everyone.optimised_kwh.sum() == pytest.approx(12.0)  # b runs its default
    report = compute_kpis(everyone)
    assert report["scope"] == OPERATOR and sum(report["hourly_adaptation_projected_mwh"]) == pytest.approx(0.004)
    del b

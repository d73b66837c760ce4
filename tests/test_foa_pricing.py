"""Direct trading: the comfort priority becomes a price, and peak power routes an offer to FMAN or FMAR."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atp.flexoffer import DefaultSchedule, FlexOffer, Mode, Price, Profile, Slice
from atp.foa.pricing import (
    PRIORITY_CLASSES,
    PricingError,
    Route,
    peak_power_kw,
    priority_of,
    priority_to_price,
    route_for,
)

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def offer(upper_kwh: float, *, mode: Mode = Mode.DIRECT, slice_s: int = 900, lower_kwh: float = 0.0) -> FlexOffer:
    return FlexOffer(
        issuer="p1",
        mode=mode,
        profiles=(Profile(slices=(Slice(2, (lower_kwh, upper_kwh)), Slice(1, (0.0, upper_kwh / 2)))),),
        start_after=T0,
        start_before=T0 + timedelta(hours=1),
        slice_s=slice_s,
        default_schedule=DefaultSchedule(T0, 0, (0.0, 0.0, 0.0)),
        price=Price(per_kwh_deviation=0.1) if mode is Mode.DIRECT else None,
    )


def test_priority_rule_end_points_and_classes() -> None:
    assert priority_to_price(0.0, base_eur_per_kwh=0.12) == pytest.approx(0.12)
    assert priority_to_price(1.0, base_eur_per_kwh=0.12) == pytest.approx(0.48)
    assert priority_to_price("normal", base_eur_per_kwh=0.10, comfort_factor=2.0) == pytest.approx(0.20)
    assert priority_to_price("high", base_eur_per_kwh=0.0) == 0.0
    assert priority_of("low") == 0.0 and set(PRIORITY_CLASSES) == {"low", "normal", "high"}


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 5.0), st.floats(0.0, 10.0))
def test_price_grows_with_priority(p1, p2, base, factor) -> None:
    lo, hi = sorted((p1, p2))
    price_lo = priority_to_price(lo, base_eur_per_kwh=base, comfort_factor=factor)
    price_hi = priority_to_price(hi, base_eur_per_kwh=base, comfort_factor=factor)
    assert base <= price_lo <= price_hi <= base * (1 + factor) + 1e-12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"priority": 1.5, "base_eur_per_kwh": 0.1}, r"priority 1.5 must lie within \[0, 1\]"),
        ({"priority": -0.1, "base_eur_per_kwh": 0.1}, "priority"),
        ({"priority": math.nan, "base_eur_per_kwh": 0.1}, "finite"),
        ({"priority": "urgent", "base_eur_per_kwh": 0.1}, "unknown priority class 'urgent'.*low"),
        ({"priority": 0.5, "base_eur_per_kwh": -0.1}, "base_eur_per_kwh must not be negative"),
        ({"priority": 0.5, "base_eur_per_kwh": 0.1, "comfort_factor": -1.0}, "comfort_factor"),
        ({"priority": True, "base_eur_per_kwh": 0.1}, "finite number"),
    ],
)
def test_priority_to_price_refuses_bad_input(kwargs, match) -> None:
    priority = kwargs.pop("priority")
    with pytest.raises(PricingError, match=match):
        priority_to_price(priority, **kwargs)


def test_peak_power_and_routing() -> None:
    small = offer(2.75)  # 11 kW at 900 s
    assert peak_power_kw(small) == pytest.approx(11.0)
    assert route_for(small, large_kw_threshold=50.0) is Route.FMAN
    assert route_for(small, large_kw_threshold=11.0) is Route.FMAR  # at the threshold: large
    big_injection = offer(0.0, lower_kwh=-100.0, slice_s=3600)  # 100 kW of production
    assert peak_power_kw(big_injection) == pytest.approx(100.0)
    assert route_for(big_injection, large_kw_threshold=50.0) is Route.FMAR
    delegated = offer(1000.0, mode=Mode.DELEGATED)
    assert route_for(delegated, large_kw_threshold=50.0) is Route.FMAN  # delegated: always the aggregator
    with pytest.raises(PricingError, match="large_kw_threshold must be positive"):
        route_for(small, large_kw_threshold=0.0)

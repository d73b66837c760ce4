"""The vectorised population path produces the per-device generators' offers (EV and heat pump).

Random states come from hypothesis; each batch result is compared with `EVGenerator.generate`
and `HeatPumpGenerator.generate` on the same states: structure, times and counts exactly,
energies, bounds and polytope numbers within 1e-9 (relative), and every batch offer is valid.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import FlexOffer, Location, Mode, validate_offer
from atp.foa import EVGenerator, EVState, GenerationContext, GenerationError, HeatPumpGenerator, ThermalState
from atp.foa.population import generate_ev_offers_batch, generate_heat_pump_offers_batch

DAY0 = datetime(2026, 1, 5, tzinfo=UTC)
LOCATION = Location(meter_id="M-1", bus=3)


def contexts():
    slice_s = st.sampled_from([900, 900, 1800, 3600])
    return st.builds(
        lambda s, k, off, direct, horizon_h: GenerationContext(
            now=DAY0 + timedelta(seconds=s * k + off % s),
            slice_s=s,
            issuer="p1",
            location=LOCATION,
            mode=Mode.DIRECT if direct else Mode.DELEGATED,
            price_eur_per_kwh=0.2 if direct else None,
            horizon_s=horizon_h * 3600,
        ),
        slice_s,
        st.integers(0, 200),
        st.sampled_from([0, 0, 1, 450, 899, 1799]),
        st.booleans(),
        st.sampled_from([24, 24, 6, 1]),
    )


@st.composite
def ev_states(draw, now: datetime):
    cap = draw(st.floats(20.0, 90.0))
    soc = draw(st.floats(0.0, 1.0))
    target = float(np.clip(soc + draw(st.floats(-0.2, 1.0)), 0.0, 1.0))
    return EVState(
        plugged_in=draw(st.booleans() | st.just(True)),
        now_energy_kwh=soc * cap,
        capacity_kwh=cap,
        target_energy_kwh=target * cap,
        departure=now + timedelta(seconds=draw(st.integers(-3600, 30 * 3600))),
        max_power_kw=draw(st.sampled_from([3.7, 7.4, 11.0, 22.0]) | st.floats(1.0, 25.0)),
        charge_efficiency=draw(st.floats(0.8, 1.0)),
    )


@st.composite
def thermal_states(draw):
    cmin = draw(st.floats(18.0, 21.0))
    width = draw(st.floats(0.5, 4.0))
    return ThermalState(
        indoor_temp_c=draw(st.floats(cmin - 2.0, cmin + width + 2.0)),
        comfort_min_c=cmin,
        comfort_max_c=cmin + width,
        setpoint_c=draw(st.floats(cmin, cmin + width)),
        deadband_c=draw(st.floats(0.0, width)),
        r_k_per_kw=draw(st.floats(2.0, 10.0)),
        c_kwh_per_k=draw(st.floats(6.0, 20.0)),
        cop=draw(st.floats(2.0, 4.5)),
        max_power_kw=draw(st.floats(0.5, 8.0)),
        heat_on=draw(st.booleans()),
        outdoor_temp_forecast_c=tuple(draw(st.lists(st.floats(-15.0, 18.0), min_size=1, max_size=30))),
    )


def assert_same_offer(batch: FlexOffer | None, single: FlexOffer | None) -> None:
    assert (batch is None) == (single is None)
    if single is None:
        return
    for name in ("issuer", "mode", "device", "location", "created_at", "assignment_before", "start_after"):
        assert getattr(batch, name) == getattr(single, name), name
    assert (batch.start_before, batch.slice_s, batch.price) == (single.start_before, single.slice_s, single.price)
    assert batch.default_schedule.start == single.default_schedule.start
    np.testing.assert_allclose(batch.default_schedule.energy, single.default_schedule.energy, rtol=1e-9, atol=1e-9)
    assert len(batch.profiles) == len(single.profiles) == 1
    pb, ps = batch.profiles[0], single.profiles[0]
    assert [s.duration for s in pb.slices] == [s.duration for s in ps.slices]
    np.testing.assert_allclose([s.energy for s in pb.slices], [s.energy for s in ps.slices], rtol=1e-12)
    assert (pb.total_energy is None) == (ps.total_energy is None)
    if ps.total_energy is not None:
        np.testing.assert_allclose(pb.total_energy, ps.total_energy, rtol=1e-12, atol=1e-12)
    assert (pb.polytope is None) == (ps.polytope is None)
    if ps.polytope is not None:
        np.testing.assert_allclose(pb.polytope.A, ps.polytope.A, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(pb.polytope.b, ps.polytope.b, rtol=1e-9, atol=1e-9)
    assert pb.dependency is None and ps.dependency is None


@settings(max_examples=150)
@given(st.data(), contexts())
def test_ev_batch_equals_per_device_generator(data, ctx) -> None:
    states = data.draw(st.lists(ev_states(ctx.now), min_size=1, max_size=12))
    batch = generate_ev_offers_batch(states, ctx)
    assert len(batch) == len(states)
    generator = EVGenerator()
    for state, offer in zip(states, batch, strict=True):
        assert_same_offer(offer, generator.generate(state, ctx))
        if offer is not None:
            assert validate_offer(offer) == []


@settings(max_examples=100)
@given(st.lists(thermal_states(), min_size=1, max_size=8), contexts(), st.integers(1, 24), st.integers(1, 5))
def test_heat_pump_batch_equals_per_device_generator(states, ctx, block_steps, chunk_size) -> None:
    generator = HeatPumpGenerator(block_steps=block_steps)
    try:
        singles = [generator.generate(s, ctx) for s in states]
    except GenerationError:
        with pytest.raises(GenerationError, match="too long for the building"):
            generate_heat_pump_offers_batch(states, ctx, block_steps=block_steps, chunk_size=chunk_size)
        return
    batch = generate_heat_pump_offers_batch(states, ctx, block_steps=block_steps, chunk_size=chunk_size)
    assert len(batch) == len(states)
    for offer, single in zip(batch, singles, strict=True):
        assert_same_offer(offer, single)
        if offer is not None:
            assert validate_offer(offer) == []


def test_empty_population_and_wrong_state_types() -> None:
    ctx = GenerationContext(now=DAY0, issuer="p1", location=LOCATION)
    assert generate_ev_offers_batch([], ctx) == []
    assert generate_heat_pump_offers_batch([], ctx) == []
    hp = ThermalState(20.0, 19.0, 22.0, 20.5, 1.0, 5.0, 10.0, 3.0, 3.0, False, (5.0,))
    with pytest.raises(GenerationError, match=r"states\[0\].*EVState"):
        generate_ev_offers_batch([hp], ctx)
    with pytest.raises(GenerationError, match="block_steps"):
        generate_heat_pump_offers_batch([hp], ctx, block_steps=0)

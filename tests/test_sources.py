"""The world's data sources: SimBench profiles, weather, day-ahead prices and series files (real data, no mocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.sources import (
    CLIMATES,
    PRICE_MODELS,
    ProfileLibrary,
    SourceError,
    commercial_load_kwh,
    generate_day_ahead_prices,
    generate_weather,
    household_load_kwh,
    plane_of_array_w_per_m2,
    pv_kwh_per_kwp,
    read_series_file,
)

YEAR_START = datetime(2025, 1, 1)
QUARTERS_PER_YEAR = 365 * 96
HOURS_PER_YEAR = 365 * 24


@pytest.fixture(scope="module")
def library() -> ProfileLibrary:
    return ProfileLibrary.load()


@pytest.fixture(scope="module")
def site_weather() -> dict[str, pd.DataFrame]:
    """A year of hourly weather per site, one seed."""
    return {
        name: generate_weather(
            climate, start=YEAR_START, n_steps=HOURS_PER_YEAR, slice_s=3600, rng=np.random.default_rng(11)
        )
        for name, climate in CLIMATES.items()
    }


# --- SimBench profiles -------------------------------------------------------------------------


def test_library_lists_per_unit_profiles_of_a_leap_year(library: ProfileLibrary) -> None:
    assert library.year == 2016 and library.n_days == 366
    assert len(library.load_pu) == 366 * 96
    assert all(name.startswith("H0-") for name in library.household_names) and len(library.household_names) >= 3
    assert all(name.startswith("G") for name in library.commercial_names) and len(library.commercial_names) >= 3
    assert all(name.startswith("PV") for name in library.pv_names) and library.pv_names
    assert np.allclose(library.load_pu.max(), 1.0)  # per unit of the rated power
    assert ProfileLibrary.load() is library  # cached per process


def test_household_full_year_sums_to_annual_kwh(library: ProfileLibrary) -> None:
    annual = np.array([1500.0, 3000.0, 4500.0, 6000.0])
    energy = household_load_kwh(
        library,
        start=YEAR_START,
        n_steps=QUARTERS_PER_YEAR,
        slice_s=900,
        annual_kwh=annual,
        rng=np.random.default_rng(1),
    )
    assert energy.shape == (QUARTERS_PER_YEAR, 4)
    assert np.all(energy >= 0)
    np.testing.assert_allclose(energy.sum(axis=0), annual, rtol=0.01)


def test_commercial_full_year_sums_and_drops_on_weekends(library: ProfileLibrary) -> None:
    annual = np.full(6, 40_000.0)
    energy = commercial_load_kwh(
        library, start=YEAR_START, n_steps=HOURS_PER_YEAR, slice_s=3600, annual_kwh=annual, rng=np.random.default_rng(2)
    )
    np.testing.assert_allclose(energy.sum(axis=0), annual, rtol=0.01)
    daily = energy.sum(axis=1).reshape(365, 24).sum(axis=1)
    weekday = pd.date_range(YEAR_START, periods=365, freq="D").dayofweek.to_numpy()
    assert daily[weekday >= 5].mean() < 0.8 * daily[weekday < 5].mean()


def test_household_same_seed_same_loads_other_seed_other_loads(library: ProfileLibrary) -> None:
    kwargs = {"start": datetime(2025, 3, 3), "n_steps": 7 * 96, "slice_s": 900, "annual_kwh": np.full(20, 3500.0)}
    first = household_load_kwh(library, rng=np.random.default_rng(42), **kwargs)
    again = household_load_kwh(library, rng=np.random.default_rng(42), **kwargs)
    other = household_load_kwh(library, rng=np.random.default_rng(43), **kwargs)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    distinct_neighbours = {first[:, k].tobytes() for k in range(first.shape[1])}
    assert len(distinct_neighbours) >= 5


def test_resampling_to_hourly_sums_the_quarter_hours(library: ProfileLibrary) -> None:
    kwargs = {"start": datetime(2025, 5, 10), "annual_kwh": np.array([2500.0, 4000.0, 5200.0])}
    quarters = household_load_kwh(library, n_steps=3 * 96, slice_s=900, rng=np.random.default_rng(5), **kwargs)
    hours = household_load_kwh(library, n_steps=3 * 24, slice_s=3600, rng=np.random.default_rng(5), **kwargs)
    half_hours = household_load_kwh(library, n_steps=3 * 48, slice_s=1800, rng=np.random.default_rng(5), **kwargs)
    np.testing.assert_allclose(hours, quarters.reshape(72, 4, 3).sum(axis=1))
    np.testing.assert_allclose(half_hours.sum(axis=0), quarters.sum(axis=0))
    pv_quarters = pv_kwh_per_kwp(library, start=kwargs["start"], n_steps=3 * 96, slice_s=900)
    pv_hours = pv_kwh_per_kwp(library, start=kwargs["start"], n_steps=3 * 24, slice_s=3600)
    np.testing.assert_allclose(pv_hours.sum(), pv_quarters.sum())


def test_year_wrap_and_leap_day_map_inside_the_profile_year(library: ProfileLibrary) -> None:
    wrap = pv_kwh_per_kwp(library, start=datetime(2025, 12, 31), n_steps=2 * 96, slice_s=900)
    before = pv_kwh_per_kwp(library, start=datetime(2025, 12, 31), n_steps=96, slice_s=900)
    after = pv_kwh_per_kwp(library, start=datetime(2026, 1, 1), n_steps=96, slice_s=900)
    np.testing.assert_array_equal(wrap, np.concatenate([before, after]))
    loads = commercial_load_kwh(
        library,
        start=datetime(2025, 12, 29),  # Monday, two weeks across New Year
        n_steps=14 * 24,
        slice_s=3600,
        annual_kwh=np.full(4, 30_000.0),
        rng=np.random.default_rng(3),
    )
    assert np.all(np.isfinite(loads)) and np.all(loads >= 0)
    daily = loads.sum(axis=1).reshape(14, 24).sum(axis=1)
    assert daily[[5, 6, 12, 13]].max() < daily[[7, 8, 9, 10, 11]].min()  # weekends stay weekends
    leap = household_load_kwh(
        library,
        start=datetime(2024, 2, 28),
        n_steps=3 * 96,
        slice_s=900,
        annual_kwh=np.array([3000.0]),
        rng=np.random.default_rng(4),
    )
    assert leap.shape == (288, 1) and np.all(leap[96:192] >= 0) and leap[96:192].sum() > 0


def test_profiles_reject_steps_finer_than_the_data(library: ProfileLibrary) -> None:
    with pytest.raises(ValueError, match=r"slice_s\(=600\)"):
        household_load_kwh(
            library, start=YEAR_START, n_steps=4, slice_s=600, annual_kwh=np.ones(2), rng=np.random.default_rng(0)
        )
    with pytest.raises(SourceError, match=r"slice_s\(=1000\)"):
        pv_kwh_per_kwp(library, start=YEAR_START, n_steps=4, slice_s=1000)


def test_simbench_pv_is_zero_at_night(library: ProfileLibrary) -> None:
    pv = pv_kwh_per_kwp(library, start=datetime(2025, 6, 1), n_steps=30 * 96, slice_s=900).reshape(30, 96)
    assert np.all(pv[:, : 3 * 4] == 0)  # 00:00-03:00 UTC
    assert np.all(pv[:, 22 * 4 :] == 0)  # 22:00-24:00 UTC
    assert pv.sum(axis=1).min() > 0


def test_pv_yield_per_site_climate(site_weather: dict[str, pd.DataFrame]) -> None:
    yields = {}
    for name, weather in site_weather.items():
        plane = plane_of_array_w_per_m2(weather, CLIMATES[name], slice_s=3600, tilt_deg=30.0)
        common = {"start": YEAR_START, "n_steps": HOURS_PER_YEAR, "slice_s": 3600, "irradiance_w_per_m2": plane}
        with_temp = pv_kwh_per_kwp(None, temp_c=weather["temp_c"].to_numpy(), **common)
        yields[name] = (with_temp.sum(), pv_kwh_per_kwp(None, **common).sum())
        ghi = pv_kwh_per_kwp(None, **(common | {"irradiance_w_per_m2": weather["ghi_w_per_m2"].to_numpy()}))
        assert np.all(ghi[weather["ghi_w_per_m2"].to_numpy() == 0] == 0)
    # PR 0.8 alone gives the usual specific yields; the temperature derate takes hot Nicosia lower.
    assert 1600 <= yields["nicosia"][1] <= 1900 and 850 <= yields["wunsiedel"][1] <= 1100
    assert 1450 <= yields["nicosia"][0] <= 1800
    assert 1050 <= yields["sion"][0] <= 1400
    assert 800 <= yields["wunsiedel"][0] <= 1050
    assert yields["nicosia"][0] > yields["sion"][0] > yields["wunsiedel"][0]


# --- weather -----------------------------------------------------------------------------------


def test_weather_has_seasonal_and_daily_shape(site_weather: dict[str, pd.DataFrame]) -> None:
    for name, weather in site_weather.items():
        assert list(weather.columns) == ["temp_c", "ghi_w_per_m2"] and str(weather.index.tz) == "UTC"
        month = weather.index.month
        assert weather["temp_c"][month == 7].mean() > weather["temp_c"][month == 1].mean() + 10, name
        solar_hour = (weather.index.hour + CLIMATES[name].longitude_deg / 15.0) % 24
        afternoon = weather["temp_c"][(solar_hour >= 14) & (solar_hour < 16)].mean()
        pre_dawn = weather["temp_c"][(solar_hour >= 3) & (solar_hour < 5)].mean()
        assert afternoon > pre_dawn + 5, name
        night = (solar_hour < 3) | (solar_hour >= 22)
        assert np.all(weather["ghi_w_per_m2"][night] == 0), name
        assert weather["ghi_w_per_m2"].max() < 1100, name
    annual_ghi_kwh = {name: w["ghi_w_per_m2"].sum() / 1000 for name, w in site_weather.items()}
    assert 1800 <= annual_ghi_kwh["nicosia"] <= 2100 and 950 <= annual_ghi_kwh["wunsiedel"] <= 1200
    assert annual_ghi_kwh["nicosia"] > annual_ghi_kwh["sion"] > annual_ghi_kwh["wunsiedel"]


def test_weather_deterministic_per_seed() -> None:
    kwargs = {"start": datetime(2025, 4, 1, tzinfo=UTC), "n_steps": 5 * 96, "slice_s": 900}
    first = generate_weather(CLIMATES["sion"], rng=np.random.default_rng(9), **kwargs)
    again = generate_weather(CLIMATES["sion"], rng=np.random.default_rng(9), **kwargs)
    other = generate_weather(CLIMATES["sion"], rng=np.random.default_rng(10), **kwargs)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


# --- prices ------------------------------------------------------------------------------------


def test_prices_hourly_constant_with_evening_peak() -> None:
    for name, model in PRICE_MODELS.items():
        prices = generate_day_ahead_prices(
            model, start=YEAR_START, n_steps=60 * 96, slice_s=900, rng=np.random.default_rng(7)
        )
        assert prices.index[0] == pd.Timestamp(YEAR_START, tz="UTC") and len(prices) == 60 * 96
        per_hour = prices.to_numpy().reshape(-1, 4)
        assert np.all(per_hour == per_hour[:, :1]), name
        local_hour = (prices.index + pd.Timedelta(hours=model.utc_offset_h)).hour
        evening = prices[(local_hour >= 18) & (local_hour < 21)].mean()
        night = prices[(local_hour >= 2) & (local_hour < 5)].mean()
        assert evening > night + 0.01, name
        assert 0.5 * model.mean_eur_per_kwh < prices.mean() < 1.5 * model.mean_eur_per_kwh, name


def test_prices_deterministic_per_seed_and_steps_agree() -> None:
    model = PRICE_MODELS["germany"]
    kwargs = {"start": datetime(2025, 6, 2), "n_steps": 14 * 24, "slice_s": 3600}
    first = generate_day_ahead_prices(model, rng=np.random.default_rng(1), **kwargs)
    pd.testing.assert_series_equal(first, generate_day_ahead_prices(model, rng=np.random.default_rng(1), **kwargs))
    assert not first.equals(generate_day_ahead_prices(model, rng=np.random.default_rng(2), **kwargs))
    quarters = generate_day_ahead_prices(
        model, start=datetime(2025, 6, 2), n_steps=14 * 96, slice_s=900, rng=np.random.default_rng(1)
    )
    np.testing.assert_array_equal(quarters.to_numpy()[::4], first.to_numpy())
    with pytest.raises(SourceError, match=r"slice_s\(=2700\)"):
        generate_day_ahead_prices(model, start=YEAR_START, n_steps=4, slice_s=2700, rng=np.random.default_rng(1))


# --- series files ------------------------------------------------------------------------------


def _hourly_frame(hours: int = 6) -> pd.DataFrame:
    times = pd.date_range("2025-01-01T01:00+01:00", periods=hours, freq="h")
    return pd.DataFrame(
        {
            "time": [t.isoformat() for t in times],
            "load_kw": np.arange(hours, dtype=float),
            "temp_c": 10.0 + np.arange(hours),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_series_file_forward_fills_onto_the_grid(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"series{suffix}"
    frame = _hourly_frame()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    start = datetime(2025, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))  # = 00:00 UTC
    series = read_series_file(path, start=start, n_steps=6 * 4, slice_s=900, columns=["load_kw"])
    assert list(series.columns) == ["load_kw"] and str(series.index.tz) == "UTC"
    assert series.index[0] == pd.Timestamp("2025-01-01T00:00Z")
    np.testing.assert_array_equal(series["load_kw"].to_numpy(), np.repeat(np.arange(6.0), 4))


def test_read_series_file_naive_times_are_utc(tmp_path: Path) -> None:
    path = tmp_path / "naive.csv"
    pd.DataFrame({"time": ["2025-01-01T00:00", "2025-01-01T00:15"], "x": [1.0, 2.0]}).to_csv(path, index=False)
    series = read_series_file(path, start=datetime(2025, 1, 1), n_steps=2, slice_s=900, columns=["x"])
    np.testing.assert_array_equal(series["x"].to_numpy(), [1.0, 2.0])


@pytest.mark.parametrize(
    ("name", "content", "columns", "start", "message"),
    [
        ("absent.csv", None, ["load_kw"], datetime(2025, 1, 1), "not found"),
        ("series.txt", "time,load_kw\n", ["load_kw"], datetime(2025, 1, 1), "unsupported extension"),
        ("no_time.csv", "when,load_kw\n2025-01-01T00:00,1\n", ["load_kw"], datetime(2025, 1, 1), "'time' is missing"),
        ("no_col.csv", "time,load_kw\n2025-01-01T00:00,1\n", ["temp_c"], datetime(2025, 1, 1), "'temp_c' is missing"),
        ("text.csv", "time,load_kw\n2025-01-01T00:00,1\n2025-01-01T01:00,abc\n", ["load_kw"], None, "non-numeric"),
        ("nan.csv", "time,load_kw\n2025-01-01T00:00,1\n2025-01-01T01:00,\n", ["load_kw"], None, "NaN"),
        ("bad_time.csv", "time,load_kw\nyesterday,1\n", ["load_kw"], None, "not ISO 8601"),
        (
            "late.csv",
            "time,load_kw\n2025-01-01T01:00,1\n2025-01-01T02:00,2\n",
            ["load_kw"],
            None,
            "from 2025-01-01T00:00:00\\+00:00 to 2025-01-01T01:00:00",
        ),
        (
            "short.csv",
            "time,load_kw\n2025-01-01T00:00,1\n2025-01-01T01:00,2\n",
            ["load_kw"],
            None,
            "from 2025-01-01T02:00:00\\+00:00 to 2025-01-01T04:00",
        ),
        (
            "gap.csv",
            "time,load_kw\n2025-01-01T00:00,1\n2025-01-01T01:00,2\n2025-01-01T03:00,3\n",
            ["load_kw"],
            None,
            "from 2025-01-01T02:00:00\\+00:00 to 2025-01-01T03:00",
        ),
    ],
)
def test_read_series_file_errors_name_the_file(
    tmp_path: Path, name: str, content: str | None, columns: list[str], start: datetime | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(SourceError, match=message) as caught:
        read_series_file(path, start=start or datetime(2025, 1, 1), n_steps=4 * 4, slice_s=900, columns=columns)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)

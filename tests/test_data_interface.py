"""The external-data interface (atp.data): one quantity per call on the caller's grid, energy
conserved by resampling, every bad request named, and the same data reaching the same FOA
from files, over HTTP (a real socket) and in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.data import ArrayDataSource, DataError, FileDataSource, HttpDataSource, create_data_app, resample
from atp.flexoffer import Location, Mode
from atp.fman.service import data_prices
from atp.foa.forecasts import meter_readings_kwh, outdoor_forecast_c, pv_forecast_kwh
from atp.foa.generator import GenerationContext, generator_for
from atp.foa.generators.pv import PvState
from atp.foa.states import ThermalState
from atp.interface.serve import ServerThread

T0 = datetime(2026, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
N_HOURS = 48
RNG = np.random.default_rng(7)
TEMP = np.round(RNG.uniform(-5, 8, N_HOURS), 3)  # hourly, degC
PV = np.round(np.clip(np.sin(np.linspace(0, 4 * np.pi, N_HOURS)), 0, None) * 0.6, 4)  # kWh per kWp per hour
PRICES = np.round(RNG.uniform(0.05, 0.3, N_HOURS), 4)
METER = np.round(RNG.uniform(0, 2, 4 * N_HOURS), 3)  # quarter-hourly kWh
POINTS = {"M-017": "cp-3", "M-018": None}
TOKEN = "token-of-the-data-feed-0123"


def _arrays() -> ArrayDataSource:
    hourly = ArrayDataSource(
        start=T0,
        slice_s=3600,
        series={
            ("outdoor_temp_c", None): TEMP,
            ("pv_kwh_per_kwp", None): PV,
            ("price_eur_per_kwh", None): PRICES,
        },
        meter_points=POINTS,
    )
    return _Joined(hourly, ArrayDataSource(start=T0, slice_s=900, series={("meter_kwh", "M-017"): METER}))


class _Joined:
    """Two in-process sources on their own grids, as one (weather hourly, meters quarter-hourly)."""

    def __init__(self, hourly: ArrayDataSource, quarter: ArrayDataSource) -> None:
        self.hourly, self.quarter = hourly, quarter

    def series(self, quantity, start, end, *, slice_s, key=None):
        source = self.quarter if quantity == "meter_kwh" else self.hourly
        return source.series(quantity, start, end, slice_s=slice_s, key=key)

    def congestion_point(self, meter_id):
        return self.hourly.congestion_point(meter_id)


def _write_files(folder) -> FileDataSource:
    hours = pd.date_range(T0, periods=N_HOURS, freq="h")
    quarters = pd.date_range(T0, periods=4 * N_HOURS, freq="15min")
    times = [t.isoformat() for t in hours]
    pd.DataFrame({"time": times, "outdoor_temp_c": TEMP, "pv_kwh_per_kwp": PV}).to_csv(
        folder / "weather.csv", index=False
    )
    pd.DataFrame({"time": hours, "price_eur_per_kwh": PRICES}).to_parquet(folder / "prices.parquet")
    pd.DataFrame({"time": [t.isoformat() for t in quarters], "M-017": METER}).to_csv(folder / "meters.csv", index=False)
    pd.DataFrame({"meter_id": list(POINTS), "congestion_point": ["cp-3", ""]}).to_csv(
        folder / "meter_points.csv", index=False
    )
    return FileDataSource(folder)


@pytest.fixture(scope="module")
def bindings(tmp_path_factory):
    """The same data in-process, in files, and over HTTP from a server with a token."""
    arrays = _arrays()
    files = _write_files(tmp_path_factory.mktemp("data"))
    with ServerThread(create_data_app(arrays, tokens={TOKEN: "feed"}), graceful_s=0.2) as server:
        remote = HttpDataSource(server.url, TOKEN)
        yield {"in-process": arrays, "files": files, "http": remote}, server
        remote.close()


@pytest.mark.parametrize("slice_s", [900, 3600, 7200])
def test_every_binding_gives_the_same_series(bindings, slice_s) -> None:
    sources, _ = bindings
    start, end = T0 + 2 * HOUR, T0 + 30 * HOUR
    for name, key in [("outdoor_temp_c", None), ("pv_kwh_per_kwp", None), ("price_eur_per_kwh", None)]:
        got = [s.series(name, start, end, slice_s=slice_s, key=key) for s in sources.values()]
        assert got[0] == got[1] == got[2], name
    meters = [s.series("meter_kwh", start, end, slice_s=slice_s, key="M-017") for s in sources.values()]
    assert meters[0] == meters[1] == meters[2]
    assert meters[0].values.sum() == pytest.approx(METER[8:120].sum())  # energy is conserved on any grid
    assert [s.congestion_point("M-017") for s in sources.values()] == ["cp-3"] * 3
    assert [s.congestion_point("M-018") for s in sources.values()] == [None] * 3


def test_the_same_foa_makes_the_same_offers_from_every_binding(bindings) -> None:
    sources, _ = bindings
    ctx = GenerationContext(
        now=T0 + timedelta(hours=5, minutes=7),
        issuer="foss-p017",
        location=Location(meter_id="M-017", congestion_point="cp-3"),
        mode=Mode.DELEGATED,
    )
    offers = []
    for source in sources.values():
        thermal = ThermalState(
            indoor_temp_c=21.0,
            comfort_min_c=20.0,
            comfort_max_c=23.0,
            setpoint_c=21.5,
            deadband_c=1.0,
            r_k_per_kw=5.0,
            c_kwh_per_k=10.0,
            cop=3.2,
            max_power_kw=3.0,
            heat_on=False,
            outdoor_temp_forecast_c=outdoor_forecast_c(source, ctx, 16),
        )
        pv = PvState(kwp=6.0, inverter_kw=5.0, available_kwh=0.0, forecast_kwh=pv_forecast_kwh(source, ctx, 6.0, 16))
        offers.append((generator_for("heat_pump").generate(thermal, ctx), generator_for("pv").generate(pv, ctx)))
        assert meter_readings_kwh(source, "M-017", T0, T0 + HOUR, slice_s=900) == tuple(METER[:4])
    assert offers[0] == offers[1] == offers[2]
    assert offers[0][0] is not None


def test_the_fman_reads_its_prices_from_the_interface(bindings) -> None:
    sources, _ = bindings
    prices = data_prices(sources["http"], T0, T0 + 24 * HOUR, slice_s=900)
    assert prices.slice_s == 900 and len(prices.values_eur_per_kwh) == 96
    assert np.array_equal(prices.values_eur_per_kwh, np.repeat(PRICES[:24], 4))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.series("wind_speed", T0, T0 + HOUR, slice_s=900), "is not one of"),
        (lambda s: s.series("meter_kwh", T0, T0 + HOUR, slice_s=900), "needs a key"),
        (lambda s: s.series("meter_kwh", T0, T0 + HOUR, slice_s=900, key="M-999"), "M-999"),
        (lambda s: s.series("outdoor_temp_c", T0, T0 + HOUR, slice_s=900, key="x"), "takes no key"),
        (lambda s: s.series("outdoor_temp_c", T0 - HOUR, T0 + HOUR, slice_s=900), "covers"),
        (lambda s: s.series("outdoor_temp_c", T0, T0 + 60 * HOUR, slice_s=900), "covers"),
        (lambda s: s.series("outdoor_temp_c", T0, T0 + HOUR, slice_s=700), "slice_s"),
        (lambda s: s.series("outdoor_temp_c", T0 + timedelta(minutes=5), T0 + HOUR, slice_s=900), "grid"),
        (lambda s: s.series("outdoor_temp_c", T0 + HOUR, T0, slice_s=900), "positive"),
        (lambda s: s.congestion_point("M-999"), "M-999"),
    ],
)
def test_every_bad_request_is_named_by_every_binding(bindings, call, match) -> None:
    sources, _ = bindings
    for name, source in sources.items():
        with pytest.raises(DataError, match=match):
            call(source)
        assert name


def test_the_http_binding_needs_its_token_and_never_answers_5xx(bindings) -> None:
    _, server = bindings
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/data/outdoor_temp_c/2026-01-12T00:00:00Z/2026-01-12T01:00:00Z").status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for path in (
            "/data/outdoor_temp_c/2026-01-12T00:00:00Z/2026-01-12T01:00:00Z?slice_s=0",
            "/data/outdoor_temp_c/yesterday/2026-01-12T01:00:00Z",
            "/data/outdoor_temp_c/2026-01-12T00:00:00Z/2226-01-12T01:00:00Z",
            "/data/meter_kwh/2026-01-12T00:00:00Z/2026-01-12T01:00:00Z?key=%ED%A0%80",
            "/data/nonflex_kwh/2026-01-12T00:00:00Z/2026-01-12T01:00:00Z",
        ):
            answer = http.get(path, headers=auth)
            assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)
            assert answer.json()["error"]


def test_files_are_checked_when_they_are_read(tmp_path) -> None:
    (tmp_path / "weather.csv").write_text(
        "time,outdoor_temp_c\n2026-01-12T00:00Z,1\n2026-01-12T01:00Z,2\n2026-01-12T03:00Z,3\n"
    )
    with pytest.raises(DataError, match="evenly spaced"):
        FileDataSource(tmp_path)
    (tmp_path / "weather.csv").write_text("time,wind\n2026-01-12T00:00Z,1\n2026-01-12T01:00Z,2\n")
    with pytest.raises(DataError, match="wind"):
        FileDataSource(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        FileDataSource(tmp_path / "missing")


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=48),
    native=st.sampled_from([900, 1800, 3600]),
    target=st.sampled_from([300, 900, 1800, 3600, 7200]),
)
def test_resampling_conserves_energy_and_means(values, native, target) -> None:
    data = np.array(values)
    if native % target and target % native:
        with pytest.raises(DataError):
            resample(data, native, target, extensive=True)
        return
    energy = resample(data, native, target, extensive=True)
    level = resample(data, native, target, extensive=False)
    if target <= native:
        assert energy.sum() == pytest.approx(data.sum(), abs=1e-6)
        assert level.min() >= data.min() - 1e-9 and level.max() <= data.max() + 1e-9
    else:
        r = target // native
        whole = data[: len(data) // r * r]
        assert energy.sum() == pytest.approx(whole.sum(), abs=1e-6)
        assert len(level) == len(whole) // r
        if len(level):
            assert level.mean() == pytest.approx(whole.mean(), abs=1e-6)

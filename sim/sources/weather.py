"""Weather generator: seeded air temperature and solar irradiance with daily and seasonal shape.

`generate_weather` draws, for a `Climate`, a series on the simulation grid (UTC step starts;
each value describes the step's midpoint):

- ``temp_c``: the monthly normal mean, interpolated linearly between mid-months, plus a diurnal
  cosine of the month's half-range peaking at 15:00 local solar time (minimum at 03:00), plus a
  day-to-day AR(1) anomaly (lag-one correlation 0.7, standard deviation ``temp_noise_c``) drawn
  per local solar day and interpolated between solar noons, so there are no jumps at midnight.
- ``ghi_w_per_m2``: global horizontal irradiance = Haurwitz clear-sky GHI
  (``1098 cos z exp(-0.059 / cos z)`` W/m2, solar zenith z from Spencer's declination and
  equation of time and the hour angle) times a daily clear-sky index drawn from a Beta
  distribution whose mean is the month's ``monthly_clearness_index``; zero while the sun is
  below the horizon.

``monthly_clearness_index`` is therefore the *clear-sky index* (mean GHI / clear-sky GHI), not
the clearness index Kt (GHI / extraterrestrial). The presets were calibrated so that the
expected monthly GHI matches approximate long-term monthly means for each site (values below).

`plane_of_array_w_per_m2` turns a generated GHI into irradiance on a tilted module (Erbs
beam/diffuse split, isotropic sky, ground albedo), for `sim.sources.profiles.pv_kwh_per_kwp`.
All draws come from the caller's ``numpy.random.Generator`` in a fixed order: the same
generator state gives the same weather.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from atp.data.files import simulation_index
from sim.sources.errors import SourceError

__all__ = ["CLIMATES", "Climate", "generate_weather", "plane_of_array_w_per_m2"]

_DAY_TO_DAY_CORRELATION = 0.7
_CLEARNESS_CONCENTRATION = 3.0  # Beta(a, b) with a + b = 3: days from overcast to clear
_TEMP_PEAK_SOLAR_H = 15.0
_SOLAR_CONSTANT_W_PER_M2 = 1367.0
_MIN_COS_ZENITH_FOR_BEAM = 0.065  # below ~86 deg elevation-limit, all light is treated as diffuse
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_MID_MONTH_DAY = np.cumsum(_DAYS_IN_MONTH) - _DAYS_IN_MONTH / 2.0  # day of year (0-based) of mid-months


@dataclass(frozen=True)
class Climate:
    """Monthly climate normals of a site: what `generate_weather` draws around.

    ``daily_temp_amplitude_c`` is half the mean daily range, (mean max - mean min) / 2, per month
    or one value for all months; ``monthly_clearness_index`` is the clear-sky index per month
    (mean GHI over Haurwitz clear-sky GHI, in (0, 1]); ``temp_noise_c`` is the standard
    deviation of the day-to-day temperature anomaly.
    """

    name: str
    latitude_deg: float
    longitude_deg: float
    monthly_mean_temp_c: tuple[float, ...]
    daily_temp_amplitude_c: tuple[float, ...] | float
    monthly_clearness_index: tuple[float, ...]
    temp_noise_c: float

    def __post_init__(self) -> None:
        """Check lengths and ranges; the message names the field."""
        if not -90.0 <= self.latitude_deg <= 90.0:
            raise SourceError(f"Climate {self.name!r}: latitude_deg(={self.latitude_deg}) must be in [-90, 90]")
        if not -180.0 <= self.longitude_deg <= 180.0:
            raise SourceError(f"Climate {self.name!r}: longitude_deg(={self.longitude_deg}) must be in [-180, 180]")
        for field in ("monthly_mean_temp_c", "monthly_clearness_index"):
            if len(getattr(self, field)) != 12:
                raise SourceError(f"Climate {self.name!r}: {field} must have 12 monthly values")
        amplitude = self.daily_temp_amplitude_c
        if not isinstance(amplitude, int | float) and len(amplitude) != 12:
            raise SourceError(f"Climate {self.name!r}: daily_temp_amplitude_c must be one value or 12 monthly values")
        if any(not 0.0 < k <= 1.0 for k in self.monthly_clearness_index):
            raise SourceError(f"Climate {self.name!r}: monthly_clearness_index values must be in (0, 1]")
        if self.temp_noise_c < 0:
            raise SourceError(f"Climate {self.name!r}: temp_noise_c(={self.temp_noise_c}) must be >= 0")


def _mean_and_half_range(
    mean_max_c: tuple[float, ...], mean_min_c: tuple[float, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Monthly mean (max + min) / 2 and half daily range (max - min) / 2 from monthly normals."""
    means = tuple(round((hi + lo) / 2, 2) for hi, lo in zip(mean_max_c, mean_min_c, strict=True))
    half_ranges = tuple(round((hi - lo) / 2, 2) for hi, lo in zip(mean_max_c, mean_min_c, strict=True))
    return means, half_ranges


# Nicosia (Athalassa), 35.15 N 33.36 E, ~160 m. Mean daily max/min: Cyprus Department of
# Meteorology normals 1991-2020 as quoted in Wikipedia's climate box (approximate, from memory).
_NICOSIA_TEMP = _mean_and_half_range(
    (16.0, 16.9, 20.1, 24.9, 30.3, 35.0, 37.6, 37.4, 33.5, 28.5, 22.1, 17.5),
    (5.3, 5.4, 7.3, 10.4, 14.8, 19.4, 21.9, 21.9, 18.6, 14.8, 9.9, 6.7),
)
# Sion, 46.22 N 7.33 E, 482 m. MeteoSwiss normals 1991-2020 (approximate, from memory).
_SION_TEMP = _mean_and_half_range(
    (5.5, 8.2, 13.4, 17.4, 21.6, 25.4, 27.4, 26.6, 22.1, 16.7, 10.0, 5.6),
    (-3.5, -2.6, 0.6, 3.9, 8.1, 11.5, 13.2, 13.0, 9.6, 5.6, 0.6, -2.6),
)
# Wunsiedel, 50.04 N 12.00 E, ~540 m (Fichtelgebirge). DWD normals 1991-2020 of the nearby
# station Hof (567 m), approximate, from memory.
_WUNSIEDEL_TEMP = _mean_and_half_range(
    (1.5, 2.9, 7.2, 12.7, 17.0, 20.3, 22.5, 22.2, 17.6, 12.2, 6.1, 2.4),
    (-4.2, -3.9, -1.2, 2.1, 6.2, 9.5, 11.4, 11.2, 7.9, 4.4, 0.6, -2.7),
)

#: Site presets of the three GOFLEX demo sites.
#: Clear-sky indices are calibrated against approximate long-term mean daily GHI per month
#: (kWh/m2/day, satellite climatologies such as PVGIS-SARAH as remembered, approximate):
#: Nicosia 2.8 3.6 5.0 6.2 7.3 8.1 7.9 7.2 6.0 4.5 3.2 2.5 (~1 960 kWh/m2/yr);
#: Sion 1.4 2.4 3.7 4.9 5.8 6.5 6.5 5.6 4.3 2.7 1.6 1.1 (~1 420 kWh/m2/yr; valley shading in winter);
#: Wunsiedel 0.75 1.4 2.5 4.0 4.9 5.3 5.3 4.5 3.2 1.8 0.9 0.6 (~1 070 kWh/m2/yr).
CLIMATES: dict[str, Climate] = {
    "nicosia": Climate(
        name="nicosia",
        latitude_deg=35.15,
        longitude_deg=33.36,
        monthly_mean_temp_c=_NICOSIA_TEMP[0],
        daily_temp_amplitude_c=_NICOSIA_TEMP[1],
        monthly_clearness_index=(0.83, 0.81, 0.85, 0.85, 0.88, 0.93, 0.92, 0.92, 0.92, 0.89, 0.86, 0.81),
        temp_noise_c=1.5,
    ),
    "sion": Climate(
        name="sion",
        latitude_deg=46.22,
        longitude_deg=7.33,
        monthly_mean_temp_c=_SION_TEMP[0],
        daily_temp_amplitude_c=_SION_TEMP[1],
        monthly_clearness_index=(0.70, 0.77, 0.77, 0.74, 0.72, 0.75, 0.77, 0.77, 0.77, 0.71, 0.68, 0.64),
        temp_noise_c=2.5,
    ),
    "wunsiedel": Climate(
        name="wunsiedel",
        latitude_deg=50.04,
        longitude_deg=12.00,
        monthly_mean_temp_c=_WUNSIEDEL_TEMP[0],
        daily_temp_amplitude_c=_WUNSIEDEL_TEMP[1],
        monthly_clearness_index=(0.49, 0.53, 0.57, 0.63, 0.62, 0.61, 0.64, 0.64, 0.61, 0.54, 0.48, 0.48),
        temp_noise_c=3.0,
    ),
}


def generate_weather(
    climate: Climate, *, start: datetime, n_steps: int, slice_s: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Return ``temp_c`` and ``ghi_w_per_m2`` per step, indexed by the UTC step starts."""
    index = simulation_index(start, n_steps=n_steps, slice_s=slice_s)
    mid = index + pd.Timedelta(seconds=int(slice_s) / 2)
    solar_day = _mean_solar_days(mid, climate.longitude_deg)  # fractional days since 1970, local mean time
    first_day = int(np.floor(solar_day[0])) - 1
    n_days = int(np.floor(solar_day[-1])) - first_day + 2
    day_numbers = np.arange(first_day, first_day + n_days)
    day_month = pd.DatetimeIndex(day_numbers * np.timedelta64(1, "D") + np.datetime64("1970-01-01")).month - 1

    # Draws, always in this order: temperature anomalies, then clear-sky indices, one per day.
    innovations = rng.standard_normal(n_days)
    kc_mean = np.asarray(climate.monthly_clearness_index)[day_month]
    kc_daily = rng.beta(kc_mean * _CLEARNESS_CONCENTRATION, (1.0 - kc_mean) * _CLEARNESS_CONCENTRATION + 1e-9)

    anomaly = np.empty(n_days)
    anomaly[0] = climate.temp_noise_c * innovations[0]
    scale = climate.temp_noise_c * np.sqrt(1.0 - _DAY_TO_DAY_CORRELATION**2)
    for day in range(1, n_days):
        anomaly[day] = _DAY_TO_DAY_CORRELATION * anomaly[day - 1] + scale * innovations[day]

    sun = _sun_position(mid, climate)
    temp_c = (
        _seasonal(mid, climate.monthly_mean_temp_c)
        + _seasonal(mid, _per_month(climate.daily_temp_amplitude_c))
        * np.cos(2.0 * np.pi * (sun.solar_hour - _TEMP_PEAK_SOLAR_H) / 24.0)
        + np.interp(solar_day, day_numbers + 0.5, anomaly)
    )
    day_of_step = np.floor(solar_day).astype(int) - first_day
    ghi = _haurwitz_ghi(sun.cos_zenith) * kc_daily[day_of_step]
    return pd.DataFrame({"temp_c": temp_c, "ghi_w_per_m2": ghi}, index=index)


def plane_of_array_w_per_m2(
    weather: pd.DataFrame,
    climate: Climate,
    *,
    slice_s: int,
    tilt_deg: float,
    azimuth_deg: float = 180.0,
    albedo: float = 0.2,
) -> np.ndarray:
    """Return irradiance on a module plane per step in W/m2 from ``weather["ghi_w_per_m2"]``.

    ``azimuth_deg`` is measured clockwise from north (180 = facing south); ``weather`` is indexed
    by UTC step starts of ``slice_s`` seconds, as `generate_weather` returns it. GHI is split
    into beam and diffuse with the Erbs correlation, then transposed with an isotropic sky and
    ground reflection.
    """
    if "ghi_w_per_m2" not in weather.columns:
        raise SourceError("weather has no 'ghi_w_per_m2' column")
    if not 0.0 <= tilt_deg <= 90.0:
        raise SourceError(f"tilt_deg(={tilt_deg}) must be in [0, 90]")
    ghi = weather["ghi_w_per_m2"].to_numpy(dtype=float)
    mid = pd.DatetimeIndex(weather.index) + pd.Timedelta(seconds=int(slice_s) / 2)
    sun = _sun_position(mid, climate)
    lit = sun.cos_zenith > _MIN_COS_ZENITH_FOR_BEAM
    extraterrestrial = sun.e0_w_per_m2 * np.where(lit, sun.cos_zenith, 1.0)
    kt = np.clip(np.where(lit, ghi / extraterrestrial, 0.0), 0.0, 1.0)
    diffuse_fraction = np.where(
        kt <= 0.22,
        1.0 - 0.09 * kt,
        np.where(kt <= 0.80, 0.9511 - 0.1604 * kt + 4.388 * kt**2 - 16.638 * kt**3 + 12.336 * kt**4, 0.165),
    )
    dhi = np.where(lit, ghi * diffuse_fraction, ghi)
    dni = np.where(lit, (ghi - dhi) / np.where(lit, sun.cos_zenith, 1.0), 0.0)
    tilt, azimuth = np.radians(tilt_deg), np.radians(azimuth_deg)
    cos_incidence = (
        np.sin(tilt) * np.sin(azimuth) * sun.east
        + np.sin(tilt) * np.cos(azimuth) * sun.north
        + np.cos(tilt) * sun.cos_zenith
    )
    return (
        dni * np.clip(cos_incidence, 0.0, None)
        + dhi * (1.0 + np.cos(tilt)) / 2.0
        + ghi * albedo * (1.0 - np.cos(tilt)) / 2.0
    )


@dataclass(frozen=True)
class _SunPosition:
    """Sun direction (unit vector east, north, up = cos zenith), solar time and extraterrestrial irradiance."""

    east: np.ndarray
    north: np.ndarray
    cos_zenith: np.ndarray
    solar_hour: np.ndarray
    e0_w_per_m2: np.ndarray


def _sun_position(times_utc: pd.DatetimeIndex, climate: Climate) -> _SunPosition:
    """Sun position at ``times_utc`` (Spencer 1971 declination and equation of time)."""
    day_of_year = times_utc.dayofyear.to_numpy() - 1
    utc_hour = (times_utc.hour + times_utc.minute / 60.0 + times_utc.second / 3600.0).to_numpy()
    g = 2.0 * np.pi / 365.0 * (day_of_year + (utc_hour - 12.0) / 24.0)
    declination = (
        0.006918
        - 0.399912 * np.cos(g)
        + 0.070257 * np.sin(g)
        - 0.006758 * np.cos(2 * g)
        + 0.000907 * np.sin(2 * g)
        - 0.002697 * np.cos(3 * g)
        + 0.00148 * np.sin(3 * g)
    )
    equation_of_time_min = 229.18 * (
        0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g) - 0.040849 * np.sin(2 * g)
    )
    solar_hour = np.mod(utc_hour + climate.longitude_deg / 15.0 + equation_of_time_min / 60.0, 24.0)
    hour_angle = np.radians(15.0 * (solar_hour - 12.0))
    latitude = np.radians(climate.latitude_deg)
    return _SunPosition(
        east=-np.cos(declination) * np.sin(hour_angle),
        north=np.cos(latitude) * np.sin(declination) - np.sin(latitude) * np.cos(declination) * np.cos(hour_angle),
        cos_zenith=np.sin(latitude) * np.sin(declination) + np.cos(latitude) * np.cos(declination) * np.cos(hour_angle),
        solar_hour=solar_hour,
        e0_w_per_m2=_SOLAR_CONSTANT_W_PER_M2 * (1.0 + 0.033 * np.cos(2.0 * np.pi * (day_of_year + 1) / 365.0)),
    )


def _haurwitz_ghi(cos_zenith: np.ndarray) -> np.ndarray:
    """Haurwitz (1945) clear-sky GHI in W/m2; zero with the sun below the horizon."""
    up = np.clip(cos_zenith, 1e-6, None)
    return np.where(cos_zenith > 0.0, 1098.0 * up * np.exp(-0.059 / up), 0.0)


def _mean_solar_days(times_utc: pd.DatetimeIndex, longitude_deg: float) -> np.ndarray:
    """Fractional days since 1970-01-01 in local mean solar time (a day runs midnight to midnight there)."""
    return times_utc.asi8 / 86_400e9 + longitude_deg / 360.0


def _per_month(value: tuple[float, ...] | float) -> tuple[float, ...]:
    """Twelve monthly values from one value or twelve."""
    return (float(value),) * 12 if isinstance(value, int | float) else tuple(value)


def _seasonal(times_utc: pd.DatetimeIndex, monthly: tuple[float, ...]) -> np.ndarray:
    """Monthly values interpolated linearly (and cyclically) between mid-months."""
    day = times_utc.dayofyear.to_numpy() - 1 + (times_utc.hour.to_numpy() / 24.0)
    day = np.minimum(day, 365.0)  # 31 December of leap years lands on the wrap segment
    knots = np.concatenate([[_MID_MONTH_DAY[-1] - 365.0], _MID_MONTH_DAY, [_MID_MONTH_DAY[0] + 365.0]])
    values = np.asarray(monthly, dtype=float)
    return np.interp(day, knots, np.concatenate([[values[-1]], values, [values[0]]]))

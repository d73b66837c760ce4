"""Day-ahead prices: a seeded hourly price model with daily, weekly and seasonal shape per market.

`generate_day_ahead_prices` draws one price per market hour (day-ahead products are hourly) and
holds it over the simulation steps inside that hour; steps longer than an hour get the mean of
their hours. For market hour ``h`` (local standard time of the market, daylight saving ignored):

    price = mean * (1 + seasonal_amplitude * cos(2 pi (day_of_year - 15) / 365.25))
                 * (1 - weekend_discount on Saturdays and Sundays)
            + shape(h) - mean of shape over the day
            + AR(1) noise (lag-one correlation 0.8, standard deviation noise_eur_per_kwh)

    shape(h) = morning_peak * g(h, morning_peak_hour) + evening_peak * g(h, evening_peak_hour)
               - solar_dip * (0.4 + 0.6 * summer) * g(h, 13:00)

with Gaussian bumps ``g`` of the given widths and ``summer`` running from 0 in mid-January to 1
in mid-July. On a day drawn with probability ``negative_price_probability * 2 * summer`` (so the
annual mean is the given probability, concentrated in summer) the midday hours are pulled below
zero, to minus 0.5-6 ct/kWh at 13:00. All draws come from the caller's generator in a fixed
order: the same generator state gives the same prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from atp.data.files import simulation_index
from sim.sources.errors import SourceError

__all__ = ["PRICE_MODELS", "PriceModel", "generate_day_ahead_prices"]

_HOUR_S = 3600
_NOISE_CORRELATION = 0.8
_SOLAR_NOON_H = 13.0
_NEGATIVE_WIDTH_H = 1.5
_NEGATIVE_DEPTH_EUR_PER_KWH = (0.005, 0.06)


@dataclass(frozen=True)
class PriceModel:
    """Parameters of one market's day-ahead prices, all prices in EUR/kWh, hours in local standard time.

    ``mean_eur_per_kwh`` is the weekday level the daily shape varies around; the yearly mean
    lands a few percent lower (weekend discount, negative middays). ``seasonal_amplitude`` > 0
    makes winter dearer, < 0 summer.
    """

    name: str
    mean_eur_per_kwh: float
    utc_offset_h: int
    morning_peak_eur_per_kwh: float
    evening_peak_eur_per_kwh: float
    solar_dip_eur_per_kwh: float
    weekend_discount: float
    seasonal_amplitude: float
    noise_eur_per_kwh: float
    negative_price_probability: float = 0.0
    morning_peak_hour: float = 8.0
    evening_peak_hour: float = 19.0
    morning_peak_width_h: float = 1.5
    evening_peak_width_h: float = 2.0
    solar_dip_width_h: float = 2.5

    def __post_init__(self) -> None:
        """Check ranges; the message names the field."""
        if int(self.utc_offset_h) != self.utc_offset_h or not -12 <= self.utc_offset_h <= 14:
            raise SourceError(f"PriceModel {self.name!r}: utc_offset_h(={self.utc_offset_h}) must be whole hours")
        for field in ("weekend_discount", "negative_price_probability"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise SourceError(f"PriceModel {self.name!r}: {field}(={getattr(self, field)}) must be in [0, 1]")
        if not -1.0 < self.seasonal_amplitude < 1.0:
            raise SourceError(
                f"PriceModel {self.name!r}: seasonal_amplitude(={self.seasonal_amplitude}) must be in (-1, 1)"
            )
        for field in ("noise_eur_per_kwh", "morning_peak_width_h", "evening_peak_width_h", "solar_dip_width_h"):
            if getattr(self, field) < 0:
                raise SourceError(f"PriceModel {self.name!r}: {field}(={getattr(self, field)}) must be >= 0")


#: Presets of the three GOFLEX markets (levels 2024-25, approximate, from memory; no live data).
PRICE_MODELS: dict[str, PriceModel] = {
    # Cyprus: isolated, mostly oil-fired system; wholesale generation costs ~130-180 EUR/MWh
    # (EAC fuel-adjusted tariffs, the day-ahead market run by TSO Cyprus starting 2025; assumption).
    # Demand peaks in summer (air conditioning), hence a negative seasonal amplitude; a deep
    # solar dip with a steep evening ramp; curtailment rather than negative prices.
    "cyprus": PriceModel(
        name="cyprus",
        mean_eur_per_kwh=0.155,
        utc_offset_h=2,
        morning_peak_eur_per_kwh=0.010,
        evening_peak_eur_per_kwh=0.060,
        solar_dip_eur_per_kwh=0.050,
        weekend_discount=0.05,
        seasonal_amplitude=-0.10,
        noise_eur_per_kwh=0.010,
        negative_price_probability=0.0,
    ),
    # Switzerland (EPEX Swissix day-ahead): yearly mean ~80-90 EUR/MWh in 2024-25; winter
    # prices clearly higher (winter imports, hydro storage held back), few negative hours.
    "switzerland": PriceModel(
        name="switzerland",
        mean_eur_per_kwh=0.090,
        utc_offset_h=1,
        morning_peak_eur_per_kwh=0.015,
        evening_peak_eur_per_kwh=0.040,
        solar_dip_eur_per_kwh=0.040,
        weekend_discount=0.12,
        seasonal_amplitude=0.20,
        noise_eur_per_kwh=0.012,
        negative_price_probability=0.08,
    ),
    # Germany (EPEX DE-LU day-ahead): yearly mean ~78 EUR/MWh in 2024, ~85-90 in 2025; deep
    # solar dip and ~450 negative hours a year, on roughly a fifth of the days.
    "germany": PriceModel(
        name="germany",
        mean_eur_per_kwh=0.085,
        utc_offset_h=1,
        morning_peak_eur_per_kwh=0.015,
        evening_peak_eur_per_kwh=0.045,
        solar_dip_eur_per_kwh=0.050,
        weekend_discount=0.15,
        seasonal_amplitude=0.15,
        noise_eur_per_kwh=0.015,
        negative_price_probability=0.20,
    ),
}


def generate_day_ahead_prices(
    model: PriceModel, *, start: datetime, n_steps: int, slice_s: int, rng: np.random.Generator
) -> pd.Series:
    """Return day-ahead prices in EUR/kWh per step, indexed by UTC step start, constant within each hour.

    ``slice_s`` must divide 3600 (steps then may not straddle an hour: ``start`` on a multiple
    of ``slice_s`` past the hour) or be a multiple of 3600 (``start`` on a full hour).
    """
    index = simulation_index(start, n_steps=n_steps, slice_s=slice_s)
    slice_s = int(slice_s)
    if _HOUR_S % slice_s and slice_s % _HOUR_S:
        raise SourceError(f"slice_s(={slice_s}) must divide 3600 or be a multiple of 3600 for hourly day-ahead prices")
    seconds_past_hour = int((index[0] - index[0].floor("h")).total_seconds())
    if seconds_past_hour % min(slice_s, _HOUR_S):
        raise SourceError(
            f"start(={index[0].isoformat()}) must be aligned so that steps of slice_s(={slice_s}) "
            "do not straddle an hour"
        )
    first_hour = index[0].floor("h")
    end = index[-1] + pd.Timedelta(seconds=slice_s)
    n_hours = int(np.ceil((end - first_hour).total_seconds() / _HOUR_S))
    hourly = _hourly_prices(model, first_hour, n_hours, rng)
    hour_of_step = ((index - first_hour).total_seconds().to_numpy() // _HOUR_S).astype(int)
    if slice_s <= _HOUR_S:
        values = hourly[hour_of_step]
    else:
        hours_per_step = slice_s // _HOUR_S
        values = hourly[hour_of_step[:, np.newaxis] + np.arange(hours_per_step)].mean(axis=1)
    return pd.Series(values, index=index, name="price_eur_per_kwh")


def _hourly_prices(model: PriceModel, first_hour: pd.Timestamp, n_hours: int, rng: np.random.Generator) -> np.ndarray:
    """Prices for ``n_hours`` market hours from ``first_hour`` (UTC)."""
    local = pd.date_range(first_hour.tz_localize(None), periods=n_hours, freq="h") + pd.Timedelta(
        hours=model.utc_offset_h
    )
    local_day = local.normalize()
    days, day_of_hour = np.unique(local_day.to_numpy(), return_inverse=True)

    # Draws, always in this order: hourly noise, then per local day the negative-price draw and depth.
    innovations = rng.standard_normal(n_hours)
    negative_draw = rng.random(days.size)
    negative_depth = rng.uniform(*_NEGATIVE_DEPTH_EUR_PER_KWH, size=days.size)

    hour = local.hour.to_numpy() + 0.5
    day_of_year = local.dayofyear.to_numpy()
    winter = np.cos(2.0 * np.pi * (day_of_year - 15) / 365.25)
    summer = (1.0 - winter) / 2.0
    weekend = local.dayofweek.to_numpy() >= 5
    level = (
        model.mean_eur_per_kwh
        * (1.0 + model.seasonal_amplitude * winter)
        * np.where(weekend, 1.0 - model.weekend_discount, 1.0)
    )
    day_hours = np.arange(24) + 0.5
    mean_shape = (
        model.morning_peak_eur_per_kwh * _bump(day_hours, model.morning_peak_hour, model.morning_peak_width_h).mean()
        + model.evening_peak_eur_per_kwh * _bump(day_hours, model.evening_peak_hour, model.evening_peak_width_h).mean()
    )
    dip = model.solar_dip_eur_per_kwh * (0.4 + 0.6 * summer)
    shape = (
        model.morning_peak_eur_per_kwh * _bump(hour, model.morning_peak_hour, model.morning_peak_width_h)
        + model.evening_peak_eur_per_kwh * _bump(hour, model.evening_peak_hour, model.evening_peak_width_h)
        - dip * _bump(hour, _SOLAR_NOON_H, model.solar_dip_width_h)
        - mean_shape
        + dip * _bump(day_hours, _SOLAR_NOON_H, model.solar_dip_width_h).mean()
    )
    noise = np.empty(n_hours)
    noise[0] = model.noise_eur_per_kwh * innovations[0]
    scale = model.noise_eur_per_kwh * np.sqrt(1.0 - _NOISE_CORRELATION**2)
    for k in range(1, n_hours):
        noise[k] = _NOISE_CORRELATION * noise[k - 1] + scale * innovations[k]
    price = level + shape + noise

    day_summer = summer[np.searchsorted(day_of_hour, np.arange(days.size))]
    negative_day = negative_draw < np.clip(model.negative_price_probability * 2.0 * day_summer, 0.0, 1.0)
    weight = _bump(hour, _SOLAR_NOON_H, _NEGATIVE_WIDTH_H) * negative_day[day_of_hour]
    return price * (1.0 - weight) - negative_depth[day_of_hour] * weight


def _bump(hour: np.ndarray, center_h: float, width_h: float) -> np.ndarray:
    """Gaussian bump of height 1 at ``center_h`` with standard deviation ``width_h`` (0 width: none)."""
    if width_h == 0:
        return np.zeros_like(hour, dtype=float)
    return np.exp(-0.5 * ((hour - center_h) / width_h) ** 2)

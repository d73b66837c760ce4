"""The world's data sources: SimBench load and PV profiles, weather, day-ahead prices, series files.

Every source returns values on the simulation grid ``start + k * slice_s`` (k < n_steps),
indexed or ordered by UTC step start, draws only from the caller's ``numpy.random.Generator``
and reads nothing from the network. Problems raise `SourceError` (a ValueError) naming the
field or file.
"""

from atp.data.files import read_series_file, simulation_index, to_utc
from sim.sources.errors import SourceError
from sim.sources.prices import PRICE_MODELS, PriceModel, generate_day_ahead_prices
from sim.sources.profiles import (
    DEFAULT_SIMBENCH_CODE,
    PROFILE_STEP_S,
    ProfileLibrary,
    commercial_load_kwh,
    household_load_kwh,
    pv_kwh_per_kwp,
)
from sim.sources.weather import CLIMATES, Climate, generate_weather, plane_of_array_w_per_m2

__all__ = [
    "CLIMATES",
    "DEFAULT_SIMBENCH_CODE",
    "PRICE_MODELS",
    "PROFILE_STEP_S",
    "Climate",
    "PriceModel",
    "ProfileLibrary",
    "SourceError",
    "commercial_load_kwh",
    "generate_day_ahead_prices",
    "generate_weather",
    "household_load_kwh",
    "plane_of_array_w_per_m2",
    "pv_kwh_per_kwp",
    "read_series_file",
    "simulation_index",
    "to_utc",
]

"""Load and PV profiles: a year of real 15-min SimBench profiles mapped onto the simulation calendar.

What SimBench ships (checked on simbench 1.6.3, code ``1-LV-rural2--0-sw``, no download):

- ``net.profiles["load"]``: 35 136 rows = 366 days x 96 quarter hours of the leap year 2016, a
  ``time`` column (``"01.01.2016 00:00"`` ... ``"31.12.2016 23:45"``) and ``<name>_pload`` /
  ``<name>_qload`` columns. Values are **per unit of the load's rated power** (``net.load.p_mw``):
  every ``_pload`` column peaks at exactly 1.0, so energy in one quarter hour is
  ``value * p_rated_kw * 0.25 h``. Full-load hours over the year: households H0-A..H0-L
  ~500-1 220 h, commercial G* ~1 300-3 800 h.
- ``net.profiles["renewables"]``: PV columns ``PV1``... in per unit of installed (peak) power,
  maxima ~0.6, ~575-700 full-load hours (kWh per kWp) a year: German 2016 yields, low beside
  the ~900-1 000 kWh/kWp of modern south-facing systems.
- The ``time`` labels carry German daylight saving time (no 02:00-02:45 on 27 March, those four
  labels twice on 30 October), yet the rows are consecutive quarter hours: the PV centroid sits
  at the same row in January and June. This module therefore indexes rows by position, as a
  clock without daylight saving (CET, UTC+1).
- Loading the net takes ~5-6 s on the 2-core machines (pandas parsing the CSVs), hence the
  per-process cache in `ProfileLibrary.load`.

Mapping the simulation onto the profile year: each simulated instant is turned into the site's
local standard time (``utc_offset_h``, default 1 h = SimBench's own clock; 2 h for Cyprus), its
calendar date picks the same month and day of 2016 (29 February exists there; in other years it
is simply skipped), moved by at most 3 days so the weekday matches (commercial profiles drop
on weekends), and its time of day picks the quarter hour. A year wrap (31 Dec -> 1 Jan)
needs nothing special: every date maps inside the profile year. Coarser steps (``slice_s`` 1800,
3600, ...) sum the quarter-hour energies; ``slice_s`` must be a multiple of 900 and ``start``
fall on a quarter hour.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from atp.data.files import to_utc
from sim.sources.errors import SourceError

__all__ = [
    "DEFAULT_SIMBENCH_CODE",
    "PROFILE_STEP_S",
    "ProfileLibrary",
    "commercial_load_kwh",
    "household_load_kwh",
    "pv_kwh_per_kwp",
]

#: The SimBench code named as the profiles' source. Every SimBench grid takes its profiles from
#: the complete data set's tables, which are read directly: 6 household H0-*, 15 commercial G*,
#: 4 agricultural L* and 4 rooftop PV profiles.
DEFAULT_SIMBENCH_CODE = "1-LV-rural2--0-sw"
#: Resolution of the SimBench profiles.
PROFILE_STEP_S = 900
_QUARTERS_PER_DAY = 96
_PROFILE_STEP_H = PROFILE_STEP_S / 3600
_MAX_WEEK_OFFSET = 2  # prosumers get a random offset of -2..+2 whole weeks
_PERFORMANCE_RATIO = 0.8
_TEMP_COEFF_PER_K = -0.004  # power temperature coefficient of crystalline silicon modules
_NOCT_C = 45.0  # nominal operating cell temperature (800 W/m2, 20 °C air)


@dataclass(frozen=True)
class ProfileLibrary:
    """One year of SimBench per-unit profiles: loads by rated power, PV by installed peak power.

    ``load_pu`` and ``pv_pu`` have one row per quarter hour of ``year`` (row ``i`` is day
    ``i // 96``, quarter hour ``i % 96`` of CET standard time) and one column per profile.
    """

    code: str
    year: int
    load_pu: pd.DataFrame
    pv_pu: pd.DataFrame
    load_s: float

    @classmethod
    def load(cls, code: str = DEFAULT_SIMBENCH_CODE) -> ProfileLibrary:
        """Return the profiles of SimBench net ``code``, read once per process (~5 s)."""
        return _load_library(code)

    @property
    def n_days(self) -> int:
        """Days in the profile year (366 for 2016)."""
        return len(self.load_pu) // _QUARTERS_PER_DAY

    @property
    def household_names(self) -> tuple[str, ...]:
        """Household profiles (``H0-*``)."""
        return tuple(name for name in self.load_pu.columns if name.startswith("H"))

    @property
    def commercial_names(self) -> tuple[str, ...]:
        """Commercial profiles (``G*-*``)."""
        return tuple(name for name in self.load_pu.columns if name.startswith("G"))

    @property
    def agricultural_names(self) -> tuple[str, ...]:
        """Agricultural profiles (``L*-*``); none in the default code."""
        return tuple(name for name in self.load_pu.columns if name.startswith("L"))

    @property
    def pv_names(self) -> tuple[str, ...]:
        """PV profiles (``PV*``)."""
        return tuple(self.pv_pu.columns)


_PROFILE_DATASET = "1-complete_data-mixed-all-2-sw"
_LOAD_COLUMN = re.compile(r"^(H0|G\d|L\d)-[A-Z]_pload$")
_PV_COLUMN = re.compile(r"^PV[1347]$")  # the rooftop PV profiles (the others are not zero at night)


def _dataset_dir() -> Path:
    """The folder of SimBench's complete data set inside the installed package (no import of simbench)."""
    spec = importlib.util.find_spec("simbench")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("the simbench package is not installed (pip install simbench==1.6.3)")
    return Path(next(iter(spec.submodule_search_locations))) / "networks" / _PROFILE_DATASET


@functools.cache
def _load_library(code: str) -> ProfileLibrary:
    """Read the SimBench profile tables (LoadProfile.csv, RESProfile.csv) shipped with the package.

    All SimBench grids draw their profiles from these two tables of the complete data set;
    reading them directly takes about a second, where building a SimBench net takes 5-15 s.
    `code` names the data set (the default, or any SimBench code, which shares the tables).
    """
    began = time.perf_counter()
    folder = _dataset_dir()
    try:
        header = pd.read_csv(folder / "LoadProfile.csv", sep=";", nrows=0).columns
        p_columns = [c for c in header if _LOAD_COLUMN.match(c)]
        loads = pd.read_csv(folder / "LoadProfile.csv", sep=";", usecols=["time", *p_columns])
        res_header = pd.read_csv(folder / "RESProfile.csv", sep=";", nrows=0).columns
        pv_columns = [c for c in res_header if _PV_COLUMN.match(c)]
        renewables = pd.read_csv(folder / "RESProfile.csv", sep=";", usecols=pv_columns)
    except (OSError, ValueError) as exc:
        raise SourceError(f"SimBench profiles for {code!r} cannot be read from {folder} ({exc})") from exc
    load_s = time.perf_counter() - began
    if not p_columns or not pv_columns:
        raise SourceError(f"SimBench data set {folder.name} has no load or no PV profiles")
    load_pu = loads[p_columns].astype(float).rename(columns=lambda name: name.removesuffix("_pload"))
    pv_pu = renewables[pv_columns].astype(float)
    year = int(str(loads["time"].iloc[0])[6:10])
    n_rows = len(load_pu)
    if n_rows % _QUARTERS_PER_DAY or n_rows // _QUARTERS_PER_DAY != _days_in_year(year) or len(pv_pu) != n_rows:
        raise SourceError(f"SimBench code {code!r}: profiles have {n_rows} rows, not a year of quarter hours")
    if load_pu.isna().any().any() or pv_pu.isna().any().any():
        raise SourceError(f"SimBench code {code!r}: profiles contain NaN")
    return ProfileLibrary(
        code=code,
        year=year,
        load_pu=load_pu.reset_index(drop=True),
        pv_pu=pv_pu.reset_index(drop=True),
        load_s=load_s,
    )


def household_load_kwh(
    library: ProfileLibrary,
    *,
    start: datetime,
    n_steps: int,
    slice_s: int,
    annual_kwh: np.ndarray,
    rng: np.random.Generator,
    utc_offset_h: float = 1.0,
) -> np.ndarray:
    """Return household energy per step and prosumer in kWh, shape ``(n_steps, len(annual_kwh))``.

    Each prosumer gets a household profile drawn with ``rng`` (first the profiles of all
    prosumers, then their offsets) and a random offset of -2..+2 whole weeks (neighbours differ,
    weekdays stay aligned), scaled so that the 365 days from ``start`` sum exactly to its
    ``annual_kwh`` (the weekday alignment repeats or skips a few profile days, so the scale is
    taken from the mapped year, not from the profile year). ``utc_offset_h`` is the site's
    standard-time UTC offset (1 for CET, 2 for Cyprus): profiles are read at local clock time.
    """
    return _load_kwh(
        library, library.household_names, start, n_steps, slice_s, annual_kwh, rng, utc_offset_h, "household"
    )


def commercial_load_kwh(
    library: ProfileLibrary,
    *,
    start: datetime,
    n_steps: int,
    slice_s: int,
    annual_kwh: np.ndarray,
    rng: np.random.Generator,
    utc_offset_h: float = 1.0,
) -> np.ndarray:
    """Return commercial energy per step and consumer in kWh, like `household_load_kwh` with G* profiles."""
    return _load_kwh(
        library, library.commercial_names, start, n_steps, slice_s, annual_kwh, rng, utc_offset_h, "commercial"
    )


def pv_kwh_per_kwp(
    library: ProfileLibrary | None,
    *,
    start: datetime,
    n_steps: int,
    slice_s: int,
    irradiance_w_per_m2: np.ndarray | None = None,
    temp_c: np.ndarray | None = None,
    performance_ratio: float = _PERFORMANCE_RATIO,
    profile: str | None = None,
    utc_offset_h: float = 1.0,
) -> np.ndarray:
    """Return PV energy per kWp installed for each step in kWh/kWp, shape ``(n_steps,)``.

    Without ``irradiance_w_per_m2`` the SimBench PV profile ``profile`` is used (``None``: the
    mean of the library's PV profiles, a mix of orientations), mapped like the loads.

    With ``irradiance_w_per_m2`` (mean irradiance on the module plane per step, e.g. the
    ``ghi_w_per_m2`` of `sim.sources.weather.generate_weather` or its plane-of-array
    transposition) the site's own climate drives the yield, PVWatts-style:
    ``kWh/kWp = G / 1000 * slice_s / 3600 * performance_ratio * derate``, where
    ``derate = 1 - 0.004 / K * (T_cell - 25 °C)`` and ``T_cell = temp_c + G * (45 - 20) / 800``
    (NOCT model) when ``temp_c`` is given, else 1. ``library`` may then be ``None``, and
    ``slice_s`` need not be a multiple of 900.
    """
    if irradiance_w_per_m2 is not None:
        return _pv_from_irradiance(irradiance_w_per_m2, temp_c, n_steps, slice_s, performance_ratio)
    if temp_c is not None:
        raise SourceError("temp_c is only used with irradiance_w_per_m2; pass both or neither")
    if library is None:
        raise SourceError("library is needed for SimBench PV profiles (or pass irradiance_w_per_m2)")
    if profile is None:
        pu = library.pv_pu.to_numpy().mean(axis=1)
    elif profile in library.pv_pu.columns:
        pu = library.pv_pu[profile].to_numpy()
    else:
        raise SourceError(f"profile(={profile!r}) is not a PV profile of {library.code} {library.pv_names}")
    rows = _profile_rows(library, start, n_steps, slice_s, utc_offset_h, week_offsets=np.zeros(1, int), align=False)
    return _sum_to_steps(pu[rows[:, 0]] * _PROFILE_STEP_H, slice_s)


def _load_kwh(
    library: ProfileLibrary,
    names: tuple[str, ...],
    start: datetime,
    n_steps: int,
    slice_s: int,
    annual_kwh: np.ndarray,
    rng: np.random.Generator,
    utc_offset_h: float,
    kind: str,
) -> np.ndarray:
    """Draw a profile and a week offset per consumer, map them onto the steps, scale to ``annual_kwh``."""
    annual = np.asarray(annual_kwh, dtype=float)
    if annual.ndim != 1 or not np.all(np.isfinite(annual)) or np.any(annual < 0):
        raise SourceError(f"annual_kwh must be a 1-D array of finite values >= 0, one per consumer (got {annual!r})")
    if not names:
        raise SourceError(f"SimBench code {library.code!r} has no {kind} profiles")
    choice = rng.integers(0, len(names), size=annual.size)
    week_offsets = rng.integers(-_MAX_WEEK_OFFSET, _MAX_WEEK_OFFSET + 1, size=annual.size)
    pu = library.load_pu[list(names)].to_numpy()
    rows = _profile_rows(library, start, n_steps, slice_s, utc_offset_h, week_offsets=week_offsets, align=True)
    quarters_kwh = pu[rows, choice[np.newaxis, :]] * (
        annual / _pu_sum_per_year(library, pu, start, choice, week_offsets, utc_offset_h)
    )
    return _sum_to_steps(quarters_kwh, slice_s)


def _pu_sum_per_year(
    library: ProfileLibrary,
    pu: np.ndarray,
    start: datetime,
    choice: np.ndarray,
    week_offsets: np.ndarray,
    utc_offset_h: float,
) -> np.ndarray:
    """Sum of each consumer's mapped per-unit profile over the 365 days of quarter hours from ``start``.

    Scaling by this, not by the profile year's sum, makes a simulated year sum exactly to
    ``annual_kwh`` although the weekday alignment repeats or skips a few profile days.
    """
    offsets, offset_of = np.unique(week_offsets, return_inverse=True)
    rows = _profile_rows(
        library, start, 365 * _QUARTERS_PER_DAY, PROFILE_STEP_S, utc_offset_h, week_offsets=offsets, align=True
    )
    sums = np.empty(choice.size)
    pairs, pair_of = np.unique(np.stack([choice, offset_of]), axis=1, return_inverse=True)
    for k, (profile, offset) in enumerate(pairs.T):
        sums[pair_of.reshape(-1) == k] = pu[rows[:, offset], profile].sum()
    return sums


def _profile_rows(
    library: ProfileLibrary,
    start: datetime,
    n_steps: int,
    slice_s: int,
    utc_offset_h: float,
    *,
    week_offsets: np.ndarray,
    align: bool,
) -> np.ndarray:
    """Return profile row indices, shape ``(n_quarters, len(week_offsets))``, for the simulated quarter hours."""
    if int(n_steps) != n_steps or n_steps <= 0:
        raise SourceError(f"n_steps(={n_steps}) must be a positive integer")
    if int(slice_s) != slice_s or slice_s <= 0 or slice_s % PROFILE_STEP_S:
        raise SourceError(
            f"slice_s(={slice_s}) must be a positive multiple of {PROFILE_STEP_S} s for the SimBench profiles "
            "(e.g. 900, 1800 or 3600)"
        )
    offset_s = utc_offset_h * 3600
    if offset_s % PROFILE_STEP_S:
        raise SourceError(f"utc_offset_h(={utc_offset_h}) must be a whole number of quarter hours")
    local_start = to_utc(start).tz_localize(None) + pd.Timedelta(seconds=offset_s)
    if local_start != local_start.floor(f"{PROFILE_STEP_S}s"):
        raise SourceError(f"start(={start.isoformat()}) must fall on a quarter hour for the SimBench profiles")
    n_quarters = int(n_steps) * (int(slice_s) // PROFILE_STEP_S)
    local = np.datetime64(local_start.to_datetime64(), "s") + np.arange(n_quarters) * np.timedelta64(900, "s")
    day = local.astype("datetime64[D]")
    quarter = ((local - day) // np.timedelta64(PROFILE_STEP_S, "s")).astype(int)
    sim_days, day_of_quarter = np.unique(day, return_inverse=True)
    profile_day = np.array([_profile_day(library, d.item(), align=align) for d in sim_days])
    shifted = profile_day[:, np.newaxis] + 7 * np.asarray(week_offsets)[np.newaxis, :]
    shifted = _fold_into_year(shifted, library.n_days)
    return shifted[day_of_quarter] * _QUARTERS_PER_DAY + quarter[:, np.newaxis]


def _profile_day(library: ProfileLibrary, sim_date: date, *, align: bool) -> int:
    """Day index in the profile year for ``sim_date``: same month and day, then the same weekday if ``align``."""
    day_of_month = sim_date.day
    if sim_date.month == 2 and sim_date.day == 29 and _days_in_year(library.year) == 365:
        day_of_month = 28
    same_date = date(library.year, sim_date.month, day_of_month)
    index = same_date.toordinal() - date(library.year, 1, 1).toordinal()
    if align:
        index += (sim_date.weekday() - same_date.weekday() + 3) % 7 - 3
    return index


def _fold_into_year(day_index: np.ndarray, n_days: int) -> np.ndarray:
    """Move day indices outside the profile year back inside by whole weeks (weekday kept)."""
    below = day_index < 0
    day_index = np.where(below, day_index + 7 * np.ceil(-day_index / 7).astype(int), day_index)
    above = day_index > n_days - 1
    return np.where(above, day_index - 7 * np.ceil((day_index - (n_days - 1)) / 7).astype(int), day_index)


def _sum_to_steps(quarters: np.ndarray, slice_s: int) -> np.ndarray:
    """Sum quarter-hour energies over each simulation step of ``slice_s`` seconds."""
    per_step = int(slice_s) // PROFILE_STEP_S
    if per_step == 1:
        return quarters
    return quarters.reshape(-1, per_step, *quarters.shape[1:]).sum(axis=1)


def _pv_from_irradiance(
    irradiance_w_per_m2: np.ndarray, temp_c: np.ndarray | None, n_steps: int, slice_s: int, performance_ratio: float
) -> np.ndarray:
    """PVWatts-style energy per kWp from plane irradiance (and air temperature) per step."""
    irradiance = np.asarray(irradiance_w_per_m2, dtype=float)
    if irradiance.shape != (n_steps,) or not np.all(np.isfinite(irradiance)) or np.any(irradiance < 0):
        raise SourceError(
            f"irradiance_w_per_m2 must hold n_steps(={n_steps}) finite values >= 0 (got shape {irradiance.shape})"
        )
    if int(slice_s) != slice_s or slice_s <= 0:
        raise SourceError(f"slice_s(={slice_s}) must be a positive whole number of seconds")
    if not 0 < performance_ratio <= 1:
        raise SourceError(f"performance_ratio(={performance_ratio}) must be in (0, 1]")
    derate = np.ones(n_steps)
    if temp_c is not None:
        air = np.asarray(temp_c, dtype=float)
        if air.shape != (n_steps,) or not np.all(np.isfinite(air)):
            raise SourceError(f"temp_c must hold n_steps(={n_steps}) finite values (got shape {air.shape})")
        cell_c = air + irradiance * (_NOCT_C - 20.0) / 800.0
        derate = np.clip(1.0 + _TEMP_COEFF_PER_K * (cell_c - 25.0), 0.0, None)
    return irradiance / 1000.0 * (slice_s / 3600.0) * performance_ratio * derate


def _days_in_year(year: int) -> int:
    """366 for leap years, else 365."""
    return (date(year + 1, 1, 1) - date(year, 1, 1)).days

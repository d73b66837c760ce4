"""Series files on a regular grid: read CSV or Parquet time series and reindex them to the steps.

A series file has a ``time`` column (ISO 8601; with a UTC offset such as ``2025-01-01T00:00+01:00``,
or naive, which is read as UTC) and one numeric column per quantity. `read_series_file` returns
the requested columns on the simulation grid ``start + k * slice_s`` (k < n_steps), indexed by UTC
time, forward-filling coarser data (hourly values onto 15-min steps): each row holds from its
time until the next row, and the last row for one data interval (the smallest spacing between
rows; ``slice_s`` when the file has a single row). Every problem raises `DataError` with one
sentence naming the file.

`simulation_index` builds that grid; the simulation's other sources (weather, prices) index
their output by it, and `atp.data.FileDataSource` serves these files through the external-data
interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from atp.data.errors import DataError
from atp.data.source import ArrayDataSource, DataSeries, quantity_of

__all__ = ["SITE_COLUMN", "FileDataSource", "read_regular_series", "read_series_file", "simulation_index", "to_utc"]

_SUFFIXES = (".csv", ".parquet", ".pq")


def to_utc(start: datetime) -> pd.Timestamp:
    """Return ``start`` as a UTC `pandas.Timestamp`; a naive datetime is read as UTC."""
    ts = pd.Timestamp(start)
    return ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)


def simulation_index(start: datetime, *, n_steps: int, slice_s: int) -> pd.DatetimeIndex:
    """Return the UTC start times of the ``n_steps`` simulation steps of ``slice_s`` seconds each."""
    if int(n_steps) != n_steps or n_steps <= 0:
        raise DataError(f"n_steps(={n_steps}) must be a positive integer")
    if int(slice_s) != slice_s or slice_s <= 0:
        raise DataError(f"slice_s(={slice_s}) must be a positive whole number of seconds (e.g. 900 or 3600)")
    return pd.date_range(to_utc(start), periods=int(n_steps), freq=pd.Timedelta(seconds=int(slice_s)), name="time")


def read_series_file(
    path: str | Path, *, start: datetime, n_steps: int, slice_s: int, columns: Sequence[str]
) -> pd.DataFrame:
    """Read ``columns`` of a CSV or Parquet series file onto the simulation grid (float64, UTC index).

    Raises `DataError` naming the file when it is missing, has an unsupported extension, lacks
    the ``time`` column or a requested column, holds unparseable times, duplicate times,
    non-numeric values or NaN, or does not cover the simulated period (the message gives the
    first uncovered span).
    """
    path = Path(path)
    grid = simulation_index(start, n_steps=n_steps, slice_s=slice_s)
    columns = list(columns)
    raw = _read_table(path)
    for name in ["time", *columns]:
        if name not in raw.columns:
            raise DataError(f"{path}: column {name!r} is missing (columns present: {list(map(str, raw.columns))})")
    times = _parse_times(path, raw["time"])
    values = pd.DataFrame({name: _numeric_column(path, raw[name], name, times) for name in columns}, index=times)
    values = values.sort_index()
    duplicated = values.index.duplicated()
    if duplicated.any():
        raise DataError(f"{path}: time {values.index[duplicated][0].isoformat()} appears more than once")
    _check_coverage(path, values.index, grid, slice_s=int(slice_s))
    return values.reindex(grid, method="ffill").rename_axis("time")


def _read_table(path: Path) -> pd.DataFrame:
    """Return the file's table as read by pandas, or raise naming what stops it."""
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(f"{path}: unsupported extension {path.suffix!r} (expected one of {', '.join(_SUFFIXES)})")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot be read as {suffix[1:]} ({exc})") from exc


def _parse_times(path: Path, column: pd.Series) -> pd.DatetimeIndex:
    """Parse the ``time`` column to a UTC index: offsets are honoured, naive times are UTC."""
    if column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise DataError(f"{path}: column 'time' is empty at row {row}")
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(column.dt.tz_convert(UTC), name="time")
    if pd.api.types.is_datetime64_dtype(column.dtype):
        return pd.DatetimeIndex(column.dt.tz_localize(UTC), name="time")
    texts = column.astype(str).str.strip()
    try:
        return pd.DatetimeIndex(pd.to_datetime(texts, format="ISO8601", utc=True), name="time")
    except ValueError:
        for row, text in enumerate(texts):
            try:
                datetime.fromisoformat(text)
            except ValueError:
                raise DataError(f"{path}: time {text!r} at row {row} is not ISO 8601") from None
        raise DataError(f"{path}: column 'time' cannot be parsed as ISO 8601 times") from None


def _numeric_column(path: Path, column: pd.Series, name: str, times: pd.DatetimeIndex) -> np.ndarray:
    """Return the column as float64, raising on the first non-numeric value or NaN."""
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}: column {name!r} has non-numeric value {column.iloc[row]!r} at {times[row].isoformat()}"
        )
    values = numbers.to_numpy(dtype=float)
    missing = ~np.isfinite(values)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(f"{path}: column {name!r} has a missing value (NaN) at {times[row].isoformat()}")
    return values


def _check_coverage(path: Path, times: pd.DatetimeIndex, grid: pd.DatetimeIndex, *, slice_s: int) -> None:
    """Raise if some simulation step has no row in force (before the first row, in a gap, after the end)."""
    # A row holds for one data interval: the smallest spacing between rows (slice_s for a single row).
    spacing_ns = int(np.diff(times.asi8).min()) if len(times) > 1 else slice_s * 1_000_000_000
    interval = pd.Timedelta(spacing_ns, unit="ns")
    last_row = np.searchsorted(times.asi8, grid.asi8, side="right") - 1
    covered = last_row >= 0
    covered[covered] = (grid.asi8[covered] - times.asi8[last_row[covered]]) < interval.value
    if covered.all():
        return
    first = int(np.flatnonzero(~covered)[0])
    after = np.flatnonzero(covered[first:])
    end = grid[first + after[0]] if len(after) else grid[-1] + pd.Timedelta(seconds=slice_s)
    raise DataError(
        f"{path}: does not cover the simulated period from {grid[first].isoformat()} to {end.isoformat()} "
        f"(file spans {times[0].isoformat()} to {(times[-1] + interval).isoformat()})"
    )


# -- the external-data interface's file binding -----------------------------------------------
_FILES: dict[str, tuple[str, ...]] = {
    "weather": ("outdoor_temp_c", "pv_kwh_per_kwp"),  # columns: quantities of the site
    "prices": ("price_eur_per_kwh",),
    "meters": (),  # one column per meter id: meter_kwh
    "nonflex": (),  # one column per congestion point (`site`: the whole site): nonflex_kwh
}
_KEYED = {"meters": "meter_kwh", "nonflex": "nonflex_kwh"}
SITE_COLUMN = "site"
"""The column of `nonflex.csv` that holds the whole site's non-flexible demand (key None)."""


def _find(folder: Path, stem: str) -> Path | None:
    found = [folder / f"{stem}{suffix}" for suffix in _SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        raise DataError(f"{folder}: both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def read_regular_series(path: str | Path) -> tuple[datetime, int, pd.DataFrame]:
    """A series file on its own grid: (first time, step in seconds, the numeric columns); the
    rows must be evenly spaced (DataError naming the file and the first uneven row)."""
    path = Path(path)
    raw = _read_table(path)
    if "time" not in raw.columns:
        raise DataError(f"{path}: column 'time' is missing (columns present: {list(map(str, raw.columns))})")
    times = _parse_times(path, raw["time"])
    columns = [str(c) for c in raw.columns if c != "time"]
    values = pd.DataFrame({name: _numeric_column(path, raw[name], name, times) for name in columns}, index=times)
    values = values.sort_index()
    if len(values) < 2:
        raise DataError(f"{path}: needs at least two rows (the step is their spacing)")
    spacing = np.diff(values.index.asi8) // 1_000_000_000
    step = int(spacing[0])
    if step <= 0 or np.any(spacing != step):
        row = int(np.flatnonzero(spacing != step)[0]) + 1 if step > 0 else 1
        raise DataError(f"{path}: rows must be evenly spaced; row {row} ({values.index[row].isoformat()}) is not")
    return values.index[0].to_pydatetime(), step, values


class FileDataSource:
    """The file binding: CSV or Parquet files in one folder, each on its own regular grid.

        weather.csv        time, outdoor_temp_c, pv_kwh_per_kwp   (either column may be left out)
        prices.csv         time, price_eur_per_kwh
        meters.csv         time, <meter id>, <meter id>, ...      meter_kwh per meter
        nonflex.csv        time, site, <congestion point>, ...    nonflex_kwh (site: the whole site)
        meter_points.csv   meter_id, congestion_point             (an empty point: none)

    Every file is optional; a quantity whose file is missing raises `DataError` when asked for.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: no such folder")
        self._sources: dict[tuple[str, str | None], ArrayDataSource] = {}
        for stem, wanted in _FILES.items():
            path = _find(self.folder, stem)
            if path is None:
                continue
            start, step, frame = read_regular_series(path)
            if stem in _KEYED:
                pairs = {(_KEYED[stem], None if c == SITE_COLUMN and stem == "nonflex" else c): c for c in frame}
            else:
                unknown = [c for c in frame if c not in wanted]
                if unknown:
                    raise DataError(f"{path}: columns {unknown} are not among {list(wanted)}")
                pairs = {(c, None): c for c in frame}
            for key, column in pairs.items():
                self._sources[key] = ArrayDataSource(
                    start=start.astimezone(UTC), slice_s=step, series={key: frame[column].to_numpy()}
                )
        self.meter_points: dict[str, str | None] = {}
        points = _find(self.folder, "meter_points")
        if points is not None:
            table = _read_table(points)
            for name in ("meter_id", "congestion_point"):
                if name not in table.columns:
                    raise DataError(f"{points}: column {name!r} is missing")
            for meter, point in zip(table["meter_id"], table["congestion_point"], strict=True):
                self.meter_points[str(meter)] = None if pd.isna(point) or str(point) == "" else str(point)

    def series(
        self, quantity: str, start: datetime, end: datetime, *, slice_s: int, key: str | None = None
    ) -> DataSeries:
        """See `atp.data.DataSource.series`."""
        quantity_of(quantity, key)
        source = self._sources.get((quantity, key))
        if source is None:
            what = quantity if key is None else f"{quantity} of {key!r}"
            raise DataError(f"{self.folder}: no file holds {what}")
        return source.series(quantity, start, end, slice_s=slice_s, key=key)

    def congestion_point(self, meter_id: str) -> str | None:
        """See `atp.data.DataSource.congestion_point`."""
        if meter_id not in self.meter_points:
            raise DataError(f"{self.folder}: meter_points names no meter {meter_id!r}")
        return self.meter_points[meter_id]

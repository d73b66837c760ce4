"""The external-data interface (D2.1 F2.FOA4, F2.FMAN6): the data an FOA's generators and an
FMAN need from outside the ATP, whichever system holds it.

One operation gives any quantity as a series on the caller's grid; one maps a meter to its
congestion point:

    source.series("outdoor_temp_c", start, end, slice_s=900)        # the site's weather
    source.series("meter_kwh", start, end, slice_s=900, key="M-017") # one meter's readings
    source.congestion_point("M-017")                                 # "cp-3", or None

| quantity | unit | kind | key |
|---|---|---|---|
| `outdoor_temp_c` | degC | intensive | none (the site) |
| `pv_kwh_per_kwp` | kWh per kWp per step | extensive | none (the site) |
| `price_eur_per_kwh` | EUR/kWh (day-ahead) | intensive | none |
| `meter_kwh` | kWh per step (net consumption, smart-meter readings) | extensive | a meter id (required) |
| `nonflex_kwh` | kWh per step (non-flexible demand) | extensive | a congestion point; none: the site |

A source holds each series on its own grid and gives it on the grid asked for
(`resample`): an intensive quantity (a temperature, a price) is held over finer steps and
averaged over coarser ones; an extensive one (energy per step) is split evenly over finer steps
and summed over coarser ones, so energy is conserved. The two grids' steps must divide one
another. A step the source does not cover, an unknown quantity or key, or a grid the data
cannot be put on raises `DataError` naming it. Bindings: `ArrayDataSource` (in-process, the
world's own data), `FileDataSource` (CSV or Parquet files, atp/data/files.py), `HttpDataSource`
and `create_data_app` (HTTP, atp/data/http.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from atp.data.errors import DataError

__all__ = [
    "MAX_SERIES_STEPS",
    "QUANTITIES",
    "ArrayDataSource",
    "DataSeries",
    "DataSource",
    "Quantity",
    "quantity_of",
    "resample",
]

MAX_SERIES_STEPS = 100_000
"""Steps one series request may ask for (a year of 15-minute steps is 35 040)."""


@dataclass(frozen=True)
class Quantity:
    """What a quantity is: its unit, whether it adds up over time (energy per step) or not,
    and what its key names (None: the quantity has no key)."""

    name: str
    unit: str
    extensive: bool
    key: str | None = None
    key_required: bool = False


QUANTITIES: Mapping[str, Quantity] = {
    q.name: q
    for q in (
        Quantity("outdoor_temp_c", "degC", extensive=False),
        Quantity("pv_kwh_per_kwp", "kWh/kWp per step", extensive=True),
        Quantity("price_eur_per_kwh", "EUR/kWh", extensive=False),
        Quantity("meter_kwh", "kWh per step", extensive=True, key="meter id", key_required=True),
        Quantity("nonflex_kwh", "kWh per step", extensive=True, key="congestion point"),
    )
}


def quantity_of(name: str, key: str | None) -> Quantity:
    """The quantity `name`, with `key` checked against it; DataError naming what is wrong."""
    known = QUANTITIES.get(name)
    if known is None:
        raise DataError(f"quantity {name!r} is not one of {', '.join(QUANTITIES)}")
    if known.key is None and key is not None:
        raise DataError(f"quantity {name!r} takes no key (got {key!r})")
    if known.key_required and not key:
        raise DataError(f"quantity {name!r} needs a key: the {known.key}")
    return known


@dataclass(frozen=True, eq=False)
class DataSeries:
    """Values per step: `values[i]` over `[start + i*slice_s, start + (i+1)*slice_s)`, in the
    quantity's unit."""

    quantity: str
    start: datetime
    slice_s: int
    values: np.ndarray
    key: str | None = None

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=float).reshape(-1)
        values.flags.writeable = False
        object.__setattr__(self, "values", values)

    @property
    def end(self) -> datetime:
        """The end of the last step."""
        return self.start + timedelta(seconds=self.slice_s * len(self.values))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataSeries):
            return NotImplemented
        return (self.quantity, self.key, self.start, self.slice_s) == (
            other.quantity,
            other.key,
            other.start,
            other.slice_s,
        ) and np.array_equal(self.values, other.values)

    __hash__ = None  # type: ignore[assignment]


class DataSource(Protocol):
    """What every binding of the external-data interface answers."""

    def series(
        self, quantity: str, start: datetime, end: datetime, *, slice_s: int, key: str | None = None
    ) -> DataSeries:
        """`quantity` (of `key`) over `[start, end)` on the grid of `slice_s` seconds."""
        ...

    def congestion_point(self, meter_id: str) -> str | None:
        """The congestion point of a meter (None: the source knows the meter but no point);
        DataError for an unknown meter."""
        ...


def _check_request(start: datetime, end: datetime, slice_s: int) -> int:
    """The number of steps asked for; DataError naming the bad argument."""
    if isinstance(slice_s, bool) or not isinstance(slice_s, int) or slice_s <= 0 or 86_400 % slice_s:
        raise DataError(f"slice_s(={slice_s}) must divide 86400 (e.g. 900 or 3600)")
    if start.tzinfo is None or end.tzinfo is None:
        raise DataError("start and end must be timezone-aware (e.g. UTC)")
    if start.timestamp() % slice_s:
        raise DataError(f"start {start.isoformat()} is not on the {slice_s} s grid")
    span = (end - start).total_seconds()
    if span <= 0 or span % slice_s:
        raise DataError(f"[start, end) must hold a whole, positive number of {slice_s} s steps")
    n = int(span // slice_s)
    if n > MAX_SERIES_STEPS:
        raise DataError(f"[start, end) holds {n} steps of {slice_s} s, more than the limit {MAX_SERIES_STEPS}")
    return n


def resample(values: np.ndarray, from_slice_s: int, to_slice_s: int, *, extensive: bool) -> np.ndarray:
    """`values` on a grid of `from_slice_s` seconds put on one of `to_slice_s`: held or split
    over finer steps, averaged or summed over coarser ones (the coarser grid's steps must start
    with the first value); DataError when neither step divides the other."""
    values = np.asarray(values, dtype=float)
    if to_slice_s == from_slice_s:
        return values.copy()
    if to_slice_s < from_slice_s:
        if from_slice_s % to_slice_s:
            raise DataError(f"the data's {from_slice_s} s steps cannot be split into {to_slice_s} s steps")
        r = from_slice_s // to_slice_s
        out = np.repeat(values, r)
        return out / r if extensive else out
    if to_slice_s % from_slice_s:
        raise DataError(f"the data's {from_slice_s} s steps cannot be joined into {to_slice_s} s steps")
    r = to_slice_s // from_slice_s
    whole = len(values) // r * r
    blocks = values[:whole].reshape(-1, r)
    return blocks.sum(axis=1) if extensive else blocks.mean(axis=1)


class ArrayDataSource:
    """The in-process binding: series held as arrays on one grid (the world's own data).

    `series` maps (quantity, key or None) to the values per step from `start` on the grid of
    `slice_s`; `meter_points` maps meter ids to congestion points.
    """

    def __init__(
        self,
        *,
        start: datetime,
        slice_s: int,
        series: Mapping[tuple[str, str | None], np.ndarray],
        meter_points: Mapping[str, str | None] | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise DataError("ArrayDataSource: start must be timezone-aware (e.g. UTC)")
        if slice_s <= 0 or 86_400 % slice_s:
            raise DataError(f"ArrayDataSource: slice_s(={slice_s}) must divide 86400")
        self.start = start
        self.slice_s = slice_s
        self._series: dict[tuple[str, str | None], np.ndarray] = {}
        for (name, key), values in series.items():
            quantity_of(name, key)
            array = np.array(values, dtype=float).reshape(-1)
            if not np.all(np.isfinite(array)):
                raise DataError(f"ArrayDataSource: {name}[{key}] holds a value that is not a finite number")
            array.flags.writeable = False
            self._series[(name, key)] = array
        self.meter_points = dict(meter_points or {})

    def keys(self, name: str) -> list[str | None]:
        """The keys the source holds `name` for."""
        return [k for (q, k) in self._series if q == name]

    def series(
        self, quantity: str, start: datetime, end: datetime, *, slice_s: int, key: str | None = None
    ) -> DataSeries:
        """See `DataSource.series`."""
        q = quantity_of(quantity, key)
        n = _check_request(start, end, slice_s)
        values = self._series.get((quantity, key))
        if values is None:
            what = f"{quantity} of {q.key} {key!r}" if key is not None else quantity
            raise DataError(f"the source holds no {what}")
        native = self.slice_s
        step = min(native, slice_s)  # read on the finer of the two grids, then resample
        first = (start - self.start).total_seconds()
        if first % step:
            raise DataError(f"start {start.isoformat()} is not on the data's {native} s grid")
        fine = resample(values, native, step, extensive=q.extensive) if step < native else values
        lo = int(first // step)
        count = n * slice_s // step
        if lo < 0 or lo + count > len(fine):
            covered_end = self.start + timedelta(seconds=native * len(values))
            raise DataError(
                f"{quantity}{'' if key is None else f' of {key!r}'}: the source covers "
                f"{self.start.isoformat()} to {covered_end.isoformat()}, not {start.isoformat()} to {end.isoformat()}"
            )
        out = resample(fine[lo : lo + count], step, slice_s, extensive=q.extensive)
        return DataSeries(quantity, start, slice_s, out, key)

    def congestion_point(self, meter_id: str) -> str | None:
        """See `DataSource.congestion_point`."""
        if meter_id not in self.meter_points:
            raise DataError(f"the source knows no meter {meter_id!r}")
        return self.meter_points[meter_id]

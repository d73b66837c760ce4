"""The FMAN as a service: a planning loop beside the receiver's HTTP binding.

`goflex-atp serve --role fman --prices prices.csv --plan-every 900` runs a `PlanningLoop`
next to the HTTP server over the same `OfferStore`: every `every_s` seconds of wall-clock
time it runs one rolling planning round (`atp.fman.rounds.PlanningRounds`) at the current time against
the price file, under the server's store lock, so the FOAs connected over HTTP receive
`assigned` events with their schedules. When the FMAN trades on a market
(`FlexOfferManager.trade_on`), each round bids first (`MarketTrader.bid`, the next gate being
the next round) and plans the rest; an FMAN without a market refuses the direct offers it is
sent at submission (422, the problem named). A failed round is logged and kept in `errors`; the
loop goes on (a service must not die of one bad round).

Price files (`load_prices`): CSV with a header `time,eur_per_kwh`, ISO 8601 times with a
timezone, one row per step on a regular grid (e.g. hourly day-ahead prices).
"""

from __future__ import annotations

import csv
import itertools
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from atp.data import DataSource
from atp.errors import ValidationError
from atp.fman.manager import PlanResult
from atp.fman.planning import PriceSeries
from atp.fman.rounds import PlanningRounds
from atp.interface.periodic import PeriodicTask

__all__ = ["PlanningLoop", "PriceFileError", "data_prices", "load_prices", "load_series"]

_log = logging.getLogger(__name__)


class PriceFileError(ValidationError):
    """A price file cannot be read; the message names the file, the row and what is wrong."""


def data_prices(source: DataSource, start: datetime, end: datetime, *, slice_s: int) -> PriceSeries:
    """The day-ahead prices over `[start, end)` from the external-data interface (`atp.data`:
    files, HTTP or in-process), for `FlexOfferManager.plan`."""
    series = source.series("price_eur_per_kwh", start, end, slice_s=slice_s)
    return PriceSeries(series.start, series.slice_s, series.values)


def load_prices(path: str | Path) -> PriceSeries:
    """A regular price series from a CSV file with columns `time` and `eur_per_kwh`."""
    return load_series(path, required=("eur_per_kwh",))["eur_per_kwh"]


def load_series(path: str | Path, *, required: tuple[str, ...] = ()) -> dict[str, PriceSeries]:
    """Regular series from a CSV file with a `time` column and one column per series (e.g.
    `base_kwh,target_kwh`, what an objective needs besides prices: `serve --series`), each
    column a `PriceSeries` on the file's grid; PriceFileError naming the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    rows = list(csv.DictReader(text.splitlines()))
    header = ",".join(("time", *required)) if required else "time,<name>,..."
    columns = [c for c in (rows[0] if rows else {}) if c != "time"]
    if not rows or "time" not in rows[0] or not set(required) <= set(columns) or not columns:
        raise PriceFileError(f"{path}: needs a header '{header}' and at least one row")
    times: list[datetime] = []
    values: dict[str, list[float]] = {c: [] for c in columns}
    for i, row in enumerate(rows, start=2):
        try:
            t = datetime.fromisoformat((row["time"] or "").strip().replace("Z", "+00:00"))
        except ValueError:
            raise PriceFileError(f"{path}: line {i}: time {row['time']!r} is not an ISO 8601 time") from None
        if t.tzinfo is None:
            raise PriceFileError(f"{path}: line {i}: time {row['time']!r} has no timezone (e.g. add Z for UTC)")
        for column in columns:
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                raise PriceFileError(f"{path}: line {i}: {column} {row[column]!r} is not a number") from None
            if not np.isfinite(value):
                raise PriceFileError(f"{path}: line {i}: {column} must be a finite number")
            values[column].append(value)
        times.append(t.astimezone(UTC))
    if len(times) < 2:
        raise PriceFileError(f"{path}: needs at least two rows to know the step length")
    steps = {round((b - a).total_seconds()) for a, b in itertools.pairwise(times)}
    if len(steps) != 1 or next(iter(steps)) <= 0:
        raise PriceFileError(f"{path}: times must be increasing on a regular grid (found steps of {sorted(steps)} s)")
    step = steps.pop()
    return {c: PriceSeries(times[0], step, np.asarray(v)) for c, v in values.items()}


class PlanningLoop(PeriodicTask[PlanResult]):
    """Runs a planning round (`PlanningRounds.round`) every `every_s` seconds on a background
    thread (see the module docstring).

    `lock` is the lock that guards the store (the HTTP app's `app.state.lock`); `clock` gives
    the planning time (wall-clock UTC by default).
    """

    name = "planning"

    def __init__(
        self,
        rounds: PlanningRounds,
        *,
        every_s: float,
        lock: AbstractContextManager[object] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(every_s=every_s, lock=lock, clock=clock)
        self.planning = rounds

    def work(self, now: datetime) -> PlanResult:
        """Bid first (when the FMAN trades on a market; the next gate is the next round), then plan."""
        result = self.planning.round(now, next_gate=now + timedelta(seconds=self.every_s))
        _log.info(
            "planned %d offers in %d aggregates, %d assigned (%s)",
            result.n_offers,
            result.n_aggregates,
            result.n_assigned,
            result.model_status,
        )
        return result

    def plan_now(self) -> PlanResult | None:
        """One planning round now (also what the loop calls); None when it failed (see `errors`)."""
        return self.run_now()

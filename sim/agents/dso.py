"""DSO agent: forecasts the site's load at its planning times and asks for local flexibility.

Until the grid issue brings power flow, the forecast is the site's load at the secondary
substation: non-flexible load minus PV (known profiles) plus the default schedules of every
offer both receivers hold, read through operator-scoped exchange clients. Steps above the
transformer limit become a local request (less consumption, at the DSO's cut-off price) at
the site's congestion point (F2.FMAR7).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import mesa
import numpy as np

from atp.fmar import Request
from atp.interface import ExchangeInterface

__all__ = ["Dso"]


class Dso(mesa.Agent):
    """A distribution system operator watching one transformer."""

    def __init__(
        self,
        model: mesa.Model,
        *,
        name: str,
        start: datetime,
        slice_s: int,
        transformer_kw: float,
        cutoff_eur_per_kwh: float,
        base_forecast_kwh: np.ndarray,
        receivers: list[ExchangeInterface],
        congestion_point: str,
    ) -> None:
        super().__init__(model)
        self.name = name
        self.start = start
        self.slice_s = slice_s
        self.limit_kwh = transformer_kw * slice_s / 3600
        self.cutoff_eur_per_kwh = cutoff_eur_per_kwh
        self.base_forecast_kwh = base_forecast_kwh
        self.receivers = receivers  # operator-scoped exchange clients of the FMAN and the FMAR
        self.congestion_point = congestion_point
        self.forecasts: list[tuple[datetime, float]] = []  # (time, forecast peak kWh per step)
        self.requests: list[Request] = []

    def forecast(self, first_step: int, n_steps: int) -> np.ndarray:
        """Forecast site energy per step (kWh) for steps [first_step, first_step + n_steps)."""
        end = min(first_step + n_steps, len(self.base_forecast_kwh))
        total = self.base_forecast_kwh[first_step:end].copy()
        t0 = self.start + timedelta(seconds=first_step * self.slice_s)
        t1 = self.start + timedelta(seconds=end * self.slice_s)
        for receiver in self.receivers:
            series = receiver.timeseries("baseline", t0, t1, slice_s=self.slice_s)
            total += np.asarray(series.values)
        return total

    def run_forecast(self, k: int, now: datetime, *, horizon_steps: int) -> Request | None:
        """The forecast run at step k: a request for the overloaded steps ahead, or None."""
        first = k + 1
        forecast = self.forecast(first, horizon_steps)
        if len(forecast) == 0:
            return None
        self.forecasts.append((now, float(forecast.max())))
        excess = np.maximum(forecast - self.limit_kwh, 0.0)
        if not np.any(excess > 1e-6):
            return None
        request = Request(
            buyer=self.name,
            start=self.start + timedelta(seconds=first * self.slice_s),
            slice_s=self.slice_s,
            volume_kwh=tuple(float(-v) for v in np.round(excess, 3)),
            cutoff_eur_per_kwh=self.cutoff_eur_per_kwh,
            congestion_point=self.congestion_point,
            id=f"{self.name}-{len(self.requests) + 1:04d}",
        )
        self.requests.append(request)
        return request

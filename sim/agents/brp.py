"""BRP agent: forecasts its portfolio imbalance and asks the market to correct it.

The imbalance forecast is seeded: the evening peak runs short (the BRP wants less
consumption), midday solar runs long (it wants more), plus noise. At the day-ahead gate the BRP
posts the next local day; at each intraday gate it posts a correction for the coming hours.
Its requests are buyer's requests of the exchange interface (`atp.interface.FlexRequest`):
the market operator posts what remains of them to each session through the interface.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import mesa
import numpy as np

from atp.interface import FlexRequest

__all__ = ["Brp"]


class Brp(mesa.Agent):
    """A balance responsible party with a forecast imbalance per step (kWh, + = wants more load)."""

    def __init__(
        self,
        model: mesa.Model,
        *,
        name: str,
        start: datetime,
        slice_s: int,
        n_steps: int,
        n_prosumers: int,
        imbalance_kwh_per_prosumer: float,
        cutoff_eur_per_kwh: float,
        timezone: ZoneInfo,
        rng: np.random.Generator,
    ) -> None:
        super().__init__(model)
        self.name = name
        self.start = start
        self.slice_s = slice_s
        self.cutoff_eur_per_kwh = cutoff_eur_per_kwh
        times = [start + timedelta(seconds=k * slice_s) for k in range(n_steps)]
        hours = np.array([t.astimezone(timezone).hour + t.astimezone(timezone).minute / 60 for t in times])
        shape = -np.exp(-0.5 * ((hours - 19.0) / 1.5) ** 2) + 0.6 * np.exp(-0.5 * ((hours - 13.0) / 1.5) ** 2)
        scale = imbalance_kwh_per_prosumer * n_prosumers * slice_s / 900
        noise = rng.normal(0.0, 0.15, n_steps)
        self.imbalance_kwh = np.round(scale * (shape + noise), 3)
        self.requests: list[FlexRequest] = []

    def request(self, first_step: int, n_steps: int) -> FlexRequest | None:
        """The request for steps [first_step, first_step + n_steps), or None when nothing is asked."""
        end = min(first_step + n_steps, len(self.imbalance_kwh))
        if end <= first_step:
            return None
        volume = self.imbalance_kwh[first_step:end]
        if not np.any(np.abs(volume) > 1e-9):
            return None
        request = FlexRequest(
            buyer=self.name,
            start=self.start + timedelta(seconds=first_step * self.slice_s),
            slice_s=self.slice_s,
            volume_kwh=tuple(float(v) for v in volume),
            cutoff_eur_per_kwh=self.cutoff_eur_per_kwh,
        )
        self.requests.append(request)
        return request

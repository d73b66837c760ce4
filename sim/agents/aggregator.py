"""Aggregator agent: runs the FMAN (atp.fman) that receives and plans the delegated offers."""

from __future__ import annotations

from datetime import datetime

import mesa
import pandas as pd

from atp.fman import AggregationParams, FlexOfferManager, PlanResult, PriceSeries
from atp.interface import InProcessClient, OfferStore

__all__ = ["Aggregator"]


class Aggregator(mesa.Agent):
    """The aggregator: an FMAN and its offer store; plans at each planning time."""

    def __init__(
        self,
        model: mesa.Model,
        *,
        name: str,
        store: OfferStore,
        params: AggregationParams,
        objective: str,
        horizon_steps: int,
        time_limit_s: float,
        prices: pd.Series,
        series_kwh: dict[str, PriceSeries] | None = None,
    ) -> None:
        super().__init__(model)
        self.name = name
        self.store = store
        self.fman = FlexOfferManager(
            store, name=name, params=params, objective=objective, horizon_steps=horizon_steps, time_limit_s=time_limit_s
        )
        self.prices = prices
        self.series_kwh = series_kwh or {}  # what the objective needs besides prices (kWh per step)
        self.plans: list[PlanResult] = []

    def client(self, party: str) -> InProcessClient:
        """An exchange client for a prosumer's FOA (in-process binding)."""
        return InProcessClient(self.store, party)

    def plan(self, now: datetime) -> PlanResult:
        """One planning round of the FMAN at `now` against the day-ahead prices."""
        result = self.fman.plan(now, self.prices, series_kwh=self.series_kwh)
        self.plans.append(result)
        return result

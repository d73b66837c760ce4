"""The KPIs of D2.1 section 7.6 (F2.5) for an FMAN's portfolio, from its time series.

`compute_kpis(inputs)` is a pure function of a `KpiInputs` (arrays per step), so the world's
`kpi.json` and the services' `GET /kpi` report the same figures for the same data:

- hourly adaptation (MWh per hour): optimised (scheduled) minus baseline energy of the flexible
  loads per hour, and the factual one (metered minus baseline) when meter data is given;
- load adaptability level per hour = |adaptation| (MWh/h) / peak hourly load (MWh/h) of the
  baseline (the site's, when given, else the flexible loads'); its mean and maximum;
- money (cash that changes hands): market revenue, payments to prosumers (net of their
  penalties) and the aggregator's margin = market revenue - payments;
- valuation (not cash): energy cost of the baseline minus that of the optimised (projected)
  and of the metered (factual) energy at the given prices (EUR), i.e. what the portfolio's
  energy would have cost without the adaptation; it accrues to whoever buys that energy;
- every money and valuation figure also in EUR/MW/year: divided by the flexible capacity
  (peak flexible baseline power, MW) and scaled from the covered days to 365;
- projections for 10x, 100x and 1000x the participants. Flexibility (kWh shifted), offers and
  savings at the given prices scale linearly with participants (each brings its devices; prices
  are taken as given, so this ignores price feedback, and says so); market deals and revenue
  scale linearly until they meet the buyers' requested volume, which caps them (market depth:
  more sellers do not create more demand). The cap is reported beside each projection.

Per-MW-year figures and projections extrapolate the covered days: `extrapolation_basis` names
them (e.g. "1 day(s) from 2026-01-12 (January), scaled by 365/1"). A period shorter than
`MIN_DAYS_NOT_EXTRAPOLATED` (7) days is no sample of a year (no weekly cycle, one season):
its per-MW-year figures and projections are put under `extrapolated`, beside that basis and
a `caveat` sentence, instead of at the top level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from atp.errors import ValidationError
from atp.interface.store import OPERATOR, OfferStore

__all__ = ["MIN_DAYS_NOT_EXTRAPOLATED", "PROJECTION_FACTORS", "KpiInputs", "compute_kpis", "kpi_inputs_from_store"]

PROJECTION_FACTORS = (10, 100, 1000)
DAYS_PER_YEAR = 365.0
MIN_DAYS_NOT_EXTRAPOLATED = 7.0
_MIN_PEAK_MWH_H = 1e-6


@dataclass(frozen=True)
class KpiInputs:
    """Per-step series (kWh per `slice_s` step from `start`) and counts of one portfolio.

    `baseline_kwh`: flexible loads without the ATP; `optimised_kwh`: their scheduled energy;
    `metered_kwh`: what they really used (None when no meter data yet); `site_baseline_kwh`:
    the whole site's baseline net load, for the peak in the adaptability level (None: use the
    flexible baseline); `prices_eur_per_kwh`: energy prices per step. Market figures: energy
    cleared for the portfolio (kWh, absolute), the buyers' requested volume (kWh, absolute),
    revenue (EUR) and number of deals; `prosumer_payments_eur`: what the aggregator paid its
    prosumers (rewards, activation payments, net of their penalties).
    """

    start: datetime
    slice_s: int
    baseline_kwh: np.ndarray
    optimised_kwh: np.ndarray
    prices_eur_per_kwh: np.ndarray
    participants: int
    offers: int
    metered_kwh: np.ndarray | None = None
    site_baseline_kwh: np.ndarray | None = None
    market_cleared_kwh: float = 0.0
    market_requested_kwh: float = 0.0
    market_revenue_eur: float = 0.0
    market_deals: int = 0
    prosumer_payments_eur: float = 0.0
    scope: str = field(default="portfolio")

    def __post_init__(self) -> None:
        n = len(np.asarray(self.baseline_kwh))
        for name in ("optimised_kwh", "prices_eur_per_kwh", "metered_kwh", "site_baseline_kwh"):
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value, dtype=float)
            if array.shape != (n,):
                raise ValidationError(f"{name}: has {array.shape} values; baseline_kwh has {n} steps")
            if not np.all(np.isfinite(array)):
                raise ValidationError(f"{name}: must be finite numbers; found NaN or infinity")
        if not isinstance(self.slice_s, int) or self.slice_s <= 0 or 3600 % self.slice_s:
            raise ValidationError(f"slice_s(={self.slice_s}) must divide an hour (e.g. 900)")
        for name in ("participants", "offers", "market_deals"):
            if getattr(self, name) < 0:
                raise ValidationError(f"{name}(={getattr(self, name)}) must not be negative")


def _r(x: float, digits: int = 6) -> float:
    return float(round(float(x), digits))


def _hourly(values: np.ndarray, steps_per_hour: int) -> np.ndarray:
    n_hours = len(values) // steps_per_hour
    return values[: n_hours * steps_per_hour].reshape(n_hours, steps_per_hour).sum(axis=1)


def compute_kpis(inputs: KpiInputs) -> dict[str, Any]:
    """The D2.1 7.6 KPIs as a JSON-ready dict (see the module docstring for definitions)."""
    steps_per_hour = 3600 // inputs.slice_s
    baseline = np.asarray(inputs.baseline_kwh, dtype=float)
    optimised = np.asarray(inputs.optimised_kwh, dtype=float)
    prices = np.asarray(inputs.prices_eur_per_kwh, dtype=float)
    metered = None if inputs.metered_kwh is None else np.asarray(inputs.metered_kwh, dtype=float)
    site = baseline if inputs.site_baseline_kwh is None else np.asarray(inputs.site_baseline_kwh, dtype=float)
    days = len(baseline) * inputs.slice_s / 86_400

    projected_adapt = _hourly(optimised - baseline, steps_per_hour) / 1000
    factual_adapt = None if metered is None else _hourly(metered - baseline, steps_per_hour) / 1000
    peak_mwh_h = float(np.max(np.abs(_hourly(site, steps_per_hour)))) / 1000 if len(site) >= steps_per_hour else 0.0
    adapt = factual_adapt if factual_adapt is not None else projected_adapt
    # a peak below 1 Wh/h carries no load to adapt (and dividing by it would overflow)
    level = np.abs(adapt) / peak_mwh_h if peak_mwh_h > _MIN_PEAK_MWH_H else np.zeros(len(adapt))

    cost_baseline = float(baseline @ prices)
    savings_projected = cost_baseline - float(optimised @ prices)
    savings_factual = None if metered is None else cost_baseline - float(metered @ prices)
    shifted = (np.abs((metered if metered is not None else optimised) - baseline).sum()) / 2
    margin = inputs.market_revenue_eur - inputs.prosumer_payments_eur
    capacity_mw = float(np.max(np.abs(baseline))) / (inputs.slice_s / 3600) / 1000 if len(baseline) else 0.0

    def per_mw_year(eur: float | None) -> float | None:
        if eur is None or capacity_mw <= _MIN_PEAK_MWH_H or days <= 0:
            return None
        return _r(eur / capacity_mw * DAYS_PER_YEAR / days, 2)

    money = {
        "market_revenue_eur": _r(inputs.market_revenue_eur),
        "prosumer_payments_eur": _r(inputs.prosumer_payments_eur),
        "aggregator_margin_eur": _r(margin),
    }
    valuation = {
        "energy_cost_baseline_eur": _r(cost_baseline),
        "savings_projected_eur": _r(savings_projected),
        "savings_factual_eur": None if savings_factual is None else _r(savings_factual),
    }

    def scaled(figures: dict[str, float | None]) -> dict[str, float | None]:
        return {
            name.replace("_eur", "_eur_per_mw_year"): per_mw_year(value)
            for name, value in figures.items()
            if name != "energy_cost_baseline_eur"
        }

    projections = {}
    for factor in PROJECTION_FACTORS:
        wanted_kwh = inputs.market_cleared_kwh * factor
        cap = inputs.market_requested_kwh
        sold_kwh = min(wanted_kwh, cap) if cap > 0 else 0.0
        share = sold_kwh / wanted_kwh if wanted_kwh > 0 else 0.0
        revenue = inputs.market_revenue_eur * factor * share
        savings = (savings_factual if savings_factual is not None else savings_projected) * factor
        projections[f"x{factor}"] = {
            "participants": inputs.participants * factor,
            "offers": inputs.offers * factor,
            "flexible_energy_shifted_kwh": _r(shifted * factor),
            "market_deals": math.floor(inputs.market_deals * factor * share),
            "market_cleared_kwh": _r(sold_kwh),
            "market_capped_by_requested_kwh": bool(wanted_kwh > cap),
            "market_revenue_eur": _r(revenue),
            "savings_eur": _r(savings),
            "aggregator_margin_eur": _r(revenue - inputs.prosumer_payments_eur * factor),
        }

    extrapolation: dict[str, Any] = {
        "money_per_mw_year": scaled(money),
        "valuation_per_mw_year": scaled(valuation),
        "projections": projections,
        "projection_model": (
            "flexibility, offers and savings scale with participants at the given prices (no price feedback); "
            "market deals and revenue scale until the buyers' requested volume caps them; payments to "
            "prosumers scale with participants"
        ),
    }
    basis = _basis(inputs.start, days)
    if days < MIN_DAYS_NOT_EXTRAPOLATED:
        placed: dict[str, Any] = {
            "extrapolated": {
                "basis": basis,
                "caveat": (
                    f"extrapolated from {basis.split(',')[0]} only: a period under "
                    f"{MIN_DAYS_NOT_EXTRAPOLATED:g} days has no weekly cycle and one season, so per-MW-year "
                    "figures and projections are indications, not estimates"
                ),
                **extrapolation,
            }
        }
    else:
        placed = {"extrapolation_basis": basis, **extrapolation}

    return {
        "scope": inputs.scope,
        "start": inputs.start.isoformat().replace("+00:00", "Z"),
        "days": _r(days, 4),
        "participants": inputs.participants,
        "offers": inputs.offers,
        "flexible_capacity_mw": _r(capacity_mw),
        "flexible_energy_shifted_kwh": _r(shifted),
        "hourly_adaptation_projected_mwh": [_r(v) for v in projected_adapt],
        "hourly_adaptation_factual_mwh": None if factual_adapt is None else [_r(v) for v in factual_adapt],
        "load_adaptability_level": [_r(v) for v in level],
        "load_adaptability_level_mean": _r(float(level.mean()) if len(level) else 0.0),
        "load_adaptability_level_max": _r(float(level.max()) if len(level) else 0.0),
        "money": money,
        "valuation": valuation,
        "market": {
            "deals": inputs.market_deals,
            "cleared_kwh": _r(inputs.market_cleared_kwh),
            "requested_kwh": _r(inputs.market_requested_kwh),
        },
        **placed,
    }


def _basis(start: datetime, days: float) -> str:
    """What the extrapolated figures come from: "1 day(s) from 2026-01-12 (January), scaled by 365/1"."""
    last = start + timedelta(days=days) - timedelta(microseconds=1) if days > 0 else start
    months: list[str] = []
    month = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while month <= last:
        months.append(month.strftime("%B"))
        if month.year == datetime.max.year and month.month == 12:  # the calendar's last month
            break
        month = (month + timedelta(days=32)).replace(day=1)
    named = months[0] if len(months) == 1 else f"{months[0]}-{months[-1]}"
    return f"{days:g} day(s) from {start.date().isoformat()} ({named}), scaled by {DAYS_PER_YEAR:g}/{days:g}"


def _add(series: np.ndarray, start: datetime, slice_s: int, at: datetime, energy: Sequence[float]) -> None:
    """Add energy per step starting at `at` into `series` (steps outside it are dropped)."""
    k0 = int((at - start).total_seconds() // slice_s)
    lo, hi = max(k0, 0), min(k0 + len(energy), len(series))
    if lo < hi:
        series[lo:hi] += np.asarray(energy[lo - k0 : hi - k0], dtype=float)


def kpi_inputs_from_store(
    store: OfferStore,
    *,
    party: str,
    start: datetime,
    end: datetime,
    slice_s: int,
    prices_eur_per_kwh: np.ndarray | None = None,
) -> KpiInputs:
    """The KPI inputs of one receiver's store over [start, end): a party's own offers, or every
    offer for the operator. Baseline = default schedules; optimised = assigned schedules, else
    defaults; metered = the measurements (None when there are none). Without prices, money
    figures are computed at 0 EUR/kWh. The store knows nothing of markets: market figures are 0
    (the simulation adds them from the FMAR's results)."""
    n = max(int((end - start).total_seconds() // slice_s), 0)
    baseline = np.zeros(n)
    optimised = np.zeros(n)
    metered = np.zeros(n)
    measured = False
    owners: set[str] = set()
    offers = 0
    for record in store.records():
        if party != OPERATOR and record.owner != party:
            continue
        offer = record.offer
        if offer.slice_s != slice_s:
            continue
        offers += 1
        owners.add(record.owner)
        default = offer.default_schedule
        if default is not None:
            _add(baseline, start, slice_s, default.start, default.energy)
        run = record.schedule or default
        if run is not None:
            _add(optimised, start, slice_s, run.start, run.energy)
        for t, e in record.measurements.items():
            if start <= t < start + timedelta(seconds=n * slice_s):
                _add(metered, start, slice_s, t, [e])
                measured = True
    prices = np.zeros(n) if prices_eur_per_kwh is None else np.asarray(prices_eur_per_kwh, dtype=float)
    return KpiInputs(
        start=start,
        slice_s=slice_s,
        baseline_kwh=baseline,
        optimised_kwh=optimised,
        metered_kwh=metered if measured else None,
        prices_eur_per_kwh=prices,
        participants=len(owners),
        offers=offers,
        scope=party,
    )

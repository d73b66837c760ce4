"""DSO agent: forecast power flows on the site grid, congestion points, and the DSO's strategy.

At its planning times the DSO forecasts every prosumer's consumption over the coming steps
(known non-flexible profiles and PV; per flexible device the planned schedule, else the default
schedule, of an active offer covering the step, read through operator-scoped exchange clients,
and the device's uncontrolled baseline where no offer covers it yet), runs a
power flow per step on the site grid (`sim.grid`) and finds per feeder, its congestion points,
the energy that would relieve its lines, its share of the transformer and its voltages
(`feeder_excess_kwh`). What it does with that depends on its strategy (`dso.strategy`):

- `no_flex`: nothing trades; every device runs as it would without the ATP (the reference);
- `aggregator_only`: the aggregator and the market trade for themselves; the DSO does nothing;
- `local_market`: its DOMS FOA turns each congested feeder's excess into reduction requests
  (`atp.foa.doms.DomsFoa`), posted as local FMAR requests at the feeder (F2.FMAR7), one
  standing request per feeder, refreshed at every forecast;
- `direct_control`: just before each step it forecasts that step and blocks the controllable
  devices (`dso.direct_control.load_types`, ripple-control style) of prosumers on congested
  feeders, largest recent consumers first, until their recent draw covers the feeder's excess;
  blocked energy is compensated at the DSO's cut-off price;
- `dynamic_tariff`: a grid tariff (`dso.tariff_eur_per_kwh`) per feeder (congestion point) on
  every step with forecast congestion there, and a credit (`dso.tariff_credit`: a negative
  tariff) on the steps within `before_s` ahead of it where the feeder has room: consuming there
  (pre-heating, charging a battery or a tank) takes load off the congested steps that follow,
  which a planner that sees one offer block at a time would not otherwise do. The aggregator's
  FMAN plans each congestion point's aggregates against the day-ahead price plus that point's
  tariff; the consumption of the prosumers on a feeder pays (or earns) the feeder's tariff.

Grid-aware planning (`publishes_capacity`: `local_market` and `dynamic_tariff`): before the
FMAN plans, at the DSO's planning times, the DSO publishes per congestion point and step the
energy the aggregator's offers may draw (`capacity`, `sim.grid.headroom`): the loading limit
less `dso.capacity_margin_percent`, minus the forecast of everything else (non-flexible load,
PV, the market's offers, devices no offer covers at their uncontrolled baseline), through the
grid's sensitivities at that forecast. The FMAN plans within it (soft rows). `aggregator_only`
publishes nothing (the aggregator plans for itself: the reference), and neither does
`direct_control`: that DSO keeps the grid safe by switching devices off itself and tells the
aggregator nothing, so it shows what control without coordination gives.

At every forecast it also derives the transport links between feeders (`sim.grid.transport`)
for implicit capacity trading, kept in `transport`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

import mesa
import numpy as np
import pandas as pd

from atp.flexoffer import Location
from atp.fman.planning import GridCapacity, PriceSeries
from atp.foa.doms import DomsFoa, GridForecast
from atp.interface import ExchangeInterface, FlexRequest
from sim.grid import (
    FlowResult,
    GridLimits,
    PowerFlow,
    SiteGrid,
    branch_loadings,
    feeder_excess_kwh,
    feeder_groups,
    feeder_sensitivities,
    headroom_capacity,
    loading_sensitivities,
    transport_links,
)
from sim.grid.headroom import SECANT_MW, transformer_capacity_exact

__all__ = ["Dso", "DsoStrategy", "GridForecastRun"]


class DsoStrategy(enum.Enum):
    """How the DSO manages congestion (module docstring)."""

    NO_FLEX = "no_flex"
    AGGREGATOR_ONLY = "aggregator_only"
    LOCAL_MARKET = "local_market"
    DIRECT_CONTROL = "direct_control"
    DYNAMIC_TARIFF = "dynamic_tariff"

    @property
    def trades(self) -> bool:
        """Whether FOAs offer flexibility and the FMAN and FMAR trade it."""
        return self is not DsoStrategy.NO_FLEX

    @property
    def forecasts(self) -> bool:
        """Whether the DSO runs forecast power flows at its planning times."""
        return self in (DsoStrategy.LOCAL_MARKET, DsoStrategy.DYNAMIC_TARIFF)

    @property
    def publishes_capacity(self) -> bool:
        """Whether the DSO publishes the grid's capacity for the aggregator's planning (module docstring)."""
        return self in (DsoStrategy.LOCAL_MARKET, DsoStrategy.DYNAMIC_TARIFF)


@dataclass
class GridForecastRun:
    """One forecast: steps [first, first + n) as seen at `made_at`."""

    made_at: datetime
    first: int
    flows: FlowResult
    excess_kwh: np.ndarray  # (n, n_feeders), + = less consumption would relieve the feeder
    feeder_net_mw: np.ndarray  # (n, n_feeders)


class Dso(mesa.Agent):
    """A distribution system operator watching the site grid."""

    def __init__(
        self,
        model: mesa.Model,
        *,
        name: str,
        start: datetime,
        slice_s: int,
        strategy: DsoStrategy,
        grid: SiteGrid,
        flow: PowerFlow,
        limits: GridLimits,
        cutoff_eur_per_kwh: float,
        tariff_eur_per_kwh: float,
        nonflex_kwh: np.ndarray,
        pv_kwh: np.ndarray,
        expected_flex_kwh: np.ndarray | None,
        device_types: tuple[str, ...],
        meter_ids: list[str],
        receivers: list[ExchangeInterface],
        doms: DomsFoa,
        mean_price_eur_per_kwh: float,
        capacity_margin_percent: float = 5.0,
        capacity_sensitivity_steps: int = 4,
        capacity_new_overload_weight: float = 10.0,
        tariff_credit_eur_per_kwh: float = 0.0,
        tariff_credit_s: int = 0,
    ) -> None:
        super().__init__(model)
        self.name = name
        self.start = start
        self.slice_s = slice_s
        self.strategy = strategy
        self.grid = grid
        self.flow = flow
        self.limits = limits
        self.cutoff_eur_per_kwh = cutoff_eur_per_kwh
        self.tariff_eur_per_kwh = tariff_eur_per_kwh
        self.nonflex_kwh = nonflex_kwh  # (n_steps, n_prosumers)
        self.pv_kwh = pv_kwh
        self.device_types = device_types
        n_p = nonflex_kwh.shape[1]
        self.expected_flex_kwh = (
            expected_flex_kwh if expected_flex_kwh is not None else np.zeros((len(nonflex_kwh), n_p, len(device_types)))
        )
        self.meter_index = {m: i for i, m in enumerate(meter_ids)}
        # operator-scoped exchange clients of the FMAN (first: the aggregator's portfolio) and the FMAR
        self.receivers = receivers
        self.doms = doms
        self.mean_price_eur_per_kwh = mean_price_eur_per_kwh
        self.n_steps = len(nonflex_kwh)
        self.prosumer_feeder = grid.bus_feeder[grid.load_bus[grid.prosumer_load]]
        self.forecasts: list[GridForecastRun] = []
        self.requests: list[FlexRequest] = []
        # local market: the largest reduction asked per step and feeder over all forecasts
        self.requested_kwh_by_step = np.zeros((self.n_steps, len(grid.feeders)))
        self.tariff_eur_per_kwh_by_step = np.zeros((self.n_steps, len(grid.feeders)))  # per step and feeder
        self.capacity_margin_percent = capacity_margin_percent
        self.capacity_sensitivity_steps = capacity_sensitivity_steps
        self.capacity_new_overload_weight = capacity_new_overload_weight
        self.tariff_credit_eur_per_kwh = tariff_credit_eur_per_kwh
        self.tariff_credit_steps = tariff_credit_s // slice_s
        self.published: list[tuple[datetime, tuple[GridCapacity, ...]]] = []  # capacities, as published
        self.controlled_kwh = np.zeros(self.n_steps)  # direct control: recent draw of blocked devices
        self.controlled_kwh_by_prosumer = np.zeros((self.n_steps, n_p))  # the same per blocked prosumer
        self.transport: list[tuple[datetime, pd.DataFrame]] = []
        self._dvm_per_mw: np.ndarray | None = None

    # -- forecasts --------------------------------------------------------------------------
    def buyer(self, congestion_point: str) -> str:
        """The market party of the DSO's requests at one congestion point."""
        return f"{self.name}@{congestion_point}"

    def flexible_forecast_kwh(self, first: int, n: int) -> np.ndarray:
        """Per step and prosumer (kWh): each device's planned (else default) schedule where an
        active offer covers the step, its uncontrolled baseline elsewhere."""
        return self.split_flexible_forecast_kwh(first, n)[0]

    def split_flexible_forecast_kwh(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`flexible_forecast_kwh`, the part of it that the aggregator's offers cover (the first
        receiver's), and what the devices would draw uncontrolled in those same device steps;
        per step and prosumer."""
        expected = self.expected_flex_kwh[first : first + n]
        planned = np.zeros_like(expected)
        covered = np.zeros(expected.shape, dtype=bool)
        portfolio = np.zeros(expected.shape, dtype=bool)
        for r, receiver in enumerate(self.receivers):
            for offer in receiver.active():
                schedule = offer.schedule or offer.default_schedule
                if schedule is None or offer.location is None or offer.device not in self.device_types:
                    continue
                i = self.meter_index.get(offer.location.meter_id)
                if i is None:
                    continue
                d = self.device_types.index(offer.device)
                k0 = (schedule.start - self.start).total_seconds() / self.slice_s
                ratio = offer.slice_s / self.slice_s
                for j, energy in enumerate(schedule.energy):
                    k = round(k0 + j * ratio) - first
                    if 0 <= k < n:
                        planned[k, i, d] += energy
                        covered[k, i, d] = True
                        portfolio[k, i, d] |= r == 0
        total = np.where(covered, planned, expected)
        return (
            total.sum(axis=2),
            np.where(portfolio, total, 0.0).sum(axis=2),
            np.where(portfolio, expected, 0.0).sum(axis=2),
        )

    def _feeder_net_mw(self, load_p: np.ndarray, sgen_p: np.ndarray) -> np.ndarray:
        feeder_of_load = self.grid.bus_feeder[self.grid.load_bus]
        net = load_p - sgen_p
        return (
            np.stack([net[:, feeder_of_load == f].sum(axis=1) for f in range(len(self.grid.feeders))], axis=1)
            if len(self.grid.feeders)
            else np.zeros((len(net), 0))
        )

    def run_forecast(
        self, k: int, now: datetime, *, horizon_steps: int, first: int | None = None
    ) -> GridForecastRun | None:
        """Forecast power flows for the steps after k (or from `first`), kept in `forecasts`."""
        first = k + 1 if first is None else first
        n = min(horizon_steps, self.n_steps - first)
        if n <= 0:
            return None
        load = self.nonflex_kwh[first : first + n] + self.flexible_forecast_kwh(first, n)
        load_p, load_q, sgen_p = self.grid.injections_mw(load, self.pv_kwh[first : first + n], self.slice_s)
        if self._dvm_per_mw is None or self.strategy.forecasts:
            sens = feeder_sensitivities(self.grid, self.flow, load_p[0], load_q[0], sgen_p[0])
            self._dvm_per_mw = sens.dvm_per_mw
            if self.strategy.forecasts:
                feeder_net = self._feeder_net_mw(load_p[:1], sgen_p[:1])[0]
                links = transport_links(
                    self.grid,
                    sens,
                    self.limits,
                    slice_s=self.slice_s,
                    price_eur_per_kwh=self.mean_price_eur_per_kwh,
                    feeder_net_mw=feeder_net,
                )
                self.transport.append((now, links))
        flows = self.flow.run(load_p, load_q, sgen_p, remember=False)
        feeder_net = self._feeder_net_mw(load_p, sgen_p)
        excess = feeder_excess_kwh(
            self.grid, flows, feeder_net, self.limits, slice_s=self.slice_s, dvm_per_mw=self._dvm_per_mw
        )
        run = GridForecastRun(now, first, flows, excess, feeder_net)
        self.forecasts.append(run)
        return run

    def _by_feeder(self, per_prosumer: np.ndarray) -> np.ndarray:
        """Per step and feeder, the sum over the feeder's prosumers of (n_steps, n_prosumers)."""
        columns = [per_prosumer[:, self.prosumer_feeder == f].sum(axis=1) for f in range(len(self.grid.feeders))]
        return np.stack(columns, axis=1) if columns else np.zeros((len(per_prosumer), 0))

    def capacity(self, k: int, now: datetime, *, horizon_steps: int) -> tuple[GridCapacity, ...]:
        """Grid-aware planning: what the aggregator's offers may draw per congestion point over
        the steps from k (module docstring, `sim.grid.headroom`); kept in `published`.

        The operating point is the forecast with every device where it is expected; the
        sensitivities to each feeder's flexible load (spread over its load rows as the
        aggregator's expected energy is) are computed every `capacity_sensitivity_steps` steps
        and held in between."""
        n = min(horizon_steps, self.n_steps - k)
        if n <= 0:
            return ()
        total, portfolio, uncontrolled = self.split_flexible_forecast_kwh(k, n)
        load = self.nonflex_kwh[k : k + n] + total
        load_p, load_q, sgen_p = self.grid.injections_mw(load, self.pv_kwh[k : k + n], self.slice_s)
        portfolio_by_feeder = self._by_feeder(portfolio)
        by_load = np.zeros(self.grid.n_loads)
        np.add.at(by_load, self.grid.prosumer_load, portfolio.sum(axis=0))
        groups = feeder_groups(self.grid, by_load)
        sampled = np.arange(0, n, max(1, self.capacity_sensitivity_steps))
        _, _, sens = loading_sensitivities(
            self.grid, self.flow, load_p[sampled], load_q[sampled], sgen_p[sampled], groups, delta_mw=SECANT_MW
        )
        held = sens[np.searchsorted(sampled, np.arange(n), side="right") - 1]
        flows = self.flow.run(load_p, load_q, sgen_p, remember=False)
        capacity = headroom_capacity(
            self.grid,
            start=self.start + timedelta(seconds=k * self.slice_s),
            slice_s=self.slice_s,
            loadings=branch_loadings(flows),
            sensitivities=held,
            portfolio_kwh=portfolio_by_feeder,
            limit_percent=self.limits.max_loading_percent,
            margin_percent=self.capacity_margin_percent,
            uncontrolled_kwh=self._by_feeder(uncontrolled),
            new_overload_weight=self.capacity_new_overload_weight,
            converged=flows.converged,
        )
        capacity = self._exact_transformer(capacity, portfolio, load, k, n)
        self.published.append((now, capacity))
        return capacity

    def _exact_transformer(
        self, capacity: tuple[GridCapacity, ...], portfolio: np.ndarray, load: np.ndarray, k: int, n: int
    ) -> tuple[GridCapacity, ...]:
        """The transformer's capacity found on the AC power flow (`transformer_capacity_exact`),
        along the portfolio's expected spread over the feeders, instead of the tangent's."""
        to_mw = 3600.0 / self.slice_s / 1000.0
        out = []
        for cap in capacity:
            if cap.name != self.grid.busbar_point:
                out.append(cap)
                continue
            portfolio_by_load = np.zeros((n, self.grid.n_loads))
            np.add.at(portfolio_by_load.T, self.grid.prosumer_load, portfolio.T)
            rest = self.grid.injections_mw(load - portfolio, self.pv_kwh[k : k + n], self.slice_s)
            in_feeder = self.grid.bus_feeder[self.grid.load_bus] >= 0
            share = portfolio_by_load.sum(axis=0, keepdims=True) + 1e-9 * in_feeder
            spread = np.where(portfolio_by_load.sum(axis=1, keepdims=True) > 1e-6, portfolio_by_load, share)
            weight_by_load = np.array(
                [cap.weights.get(self.grid.congestion_point_of_bus(int(b)), 0.0) for b in self.grid.load_bus]
            )
            per_kwh = spread / np.maximum((spread * weight_by_load).sum(axis=1, keepdims=True), 1e-12) * to_mw
            kwh = transformer_capacity_exact(
                self.flow,
                rest[0],
                rest[2],
                per_kwh,
                target_percent=self.limits.max_loading_percent - self.capacity_margin_percent,
                first_kwh=np.asarray(cap.kwh, dtype=float),
                slice_s=self.slice_s,
            )
            out.append(dataclasses.replace(cap, kwh=np.where(np.isfinite(cap.kwh), kwh, cap.kwh)))
        return tuple(out)

    # -- strategies -----------------------------------------------------------------------------
    def local_requests(self, run: GridForecastRun, *, step_start: datetime) -> list[FlexRequest]:
        """Local market: one request per feeder over the forecast (zero where it is not congested).

        Every feeder is requested at the first forecast, so the DSO's standing requests exist
        from the start; later forecasts replace their volumes.
        """
        n = len(run.excess_kwh)
        start = self.start + timedelta(seconds=run.first * self.slice_s)
        out = []
        for f, cp in enumerate(self.grid.feeders):
            excess = np.maximum(run.excess_kwh[:, f], 0.0)
            volume = np.zeros(n)
            forecast = GridForecast(
                start=start,
                step_s=self.slice_s,
                forecast_kwh=tuple(float(v) for v in excess),
                limit_kwh=0.0,
                location=Location(meter_id=f"{cp}-asset", congestion_point=cp),
                price_eur_per_kwh=self.cutoff_eur_per_kwh,
            )
            for offer in self.doms.requests(forecast, now=step_start):
                if offer.default_schedule is None or offer.start_after is None:
                    continue
                k0 = int((offer.start_after - start).total_seconds() // self.slice_s)
                energy = np.round(np.asarray(offer.default_schedule.energy), 3)
                volume[k0 : k0 + len(energy)] = energy
            asked = self.requested_kwh_by_step[run.first : run.first + n, f]
            np.maximum(asked, np.abs(volume), out=asked)
            request = FlexRequest(  # a buyer's request; the market operator posts it through the interface
                buyer=self.buyer(cp),
                start=start,
                slice_s=self.slice_s,
                volume_kwh=tuple(float(v) for v in volume),
                cutoff_eur_per_kwh=self.cutoff_eur_per_kwh,
                congestion_point=cp,
            )
            self.requests.append(request)
            out.append(request)
        return out

    def tariff(self, run: GridForecastRun) -> dict[str, PriceSeries]:
        """Dynamic tariff: raise each feeder's grid tariff on every forecast step with congestion
        there (a step that does not converge counts at every feeder); returns each congestion
        point's tariff over the run (EUR/kWh per step), what the FMAN adds to its prices there."""
        congested = (run.excess_kwh > 1e-6) | ~run.flows.converged[:, None]
        steps, feeders = np.nonzero(congested)
        by_step = self.tariff_eur_per_kwh_by_step
        by_step[run.first + steps, feeders] = self.tariff_eur_per_kwh
        if self.tariff_credit_eur_per_kwh > 0 and self.tariff_credit_steps > 0:
            # a credit on the steps just before congestion where the feeder has room: consuming
            # there (pre-heating, charging) takes load off the congested steps that follow
            n = len(congested)
            for f in range(congested.shape[1]):
                ahead = np.zeros(n, dtype=bool)
                for t in np.flatnonzero(congested[:, f]):
                    ahead[max(0, t - self.tariff_credit_steps) : t] = True
                credit = run.first + np.flatnonzero(ahead & ~congested[:, f])
                credit = credit[by_step[credit, f] <= 0]
                by_step[credit, f] = -self.tariff_credit_eur_per_kwh
        return {
            cp: PriceSeries(self.start, self.slice_s, self.tariff_eur_per_kwh_by_step[:, f])
            for f, cp in enumerate(self.grid.feeders)
        }

    def tariff_by_prosumer(self) -> np.ndarray:
        """The dynamic tariff each prosumer pays per step (EUR/kWh): its feeder's (0 on the busbar)."""
        by_feeder = np.concatenate((self.tariff_eur_per_kwh_by_step, np.zeros((self.n_steps, 1))), axis=1)
        return by_feeder[:, self.prosumer_feeder]  # feeder -1 (busbar) reads the zero column

    def direct_control(self, k: int, now: datetime, recent_kwh: np.ndarray) -> set[int]:
        """Direct control: prosumers whose controllable devices are blocked at step k.

        `recent_kwh[i]` is what prosumer i's controllable devices drew in the last step (what
        blocking them is expected to remove now).
        """
        run = self.run_forecast(k, now, horizon_steps=1, first=k)
        if run is None:
            return set()
        return self._block(k, run.excess_kwh[0], recent_kwh)

    def _block(self, k: int, excess_kwh: np.ndarray, recent_kwh: np.ndarray) -> set[int]:
        """Block prosumers on each feeder with excess, largest recent consumers first, until their
        recent draw covers it; records what was blocked."""
        blocked: set[int] = set()
        for f in np.flatnonzero(excess_kwh > 1e-6):
            need = float(excess_kwh[f])
            candidates = np.flatnonzero((self.prosumer_feeder == f) & (recent_kwh > 1e-9))
            order = candidates[np.argsort(-recent_kwh[candidates], kind="stable")]
            covered = 0.0
            for i in order:
                if covered >= need:
                    break
                blocked.add(int(i))
                covered += float(recent_kwh[i])
                self.controlled_kwh_by_prosumer[k, i] += float(recent_kwh[i])
            self.controlled_kwh[k] += covered
        return blocked

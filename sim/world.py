"""The simulated world: a Mesa model of one demo site whose time is driven by SimPy.

`World(config)` builds the site from a `RunConfig` (data sources, the site grid with the
prosumers placed on it, prosumers with devices and FOAs, the aggregator's FMAN, the market
operator's FMAR, a BRP and a DSO with its congestion strategy, `dso.strategy`);
`World.run()` advances SimPy through every step in the phases of `sim.clock`, ends each step
with a power flow on its metered injections, and keeps what happened in numpy arrays for the
outputs. Mesa holds the population (AgentSets by type) and
collects data: the EXECUTE phase calls `model.step()`, so Mesa's step counter follows SimPy.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time as wallclock
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import mesa
import numpy as np
import pandas as pd
import simpy

from atp.flexoffer import Location, Mode
from atp.fman import AggregationParams, BiddingParams, PriceSeries
from atp.fman.planning import GridCapacity
from atp.fmar import CongestionPoint, DomsInterface, FlexOfferMarket, MarketCalendar, TransportLink, check_links
from atp.foa import FlexOfferAgent
from atp.foa.doms import DomsFoa
from atp.foa.pricing import RoutedClient, priority_to_price
from atp.interface import OPERATOR, ExchangeInterface, InProcessClient, OfferStore
from atp.interface.lifecycle import advance as advance_lifecycle
from sim.agents.aggregator import Aggregator
from sim.agents.brp import Brp
from sim.agents.dso import Dso, DsoStrategy
from sim.agents.kinds import BuildContext, StepEnv, get_kind
from sim.agents.market_operator import MarketOperator
from sim.agents.prosumer import Prosumer
from sim.clock import Phase, SimClock
from sim.config import RunConfig
from sim.deployment import RemoteAggregator, RemoteDoms, RemoteMarket, Services, start_services
from sim.grid import FlowResult, GridLimits, PowerFlow, build_site_grid, load_buses, load_network, place_prosumers
from sim.oracle import collect_twin_flexibility
from sim.sources import (
    CLIMATES,
    PRICE_MODELS,
    ProfileLibrary,
    commercial_load_kwh,
    generate_day_ahead_prices,
    generate_weather,
    household_load_kwh,
    plane_of_array_w_per_m2,
    pv_kwh_per_kwp,
    read_series_file,
)

__all__ = ["Timings", "World"]
_FORECAST_S = 86_400  # weather and prices are known (and files must cover) one day past the last step
_PV_TILT_DEG = 30.0


@dataclass
class Timings:
    """Wall seconds spent per part of the world (reported, never asserted).

    `parts` splits the world's time into disjoint parts that add up to `build_s + run_s`:
    `build` (constructing the world, less the DSO's baseline), the phases `foa`, `fman`,
    `fmar`, `physics`, `settle`, with `dso` and `power_flow` taken out of the phases they run
    in, and `simpy` (what of `World.run` no phase holds: the event loop). `agents_s`, `atp_s`
    and `grid_s` are groups across build and run (they overlap `build`); `summary` adds the
    caller's parts after the run and `other` to make up the wall time.
    """

    build_s: float = 0.0
    run_s: float = 0.0
    agents_s: float = 0.0
    atp_s: float = 0.0
    grid_s: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, seconds: float) -> None:
        self.parts[part] = self.parts.get(part, 0.0) + seconds

    def close_build(self, build_s: float) -> None:
        """The world is built: what the parts so far (the DSO's baseline) do not hold is `build`."""
        self.build_s = build_s
        self.add("build", build_s - sum(self.parts.values()))

    def close_run(self, run_s: float) -> None:
        """`World.run` has returned: what no phase holds is `simpy`."""
        self.run_s += run_s
        self.add("simpy", self.build_s + self.run_s - sum(self.parts.values()))

    def summary(self, *, wall_s: float, after_s: dict[str, float]) -> dict[str, Any]:
        """timings.json: `wall_s` and parts that add up to it, `other_s` being the unattributed rest.

        `after_s` are the caller's parts after the run (e.g. kpi, outputs, report), disjoint from
        the world's and from each other; `wall_s` covers building, running and all of them.
        """
        known_s = self.build_s + self.run_s + sum(after_s.values())
        other_s = wall_s - known_s
        parts = {**self.parts, **after_s, "other": other_s}
        return {
            "wall_s": wall_s,
            "build_s": self.build_s,
            "run_s": self.run_s,
            **{f"{name}_s": seconds for name, seconds in after_s.items()},
            "other_s": other_s,
            "parts_s": parts,
            "groups_s": {"agents": self.agents_s, "atp": self.atp_s, "grid": self.grid_s},
        }


class World(mesa.Model):
    """One demo site with the ATP in the loop."""

    def __init__(self, config: RunConfig, *, run_dir: Path | None = None) -> None:
        super().__init__(seed=config.seed)
        began = wallclock.perf_counter()
        self.config = config
        self.timings = Timings()
        site = config.site
        self.slice_s = config.slice_s
        self.n_steps = config.n_steps
        self.start = config.run_start  # the first simulated step: the warm-up's, else the window's
        self.times = pd.date_range(self.start, periods=self.n_steps, freq=f"{config.slice_s}s", tz="UTC")
        w0, w1 = config.warmup_steps, config.warmup_steps + config.window_steps
        self.window = slice(w0, w1)  # the reporting window
        self.counted = slice(w0, self.n_steps)  # what the KPIs count: window + tail
        self.periods = np.array(["warmup"] * w0 + ["window"] * (w1 - w0) + ["tail"] * (self.n_steps - w1))
        seeds = np.random.SeedSequence(config.seed).spawn(8)
        rngs = {
            name: np.random.default_rng(s)
            for name, s in zip(
                ("weather", "prices", "loads", "devices", "grid", "brp", "mix", "pv"), seeds, strict=True
            )
        }
        self.forecast_steps = _FORECAST_S // config.slice_s
        n_ext = self.n_steps + self.forecast_steps
        utc_offset_s = int(site.timezone.utcoffset(config.start.replace(tzinfo=None)).total_seconds())

        # -- exogenous data: weather, prices, load and PV profiles ----------------------------
        climate = CLIMATES[site.climate]
        if config.weather_file is not None:
            self.weather = read_series_file(
                config.weather_file,
                start=self.start,
                n_steps=n_ext,
                slice_s=self.slice_s,
                columns=("temp_c", "ghi_w_per_m2"),
            )
        else:
            self.weather = generate_weather(
                climate, start=self.start, n_steps=n_ext, slice_s=self.slice_s, rng=rngs["weather"]
            )
        if config.prices_file is not None:
            frame = read_series_file(
                config.prices_file,
                start=self.start,
                n_steps=n_ext,
                slice_s=self.slice_s,
                columns=("price_eur_per_kwh",),
            )
            self.prices = frame["price_eur_per_kwh"]
        else:
            self.prices = generate_day_ahead_prices(
                PRICE_MODELS[site.price_model],
                start=self.start,
                n_steps=n_ext,
                slice_s=self.slice_s,
                rng=rngs["prices"],
            )
        self.temp_c = self.weather["temp_c"].to_numpy(dtype=float)
        n = site.n_prosumers
        mix = rngs["mix"]
        commercial = mix.random(n) < site.commercial_share
        annual = np.where(
            commercial,
            mix.uniform(*site.commercial_kwh_per_year, n),
            mix.uniform(*site.household_kwh_per_year, n),
        )
        library = ProfileLibrary.load()
        offset_h = utc_offset_s / 3600
        nonflex = np.zeros((self.n_steps, n))
        for flag, draw in ((False, household_load_kwh), (True, commercial_load_kwh)):
            cols = np.flatnonzero(commercial == flag)
            if len(cols):
                nonflex[:, cols] = draw(
                    library,
                    start=self.start,
                    n_steps=self.n_steps,
                    slice_s=self.slice_s,
                    annual_kwh=annual[cols],
                    rng=rngs["loads"],
                    utc_offset_h=offset_h,
                )
        poa = plane_of_array_w_per_m2(self.weather, climate, slice_s=self.slice_s, tilt_deg=_PV_TILT_DEG)
        self.pv_per_kwp = pv_kwh_per_kwp(
            None,
            start=self.start,
            n_steps=n_ext,
            slice_s=self.slice_s,
            irradiance_w_per_m2=poa,
            temp_c=self.temp_c,
        )
        per_kwp = self.pv_per_kwp[: self.n_steps]
        has_pv = rngs["pv"].random(n) < site.pv_share
        kwp = np.where(has_pv, rngs["pv"].uniform(*site.pv_kwp, n), 0.0)
        self.nonflex_kwh = nonflex
        self.pv_kwh = per_kwp[:, None] * kwp[None, :]

        # -- grid: placement on the network's load buses, the prepared site grid, its power flow --
        t = wallclock.perf_counter()
        network_buses = load_buses(config.grid)
        placed = place_prosumers(network_buses, n, rngs["grid"])
        scale = config.grid.line_rating_scale
        if scale is None:  # auto: cables reinforced where the site has more customers than the net had
            scale = max(1.0, n / len(network_buses))
        self.grid = build_site_grid(
            load_network(config.grid),
            placed,
            site=site.name,
            transformer_kva=config.grid.transformer_kva,
            line_rating_scale=scale,
        )
        self.buses = self.grid.load_bus[self.grid.prosumer_load]  # bus indices of the site grid
        self.power_flow = PowerFlow(self.grid)
        self.grid_limits = GridLimits(config.grid.max_loading_percent, *config.grid.vm_pu)
        self.strategy = DsoStrategy(config.dso.strategy)
        n_bus, n_line, n_trafo = len(self.grid.net.bus), len(self.grid.net.line), len(self.grid.net.trafo)
        self.flows = FlowResult.empty(self.n_steps, n_bus, n_line, n_trafo)
        self.grid_injections_mw = np.zeros((3, self.n_steps, self.grid.n_loads))  # load p, load q, sgen p
        self.timings.grid_s += wallclock.perf_counter() - t

        # -- SimPy time and the ATP receivers ---------------------------------------------------
        self.env = simpy.Environment()
        self.clock = SimClock(self.env, start=self.start, slice_s=self.slice_s, n_steps=self.n_steps)
        dso_name = f"{site.name}-dso"
        # atp.deployment=services: the FMAN and FMAR are processes on loopback (sim/deployment.py)
        self.services: Services | None = None
        if config.deployment == "services":
            folder = (run_dir if run_dir is not None else Path(tempfile.mkdtemp(prefix="goflex-twin-"))) / "atp"
            self.services = Services(folder, fman_name=f"{site.name}-fman", fmar_name=f"{site.name}-fmar")
        fman_store = OfferStore(f"{site.name}-fman", clock=self.clock.now)
        self.aggregator: Aggregator | RemoteAggregator = Aggregator(
            self,
            name=f"{site.name}-aggregator",
            store=fman_store,
            params=AggregationParams(
                start_tolerance_s=config.fman.start_tolerance_s,
                max_group_size=config.fman.max_group_size,
                min_box_share=config.fman.min_box_share,
            ),
            objective=config.fman.objective,
            horizon_steps=config.fman.horizon_steps,
            time_limit_s=config.fman.time_limit_s,
            prices=self.prices,
            planning_interval_s=config.fman.planning_interval_s,
        )
        market: FlexOfferMarket | RemoteMarket = FlexOfferMarket(
            f"{site.name}-fmar", clock=self.clock.now, mechanism=config.market.mechanism
        )
        if self.services is not None:
            self.aggregator = RemoteAggregator(self.services, name=self.aggregator.name, prices=self.prices)
            market = RemoteMarket(self.services, name=market.name, mechanism=market.mechanism)
        self.market_operator = MarketOperator(
            self,
            market=market,
            start=self.start,
            slice_s=self.slice_s,
            n_steps=self.n_steps,
            horizon_steps=config.market.intraday_horizon_steps,
            calendar=None
            if config.market.intraday_gates is None
            else MarketCalendar(
                timezone=site.timezone,
                slice_s=self.slice_s,
                day_ahead_gate=config.market.day_ahead_gate_closure,
                intraday_gates=config.market.intraday_gates,
                intraday_lead_s=config.market.intraday_lead_s,
                local_gate_after_s=1,  # the DSO's local session closes right after its request
            ),
        )
        # the market's face to the DSO's DOMS (F2.FMAR7)
        self.doms = DomsInterface(market) if self.services is None else RemoteDoms(self.services, dso_name)
        if config.fman.bidding is not None:
            bidding = config.fman.bidding
            self.aggregator.trade_on(
                market.client(self.aggregator.name),
                params=BiddingParams(bidding.cost_eur_per_kwh, bidding.margin_eur_per_kwh, bidding.max_volume_kwh),
                reference_eur_per_kwh=bidding.reference_eur_per_kwh or site.brp.cutoff_eur_per_kwh,
            )
        self.brp = Brp(
            self,
            name=f"{site.name}-brp",
            start=self.start,
            slice_s=self.slice_s,
            n_steps=self.n_steps,
            n_prosumers=n,
            imbalance_kwh_per_prosumer=site.brp.imbalance_kwh_per_prosumer,
            cutoff_eur_per_kwh=site.brp.cutoff_eur_per_kwh,
            timezone=site.timezone,
            rng=rngs["brp"],
        )

        # What the FMAN's objective needs besides prices, on the run's grid and one day beyond
        # (beyond the run the site's last day repeats as its forecast): the site's load without
        # flexible devices and the BRP's imbalance forecast.
        base = nonflex.sum(axis=1) - self.pv_kwh.sum(axis=1)
        ahead = self.forecast_steps + config.fman.horizon_steps
        base_ext = np.concatenate([base, np.resize(base[-min(len(base), 86_400 // self.slice_s) :], ahead)])
        target_ext = np.concatenate([self.brp.imbalance_kwh, np.zeros(ahead)])
        self.aggregator.series_kwh = {
            "base_kwh": PriceSeries(self.start, self.slice_s, base_ext),
            "target_kwh": PriceSeries(self.start, self.slice_s, target_ext),
        }

        # -- prosumers ----------------------------------------------------------------------------
        modes = [Mode.DELEGATED] * site.delegated + [Mode.DIRECT] * site.direct
        delegated_ids = np.arange(site.delegated)
        direct_ids = np.arange(site.delegated, n)
        self.device_types = tuple(mix_cfg.load_type for mix_cfg in config.devices)
        owners: dict[str, set[int]] = {}
        for mix_cfg in config.devices:
            chosen = list(mix.choice(delegated_ids, mix_cfg.delegated, replace=False)) if mix_cfg.delegated else []
            chosen += list(mix.choice(direct_ids, mix_cfg.direct, replace=False)) if mix_cfg.direct else []
            owners[mix_cfg.load_type] = {int(i) for i in chosen}
        # Direct trading (D2.1 3.3.2): each direct prosumer's EMS carries a priority in [0, 1]
        # (importance of its comfort), turned into its deviation price by the FOA's rule,
        # spanning the site's configured price range.
        priorities = mix.uniform(0.0, 1.0, n)
        low, high = site.direct_price_eur_per_kwh
        comfort_factor = (high / low - 1.0) if low > 0 else 0.0
        prices_direct = [
            priority_to_price(float(p), base_eur_per_kwh=low, comfort_factor=comfort_factor) for p in priorities
        ]
        dev_rng = rngs["devices"]
        build_ctx = BuildContext(
            start=self.start,
            days=math.ceil(self.n_steps * self.slice_s / 86_400) + 1,
            utc_offset_s=utc_offset_s,
            slice_s=self.slice_s,
        )
        self.prosumers: list[Prosumer] = []
        for i in range(n):
            name = f"{site.name}-p{i:03d}"
            mode = modes[i]
            devices: dict[str, Any] = {}
            generators = {}
            for mix_cfg in config.devices:
                if i in owners[mix_cfg.load_type]:
                    kind = get_kind(mix_cfg.load_type)
                    devices[mix_cfg.load_type] = kind.build(dev_rng, mix_cfg.params, build_ctx)
                    generators[mix_cfg.load_type] = kind.generator(mix_cfg.params)
            meter_id = f"M-{name}"
            bus = int(self.buses[i])
            location = Location(meter_id=meter_id, bus=bus, congestion_point=self.grid.congestion_point_of_bus(bus))
            client = self._client_of(name, mode)
            foa = FlexOfferAgent(
                client, issuer=name, location=location, mode=mode, generators=generators, sleep=lambda _s: None
            )
            price = round(float(prices_direct[i]), 4) if mode is Mode.DIRECT else None
            self.prosumers.append(
                Prosumer(
                    self,
                    name=name,
                    mode=mode,
                    bus=int(self.buses[i]),
                    meter_id=meter_id,
                    commercial=bool(commercial[i]),
                    nonflex_kwh=nonflex[:, i],
                    pv_kwh=self.pv_kwh[:, i],
                    foa=foa,
                    devices=devices,
                    price_eur_per_kwh=price,
                )
            )
        # The DSO's baseline of the flexible devices: what they would draw uncontrolled, known
        # ahead like the non-flexible profiles (computed on copies, before anything runs).
        t = wallclock.perf_counter()
        expected_flex = (
            self._uncontrolled_kwh() if self.strategy.forecasts or self.strategy is DsoStrategy.DIRECT_CONTROL else None
        )
        # The oracle's flexibility (sim/oracle.py): the twins' offers, from copies of the devices
        # before anything runs; once per scenario and seed, in the no_flex run.
        self.twin_flexibility = (
            collect_twin_flexibility(self) if self.strategy is DsoStrategy.NO_FLEX and config.dso.oracle else None
        )
        self.timings.add("dso", wallclock.perf_counter() - t)
        fman_store.capacity_book.allow([dso_name])  # the DSO publishes grid capacities to the FMAN
        self._dso_at_fman: Any = InProcessClient(fman_store, dso_name)
        receivers: list[Any] = [InProcessClient(fman_store, OPERATOR), InProcessClient(market.store, OPERATOR)]
        if self.services is not None:
            self.services.grid_operator(dso_name)
            self._dso_at_fman = self.services.client("fman", dso_name, polled=False)
            receivers = [self.services.operator_client("fman"), self.services.operator_client("fmar")]
        self.dso = Dso(
            self,
            name=dso_name,
            start=self.start,
            slice_s=self.slice_s,
            strategy=self.strategy,
            grid=self.grid,
            flow=self.power_flow,
            limits=self.grid_limits,
            cutoff_eur_per_kwh=site.dso.cutoff_eur_per_kwh,
            tariff_eur_per_kwh=config.dso.tariff_eur_per_kwh,
            nonflex_kwh=nonflex,
            pv_kwh=self.pv_kwh,
            expected_flex_kwh=expected_flex,
            device_types=self.device_types,
            meter_ids=[p.meter_id for p in self.prosumers],
            receivers=receivers,
            doms=DomsFoa(market.client(dso_name), issuer=dso_name, slice_s=self.slice_s, gate_lead_s=self.slice_s),
            mean_price_eur_per_kwh=float(self.prices.iloc[: self.n_steps].mean()),
            capacity_margin_percent=config.dso.capacity_margin_percent,
            capacity_sensitivity_steps=config.dso.capacity_sensitivity_steps,
            capacity_new_overload_weight=config.dso.capacity_new_overload_weight,
            tariff_credit_eur_per_kwh=config.dso.tariff_credit_eur_per_kwh,
            tariff_credit_s=config.dso.tariff_credit_s,
        )
        self._dso_forecast_k = -1  # the step of the DSO's last forecast
        controlled = config.dso.direct_control_load_types
        self._controlled = [self.device_types.index(t) for t in controlled if t in self.device_types]
        self._blocked = frozenset(config.dso.direct_control_load_types)

        # -- recording --------------------------------------------------------------------------
        shape = (self.n_steps, n, len(self.device_types))
        self.metered_kwh = np.zeros(shape)
        self.counterfactual_kwh = np.zeros(shape)
        self.baseline_kwh = np.zeros(shape)
        self.scheduled_kwh = np.zeros(shape)
        self.setpoint_kwh = np.full(shape, np.nan)
        self.offer_ids = np.full(shape, None, dtype=object)  # the offer covering each device step
        self.site_net_kwh = 0.0
        self.offers_generated = 0
        self.datacollector = mesa.DataCollector(
            model_reporters={"site_net_kwh": "site_net_kwh"},
            agenttype_reporters={Prosumer: {"net_kwh": "net_kwh"}},
        )
        self._progress: Callable[[int], None] | None = None
        self._schedule_processes()
        if self.services is not None:
            start_services(self, self.services)
        self.timings.close_build(wallclock.perf_counter() - began)

    def close(self) -> None:
        """End the run's ATP: with served receivers, read what the FMAN's rounds did and the DOMS
        kept, stop the processes and read their stores back (the outputs come from them)."""
        if self.services is None or not self.services.started:
            return
        services, self.services = self.services, None
        assert isinstance(self.aggregator, RemoteAggregator) and isinstance(self.doms, RemoteDoms)
        try:
            self.aggregator.finish()
            self.doms.finish()
        finally:
            fman_store, fmar_store = services.close()
        self.aggregator.store = fman_store
        self.market_operator.market.store = fmar_store

    def _client_of(self, name: str, mode: Mode) -> ExchangeInterface:
        """A prosumer's exchange client: delegated ones submit to the FMAN; direct ones to the FMAR,
        or, with `fman.bidding.large_kw_threshold`, each offer where `route_for` sends it (small
        loads to the FMAN, which bids them, large ones to the FMAR; D2.1 3.3.2)."""
        if mode is Mode.DELEGATED:
            return self.aggregator.client(name)
        bidding = self.config.fman.bidding
        if bidding is None or bidding.large_kw_threshold is None:
            return self.market_operator.client(name)
        return RoutedClient(
            self.aggregator.client(name),
            self.market_operator.client(name),
            large_kw_threshold=bidding.large_kw_threshold,
        )

    def _uncontrolled_kwh(self) -> np.ndarray:
        """Per step, prosumer and device type: the energy of an uncontrolled copy of each device."""
        out = np.zeros((self.n_steps, len(self.prosumers), len(self.device_types)))
        envs = [self.env_at(k) for k in range(self.n_steps)]
        for i, p in enumerate(self.prosumers):
            for load_type, device in p.shadow.items():
                d = self.device_types.index(load_type)
                twin = copy.deepcopy(device)
                kind = p.kinds[load_type]
                for k, env in enumerate(envs):
                    out[k, i, d] = kind.step(twin, None, env)
        return out

    # -- the timeline -----------------------------------------------------------------------------
    def _timed(self, bucket: str, part: str, action: Callable[[int], None]) -> Callable[[int], None]:
        def run(k: int) -> None:
            t = wallclock.perf_counter()
            action(k)
            dt = wallclock.perf_counter() - t
            setattr(self.timings, bucket, getattr(self.timings, bucket) + dt)
            self.timings.add(part, dt)

        return run

    def _served(self, action: Callable[[int], None], *, events: bool) -> Callable[[int], None]:
        """With served receivers: their clocks set to the phase's time first, and (`events`)
        every FOA handed its new events after (sim/deployment.py)."""

        def run(k: int) -> None:
            if self.services is not None:
                self.services.set_clock(self.clock.now())
            action(k)
            if events and self.services is not None:
                self.services.deliver_events()

        return run

    def _schedule_processes(self) -> None:
        every_plan = self.config.fman.planning_interval_s // self.slice_s
        served = self._served
        self.clock.every_step(Phase.TRIGGER, self._timed("atp_s", "foa", served(self._trigger, events=False)))
        self.clock.every_step(
            Phase.PLAN,
            self._timed("atp_s", "fman", served(self._plan, events=True)),
            every_steps=every_plan,
            first=self.window.start,
        )
        self.clock.every_step(Phase.MARKET, self._timed("atp_s", "fmar", served(self._market, events=True)))
        self.clock.every_step(Phase.EXECUTE, self._timed("agents_s", "physics", served(self._execute, events=False)))
        self.clock.every_step(Phase.SETTLE, self._timed("atp_s", "settle", served(self._settle, events=True)))

    def _local(self, k: int) -> datetime:
        return self.clock.step_start(k).astimezone(self.config.site.timezone)

    def env_at(self, k: int) -> StepEnv:
        """What the devices and FOAs know at step k."""
        ahead = slice(k + 1, k + 1 + self.forecast_steps)
        return StepEnv(
            k=k,
            window_k=k - self.window.start,
            now=self.clock.step_start(k),
            slice_s=self.slice_s,
            outdoor_c=float(self.temp_c[k]),
            outdoor_forecast_c=self.temp_c[ahead],
            pv_kwh_per_kwp=float(self.pv_per_kwp[k]),
            pv_forecast_kwh_per_kwp=self.pv_per_kwp[ahead],
        )

    def _trigger(self, k: int) -> None:
        if not self.strategy.trades or self.periods[k] != "window":  # offers only for the window
            return
        env = self.env_at(k)
        for p in self.prosumers:
            self.offers_generated += p.trigger(env)

    def _plan(self, k: int) -> None:
        if not self.strategy.trades or k < self.window.start:
            return
        if self.strategy is DsoStrategy.DYNAMIC_TARIFF and self._dso_plans_at(k):
            self._dso_forecast(k, self.clock.now(), part="fman")  # the tariff is out before the FMAN plans
        if self.strategy.publishes_capacity and self._dso_plans_at(k):  # so is the grid's capacity
            t = wallclock.perf_counter()
            horizon = self.config.dso.capacity_horizon_steps
            self._publish_capacity(self.dso.capacity(k, self.clock.now(), horizon_steps=horizon))
            dt = wallclock.perf_counter() - t
            self.timings.add("fman", -dt)  # inside the FMAN's phase, counted as the DSO's time only
            self.timings.add("dso", dt)
        self.aggregator.plan(self.clock.now())

    def _publish_capacity(self, capacities: tuple[GridCapacity, ...]) -> None:
        """The DSO publishes its grid capacities to the aggregator's FMAN through the exchange
        interface (`PUT /capacity/{name}`, what a served FMAN takes over HTTP) and withdraws those
        it no longer publishes; the FMAN's next plan reads them from its store."""
        client = self._dso_at_fman
        before = {c.name for c in client.capacities()}
        for capacity in capacities:
            client.publish_capacity(capacity.as_published())
        for name in sorted(before - {c.name for c in capacities}):
            client.withdraw_capacity(name)

    def _steps_to_next_local_midnight(self, k: int) -> int:
        local = self._local(k)
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return int((midnight - local).total_seconds() // self.slice_s)

    def _market(self, k: int) -> None:
        if not self.strategy.trades or k < self.window.start:
            return
        now = self.clock.now()
        local = self._local(k)
        steps_per_day = 86_400 // self.slice_s
        # The DSO forecasts first: its local requests, registered at the first forecast, clear
        # before the BRP's in every session (grid safety before balancing).
        if self.strategy.forecasts and self._dso_plans_at(k) and self._dso_forecast_k != k:
            self._dso_forecast(k, now, part="fmar")
        if k == self.window.start:
            # The window starts after today's day-ahead gate: the BRP asks for today up to the next
            # delivery day at once.
            first = k + 1
            n_ahead = self._steps_to_next_local_midnight(k) - 1
            if local.time() >= self.config.market.day_ahead_gate_closure:
                n_ahead += steps_per_day
            request = self.brp.request(first, n_ahead)
            if request is not None:
                self.market_operator.post(request)
        gate = self.config.market.day_ahead_gate_closure
        if self.market_operator.calendar is not None:  # in time for the day-ahead session, which clears at the gate
            gate = (datetime.combine(local.date(), gate) - timedelta(seconds=self.slice_s)).time()
        if local.time() == gate:
            first = k + self._steps_to_next_local_midnight(k)
            request = self.brp.request(first, steps_per_day)
            if request is not None:
                self.market_operator.post(request)
        self.market_operator.clear(k, now)

    def _dso_plans_at(self, k: int) -> bool:
        """The DSO's planning times: every `dso.forecast_interval_s`, else `market.dso.forecast_times`."""
        interval = self.config.dso.forecast_interval_s
        if k < self.window.start:
            return False
        if interval is not None:
            return (k - self.window.start) % (interval // self.slice_s) == 0
        return k == self.window.start or self._local(k).time() in self.config.market.dso_forecast_times

    def _dso_forecast(self, k: int, now: datetime, *, part: str) -> None:
        """The DSO's forecast power flow and what its strategy makes of it (sim/agents/dso.py).

        A dynamic tariff is published in the PLAN phase, before the FMAN plans against it; local
        requests in the MARKET phase, after the FMAN's plans (the forecast includes them).
        """
        self._dso_forecast_k = k
        t = wallclock.perf_counter()
        run = self.dso.run_forecast(k, now, horizon_steps=self.config.market.dso_horizon_steps)
        if self.config.market.links_from_grid and self.dso.transport and self.dso.transport[-1][0] == now:
            self._publish_transport(self.dso.transport[-1][1])
        if run is not None and self.strategy is DsoStrategy.LOCAL_MARKET:
            for request in self.dso.local_requests(run, step_start=self.clock.step_start(k)):
                # F2.FMAR7: the congestion point is registered with the market's DOMS interface;
                # the operator keeps asking for its volume in the rolling sessions.
                self.doms.track(
                    CongestionPoint(
                        point=request.congestion_point or "",
                        dso=request.buyer,
                        start=request.start,
                        slice_s=request.slice_s,
                        desired_kwh=request.volume_kwh,
                        price_eur_per_kwh=request.cutoff_eur_per_kwh,
                    )
                )
                self.market_operator.post(request, congestion_point=request.congestion_point)
        elif run is not None and self.strategy is DsoStrategy.DYNAMIC_TARIFF:
            self.aggregator.grid_tariff = self.dso.tariff(run)  # per congestion point, added to the FMAN's prices
        dt = wallclock.perf_counter() - t
        self.timings.add(part, -dt)  # runs inside the FMAN's or FMAR's phase, counted as the DSO's time only
        self.timings.add("dso", dt)

    def _publish_transport(self, links: pd.DataFrame) -> None:
        """Implicit capacity trading (F2.FMAR4): the DSO's links between feeders, derived from the
        network at this forecast, replace the market's links for the same pairs of zones."""
        mechanism = self.market_operator.market.mechanism
        grid_links = {
            (str(row.from_zone), str(row.to_zone)): TransportLink(
                str(row.from_zone), str(row.to_zone), float(row.fee_eur_per_kwh), float(row.capacity_kwh)
            )
            for row in links.itertuples(index=False)
        }
        configured = [link for link in self.config.market.links if (link.from_zone, link.to_zone) not in grid_links]
        mechanism.links = check_links([*configured, *grid_links.values()])

    def _execute(self, k: int) -> None:
        self._k = k
        self.step()  # Mesa's step: advances model.steps and runs `step` below

    def step(self) -> None:
        """Mesa step = the EXECUTE phase of the current SimPy step."""
        k = self._k
        env = self.env_at(k)
        net = 0.0
        blocked: set[int] = set()
        if self.strategy is DsoStrategy.DIRECT_CONTROL and k >= self.window.start:
            recent = self.metered_kwh[k - 1][:, self._controlled].sum(axis=1) if k else np.zeros(len(self.prosumers))
            blocked = self.dso.direct_control(k, self.clock.now(), recent)
        for i, p in enumerate(self.prosumers):
            records = p.execute(env, blocked=self._blocked if i in blocked else frozenset())
            for d, device in enumerate(self.device_types):
                r = records.get(device)
                if r is None:
                    continue
                self.metered_kwh[k, i, d] = r.metered_kwh
                self.counterfactual_kwh[k, i, d] = r.counterfactual_kwh
                self.baseline_kwh[k, i, d] = r.baseline_kwh
                self.scheduled_kwh[k, i, d] = r.scheduled_kwh
                if r.setpoint_kwh is not None:
                    self.setpoint_kwh[k, i, d] = r.setpoint_kwh
                self.offer_ids[k, i, d] = r.flex_offer_id
            net += p.net_kwh
        self.site_net_kwh = net
        self._grid_step(k)
        self.datacollector.collect(self)
        if self._progress is not None:
            self._progress(k)

    def _grid_step(self, k: int) -> None:
        """The grid applies the step's real injections and runs its power flow (a failure is recorded)."""
        t = wallclock.perf_counter()
        load = self.nonflex_kwh[k] + self.metered_kwh[k].sum(axis=1)
        injections = self.grid.injections_mw(load, self.pv_kwh[k], self.slice_s)
        for j, values in enumerate(injections):
            self.grid_injections_mw[j, k] = values
        self.flows.put(k, self.power_flow.run(*injections))
        dt = wallclock.perf_counter() - t
        self.timings.grid_s += dt
        self.timings.agents_s -= dt  # runs inside the EXECUTE phase, counted as grid time only
        self.timings.add("physics", -dt)
        self.timings.add("power_flow", dt)

    def _settle(self, k: int) -> None:
        """Offers whose operation began start executing; those whose operation ends with this
        step settle (the receivers' own life cycle, atp.interface.lifecycle)."""
        now, step_end = self.clock.now(), self.clock.step_start(k + 1)
        if self.services is not None:
            self.services.advance(step_end)
            return
        for store in (self.aggregator.store, self.market_operator.market.store):
            advance_lifecycle(store, now, until=step_end)

    # -- running --------------------------------------------------------------------------------
    def run(self, *, progress: Callable[[int], None] | None = None) -> None:
        """Advance SimPy through every step of the run."""
        self._progress = progress
        began = wallclock.perf_counter()
        self.env.run(until=self.n_steps * self.slice_s)
        self.timings.close_run(wallclock.perf_counter() - began)

"""KPIs of a run (D2.1 section 7.6, F2.5), computed from the world's recorded arrays.

Everything here is a pure function of the simulated results, never of wall-clock time, so the
same config and seed give a byte-identical `kpi.json`. Money in EUR, energy in kWh, power in kW.
"""

from __future__ import annotations

import math
from importlib import metadata
from typing import Any

import numpy as np

from atp.flexoffer import OfferState
from atp.fman import KpiInputs
from atp.fman import compute_kpis as compute_fman_kpis
from atp.fmar import Award
from sim.accounting import (
    aggregation_section,
    comfort_section,
    energy_section,
    savings_section,
    terminal_state_section,
)
from sim.agents.dso import DsoStrategy
from sim.grid import detect, overload_kw
from sim.ledger import RunSettlement, build_ledger, ledger_kpis, settle_run
from sim.oracle import energy_not_delivered_kwh, oracle_section
from sim.world import World

__all__ = ["compute_kpis"]


def _r(x: float, digits: int = 6) -> float:
    """Round for the report: 6 decimals keep cents and watt-hours exact enough."""
    return float(round(float(x), digits))


def compute_kpis(world: World) -> dict[str, Any]:
    """The run's KPIs as a JSON-ready dict (sorted keys when written)."""
    dt_h = world.slice_s / 3600
    c = world.counted  # window + tail: what every figure below counts
    prices = world.prices.to_numpy(dtype=float)[: world.n_steps]
    metered = world.metered_kwh[c].sum(axis=(1, 2))
    # The reference of the KPIs is the uncontrolled twin: the same devices run without the ATP.
    # The baselines in force (declared default schedules) are reported beside it (sim/accounting.py).
    uncontrolled = world.counterfactual_kwh[c].sum(axis=(1, 2))
    base = world.nonflex_kwh[c].sum(axis=1) - world.pv_kwh[c].sum(axis=1)
    net_actual = base + metered
    net_uncontrolled = base + uncontrolled

    # Adaptation per hour (D2.1 7.6: load adaptability = delta MWh/h over peak MWh/h).
    steps_per_hour = max(round(1 / dt_h), 1)
    n_hours = len(metered) // steps_per_hour
    hourly_delta = (metered - uncontrolled)[: n_hours * steps_per_hour].reshape(n_hours, steps_per_hour).sum(axis=1)
    hourly_base = net_uncontrolled[: n_hours * steps_per_hour].reshape(n_hours, steps_per_hour).sum(axis=1)
    peak_mwh_h = float(np.max(np.abs(hourly_base))) / 1000 if n_hours else 0.0
    adaptability = (np.abs(hourly_delta) / 1000 / peak_mwh_h) if peak_mwh_h > 0 else np.zeros(n_hours)

    offers = {state.value: 0 for state in OfferState}
    n_offers = 0
    for store in (world.aggregator.store, world.market_operator.market.store):
        for record in store.records():
            offers[record.state.value] += 1
            n_offers += 1
    unfinished = sum(offers[s.value] for s in (OfferState.ACCEPTED, OfferState.ASSIGNED, OfferState.EXECUTING))
    plans = world.aggregator.plans
    deviations = sum(len(p.foa.ems.deviations) for p in world.prosumers)
    violations = sum(len(p.foa.violations) for p in world.prosumers)
    generation_errors = sum(len(p.foa.generation_errors) for p in world.prosumers)
    device_counts = {device: sum(1 for p in world.prosumers if device in p.devices) for device in world.device_types}

    energy = energy_section(world)
    energy["hourly_adaptation_mwh"] = [_r(v / 1000) for v in hourly_delta]
    energy["terminal_state"] = terminal_state_section(world)
    # Money: every figure is a sum over the run's ledger (sim/ledger.py, docs/outputs.md).
    run_settlement = settle_run(world, steps=c)
    money = ledger_kpis(build_ledger(world, steps=c, settlement=run_settlement))
    grid, dso = _grid_kpis(world, money)
    kpis: dict[str, Any] = {
        "run": _run_section(world),
        "energy": energy,
        "savings": savings_section(world),
        "power": {
            "site_peak_uncontrolled_kw": _r(np.max(net_uncontrolled) / dt_h),
            "site_peak_actual_kw": _r(np.max(net_actual) / dt_h),
        },
        "money": money,
        "flexibility": {
            "load_adaptability_level_max": _r(float(adaptability.max()) if len(adaptability) else 0.0),
            "load_adaptability_level_mean": _r(float(adaptability.mean()) if len(adaptability) else 0.0),
        },
        # offers still open when the run ended (their service was cut by the end of the tail)
        "offers": {"total": n_offers, "by_state": offers, "unfinished_at_end": unfinished},
        "fman": {
            "planning_rounds": len(plans),
            "assigned": sum(p.n_assigned for p in plans),
            "fallbacks": sum(1 for p in plans if p.fallback_reason),
            "bids": world.aggregator.bids_made,
            "bids_awarded": world.aggregator.bids_awarded,
            "aggregates_postponed": world.aggregator.postponed,
        },
        "aggregation": aggregation_section(world),
        "market": _market_section(world, run_settlement),
        "grid": grid,
        "dso": dso,
        "devices": device_counts,
        "comfort": {
            # per load type: violations (heat pumps: steps ending outside the comfort band; EVs:
            # departures below the target energy; ...) and their size in `unit`, beside the twins'
            "by_device": comfort_section(world),
            "ems_deviations": deviations,
            "protocol_violations": violations,
            "offers_not_generated": generation_errors,
        },
    }
    kpis["settlement"] = _settlement(world, run_settlement)
    kpis["fman_kpi"] = _fman_kpis(world, prices[c], net_uncontrolled, money)
    return kpis


def _market_section(world: World, run: RunSettlement) -> dict[str, Any]:
    """Sessions, volumes and the awards settled on delivery (sim/delivery.py): awarded,
    delivered and shortfall kWh are sums over deliveries.parquet (docs/outputs.md)."""
    results = world.market_operator.market.results
    deliveries = [a.delivery for a in run.awards]
    return {
        "sessions": len({r.session for r in results}),
        "requested_kwh": _r(world.market_operator.requested_kwh.sum()),
        "cleared_kwh": _r(world.market_operator.cleared_kwh.sum()),
        "awards": sum(r.n_awards for r in results),
        "awarded_kwh": _r(math.fsum(d.awarded_total_kwh for d in deliveries)),
        "delivered_kwh": _r(math.fsum(d.delivered_total_kwh for d in deliveries)),
        "shortfall_kwh": _r(math.fsum(d.shortfall_total_kwh for d in deliveries)),
        "awards_with_shortfall": sum(1 for d in deliveries if d.shortfall_total_kwh > 0),
        "shortfall_penalty_eur_per_kwh": world.config.market.shortfall_penalty_eur_per_kwh,
    }


def _run_section(world: World) -> dict[str, Any]:
    """The effective configuration of the run (what produced these numbers)."""
    cfg = world.config
    plans = world.aggregator.plans
    market = cfg.market
    return {
        "scenario": cfg.site.name,
        "start": cfg.start.isoformat().replace("+00:00", "Z"),
        "days": cfg.days,
        "warmup_s": cfg.warmup_s,
        "tail_s": cfg.tail_s,
        "counted": "window + tail",
        "slice_s": world.slice_s,
        "seed": cfg.seed,
        "prosumers": {"delegated": cfg.site.delegated, "direct": cfg.site.direct},
        "market_mechanism": market.mechanism,
        "market_pricing": market.mechanism_options().get("pricing", "pay_as_bid"),  # the rule in effect
        "fman_objective": "market_bidding" if cfg.fman.bidding is not None else cfg.fman.objective,
        "fman_planning_objective": cfg.fman.objective,
        "fman_bidding": cfg.fman.bidding is not None,
        "dso_strategy": cfg.dso.strategy,
        "planner": f"{plans[0].planner} {plans[0].planner_version}" if plans else None,
        "package_version": _package_version(),
    }


def _package_version() -> str:
    try:
        return metadata.version("goflex-twin")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _aggregator_awards(world: World) -> list[Award]:
    name = world.aggregator.name
    return [a for r in world.market_operator.market.results for a in r.awards if a.issuer == name]


def _settlement(world: World, run: RunSettlement) -> dict[str, Any]:
    """The counted steps as one settlement period of the aggregator (sim/ledger.py `settle_run`):
    a bill per delegated offer in force, over the steps it was in force, against the configured
    baseline; its money is the ledger's (`flexibility_payment`, `penalty`, the aggregator's
    `market_delivery` and `market_shortfall` rows)."""
    settlement = run.settlement
    statement = settlement.statement
    bills = settlement.bills
    section: dict[str, Any] = {
        "name": f"{settlement.name} {settlement.version}",
        "contract": world.config.fman.contract.kind,
        "baseline": run.baseline,
        "bills": statement.n_bills,
        "scheduled_adaptation_kwh": _r(sum(b.scheduled_adaptation_kwh for b in bills)),
        "delivered_adaptation_kwh": _r(sum(b.delivered_adaptation_kwh for b in bills)),
        "penalised_kwh": _r(sum(b.penalised_kwh for b in bills)),
        "market_revenue_eur": statement.market_revenue_cents / 100,
        "payments_to_prosumers_eur": statement.payments_to_prosumers_cents / 100,
        "predicted_payments_eur": statement.predicted_payments_cents / 100,
        "margin_eur": statement.margin_cents / 100,
    }
    if run.submeter is not None:
        section["submeter_check"] = run.submeter.as_dict()
    return section


def _fman_kpis(world: World, prices: np.ndarray, site_baseline: np.ndarray, money: dict[str, Any]) -> dict[str, Any]:
    """The aggregator's D2.1 7.6 KPIs (atp.fman.kpi) over its delegated prosumers; its money
    (market revenue, payments to prosumers, margin) is the ledger's."""
    cfg = world.config
    portfolio = slice(0, cfg.site.delegated)  # prosumers are numbered delegated first
    aggregator = world.aggregator
    awards = _aggregator_awards(world)
    delivered_kwh = sum(a.delivered_kwh for a in awards)
    c = world.counted
    inputs = KpiInputs(
        start=cfg.start,
        slice_s=world.slice_s,
        baseline_kwh=world.counterfactual_kwh[c, portfolio].sum(axis=(1, 2)),
        optimised_kwh=world.scheduled_kwh[c, portfolio].sum(axis=(1, 2)),
        metered_kwh=world.metered_kwh[c, portfolio].sum(axis=(1, 2)),
        site_baseline_kwh=site_baseline,
        prices_eur_per_kwh=prices,
        participants=cfg.site.delegated,
        offers=len(aggregator.store.records()),
        market_cleared_kwh=delivered_kwh,
        market_requested_kwh=float(world.market_operator.requested_kwh.sum()),
        market_revenue_eur=money["aggregator_market_revenue_eur"],
        market_deals=len(awards),
        prosumer_payments_eur=money["payments_to_prosumers_eur"],
        scope=aggregator.name,
    )
    return compute_fman_kpis(inputs)


def _grid_kpis(world: World, money: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Congestion on the actual flows (D2.1 7.6) and what the DSO's strategy cost and paid (ledger sums)."""
    dt_h = world.slice_s / 3600
    c = world.counted
    flows = world.flows.window(c)
    flags = detect(flows, world.grid_limits)
    line_kw, trafo_kw = overload_kw(world.grid, flows, world.grid_limits)
    overloaded = flags.line_overloaded.any(axis=1) | flags.trafo_overloaded.any(axis=1)
    volts = flags.voltage_violation.any(axis=1)

    def peak(a: np.ndarray) -> float:
        return _r(float(np.nanmax(a))) if a.size and np.isfinite(a).any() else 0.0

    grid = {
        "steps": c.stop - c.start,
        "steps_not_converged": int((~flows.converged).sum()),
        "overload_hours": _r(overloaded.sum() * dt_h),
        "overload_energy_kwh": _r((line_kw.sum() + trafo_kw.sum()) * dt_h),
        "overload_energy_lines_kwh": _r(line_kw.sum() * dt_h),
        "overload_energy_trafo_kwh": _r(trafo_kw.sum() * dt_h),
        "max_line_loading_percent": peak(flows.line_loading_percent),
        "max_trafo_loading_percent": peak(flows.trafo_loading_percent),
        "voltage_violation_hours": _r(volts.sum() * dt_h),
        "voltage_violation_bus_steps": int(flags.voltage_violation.sum()),
        "min_vm_pu": _r(float(np.nanmin(flows.vm_pu))) if np.isfinite(flows.vm_pu).any() else None,
        "max_vm_pu": peak(flows.vm_pu),
        "losses_kwh": _r(np.nansum(flows.losses_mw) * 1000 * dt_h),
        "feeders": len(world.grid.feeders),
    }
    oracle = oracle_section(world, world.twin_flexibility)  # no_flex runs: once per scenario and seed
    if oracle is not None:
        grid["oracle"] = oracle
    dso = world.dso
    own = [r for r in world.market_operator.market.results if r.buyer.startswith(f"{dso.name}@")]
    tariff = dso.tariff_eur_per_kwh_by_step[c]
    paid_eur = money["dso_market_purchases_eur"] + money["dso_compensation_eur"] - money["dso_tariff_eur"]
    forecast_congested = sum(int(np.any(run.excess_kwh > 1e-6, axis=1).sum()) for run in dso.forecasts)
    section = {
        "strategy": dso.strategy.value,
        "forecast_runs": len(dso.forecasts),
        "forecast_congested_steps": forecast_congested,
        "requests": len(dso.requests),
        "requested_kwh": _r(dso.requested_kwh_by_step.sum()),
        "cleared_kwh": _r(sum(float(np.abs(r.cleared_kwh).sum()) for r in own)),
        "controlled_kwh": _r(dso.controlled_kwh[c].sum()),
        "tariff_steps": int((tariff > 0).any(axis=1).sum()),  # steps with a tariff at some feeder
        "tariff_credit_steps": int((tariff < 0).any(axis=1).sum()),  # ... with a credit at some feeder
        "energy_not_delivered_kwh": _r(energy_not_delivered_kwh(world)),
        # money from the ledger: tariff rows, the DSO's net (cost = minus its net), and what
        # sellers received for the DSO's purchases plus compensation minus the tariff paid
        "tariff_income_eur": money["dso_tariff_eur"],
        "cost_eur": 0.0 - money["dso_net_eur"],
        "prosumer_rewards_eur": round(paid_eur * 100) / 100,
        "transport_links": len(dso.transport[-1][1]) if dso.transport else 0,
        # F2.FMAR7 through the market's DOMS interface: registered congestion points, the
        # prosumers the market knows there (issuers of offers located at them, by the end of
        # the run) and the completed (cleared) bids for them.
        "congestion_points": world.doms.points,
        "completed_bids": len(world.doms.completed_bids()),
        "completed_bids_cleared_kwh": _r(sum(b.cleared_kwh for b in world.doms.completed_bids())),
    }
    if dso.strategy is DsoStrategy.NO_FLEX:
        section["note"] = "no flexibility: devices ran uncontrolled, nothing traded"
    return grid, section

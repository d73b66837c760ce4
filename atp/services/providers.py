"""What a served receiver answers at GET /kpi, /contract and /bill: providers built from its store.

`create_app` takes the three answers as callables; this module builds them for
`goflex-atp serve`:

- `store_kpis(store, party)`: the KPIs computable from the offer store alone (offers per state,
  offered flexibility, assigned energy, adaptation, metered energy) over one party's offers or,
  for None, the whole receiver, and under `d21` the FMAN's KPIs of D2.1 7.6
  (`atp.fman.compute_kpis` on `kpi_inputs_from_store`: hourly adaptation, load adaptability,
  savings, EUR/MW/year, projections) over the hours the offers cover (the latest
  `MAX_PERIOD_STEPS` steps at most), at 0 EUR/kWh (the service has no price feed).
- `contract_provider(contracts)` and `bill_provider(store, contracts)`: an FMAN's electronic
  contracts (`atp.fman.contracts`) and the bills `atp.fman.settlement.settle` makes from them.
  Each offer with measurements is billed as its own period: the steps from the earliest to the
  latest of its default schedule, assigned schedule and measurements, on the offer's grid;
  steps without a measurement count as 0 kWh metered. Offers that cannot be settled (no
  default schedule, a measurement off the grid, a period of more than `MAX_PERIOD_STEPS` steps)
  are listed in `not_billed` with the reason.

The contracts file of `goflex-atp serve --contracts` (YAML or JSON):

    default:                       # optional: the contract of every party not listed
      kind: delegated
      activation_eur_per_kwh: 0.10
    parties:
      foss-p017: {kind: direct, price_eur_per_kwh_deviation: 0.2, penalty_eur_per_kwh: 0.05}
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from atp.errors import ValidationError
from atp.flexoffer import OfferState, format_time
from atp.fman.contracts import Contract, ContractError, contract_from_dict
from atp.fman.kpi import compute_kpis, kpi_inputs_from_store
from atp.fman.planning import PriceSeries
from atp.fman.settlement import SETTLEMENT_NAME, SETTLEMENT_VERSION, ProsumerPeriod, SettlementError, settle
from atp.interface.errors import NotFoundError
from atp.interface.http_server import KpiProvider, PartyProvider
from atp.interface.store import OPERATOR, OfferRecord, OfferStore
from atp.interface.yamlfile import read_yaml

__all__ = [
    "ContractBook",
    "ContractsFileError",
    "bill_provider",
    "contract_provider",
    "contracts_from_dict",
    "load_contracts",
    "store_kpi_provider",
    "store_kpis",
]

_CLOSED = (OfferState.REJECTED, OfferState.WITHDRAWN)
MAX_PERIOD_STEPS = 100_000
"""The most steps of one bill period and of the `d21` KPIs' period (the latest steps)."""


class ContractsFileError(ValidationError):
    """The contracts file cannot be read or has a wrong key; the message names the file and key."""


# -- KPIs --------------------------------------------------------------------------------------
def _offered(record: OfferRecord) -> tuple[float, float, float]:
    """(flexible kWh, energy flexibility kWh, time flexibility h) the offer puts on the table."""
    offer = record.offer
    default = offer.default_schedule
    profile = offer.profiles[default.profile if default is not None and default.profile < len(offer.profiles) else 0]
    # per slice, not per step: a few slices stand for many steps (no arrays of the profile's length)
    energy_flex = float(sum((s.energy[1] - s.energy[0]) * s.duration for s in profile.slices))
    if profile.total_energy is not None:
        energy_flex = min(energy_flex, profile.total_energy[1] - profile.total_energy[0])
    if default is not None:
        flexible = float(sum(abs(e) for e in default.energy))
    else:
        flexible = float(sum(max(abs(s.energy[0]), abs(s.energy[1])) * s.duration for s in profile.slices))
    return flexible, max(energy_flex, 0.0), (offer.time_flexibility_s or 0) / 3600


def _adaptation_kwh(record: OfferRecord) -> float:
    """sum |assigned - default| per step, the adaptation an assignment asks for (0 without a default)."""
    schedule, default = record.schedule, record.offer.default_schedule
    if schedule is None or default is None:
        return 0.0
    step_s = record.offer.slice_s
    offset = int((schedule.start - default.start).total_seconds() // step_s)
    first = min(0, offset)
    n = max(len(default.energy), offset + len(schedule.energy)) - first
    grid = np.zeros(n)
    grid[-first : -first + len(default.energy)] -= default.energy
    grid[offset - first : offset - first + len(schedule.energy)] += schedule.energy
    return float(np.abs(grid).sum())


def store_kpis(store: OfferStore, party: str | None, *, prices: PriceSeries | None = None) -> dict[str, Any]:
    """KPIs of the offers in `store` over `party`'s scope (None: every party); the D2.1 money
    KPIs at `prices` (the FMAN's price feed; without, or where it does not reach: 0 EUR/kWh,
    and `d21.prices` says which).

    Offered flexibility counts every offer that was accepted (rejected ones excluded);
    adaptation is what assignments ask for relative to the default schedules (D2.1 7.6,
    KPI 2.1.1.2.b); metered energy is the sum of the measurements received.
    """
    records = [r for r in store.records() if party is None or r.owner == party]
    states = Counter(r.state.value for r in records)
    offered = [r for r in records if r.state is not OfferState.REJECTED]
    parts = [_offered(r) for r in offered]
    assigned = [r for r in records if r.schedule is not None and r.state not in _CLOSED]
    return {
        "receiver": store.name,
        "scope": party if party is not None else "all",
        "n_parties": len({r.owner for r in records}),
        "n_offers": len(records),
        "offers_by_state": {s.value: states.get(s.value, 0) for s in OfferState},
        "offered_flexible_kwh": float(sum(p[0] for p in parts)),
        "offered_energy_flexibility_kwh": float(sum(p[1] for p in parts)),
        "offered_time_flexibility_h": float(sum(p[2] for p in parts)),
        "n_assigned": len(assigned),
        "assigned_kwh": float(sum(sum(r.schedule.energy) for r in assigned if r.schedule is not None)),
        "adaptation_kwh": float(sum(_adaptation_kwh(r) for r in assigned)),
        "metered_kwh": float(sum(sum(r.measurements.values()) for r in records)),
        "d21": _d21_kpis(store, party, records, prices),
    }


def _prices_on(prices: PriceSeries | None, start: datetime, n: int, slice_s: int) -> tuple[np.ndarray | None, str]:
    """The prices per KPI step and where they come from (a step the feed does not cover: 0)."""
    if prices is None:
        return None, "none: money at 0 EUR/kWh"
    grid = prices.on_grid(slice_s)
    values = np.zeros(n)
    offset = round((start - grid.start).total_seconds() / slice_s)
    lo, hi = max(0, offset), min(len(grid.values_eur_per_kwh), offset + n)
    if lo < hi:
        values[lo - offset : hi - offset] = grid.values_eur_per_kwh[lo:hi]
    covered = max(0, hi - lo)
    source = "the FMAN's price feed"
    if covered < n:
        source += f" on {covered} of {n} steps (0 EUR/kWh elsewhere)"
    return values, source


def _d21_kpis(
    store: OfferStore, party: str | None, records: list[OfferRecord], prices: PriceSeries | None = None
) -> dict[str, Any] | None:
    """The D2.1 7.6 KPIs over the whole hours the offers' schedules cover (None without any)."""
    spans = []
    for r in records:
        for run in (r.offer.default_schedule, r.schedule):
            if run is not None:
                spans.append((run.start, run.start + timedelta(seconds=r.offer.slice_s * len(run.energy))))
    if not spans:
        return None
    slice_s = Counter(r.offer.slice_s for r in records).most_common(1)[0][0]
    if 3600 % slice_s:
        return None
    start = min(a for a, _ in spans).replace(minute=0, second=0, microsecond=0)
    end = max(b for _, b in spans)
    end_hour = end.replace(minute=0, second=0, microsecond=0)
    end = end_hour if end_hour == end or end_hour.date() == date.max else end_hour + timedelta(hours=1)
    most = timedelta(hours=MAX_PERIOD_STEPS // (3600 // slice_s))
    if end - start > most:  # the latest MAX_PERIOD_STEPS: offers spread over years must not build years of steps
        start = end - most
    n = int((end - start).total_seconds() // slice_s)
    priced, source = _prices_on(prices, start, n, slice_s)
    inputs = kpi_inputs_from_store(
        store,
        party=OPERATOR if party is None else party,
        start=start,
        end=end,
        slice_s=slice_s,
        prices_eur_per_kwh=priced,
    )
    return {**compute_kpis(inputs), "prices": source}


def store_kpi_provider(store: OfferStore, *, prices: PriceSeries | None = None) -> KpiProvider:
    """`store_kpis` bound to `store` (and the FMAN's price feed): the `kpi` callable of `create_app`."""
    return lambda party: store_kpis(store, party, prices=prices)


# -- contracts and bills -----------------------------------------------------------------------
@dataclass(frozen=True)
class ContractBook:
    """An FMAN's contracts: one per party, and an optional default for every party not listed."""

    parties: Mapping[str, Contract] = field(default_factory=dict)
    default: Contract | None = None

    def of(self, party: str) -> Contract | None:
        """The contract of `party` (the default when it has none of its own)."""
        return self.parties.get(party, self.default)


def _contract_of(contracts: ContractBook, party: str, receiver: str) -> Contract:
    contract = contracts.of(party)
    if contract is None:
        raise NotFoundError(f"party {party!r} has no contract at receiver {receiver!r}")
    return contract


def _contract_json(contract: Contract) -> dict[str, Any]:
    return {"kind": contract.kind, **dataclasses.asdict(contract)}


def contract_provider(contracts: ContractBook, *, receiver: str = "fman") -> PartyProvider:
    """The `contract` callable of `create_app`: a party's contract as JSON (404 without one)."""

    def contract(party: str) -> dict[str, Any]:
        found = _contract_of(contracts, party, receiver)
        return {"party": party, "receiver": receiver, "contract": _contract_json(found)}

    return contract


def _period(record: OfferRecord, contract: Contract) -> dict[str, Any]:
    """The bill of one offer, settled over the steps its schedules and measurements cover."""
    offer, step_s = record.offer, record.offer.slice_s
    spans: list[tuple[datetime, int]] = [(t, 1) for t in record.measurements]
    for sched in (offer.default_schedule, record.schedule):
        if sched is not None:
            spans.append((sched.start, len(sched.energy)))
    start = min(t for t, _ in spans)
    end = max(t + timedelta(seconds=n * step_s) for t, n in spans)
    steps = int((end - start).total_seconds() // step_s)
    if steps > MAX_PERIOD_STEPS:  # checked before the arrays: e.g. one measurement years away
        raise SettlementError(
            f"its schedules and measurements span {steps} steps from {format_time(start)}, "
            f"more than a bill period holds ({MAX_PERIOD_STEPS})"
        )
    metered = np.zeros(steps)
    for t, energy_kwh in record.measurements.items():
        offset_s = (t - start).total_seconds()
        if offset_s % step_s:
            raise SettlementError(f"the measurement at {format_time(t)} is not on the {step_s} s grid of the offer")
        metered[int(offset_s // step_s)] += energy_kwh
    item = ProsumerPeriod(offer, contract, metered, schedule=record.schedule)
    result = settle([item], period_start=start, period_steps=steps, slice_s=step_s, market_revenue_eur=0.0)
    return {
        "period_start": format_time(start),
        "period_steps": steps,
        "slice_s": step_s,
        "state": record.state.value,
        **result.bills[0].as_dict(),
    }


def bill_provider(store: OfferStore, contracts: ContractBook) -> PartyProvider:
    """The `bill` callable of `create_app`: one settled period per offer with measurements."""

    def bill(party: str) -> dict[str, Any]:
        contract = _contract_of(contracts, party, store.name)
        periods: list[dict[str, Any]] = []
        not_billed: list[dict[str, str]] = []
        for record in store.records():
            if record.owner != party or record.state in _CLOSED or not record.measurements:
                continue
            try:
                periods.append(_period(record, contract))
            except SettlementError as exc:
                not_billed.append({"flex_offer_id": record.offer.id or "", "reason": str(exc)})
        total_cents = sum(p["total_cents"] for p in periods)
        return {
            "party": party,
            "receiver": store.name,
            "contract_kind": contract.kind,
            "settlement": {"name": SETTLEMENT_NAME, "version": SETTLEMENT_VERSION},
            "periods": periods,
            "not_billed": not_billed,
            "total_cents": total_cents,
            "total_eur": total_cents / 100,
            "predicted_total_cents": sum(p["predicted_total_cents"] for p in periods),
        }

    return bill


def contracts_from_dict(data: Any, *, source: str = "contracts") -> ContractBook:
    """The contract book a parsed contracts file describes; ContractsFileError naming the key."""
    if not isinstance(data, Mapping):
        raise ContractsFileError(f"{source}: must be a mapping with the keys 'default' and/or 'parties'")
    for key in data:
        if key not in ("default", "parties"):
            raise ContractsFileError(f"{source}: {key}: is not a known key (known: default, parties)")
    parties = data.get("parties") or {}
    if not isinstance(parties, Mapping):
        raise ContractsFileError(f"{source}: parties: must map each party name to its contract")
    book: dict[str, Contract] = {}
    for party, spec in parties.items():
        try:
            book[str(party)] = contract_from_dict(spec)
        except ContractError as exc:
            raise ContractsFileError(f"{source}: parties.{party}: {exc}") from None
    default = None
    if data.get("default") is not None:
        try:
            default = contract_from_dict(data["default"])
        except ContractError as exc:
            raise ContractsFileError(f"{source}: default: {exc}") from None
    return ContractBook(book, default)


def load_contracts(path: str | Path) -> ContractBook:
    """Read a contracts file (YAML or JSON); ContractsFileError with one sentence when it is wrong."""
    data = read_yaml(path, what="contracts", error=ContractsFileError)
    return contracts_from_dict(data, source=str(path))

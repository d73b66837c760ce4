"""The run's money ledger: every euro that changes hands in the world, one transfer per row.

`build_ledger(world, steps=world.counted)` lists the transfers of the counted steps as rows
`time, payer, payee, reason, eur, award` (`LEDGER_COLUMNS`); `eur > 0`: the payer pays the payee,
`eur < 0`: the payee pays the payer |eur| (e.g. a prosumer exporting energy). Parties carry
their role as a prefix (`PARTY_ROLES`): `prosumer:<name>`, `aggregator:<name>`, `brp:<name>`
(the balance responsible party, also the prosumers' energy supplier), `dso:<name>` and
`fmar:<name>` (the market operator, the counterparty of every market trade, which keeps the
surplus). Reasons (`REASONS`, docs/outputs.md has the full table):

- `energy_flexible`, `energy_other`: prosumer -> BRP, per step, the prosumer's metered energy
  at the day-ahead price of the step: its flexible devices, and the rest of its meter
  (non-flexible load minus PV);
- `tariff`: prosumer -> DSO, the dynamic grid tariff of the step on the prosumer's positive
  net consumption; `dso_compensation`: DSO -> prosumer, the draw of devices the DSO blocked
  (direct control) at its cut-off price;
- market awards settle on delivery (sim/delivery.py): `market_delivery`: FMAR -> seller (the
  aggregator's bids, direct prosumers' offers), one row per award, the award's price per kWh
  x the delivered kWh; `market_shortfall`: seller -> FMAR, one row per award, the market's
  penalty (`market.shortfall_penalty_eur_per_kwh`) x the kWh awarded and not delivered; both
  name the award (`award`: the FMAR's offer id); `market_purchase`: buyer (BRP, DSO) -> FMAR,
  the buyer's share of what the session's sellers are paid for delivery; `market_surplus`:
  buyer -> FMAR, the buyer's part of the market's surplus; `transport_fee`: buyer -> DSO, the
  transport fees of the buyer's trades (the DSO runs the links); both as cleared;
- `flexibility_payment`: aggregator -> prosumer, one row per settlement bill (its rewards and
  activation payment); `penalty`: prosumer -> aggregator, the bill's imbalance penalty.

The world settles no BRP imbalance (there is no TSO in it), so there is no imbalance row.

Money is integer cents (`eur` = cents / 100). Rounding rule: every row's cents are its EUR
amount x 100 rounded half to even, except `market_purchase`, whose cents are apportioned per
market session by the largest-remainder method so that the purchases of a session add up to
the cents of its `market_delivery` rows exactly; so the FMAR's net is exactly the sum of the
`market_surplus` and `market_shortfall` rows, and each row being a transfer, the ledger sums
to zero to the cent.
Rows of 0 cents are left out. Settlement bills are the aggregator's `settle_run`, whose
baseline is `fman.settlement_baseline` (`in_force`, `characteristic` or `twin`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from atp.fman import Settlement, settle, settlement_period
from atp.fman.baselines import characteristic_baseline, validate_against_submeter
from atp.fmar import SessionResult
from sim.delivery import AwardDelivery, buyer_weights, settle_awards
from sim.world import World

__all__ = [
    "DELIVERY_COLUMNS",
    "LEDGER_COLUMNS",
    "PARTY_ROLES",
    "REASONS",
    "SUBMETER_TOLERANCE_SHARE",
    "LedgerError",
    "RunSettlement",
    "SubmeterSummary",
    "build_ledger",
    "deliveries_frame",
    "ledger_kpis",
    "settle_run",
]

LEDGER_COLUMNS = ("time", "payer", "payee", "reason", "eur", "award")
PARTY_ROLES = ("prosumer", "aggregator", "brp", "dso", "fmar")
REASONS = (
    "energy_flexible",
    "energy_other",
    "tariff",
    "dso_compensation",
    "market_purchase",
    "market_surplus",
    "transport_fee",
    "market_delivery",
    "market_shortfall",
    "flexibility_payment",
    "penalty",
)
SUBMETER_TOLERANCE_SHARE = 0.1
"""Characteristic baseline: the main meter's adaptation must match the sub-meters' within 10 %
per step (and in total) for a prosumer's evaluation to pass (`atp.fman.validate_against_submeter`)."""
_SECONDS_PER_DAY = 86_400


class LedgerError(ValueError):
    """The run's money cannot be booked (an unknown party, market money that does not add up); says which."""


@dataclass(frozen=True)
class SubmeterSummary:
    """Characteristic baseline: how the main-meter evaluation agreed with the sub-meters.

    Per delegated prosumer with a flexible device, over the counted steps: the main meter's
    adaptation (its net energy minus the characteristic baseline of its net energy) against
    the sum of its devices' adaptations (sub-meters: each device's metered energy minus its
    characteristic baseline). `history_days`: whole days of metered history used.
    """

    history_days: int
    prosumers: int
    passed: int
    worst_deviation_kwh: float
    tolerance_share: float = SUBMETER_TOLERANCE_SHARE

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "history_days": self.history_days,
            "prosumers": self.prosumers,
            "passed": self.passed,
            "worst_deviation_kwh": round(self.worst_deviation_kwh, 6),
            "tolerance_share": self.tolerance_share,
        }


@dataclass(frozen=True)
class RunSettlement:
    """The aggregator's settlement of the counted steps and the baseline it was made against,
    with every market award of the counted steps settled on delivery (`awards`; the
    aggregator's payments less its penalties are the statement's market revenue)."""

    settlement: Settlement
    baseline: str
    submeter: SubmeterSummary | None = None
    awards: tuple[AwardDelivery, ...] = ()


# -- parties ------------------------------------------------------------------------------------
def _roles(world: World) -> dict[str, str]:
    """Market and settlement names of the world's parties -> their ledger ids."""
    parties = {p.name: f"prosumer:{p.name}" for p in world.prosumers}
    parties[world.aggregator.name] = f"aggregator:{world.aggregator.name}"
    parties[world.brp.name] = f"brp:{world.brp.name}"
    parties[world.dso.name] = f"dso:{world.dso.name}"
    return parties


def _party(parties: dict[str, str], name: str, what: str) -> str:
    party = parties.get(name.split("@", 1)[0])  # a DSO buys as <dso>@<congestion point>
    if party is None:
        raise LedgerError(f"{what} {name!r} is none of the world's prosumers, aggregator, BRP or DSO")
    return party


def _fmar(world: World) -> str:
    return f"fmar:{world.market_operator.market.name}"


# -- rows ---------------------------------------------------------------------------------------
class _Rows:
    """Rows collected as columns; cents as integers."""

    def __init__(self) -> None:
        self.time: list[Any] = []
        self.payer: list[Any] = []
        self.payee: list[Any] = []
        self.reason: list[str] = []
        self.cents: list[int] = []
        self.award: list[str | None] = []

    def add(self, time: datetime, payer: str, payee: str, reason: str, cents: int, award: str | None = None) -> None:
        if cents:
            self.time.append(pd.Timestamp(time))
            self.payer.append(payer)
            self.payee.append(payee)
            self.reason.append(reason)
            self.cents.append(int(cents))
            self.award.append(award)

    def add_many(self, times: pd.DatetimeIndex, payers: np.ndarray, payee: str, reason: str, cents: np.ndarray) -> None:
        keep = cents != 0
        self.time.extend(times[keep])
        self.payer.extend(payers[keep].tolist())
        self.payee.extend([payee] * int(keep.sum()))
        self.reason.extend([reason] * int(keep.sum()))
        self.cents.extend(cents[keep].astype(np.int64).tolist())
        self.award.extend([None] * int(keep.sum()))

    def add_many_from(
        self, times: pd.DatetimeIndex, payer: str, payees: np.ndarray, reason: str, cents: np.ndarray
    ) -> None:
        keep = cents != 0
        self.time.extend(times[keep])
        self.payer.extend([payer] * int(keep.sum()))
        self.payee.extend(payees[keep].tolist())
        self.reason.extend([reason] * int(keep.sum()))
        self.cents.extend(cents[keep].astype(np.int64).tolist())
        self.award.extend([None] * int(keep.sum()))

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "time": pd.DatetimeIndex(self.time, tz="UTC") if self.time else pd.DatetimeIndex([], tz="UTC"),
                "payer": pd.Series(self.payer, dtype=object),
                "payee": pd.Series(self.payee, dtype=object),
                "reason": pd.Series(self.reason, dtype=object),
                "eur": np.asarray(self.cents, dtype=np.int64) / 100,
                "award": pd.Series(self.award, dtype=object),
            }
        )
        return frame.sort_values("time", kind="stable", ignore_index=True)


def _cents(eur: np.ndarray) -> np.ndarray:
    """EUR -> integer cents, rounded half to even (the ledger's rounding rule)."""
    return np.round(np.asarray(eur, dtype=float) * 100).astype(np.int64)


def _per_step_rows(world: World, steps: slice, rows: _Rows) -> None:
    """Energy at the day-ahead price, the dynamic tariff and direct-control compensation."""
    k = np.arange(world.n_steps)[steps]
    n_k, n_p = len(k), len(world.prosumers)
    times = world.times[np.repeat(k, n_p)]
    names = np.array([f"prosumer:{p.name}" for p in world.prosumers], dtype=object)
    payers = np.tile(names, n_k)
    prices = world.prices.to_numpy(dtype=float)[: world.n_steps][k][:, None]
    flexible_kwh = world.metered_kwh[steps].sum(axis=2)
    other_kwh = world.nonflex_kwh[steps] - world.pv_kwh[steps]
    brp, dso = f"brp:{world.brp.name}", f"dso:{world.dso.name}"
    rows.add_many(times, payers, brp, "energy_flexible", _cents(flexible_kwh * prices).reshape(-1))
    rows.add_many(times, payers, brp, "energy_other", _cents(other_kwh * prices).reshape(-1))
    tariff = world.dso.tariff_by_prosumer()[steps]  # each prosumer pays its feeder's tariff
    net_kwh = np.maximum(flexible_kwh + other_kwh, 0.0)
    rows.add_many(times, payers, dso, "tariff", _cents(tariff * net_kwh).reshape(-1))
    blocked_kwh = world.dso.controlled_kwh_by_prosumer[steps]
    compensation = _cents(blocked_kwh * world.dso.cutoff_eur_per_kwh).reshape(-1)
    rows.add_many_from(times, dso, payers, "dso_compensation", compensation)


def _counted_results(world: World, steps: slice) -> list[SessionResult]:
    """Market results whose delivery starts in the counted steps."""
    start, slice_s = world.start, world.slice_s
    out = []
    for result in world.market_operator.market.results:
        k = int((result.start - start).total_seconds() // slice_s)
        if steps.start <= k < steps.stop:
            out.append(result)
    return out


def _apportion(quotas: list[float], total: int, what: str) -> list[int]:
    """Integers that add up to `total`, each the floor of its quota or one more (largest remainder)."""
    floors = [math.floor(q) for q in quotas]
    extra = total - sum(floors)
    if not 0 <= extra <= len(quotas):
        raise LedgerError(f"{what}: the buyers' shares ({sum(quotas):.4f} cents) do not add up to the awards' {total}")
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - floors[i]), i))
    for i in order[:extra]:
        floors[i] += 1
    return floors


def _market_rows(world: World, steps: slice, run: RunSettlement, rows: _Rows) -> None:
    """Per session: the FMAR pays each seller for what it delivered and charges its shortfall;
    the buyers pay the FMAR their share of the delivered payments (purchase) and the surplus,
    and the DSO the transport fees, both as cleared."""
    parties = _roles(world)
    fmar = _fmar(world)
    settled: dict[int, list[AwardDelivery]] = defaultdict(list)
    for item in run.awards:
        settled[id(item.result)].append(item)
    sessions: dict[tuple[str, datetime], list[SessionResult]] = defaultdict(list)
    for result in _counted_results(world, steps):
        sessions[(result.session, result.cleared_at)].append(result)
    for (session, _cleared), results in sessions.items():
        awards = [item for r in results for item in settled[id(r)]]
        quotas = np.zeros(len(results))
        for item in awards:
            quotas += item.delivery.payment_cents * buyer_weights(results, item)
        total = sum(item.delivery.payment_cents for item in awards)
        purchases = _apportion(quotas.tolist(), total, f"market session {session!r}")
        for r, purchase in zip(results, purchases, strict=True):
            buyer = _party(parties, r.buyer, "market buyer")
            rows.add(r.start, buyer, fmar, "market_purchase", purchase)
            rows.add(r.start, buyer, fmar, "market_surplus", round(r.surplus_eur * 100))
            rows.add(r.start, buyer, f"dso:{world.dso.name}", "transport_fee", round(r.transport_fees_eur * 100))
        for item in awards:
            seller = _party(parties, item.award.issuer, "award issuer")
            at, award = item.result.start, item.award.offer_id
            rows.add(at, fmar, seller, "market_delivery", item.delivery.payment_cents, award)
            rows.add(at, seller, fmar, "market_shortfall", item.delivery.penalty_cents, award)


def _settlement_rows(world: World, steps: slice, run: RunSettlement, rows: _Rows) -> None:
    """One flexibility payment and one penalty per bill, at the end of the counted steps."""
    at = world.clock.step_start(steps.stop)
    aggregator = f"aggregator:{world.aggregator.name}"
    parties = _roles(world)
    for bill in run.settlement.bills:
        prosumer = _party(parties, bill.prosumer, "billed prosumer")
        paid = bill.total_cents + bill.penalty_cents  # rewards and activation
        rows.add(at, aggregator, prosumer, "flexibility_payment", paid)
        rows.add(at, prosumer, aggregator, "penalty", bill.penalty_cents)


# -- settlement ---------------------------------------------------------------------------------
def _aggregator_revenue_cents(world: World, awards: tuple[AwardDelivery, ...]) -> int:
    """The aggregator's `market_delivery` cents less its `market_shortfall` cents (the ledger's rule)."""
    name = world.aggregator.name
    return sum(a.delivery.payment_cents - a.delivery.penalty_cents for a in awards if a.award.issuer == name)


def _characteristic(world: World, steps: slice) -> tuple[np.ndarray, SubmeterSummary]:
    """KIBERnet baselines per step, prosumer and device from the whole days of metered history
    before the counted steps (the warm-up, where devices run uncontrolled), and the main-meter
    evaluation's agreement with the sub-meters."""
    steps_per_day = _SECONDS_PER_DAY // world.slice_s
    days = steps.start // steps_per_day
    if days < 1:
        raise LedgerError(
            "fman.settlement_baseline=characteristic needs at least one whole day of metered history before the "
            f"counted steps (sim.warmup_s >= {_SECONDS_PER_DAY}); there are {steps.start} steps"
        )
    history = slice(steps.start - days * steps_per_day, steps.start)
    n_counted = steps.stop - steps.start
    delegated = world.config.site.delegated
    out = np.zeros((n_counted, len(world.prosumers), len(world.device_types)))

    def baseline(past_kwh: np.ndarray) -> np.ndarray:
        profile = characteristic_baseline(past_kwh.reshape(days, steps_per_day), n_days=days)
        return np.resize(profile, n_counted)

    net = world.nonflex_kwh - world.pv_kwh + world.metered_kwh.sum(axis=2)
    checked = passed = 0
    worst = 0.0
    for i, prosumer in enumerate(world.prosumers[:delegated]):
        devices = [d for d, device in enumerate(world.device_types) if device in prosumer.devices]
        if not devices:
            continue
        for d in devices:
            out[:, i, d] = baseline(world.metered_kwh[history, i, d])
        sub_adaptation = (world.metered_kwh[steps, i][:, devices] - out[:, i][:, devices]).sum(axis=1)
        main_adaptation = net[steps, i] - baseline(net[history, i])
        check = validate_against_submeter(main_adaptation, sub_adaptation, tolerance_share=SUBMETER_TOLERANCE_SHARE)
        checked += 1
        passed += check.passed
        worst = max(worst, abs(check.worst_deviation_kwh))
    return out, SubmeterSummary(history_days=days, prosumers=checked, passed=passed, worst_deviation_kwh=worst)


def settle_run(world: World, *, steps: slice) -> RunSettlement:
    """The aggregator's settlement of the counted steps: one bill per offer of its store in force
    in them (delegated offers; direct offers routed to the FMAN are paid their own ask per kWh
    of deviation from their own default, `atp.fman.settlement_period`), covering only the steps
    it was in force; delegated ones against `fman.settlement_baseline`:

    - `in_force`: the offer's default schedule in force at each step (`world.baseline_kwh`);
    - `characteristic`: the KIBERnet baseline of the device from the whole days of metered
      history before the counted steps (`_characteristic`);
    - `twin`: the device's uncontrolled twin (`world.counterfactual_kwh`).

    Scheduled and metered energies are the world's per step. The market awards of the counted
    steps are settled on delivery (`sim.delivery.settle_awards`, kept in `awards`); the market
    revenue is the aggregator's `market_delivery` cents less its `market_shortfall` cents, so
    the statement's margin is the aggregator's net in the ledger to the cent.
    """
    method = world.config.fman.settlement_baseline
    n_counted = steps.stop - steps.start
    submeter = None
    if method == "in_force":
        baselines = world.baseline_kwh[steps]
    elif method == "twin":
        baselines = world.counterfactual_kwh[steps]
    elif method == "characteristic":
        baselines, submeter = _characteristic(world, steps)
    else:
        raise LedgerError(f"fman.settlement_baseline: {method!r} is not in_force, characteristic or twin")
    ids = world.offer_ids[steps]
    metered, scheduled = world.metered_kwh[steps], world.scheduled_kwh[steps]
    records = {r.offer.id: r for r in world.aggregator.store.records()}
    cells: dict[str, tuple[int, int]] = {}
    for i in range(len(world.prosumers)):  # delegated prosumers, and direct ones routed to the FMAN
        for d in range(len(world.device_types)):
            for offer_id in dict.fromkeys(ids[:, i, d].tolist()):
                if offer_id is not None and offer_id in records:
                    cells[offer_id] = (i, d)
    contract = world.config.fman.contract
    awards = settle_awards(world, _counted_results(world, steps))
    periods = []
    for offer_id, record in records.items():
        if offer_id not in cells:
            continue
        i, d = cells[offer_id]
        periods.append(
            settlement_period(
                record.offer,
                delegated=contract,
                metered_kwh=metered[:, i, d],
                schedule=record.schedule,
                baseline_kwh=baselines[:, i, d],
                scheduled_kwh=scheduled[:, i, d],
                covered=ids[:, i, d] == offer_id,
            )
        )
    settlement = settle(
        periods,
        period_start=world.clock.step_start(steps.start),
        period_steps=n_counted,
        slice_s=world.slice_s,
        market_revenue_eur=_aggregator_revenue_cents(world, awards) / 100,
    )
    return RunSettlement(settlement=settlement, baseline=method, submeter=submeter, awards=awards)


# -- the ledger and its sums ---------------------------------------------------------------------
def build_ledger(world: World, *, steps: slice, settlement: RunSettlement | None = None) -> pd.DataFrame:
    """Every transfer of money in the counted `steps` (module docstring), sorted by time.

    `settlement`: the run's `settle_run(world, steps=steps)` when the caller already has it.
    """
    if steps.step not in (None, 1) or not 0 <= steps.start <= steps.stop <= world.n_steps:
        raise LedgerError(f"steps {steps} must be a contiguous slice of the world's {world.n_steps} steps")
    run = settlement if settlement is not None else settle_run(world, steps=steps)
    rows = _Rows()
    _per_step_rows(world, steps, rows)
    _market_rows(world, steps, run, rows)
    _settlement_rows(world, steps, run, rows)
    return rows.frame()


DELIVERY_COLUMNS = (
    "time",
    "award",
    "seller",
    "buyer",
    "session",
    "request_id",
    "price_eur_per_kwh",
    "awarded_kwh",
    "measured_kwh",
    "delivered_kwh",
    "shortfall_kwh",
)


def deliveries_frame(world: World, awards: tuple[AwardDelivery, ...]) -> pd.DataFrame:
    """deliveries.parquet: one row per award of `awards` and step of its delivery span
    (docs/outputs.md): what was awarded, measured and delivered, and the shortfall."""
    parties = _roles(world)
    columns: dict[str, list[Any]] = {name: [] for name in DELIVERY_COLUMNS}
    start = pd.Timestamp(world.start)
    for item in awards:
        n = len(item.measured_kwh)
        d = item.delivery
        columns["time"].extend(start + pd.to_timedelta(np.asarray(item.steps) * world.slice_s, unit="s"))
        columns["award"].extend([item.award.offer_id] * n)
        columns["seller"].extend([_party(parties, item.award.issuer, "award issuer")] * n)
        columns["buyer"].extend([_party(parties, item.result.buyer, "market buyer")] * n)
        columns["session"].extend([item.result.session] * n)
        columns["request_id"].extend([item.result.request_id] * n)
        columns["price_eur_per_kwh"].extend([item.award.price_eur_per_kwh] * n)
        for name, values in (
            ("awarded_kwh", d.awarded_kwh),
            ("measured_kwh", item.measured_kwh),
            ("delivered_kwh", d.delivered_kwh),
            ("shortfall_kwh", d.shortfall_kwh),
        ):
            columns[name].extend(values.tolist())
    frame = {name: pd.Series(values, dtype=object) for name, values in columns.items()}
    frame["time"] = pd.DatetimeIndex(columns["time"], tz="UTC") if columns["time"] else pd.DatetimeIndex([], tz="UTC")
    for name in ("price_eur_per_kwh", "awarded_kwh", "measured_kwh", "delivered_kwh", "shortfall_kwh"):
        frame[name] = np.asarray(columns[name], dtype=float)
    return pd.DataFrame(frame, columns=list(DELIVERY_COLUMNS))


def _cents_of(ledger: pd.DataFrame) -> np.ndarray:
    return np.round(ledger["eur"].to_numpy(dtype=float) * 100).astype(np.int64)


def _role(party: pd.Series) -> pd.Series:
    return party.str.split(":", n=1).str[0]


def ledger_kpis(ledger: pd.DataFrame) -> dict[str, Any]:
    """The money section of kpi.json: sums over the ledger in EUR (docs/outputs.md lists each filter)."""
    cents = _cents_of(ledger)
    frame = pd.DataFrame(
        {"payer": ledger["payer"], "payee": ledger["payee"], "reason": ledger["reason"], "cents": cents}
    )
    received = frame.groupby("payee")["cents"].sum()
    paid = frame.groupby("payer")["cents"].sum()
    net = received.sub(paid, fill_value=0).astype(np.int64)
    roles = _role(pd.Series(net.index, index=net.index))
    by_role = net.groupby(roles).sum()
    by_reason = frame.groupby("reason")["cents"].sum()

    def reason(*names: str, payee_role: str | None = None, payer_role: str | None = None) -> int:
        chosen = frame["reason"].isin(names)
        if payee_role is not None:
            chosen &= _role(frame["payee"]) == payee_role
        if payer_role is not None:
            chosen &= _role(frame["payer"]) == payer_role
        return int(frame.loc[chosen, "cents"].sum())

    figures = {
        "aggregator_margin_eur": int(by_role.get("aggregator", 0)),
        "aggregator_market_revenue_eur": reason("market_delivery", payee_role="aggregator")
        - reason("market_shortfall", payer_role="aggregator"),
        "flexibility_payments_eur": reason("flexibility_payment"),
        "penalties_eur": reason("penalty"),
        "payments_to_prosumers_eur": reason("flexibility_payment") - reason("penalty"),
        "prosumers_net_eur": int(by_role.get("prosumer", 0)),
        "energy_eur": reason("energy_flexible", "energy_other"),
        "energy_flexible_eur": reason("energy_flexible"),
        "market_buyers_pay_eur": reason("market_purchase", "market_surplus", "transport_fee"),
        "market_sellers_receive_eur": reason("market_delivery"),
        "market_direct_prosumers_receive_eur": reason("market_delivery", payee_role="prosumer"),
        "market_shortfall_penalties_eur": reason("market_shortfall"),
        "market_transport_fees_eur": reason("transport_fee"),
        "market_surplus_eur": reason("market_surplus"),
        "dso_market_purchases_eur": reason("market_purchase", payer_role="dso"),
        "dso_compensation_eur": reason("dso_compensation"),
        "dso_tariff_eur": reason("tariff"),
        "dso_net_eur": int(by_role.get("dso", 0)),
        "brp_net_eur": int(by_role.get("brp", 0)),
    }
    return {
        "ledger": {
            "rows": len(frame),
            "total_eur": int(net.sum()) / 100,
            "by_role": {role: int(by_role.get(role, 0)) / 100 for role in PARTY_ROLES},
            "by_party": {str(p): int(v) / 100 for p, v in net.items() if not str(p).startswith("prosumer:")},
            "by_reason": {r: int(by_reason.get(r, 0)) / 100 for r in REASONS},
        },
        **{key: c / 100 for key, c in figures.items()},
    }

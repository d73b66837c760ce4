"""Check 6 of the run-folder checker (tests/check_run_folder.py): market awards settle on delivery.

Written from docs/outputs.md ("deliveries.parquet", "ledger.parquet", kpi.json `market`) alone,
with no project imports (numpy, pandas). `delivery_problems` takes the folder's tables as read
by the checker and lists every way they break the documented settlement:

- per row of deliveries.parquet: delivered within the award and in its direction, and the
  documented rule of `measured_kwh`; shortfall = abs(awarded) - abs(delivered);
- per award: `awarded_kwh` = its schedule minus its default schedule (its line of
  flexoffers.jsonl), `measured_kwh` = metered minus baseline of its offers (its own id, or an
  aggregate bid's `members`) in measurements.parquet;
- ledger: each `market_delivery` row = price x delivered kWh, never more than price x awarded
  kWh, each `market_shortfall` row = the rate x shortfall kWh (to the cent), paid to / by the
  award's seller and naming an award of deliveries.parquet;
- kpi.json `market.awarded_kwh`, `delivered_kwh`, `shortfall_kwh` = the sums of deliveries.parquet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DELIVERY_COLUMNS", "delivery_problems"]

DELIVERY_COLUMNS = (
    "time",
    "award",
    "seller",
    "price_eur_per_kwh",
    "awarded_kwh",
    "measured_kwh",
    "delivered_kwh",
    "shortfall_kwh",
)
TOLERANCE_KWH = 1e-6  # the spec's energy tolerance; also the rule's "within 1e-6 kWh of the award"
_EXACT_KWH = 1e-9  # what the rule computes from the file's own numbers agrees to float precision
_HALF_CENT = 0.5 + 1e-6  # a row's cents are its amount x 100 rounded half to even
_SHOWN = 10


def _utc(times: Any) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns")


def _by_time(schedule: dict[str, Any] | None, slice_s: int) -> pd.Series:
    """A wire schedule's energies indexed by step start (empty without a schedule)."""
    if not schedule:
        return pd.Series(dtype=float)
    energy = schedule["energy"]
    start = pd.Timestamp(schedule["start"]).tz_convert("UTC")
    index = _utc(start + pd.to_timedelta(np.arange(len(energy)) * slice_s, unit="s"))
    return pd.Series(energy, index=index, dtype=float)


def _rule_problems(rows: pd.DataFrame) -> list[str]:
    """Per row: the documented delivery rule and shortfall, from the row's own awarded and measured kWh."""
    a, m, d, short = (rows[c].to_numpy(dtype=float) for c in DELIVERY_COLUMNS[4:])
    rule = np.where(a > 0, np.minimum(np.maximum(m, 0), a), np.where(a < 0, np.maximum(np.minimum(m, 0), a), 0.0))
    rule = np.where((a != 0) & (np.abs(m - a) <= TOLERANCE_KWH), a, rule)
    wrong = (np.abs(d) > np.abs(a) + _EXACT_KWH) | (d * a < 0) | (np.abs(d - rule) > _EXACT_KWH)
    wrong |= (short < 0) | (np.abs(short - (np.abs(a) - np.abs(d))) > _EXACT_KWH)
    return [
        f"deliveries.parquet row {i} (award {rows.at[i, 'award']}, {rows.at[i, 'time']}): awarded {a[i]:.6f}, "
        f"measured {m[i]:.6f}, delivered {d[i]:.6f}, shortfall {short[i]:.6f} kWh break the delivery rule"
        for i in np.flatnonzero(wrong)[:_SHOWN]
    ]


def _award_problems(
    rows: pd.DataFrame, offer: Callable[[str], dict[str, Any] | None], meters: pd.DataFrame
) -> list[str]:
    """Per award: awarded = its schedule minus its default; measured = its offers' metered minus baseline."""
    problems, links = [], []
    for award, group in rows.groupby("award", sort=False):
        line = offer(str(award))
        if line is None:
            problems.append(f"award {award}: no line in flexoffers.jsonl")
            continue
        links += [(award, offer_id) for offer_id in line.get("members") or [award]]
        slice_s = int(line["slice_s"])
        sold = _by_time(line.get("schedule"), slice_s).sub(
            _by_time(line.get("default_schedule"), slice_s), fill_value=0
        )
        listed = pd.Series(group["awarded_kwh"].to_numpy(dtype=float), index=group["time"])
        gap = sold.sub(listed, fill_value=0).abs()
        if len(gap) and gap.max() > TOLERANCE_KWH:
            problems.append(f"award {award}: awarded_kwh is not its schedule minus its default at {gap.idxmax()}")
    meters = meters.dropna(subset=["flex_offer_id"])
    meters = meters.assign(time=_utc(meters["time"]), net=meters["energy_kwh"] - meters["baseline_kwh"])
    net = meters.groupby(["flex_offer_id", "time"], as_index=False)["net"].sum()
    link = pd.DataFrame(links, columns=["award", "flex_offer_id"])
    per_step = link.merge(net, on="flex_offer_id").groupby(["award", "time"])["net"].sum()
    metered = per_step.reindex(pd.MultiIndex.from_arrays([rows["award"], rows["time"]]), fill_value=0.0).to_numpy()
    measured = rows["measured_kwh"].to_numpy(dtype=float)
    problems += [
        f"deliveries.parquet row {i} (award {rows.at[i, 'award']}, {rows.at[i, 'time']}): measured_kwh "
        f"{measured[i]:.6f}, measurements.parquet shows {metered[i]:.6f}"
        for i in np.flatnonzero(np.abs(metered - measured) > TOLERANCE_KWH)[:_SHOWN]
    ]
    return problems


def _ledger_problems(awards: pd.DataFrame, ledger: pd.DataFrame, rate: float) -> list[str]:
    """Each award's ledger rows: price x delivered (never above price x awarded), rate x shortfall."""
    problems = []
    for reason, party, want in (
        ("market_delivery", "payee", awards["price"] * awards["delivered"]),
        ("market_shortfall", "payer", rate * awards["shortfall"]),
    ):
        these = ledger[ledger["reason"] == reason]
        named = these["award"] if "award" in these.columns else pd.Series(None, index=these.index, dtype=object)
        known = named.isin(awards.index)
        for i in these.index[~known][:_SHOWN]:
            problems.append(f"ledger.parquet row {i} ({reason}): award {named[i]!r} is not in deliveries.parquet")
        for i in these.index[known & (these[party] != named.map(awards["seller"]))][:_SHOWN]:
            problems.append(f"ledger.parquet row {i} ({reason}): the {party} is not the award's seller")
        for award, n in named[known].value_counts().items():
            if n > 1:
                problems.append(f"award {award}: {n} {reason} rows (one per award)")
        cents = these.loc[known, "cents"].groupby(named[known]).sum().reindex(awards.index, fill_value=0)
        for award in awards.index[((cents - 100 * want).abs() > _HALF_CENT).to_numpy()][:_SHOWN]:
            problems.append(f"award {award}: {reason} {cents[award] / 100:.2f} EUR, not {want[award]:.4f} to the cent")
        if reason == "market_delivery":
            over = (cents > 100 * awards["price"] * awards["awarded"] + _HALF_CENT).to_numpy()
            problems += [f"award {x}: its delivered payment exceeds price x awarded kWh" for x in awards.index[over]]
    return problems


def delivery_problems(
    rows: pd.DataFrame,
    *,
    market: dict[str, Any],
    offer: Callable[[str], dict[str, Any] | None],
    meters: pd.DataFrame,
    ledger: pd.DataFrame,
) -> tuple[list[str], str]:
    """Every problem of the folder's settlement on delivery, and a one-line summary.

    `rows`: deliveries.parquet; `market`: kpi.json's `market`; `offer`: an id -> its line of
    flexoffers.jsonl (or aggregates.jsonl); `meters`: measurements.parquet; `ledger`: the
    ledger's rows with integer `cents`.
    """
    missing = [c for c in DELIVERY_COLUMNS if c not in rows.columns]
    if missing:
        raise KeyError(f"deliveries.parquet has no column(s) {', '.join(missing)}")
    rate = float(market["shortfall_penalty_eur_per_kwh"])
    rows = rows.reset_index(drop=True).assign(time=lambda f: _utc(f["time"]))
    problems = _rule_problems(rows) + _award_problems(rows, offer, meters)
    awards = (
        rows.assign(delivered=rows["delivered_kwh"].abs(), awarded=rows["awarded_kwh"].abs())
        .groupby("award")
        .agg(
            price=("price_eur_per_kwh", "first"),
            seller=("seller", "first"),
            awarded=("awarded", "sum"),
            delivered=("delivered", "sum"),
            shortfall=("shortfall_kwh", "sum"),
        )
    )
    problems += _ledger_problems(awards, ledger, rate)
    for key, column in (("awarded_kwh", "awarded"), ("delivered_kwh", "delivered"), ("shortfall_kwh", "shortfall")):
        total = float(awards[column].sum())
        if abs(float(market[key]) - total) > 1e-5:
            problems.append(f"kpi.json market.{key} = {market[key]}, deliveries.parquet sums to {total:.6f}")
    summary = (
        f"{len(awards)} awards: awarded {awards['awarded'].sum():.3f} kWh, delivered "
        f"{awards['delivered'].sum():.3f}, shortfall {awards['shortfall'].sum():.3f} (penalty {rate} EUR/kWh)"
    )
    return problems, summary

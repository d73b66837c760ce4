"""Independent checker of a run folder: `python tests/check_run_folder.py RUN_DIR`.

Written only from docs/outputs.md and docs/spec/flexoffer.md (wire format v1), with no
project imports (stdlib, numpy, pandas), so that it checks the run folder against what the
documents promise rather than against the code that wrote it. It prints one line per check
(`ok` or `FAIL`, with the offer, schedule or row that failed) and exits 0 when every check
passes, 1 otherwise (2 when RUN_DIR is not a folder).

"Now" of implicit time flexibility (`start_after` absent, `start_before_duration_s`) is, as
the spec says, the time of the check: a schedule's `assigned_at`, else (default schedules) the
offer's `created_at`. A schedule refers to the profiles as the offer lists them (a
`conditional` offer's schedule runs one of its submitted profiles). Check 6 (market awards
settled on delivery) lives in tests/check_deliveries.py, a part of this checker.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__:  # imported as tests.check_run_folder
    from .check_deliveries import delivery_problems
else:  # run as a script: its folder is on sys.path
    from check_deliveries import delivery_problems

__all__ = ["CheckResult", "check_run_folder", "main"]

TOLERANCE_KWH = 1e-6  # the spec's tolerance for every energy comparison
PERIODS = ("warmup", "window", "tail")  # docs/outputs.md "Periods", in their order in time
_SHOWN = 10  # problems printed per failed check


@dataclass
class CheckResult:
    """The outcome of one check: what was checked, how many items, and every problem found."""

    name: str
    summary: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """The check's printed line, and up to _SHOWN problems under it when it failed."""
        if self.ok:
            return [f"ok   {self.name}: {self.summary}"]
        head = f"FAIL {self.name}: {len(self.problems)} problem(s); {self.summary}"
        shown = [f"     - {p}" for p in self.problems[:_SHOWN]]
        if len(self.problems) > _SHOWN:
            shown.append(f"     ... and {len(self.problems) - _SHOWN} more")
        return [head, *shown]


class _FolderError(Exception):
    """A file of the run folder is missing or unreadable (the check that needs it fails)."""


# -- reading ---------------------------------------------------------------------------------
def _time(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected an ISO 8601 time, got {text!r}")
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"{where}: time {text!r} has no UTC offset")
    return t.astimezone(UTC)


def _opt_time(value: Any, where: str) -> datetime | None:
    return None if value is None else _time(value, where)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise _FolderError(f"{path.name} is missing")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _FolderError(f"{path.name} line {n}: malformed JSON ({exc})") from None
        if not isinstance(item, dict):
            raise _FolderError(f"{path.name} line {n}: not a JSON object")
        out.append(item)
    return out


@dataclass
class _Folder:
    """The run folder's offers, aggregates and schedules as parsed JSON, by id."""

    offers: dict[str, dict[str, Any]]
    aggregates: dict[str, dict[str, Any]]
    schedules: dict[str, dict[str, Any]]
    problems: list[str]  # structural problems found while reading (duplicate ids, missing ids)

    def offer(self, offer_id: str) -> dict[str, Any] | None:
        return self.offers.get(offer_id) or self.aggregates.get(offer_id)


def _read_folder(run_dir: Path) -> _Folder:
    problems: list[str] = []
    offers: dict[str, dict[str, Any]] = {}
    aggregates: dict[str, dict[str, Any]] = {}
    for name, into in (("flexoffers.jsonl", offers), ("aggregates.jsonl", aggregates)):
        for n, item in enumerate(_read_jsonl(run_dir / name), start=1):
            offer_id = item.get("id")
            if not isinstance(offer_id, str):
                problems.append(f"{name} line {n}: the offer has no id")
                continue
            if offer_id in offers or offer_id in aggregates:
                problems.append(f"{name} line {n}: offer id {offer_id} appears twice")
                continue
            into[offer_id] = item
    schedules: dict[str, dict[str, Any]] = {}
    for n, item in enumerate(_read_jsonl(run_dir / "schedules.jsonl"), start=1):
        offer_id = item.get("flex_offer_id")
        if not isinstance(offer_id, str):
            problems.append(f"schedules.jsonl line {n}: no flex_offer_id")
        elif offer_id in schedules:
            problems.append(f"schedules.jsonl line {n}: a second schedule of {offer_id}")
        else:
            schedules[offer_id] = item
    return _Folder(offers, aggregates, schedules, problems)


# -- feasibility (spec "Schedule (assignment)", rules 1-5) ------------------------------------
def _steps(profile: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per-step lower and upper bounds of a profile: each slice repeated `duration` times."""
    lower: list[float] = []
    upper: list[float] = []
    for s in profile.get("slices") or []:
        duration = int(s["duration"])
        lo, hi = s["energy"]
        lower += [float(lo)] * duration
        upper += [float(hi)] * duration
    return np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)


def _window(offer: dict[str, Any], now: datetime | None) -> tuple[datetime | None, datetime | None]:
    """Earliest and latest start, resolving implicit time flexibility against `now`."""
    earliest = _opt_time(offer.get("start_after"), "start_after") or now
    latest = _opt_time(offer.get("start_before"), "start_before")
    duration_s = offer.get("start_before_duration_s")
    if latest is None and duration_s is not None and now is not None:
        latest = now + timedelta(seconds=int(duration_s))
    return earliest, latest


def _dependency_bounds(points: list[list[float]], d: float) -> list[tuple[float, float]]:
    """The [lower, upper] bounds of one step at accumulated energy d (empty: d is out of range)."""
    pts = [(float(p[0]), float(p[1]), float(p[2])) for p in points]
    if not pts:
        return []
    if len(pts) == 1:
        d0, lo, hi = pts[0]
        return [(lo, hi)] if abs(d - d0) <= TOLERANCE_KWH else []
    out = []
    for (d0, lo0, hi0), (d1, lo1, hi1) in itertools.pairwise(pts):
        if not d0 - TOLERANCE_KWH <= d <= d1 + TOLERANCE_KWH:
            continue
        if d1 - d0 <= 0:
            out += [(lo0, hi0), (lo1, hi1)]
            continue
        f = min(max((d - d0) / (d1 - d0), 0.0), 1.0)
        out.append((lo0 + f * (lo1 - lo0), hi0 + f * (hi1 - hi0)))
    return out


def schedule_problems(offer: dict[str, Any], schedule: dict[str, Any], *, now: datetime | None) -> list[str]:
    """Why `schedule` (start, profile, energy, optional assigned_at) is not feasible for `offer`
    (empty when it is); `now` resolves implicit time flexibility."""
    tol = TOLERANCE_KWH
    slice_s = int(offer.get("slice_s") or 900)
    problems: list[str] = []
    # 1. start on the grid and within the time flexibility window
    start = _time(schedule.get("start"), "start")
    if int(start.timestamp()) % slice_s or start.microsecond:
        problems.append(f"start {start.isoformat()} is not on the {slice_s} s grid")
    earliest, latest = _window(offer, now)
    if earliest is not None and start < earliest:
        problems.append(f"start {start.isoformat()} is before the earliest start {earliest.isoformat()}")
    if latest is not None and start > latest:
        problems.append(f"start {start.isoformat()} is after the latest start {latest.isoformat()}")
    # 2. an existing profile, and one energy per step
    profiles = offer.get("profiles") or []
    p = schedule.get("profile")
    if not isinstance(p, int) or not 0 <= p < len(profiles):
        return [*problems, f"profile {p!r} is not one of the offer's {len(profiles)} profile(s)"]
    profile = profiles[p]
    lower, upper = _steps(profile)
    x = np.asarray(schedule.get("energy") or [], dtype=float)
    if len(x) != len(lower):
        return [*problems, f"energy has {len(x)} steps, profile {p} has {len(lower)}"]
    # 3. per-step slice bounds
    for i in np.flatnonzero(x < lower - tol):
        problems.append(f"energy[{i}] = {x[i]:.9g} kWh is below the slice's lower bound {lower[i]:.9g} kWh")
    for i in np.flatnonzero(x > upper + tol):
        problems.append(f"energy[{i}] = {x[i]:.9g} kWh is above the slice's upper bound {upper[i]:.9g} kWh")
    # 4. total energy, polytope, dependency
    total = float(x.sum())
    bounds = profile.get("total_energy")
    if bounds is not None and not float(bounds[0]) - tol <= total <= float(bounds[1]) + tol:
        problems.append(f"sum(energy) = {total:.9g} kWh is outside total_energy [{bounds[0]}, {bounds[1]}] kWh")
    polytope = profile.get("polytope")
    if polytope is not None:
        a = np.asarray(polytope["A"], dtype=float).reshape(-1, len(x))
        b = np.asarray(polytope["b"], dtype=float)
        for r in np.flatnonzero(a @ x > b + tol):
            problems.append(f"polytope row {r}: A @ energy = {float(a[r] @ x):.9g} > b = {b[r]:.9g}")
    dependency = profile.get("dependency")
    if dependency is not None:
        if len(dependency) != len(x):
            problems.append(f"dependency has {len(dependency)} entries for {len(x)} steps")
        else:
            d = 0.0
            for i, points in enumerate(dependency):
                options = _dependency_bounds(points, d)
                if not options:
                    problems.append(f"dependency step {i}: accumulated energy {d:.9g} kWh is outside its range")
                elif not any(lo - tol <= x[i] <= hi + tol for lo, hi in options):
                    lo, hi = options[0]
                    problems.append(
                        f"dependency step {i}: energy {x[i]:.9g} kWh outside [{lo:.9g}, {hi:.9g}] at d = {d:.9g}"
                    )
                d += float(x[i])
    # 5. assigned before the deadline
    assigned_at = _opt_time(schedule.get("assigned_at"), "assigned_at")
    deadline = _opt_time(offer.get("assignment_before"), "assignment_before")
    if assigned_at is not None and deadline is not None and assigned_at > deadline:
        problems.append(f"assigned_at {assigned_at.isoformat()} is after assignment_before {deadline.isoformat()}")
    return problems


# -- the checks ------------------------------------------------------------------------------
def check_schedules(folder: _Folder) -> CheckResult:
    """Check 1: every schedule is feasible for its offer (flexoffers.jsonl or aggregates.jsonl)
    and equals the `schedule` of that offer's line; every default schedule is feasible."""
    problems = list(folder.problems)
    for offer_id, schedule in folder.schedules.items():
        offer = folder.offer(offer_id)
        if offer is None:
            problems.append(f"schedule of {offer_id}: no such offer in flexoffers.jsonl or aggregates.jsonl")
            continue
        now = _opt_time(schedule.get("assigned_at"), "assigned_at") or _opt_time(offer.get("created_at"), "created_at")
        problems += [f"schedule of {offer_id}: {p}" for p in schedule_problems(offer, schedule, now=now)]
        if offer.get("schedule") != schedule:
            problems.append(f"schedule of {offer_id}: differs from the `schedule` of its offer's line")
    for offer_id, offer in (*folder.offers.items(), *folder.aggregates.items()):
        if offer.get("schedule") is not None and offer_id not in folder.schedules:
            problems.append(f"offer {offer_id}: has a `schedule` but no line in schedules.jsonl")
        default = offer.get("default_schedule")
        if default is not None:
            now = _opt_time(offer.get("created_at"), "created_at")
            problems += [f"default schedule of {offer_id}: {p}" for p in schedule_problems(offer, default, now=now)]
    every = (*folder.offers.values(), *folder.aggregates.values())
    n_defaults = sum(o.get("default_schedule") is not None for o in every)
    summary = (
        f"{len(folder.schedules)} schedules feasible for their offers "
        f"({len(folder.offers)} offers, {len(folder.aggregates)} aggregates), {n_defaults} default schedules feasible"
    )
    return CheckResult("1 schedules feasible", summary, problems)


def _disaggregation_problems(folder: _Folder, agg_id: str, agg: dict[str, Any]) -> list[str]:
    """Why the members' schedules of one scheduled aggregate are not its exact disaggregation."""
    schedule = agg["schedule"]
    slice_s = int(agg.get("slice_s") or 900)
    start = _time(schedule["start"], "start")
    energy = np.asarray(schedule["energy"], dtype=float)
    total = np.zeros(len(energy))
    problems = []
    for member_id in agg.get("members") or []:
        member = folder.offers.get(member_id)
        if member is None:
            problems.append(f"member {member_id} is not in flexoffers.jsonl")
            continue
        ms = folder.schedules.get(member_id)
        if ms is None:
            problems.append(f"member {member_id} has no schedule in schedules.jsonl")
            continue
        if int(member.get("slice_s") or 900) != slice_s:
            problems.append(f"member {member_id} has slice_s {member.get('slice_s')}, the aggregate {slice_s}")
            continue
        now = _opt_time(ms.get("assigned_at"), "assigned_at") or _opt_time(member.get("created_at"), "created_at")
        problems += [f"member {member_id}: {p}" for p in schedule_problems(member, ms, now=now)]
        offset_s = (_time(ms["start"], "start") - start).total_seconds()
        k0 = int(offset_s // slice_s)
        x = np.asarray(ms["energy"], dtype=float)
        if offset_s % slice_s or k0 < 0 or k0 + len(x) > len(total):
            problems.append(
                f"member {member_id}: its schedule ({ms['start']}, {len(x)} steps) is not within the "
                f"aggregate's ({schedule['start']}, {len(energy)} steps)"
            )
            continue
        total[k0 : k0 + len(x)] += x
    if not problems:
        for k in np.flatnonzero(np.abs(total - energy) > TOLERANCE_KWH):
            problems.append(
                f"step {k} ({(start + timedelta(seconds=int(k) * slice_s)).isoformat()}): members sum to "
                f"{total[k]:.9g} kWh, the aggregate schedule has {energy[k]:.9g} kWh"
            )
    return [f"aggregate {agg_id}: {p}" for p in problems]


def check_aggregates(folder: _Folder) -> CheckResult:
    """Check 2: every offer with `members` and a schedule (aggregates.jsonl, FMAR bids in
    flexoffers.jsonl) is disaggregated exactly onto feasible member schedules; scheduled
    aggregates have disjoint members; an awarded bid matches an aggregate's schedule."""
    problems = []
    owner: dict[str, str] = {}
    n_scheduled = n_bids = 0
    for agg_id, agg in folder.aggregates.items():
        members = agg.get("members")
        if not members:
            problems.append(f"aggregate {agg_id}: no `members`")
            continue
        for member_id in members:
            if member_id not in folder.offers:
                problems.append(f"aggregate {agg_id}: member {member_id} is not in flexoffers.jsonl")
        if agg.get("schedule") is None:
            continue
        n_scheduled += 1
        for member_id in members:
            if member_id in owner:
                problems.append(f"aggregate {agg_id}: member {member_id} is also in aggregate {owner[member_id]}")
            owner[member_id] = agg_id
        problems += _disaggregation_problems(folder, agg_id, agg)
    scheduled = {
        tuple(a["members"]): a["schedule"] for a in folder.aggregates.values() if a.get("members") and a.get("schedule")
    }
    for offer_id, offer in folder.offers.items():
        if not offer.get("members") or offer.get("schedule") is None:
            continue
        n_bids += 1
        problems += _disaggregation_problems(folder, offer_id, offer)
        twin = scheduled.get(tuple(offer["members"]))
        s = offer["schedule"]
        if twin is None:
            problems.append(f"bid {offer_id}: no aggregate in aggregates.jsonl with its members has a schedule")
        elif _time(twin["start"], "start") != _time(s["start"], "start") or not np.allclose(
            twin["energy"], s["energy"], rtol=0.0, atol=TOLERANCE_KWH
        ):
            problems.append(f"bid {offer_id}: its award differs from the schedule of aggregate {twin['flex_offer_id']}")
    summary = (
        f"{n_scheduled} of {len(folder.aggregates)} aggregates and {n_bids} awarded bids disaggregate exactly "
        f"onto {len(owner)} feasible member schedules"
    )
    return CheckResult("2 aggregates disaggregated", summary, problems)


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise _FolderError(f"{path.name} is missing")
    return pd.read_parquet(path)


def _period_problems(name: str, frame: pd.DataFrame) -> tuple[list[str], pd.Series]:
    """Problems of one table's `period` column, and its period per time (first row of each)."""
    if "period" not in frame.columns:
        return [f"{name}: no column `period`"], pd.Series(dtype=object)
    problems = []
    bad = frame.loc[~frame["period"].isin(PERIODS)]
    for _, row in bad.head(_SHOWN).iterrows():
        problems.append(f"{name}: row at {row['time']}: period {row['period']!r} is not one of {', '.join(PERIODS)}")
    if len(bad) > _SHOWN:
        problems.append(f"{name}: {len(bad) - _SHOWN} more rows with an unknown period")
    good = frame.loc[frame["period"].isin(PERIODS), ["time", "period"]]
    per_time = good.groupby("time")["period"].agg(lambda v: sorted(set(v)))
    for t, values in per_time.items():
        if len(values) > 1:
            problems.append(f"{name}: the rows at {t} have periods {', '.join(values)}")
    first = good.drop_duplicates("time").set_index("time")["period"].sort_index()
    rank = first.map(PERIODS.index).to_numpy()
    for k in np.flatnonzero(np.diff(rank) < 0):
        problems.append(
            f"{name}: period {first.iloc[k + 1]!r} at {first.index[k + 1]} comes after {first.iloc[k]!r} "
            f"at {first.index[k]} (order in time: {', '.join(PERIODS)})"
        )
    return problems, first


def check_periods(run_dir: Path) -> CheckResult:
    """Check 5: timeseries.parquet and measurements.parquet carry `period` in {warmup, window,
    tail}, in that order in time, and agree on the period of every step they share."""
    timeseries = _read_parquet(run_dir / "timeseries.parquet")
    measurements = _read_parquet(run_dir / "measurements.parquet")
    problems, ts_period = _period_problems("timeseries.parquet", timeseries)
    more, m_period = _period_problems("measurements.parquet", measurements)
    problems += more
    if not problems:
        if timeseries["time"].duplicated().any():
            problems.append("timeseries.parquet: more than one row per time")
        shared = m_period.index.intersection(ts_period.index)
        for t in m_period.index.difference(ts_period.index)[:_SHOWN]:
            problems.append(f"measurements.parquet: time {t} is not a step of timeseries.parquet")
        differ = shared[(m_period.loc[shared] != ts_period.loc[shared]).to_numpy()]
        for t in differ[:_SHOWN]:
            problems.append(
                f"measurements.parquet: period {m_period[t]!r} at {t}, timeseries.parquet has {ts_period[t]!r}"
            )
    counts = timeseries["period"].value_counts() if "period" in timeseries.columns else pd.Series(dtype=int)
    summary = "timeseries steps per period: " + ", ".join(f"{p} {int(counts.get(p, 0))}" for p in PERIODS)
    return CheckResult("5 periods in order", summary, problems)


# -- money (docs/outputs.md "ledger.parquet" and the kpi.json `money` table) -----------------
ROLES = ("prosumer", "aggregator", "brp", "dso", "fmar")
# reason -> (payer roles, payee roles), from the reasons table
REASONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "energy_flexible": (frozenset({"prosumer"}), frozenset({"brp"})),
    "energy_other": (frozenset({"prosumer"}), frozenset({"brp"})),
    "tariff": (frozenset({"prosumer"}), frozenset({"dso"})),
    "dso_compensation": (frozenset({"dso"}), frozenset({"prosumer"})),
    "market_purchase": (frozenset({"brp", "dso"}), frozenset({"fmar"})),
    "market_surplus": (frozenset({"brp", "dso"}), frozenset({"fmar"})),
    "transport_fee": (frozenset({"brp", "dso"}), frozenset({"dso"})),
    "market_delivery": (frozenset({"fmar"}), frozenset({"aggregator", "prosumer"})),
    "market_shortfall": (frozenset({"aggregator", "prosumer"}), frozenset({"fmar"})),
    "flexibility_payment": (frozenset({"aggregator"}), frozenset({"prosumer"})),
    "penalty": (frozenset({"prosumer"}), frozenset({"aggregator"})),
}
_STEP_REASONS = ("energy_flexible", "energy_other", "tariff", "dso_compensation")
_SETTLEMENT_REASONS = ("flexibility_payment", "penalty")
_CENT_TOLERANCE_EUR = 1e-6


@dataclass
class _Ledger:
    """The ledger's rows with integer cents, and each party's net (received - paid) in cents."""

    rows: pd.DataFrame  # time, payer, payee, reason, eur, cents, payer_role, payee_role
    net: dict[str, int]

    def cents(self, reason: str | None = None, *, payer_role: str | None = None, payee_role: str | None = None) -> int:
        rows = self.rows
        if reason is not None:
            rows = rows[rows["reason"] == reason]
        if payer_role is not None:
            rows = rows[rows["payer_role"] == payer_role]
        if payee_role is not None:
            rows = rows[rows["payee_role"] == payee_role]
        return int(rows["cents"].sum())

    def role_net(self, role: str) -> int:
        return sum(c for party, c in self.net.items() if party.split(":", 1)[0] == role)


def _role(party: Any) -> str | None:
    if not isinstance(party, str) or ":" not in party:
        return None
    role, name = party.split(":", 1)
    return role if role in ROLES and name else None


def _read_ledger(run_dir: Path, problems: list[str]) -> _Ledger:
    """The ledger, listing in `problems` every row that breaks the documented form."""
    frame = _read_parquet(run_dir / "ledger.parquet")
    missing = [c for c in ("time", "payer", "payee", "reason", "eur") if c not in frame.columns]
    if missing:
        raise _FolderError(f"ledger.parquet has no column(s) {', '.join(missing)}")
    rows = frame.reset_index(drop=True).copy()
    eur = pd.to_numeric(rows["eur"], errors="coerce").astype(float)
    finite = np.isfinite(eur.to_numpy())
    cents = np.where(finite, np.round(np.where(finite, eur, 0.0) * 100.0), 0.0)
    rows["cents"] = cents.astype(np.int64)
    rows["payer_role"] = rows["payer"].map(_role)
    rows["payee_role"] = rows["payee"].map(_role)

    def bad(i: int, why: str) -> None:
        r = rows.loc[i]
        problems.append(f"ledger.parquet row {i} ({r['time']}, {r['payer']} -> {r['payee']}, {r['reason']}): {why}")

    for i in np.flatnonzero(~finite):
        bad(int(i), f"eur {rows.at[i, 'eur']!r} is not a finite number")
    off = finite & (np.abs(np.where(finite, eur, 0.0) - cents / 100.0) > _CENT_TOLERANCE_EUR)
    for i in np.flatnonzero(off):
        bad(int(i), f"eur {eur[i]!r} is not a whole number of cents")
    for i in np.flatnonzero(finite & (cents == 0)):
        bad(int(i), "a row of 0 cents (such rows are not written)")
    for i in np.flatnonzero(rows["payer_role"].isna().to_numpy() | rows["payee_role"].isna().to_numpy()):
        bad(int(i), f"payer and payee must be party ids <role>:<name> with role one of {', '.join(ROLES)}")
    for reason, (payers, payees) in REASONS.items():
        these = rows["reason"] == reason
        wrong = these & ~(rows["payer_role"].isin(payers) & rows["payee_role"].isin(payees))
        for i in np.flatnonzero(wrong.to_numpy()):
            bad(int(i), f"{reason} is paid by {'/'.join(sorted(payers))} to {'/'.join(sorted(payees))}")
    for i in np.flatnonzero(~rows["reason"].isin(list(REASONS)).to_numpy()):
        bad(int(i), f"unknown reason {rows.at[i, 'reason']!r}")
    # A row pays out of its payer and into its payee, each side counted where it names a party:
    # a row without a payee takes money out of the world, and the nets no longer sum to 0.
    net: dict[str, int] = {}
    for column, sign in (("payee", 1), ("payer", -1)):
        named = rows.loc[rows[column].map(lambda p: isinstance(p, str) and bool(p))]
        for party, c in named.groupby(column)["cents"].sum().items():
            net[str(party)] = net.get(str(party), 0) + sign * int(c)
    return _Ledger(rows, net)


def _counted_times(run_dir: Path) -> tuple[pd.DatetimeIndex, pd.Timestamp] | None:
    """The counted steps (window + tail) of timeseries.parquet and their end, when it has periods."""
    ts = _read_parquet(run_dir / "timeseries.parquet")
    if "period" not in ts.columns or len(ts) < 2:
        return None
    times = pd.DatetimeIndex(ts.loc[ts["period"].isin(("window", "tail")), "time"]).sort_values()
    if times.empty:
        return None
    step = pd.DatetimeIndex(ts["time"]).sort_values().to_series().diff().min()
    return times, times[-1] + step


def _market_cents(run_dir: Path, column: str) -> int:
    """Sum over market.parquet rows of one money column, each rounded to cents half to even."""
    market = _read_parquet(run_dir / "market.parquet")
    values = pd.to_numeric(market[column], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    return int(np.round(values * 100.0).sum())


def check_ledger(run_dir: Path) -> CheckResult:
    """Check 3: the ledger is well formed and balances to the cent: the parties' nets sum to 0,
    purchases = delivered payments, the FMAR keeps the surplus and the shortfall penalties, the
    aggregator's net is its receipts minus its payments plus penalties; step and settlement
    rows lie where the doc puts them."""
    problems: list[str] = []
    ledger = _read_ledger(run_dir, problems)
    total = sum(ledger.net.values())
    if total != 0:
        problems.append(f"the parties' nets sum to {total / 100:.2f} EUR, not 0")
    purchases, awards = ledger.cents("market_purchase"), ledger.cents("market_delivery")
    if purchases != awards:
        problems.append(
            f"market_purchase rows sum to {purchases / 100:.2f} EUR, market_delivery rows to {awards / 100:.2f}"
        )
    fmar, kept = ledger.role_net("fmar"), ledger.cents("market_surplus") + ledger.cents("market_shortfall")
    if fmar != kept:
        problems.append(
            f"the FMAR's net is {fmar / 100:.2f} EUR, the market_surplus and market_shortfall rows sum to "
            f"{kept / 100:.2f}"
        )
    aggregator = ledger.role_net("aggregator")
    expected = (
        ledger.cents("market_delivery", payee_role="aggregator")
        - ledger.cents("market_shortfall", payer_role="aggregator")
        - ledger.cents("flexibility_payment")
        + ledger.cents("penalty")
    )
    if aggregator != expected:
        problems.append(
            f"the aggregator's net is {aggregator / 100:.2f} EUR, its delivered awards - shortfall penalties - "
            f"flexibility payments + penalties {expected / 100:.2f}"
        )
    for reason, column in (("market_surplus", "surplus_eur"), ("transport_fee", "transport_fees_eur")):
        in_market = _market_cents(run_dir, column)
        if ledger.cents(reason) != in_market:
            problems.append(
                f"{reason} rows sum to {ledger.cents(reason) / 100:.2f} EUR, market.parquet's {column} to "
                f"{in_market / 100:.2f}"
            )
    counted = _counted_times(run_dir)
    if counted is not None:
        times, end = counted
        rows = ledger.rows
        when = pd.DatetimeIndex(rows["time"])
        outside = rows["reason"].isin(_STEP_REASONS).to_numpy() & ~when.isin(times)
        for i in np.flatnonzero(outside)[:_SHOWN]:
            problems.append(f"ledger.parquet row {i} ({rows.at[i, 'reason']}): time {when[i]} is not a counted step")
        late = rows["reason"].isin(_SETTLEMENT_REASONS).to_numpy() & (when != end)
        for i in np.flatnonzero(late)[:_SHOWN]:
            problems.append(
                f"ledger.parquet row {i} ({rows.at[i, 'reason']}): time {when[i]} is not the end of the "
                f"counted steps {end}"
            )
    summary = (
        f"{len(ledger.rows)} rows, {len(ledger.net)} parties, nets sum to {total / 100:.2f} EUR; "
        f"purchases = delivered payments = {awards / 100:.2f} EUR"
    )
    return CheckResult("3 ledger balanced", summary, problems)


def _expected_money(ledger: _Ledger) -> dict[str, int]:
    """Every kpi.json money key of docs/outputs.md's table with its ledger sum (cents; rows: count)."""
    c = ledger.cents
    expected = {
        "money.ledger.rows": len(ledger.rows),
        "money.ledger.total_eur": sum(ledger.net.values()),
    }
    for role in ROLES:
        expected[f"money.ledger.by_role.{role}"] = ledger.role_net(role)
    for party, net in ledger.net.items():
        if party.split(":", 1)[0] != "prosumer":
            expected[f"money.ledger.by_party.{party}"] = net
    for reason in REASONS:
        expected[f"money.ledger.by_reason.{reason}"] = c(reason)
    margin = ledger.role_net("aggregator")
    revenue = c("market_delivery", payee_role="aggregator") - c("market_shortfall", payer_role="aggregator")
    payments = c("flexibility_payment") - c("penalty")
    expected |= {
        "money.aggregator_margin_eur": margin,
        "money.aggregator_market_revenue_eur": revenue,
        "money.flexibility_payments_eur": c("flexibility_payment"),
        "money.penalties_eur": c("penalty"),
        "money.payments_to_prosumers_eur": payments,
        "money.prosumers_net_eur": ledger.role_net("prosumer"),
        "money.energy_eur": c("energy_flexible") + c("energy_other"),
        "money.energy_flexible_eur": c("energy_flexible"),
        "money.market_buyers_pay_eur": c("market_purchase") + c("market_surplus") + c("transport_fee"),
        "money.market_sellers_receive_eur": c("market_delivery"),
        "money.market_direct_prosumers_receive_eur": c("market_delivery", payee_role="prosumer"),
        "money.market_shortfall_penalties_eur": c("market_shortfall"),
        "money.market_transport_fees_eur": c("transport_fee"),
        "money.market_surplus_eur": c("market_surplus"),
        "money.dso_market_purchases_eur": c("market_purchase", payer_role="dso"),
        "money.dso_compensation_eur": c("dso_compensation"),
        "money.dso_tariff_eur": c("tariff"),
        "money.dso_net_eur": ledger.role_net("dso"),
        "money.brp_net_eur": ledger.role_net("brp"),
        "settlement.market_revenue_eur": revenue,
        "fman_kpi.money.market_revenue_eur": revenue,
        "settlement.payments_to_prosumers_eur": payments,
        "fman_kpi.money.prosumer_payments_eur": payments,
        "settlement.margin_eur": margin,
        "fman_kpi.money.aggregator_margin_eur": margin,
        "dso.tariff_income_eur": c("tariff"),
        "dso.cost_eur": -ledger.role_net("dso"),
        "dso.prosumer_rewards_eur": c("market_purchase", payer_role="dso") + c("dso_compensation") - c("tariff"),
    }
    return expected


def _lookup(kpis: dict[str, Any], key: str) -> Any:
    """The value at a dotted key; party ids may contain dots, so `by_party.` takes the rest."""
    head, _, party = key.partition(".ledger.by_party.")
    parts = head.split(".") + (["ledger", "by_party", party] if party else [])
    value: Any = kpis
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def _leaves(value: Any, prefix: str) -> list[str]:
    if isinstance(value, dict):
        return [k for name, v in value.items() for k in _leaves(v, f"{prefix}.{name}")]
    return [prefix] if isinstance(value, int | float) and not isinstance(value, bool) else []


def check_kpi_money(run_dir: Path) -> CheckResult:
    """Check 4: every money figure of kpi.json equals its ledger sum to the cent (docs/outputs.md's
    table), and `money` holds no figure the table does not define."""
    if not (run_dir / "kpi.json").is_file():
        raise _FolderError("kpi.json is missing (an incomplete run)")
    kpis = json.loads((run_dir / "kpi.json").read_text())
    ledger = _read_ledger(run_dir, [])
    expected = _expected_money(ledger)
    problems = []
    for key, want in expected.items():
        try:
            got = _lookup(kpis, key)
        except KeyError:
            problems.append(f"kpi.json has no {key}")
            continue
        if isinstance(got, bool) or not isinstance(got, int | float) or not math.isfinite(got):
            problems.append(f"kpi.json {key} = {got!r} is not a number")
        elif key == "money.ledger.rows":
            if got != want:
                problems.append(f"kpi.json {key} = {got}, the ledger has {want} rows")
        elif round(got * 100) != want:
            problems.append(f"kpi.json {key} = {got:.2f} EUR, its ledger sum is {want / 100:.2f} EUR")
    for key in _leaves(kpis.get("money", {}), "money"):
        if key not in expected:
            problems.append(f"kpi.json {key} is not a ledger sum of docs/outputs.md's table")
    return CheckResult("4 kpi money = ledger", f"{len(expected)} money figures equal their ledger sums", problems)


# -- market awards settled on delivery (docs/outputs.md "deliveries.parquet") ----------------
def check_deliveries(folder: _Folder, run_dir: Path) -> CheckResult:
    """Check 6: awards settle on delivery (tests/check_deliveries.py): delivered within the award
    and in its direction, as the meters show; payments = price x delivered, never above the
    award; penalties = rate x shortfall; kpi.json's market sums agree."""
    if not (run_dir / "kpi.json").is_file():
        raise _FolderError("kpi.json is missing (an incomplete run)")
    problems, summary = delivery_problems(
        _read_parquet(run_dir / "deliveries.parquet"),
        market=json.loads((run_dir / "kpi.json").read_text())["market"],
        offer=folder.offer,
        meters=_read_parquet(run_dir / "measurements.parquet"),
        ledger=_read_ledger(run_dir, []).rows,
    )
    return CheckResult("6 awards settled on delivery", summary, problems)


# -- running ---------------------------------------------------------------------------------
def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; a missing or malformed file fails that check instead of stopping the run."""
    try:
        return check()
    except (_FolderError, ValueError, KeyError, TypeError) as exc:
        return CheckResult(name, "could not be checked", [f"{type(exc).__name__}: {exc}"])


def check_run_folder(run_dir: Path) -> list[CheckResult]:
    """Every check of the run folder, in order."""
    folder: _Folder | None = None
    results = []

    def with_folder(check: Callable[[_Folder], CheckResult]) -> Callable[[], CheckResult]:
        def run() -> CheckResult:
            nonlocal folder
            if folder is None:
                folder = _read_folder(run_dir)
            return check(folder)

        return run

    results.append(_guarded("1 schedules feasible", with_folder(check_schedules)))
    results.append(_guarded("2 aggregates disaggregated", with_folder(check_aggregates)))
    results.append(_guarded("3 ledger balanced", lambda: check_ledger(run_dir)))
    results.append(_guarded("4 kpi money = ledger", lambda: check_kpi_money(run_dir)))
    results.append(_guarded("5 periods in order", lambda: check_periods(run_dir)))
    results.append(_guarded("6 awards settled on delivery", with_folder(lambda f: check_deliveries(f, run_dir))))
    return results


def main(argv: Iterable[str] | None = None) -> int:
    """Print one line per check; 0 when all pass, 1 otherwise, 2 on a wrong command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python tests/check_run_folder.py RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    if not run_dir.is_dir():
        print(f"check_run_folder: {run_dir} is not a folder", file=sys.stderr)
        return 2
    results = check_run_folder(run_dir)
    for result in results:
        for line in result.lines():
            print(line)
    failed = [r.name for r in results if not r.ok]
    tail = f"; failed: {', '.join(failed)}" if failed else ""
    print(f"{len(results) - len(failed)} of {len(results)} checks passed{tail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The independent run-folder checker (tests/check_run_folder.py) on each site's default run.

Each site's default run (one day) is written once per module; the checker runs on it as a
subprocess and must pass. Then copies of the folder are corrupted one way each (an infeasible
schedule, a member schedule that no longer sums to its aggregate, ledger rows that break the
balance, a kpi.json money figure one cent off, periods out of order, an award delivered beyond
what was awarded or not as the meters show, a penalty without a shortfall) and the checker
must fail, naming what broke. A property test shows that the checker's feasibility
rules, written from the spec's text alone, agree with the platform's `check_schedule`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atp.flexoffer import check_schedule, encode
from sim.app import run
from tests.check_run_folder import schedule_problems
from tests.strategies import cases, feasible_schedule
from tests.test_world import config_for

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT / "tests" / "check_run_folder.py"


@pytest.fixture(scope="module", params=["foss", "esr", "sww"])
def site_folder(request, tmp_path_factory) -> Path:
    """The run folder of one site's default run (scenario=<site>, one day), without the report."""
    out = tmp_path_factory.mktemp(f"checked-{request.param}")
    run(config_for(f"scenario={request.param}", "output.report=false"), out)
    return out


def check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECKER), str(folder)], capture_output=True, text=True, cwd=ROOT, check=False
    )


def fail_lines(proc: subprocess.CompletedProcess) -> str:
    """The FAIL lines of the checker's output with the problems listed under them."""
    return "\n".join(line for line in proc.stdout.splitlines() if line.startswith(("FAIL", "     ")))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))


def steps(profile: dict) -> list[tuple[float, float]]:
    return [tuple(s["energy"]) for s in profile["slices"] for _ in range(s["duration"])]


def replace_schedule(folder: Path, schedule: dict) -> None:
    """Put `schedule` in schedules.jsonl and in its offer's line (flexoffers or aggregates)."""
    offer_id = schedule["flex_offer_id"]
    lines = read_jsonl(folder / "schedules.jsonl")
    write_jsonl(folder / "schedules.jsonl", [schedule if s["flex_offer_id"] == offer_id else s for s in lines])
    for name in ("flexoffers.jsonl", "aggregates.jsonl"):
        offers = read_jsonl(folder / name)
        for o in offers:
            if o["id"] == offer_id:
                o["schedule"] = schedule
        write_jsonl(folder / name, offers)


@pytest.fixture
def copy(site_folder, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(site_folder, target)
    return target


def test_the_default_run_passes_every_check(site_folder):
    proc = check(site_folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    names = ("1 schedules feasible", "2 aggregates disaggregated", "3 ledger balanced", "4 kpi money = ledger")
    for name in (*names, "5 periods in order", "6 awards settled on delivery"):
        assert f"ok   {name}: " in proc.stdout


def test_an_infeasible_schedule_fails_check_1(copy):
    offers = {o["id"]: o for o in read_jsonl(copy / "flexoffers.jsonl")}
    schedule = next(s for s in read_jsonl(copy / "schedules.jsonl") if s["flex_offer_id"] in offers)
    offer = offers[schedule["flex_offer_id"]]
    upper = steps(offer["profiles"][schedule["profile"]])[0][1]
    schedule["energy"][0] = upper + 0.5
    replace_schedule(copy, schedule)
    proc = check(copy)
    assert proc.returncode == 1
    assert f"schedule of {schedule['flex_offer_id']}: energy[0] = " in fail_lines(proc)
    assert "FAIL 1 schedules feasible" in proc.stdout


def test_a_member_schedule_that_does_not_sum_fails_check_2(copy):
    offers = {o["id"]: o for o in read_jsonl(copy / "flexoffers.jsonl")}
    schedules = {s["flex_offer_id"]: s for s in read_jsonl(copy / "schedules.jsonl")}
    # A member step with room on both sides: moving it keeps the member feasible but breaks the sum.
    found = None
    for agg in read_jsonl(copy / "aggregates.jsonl"):
        if "schedule" not in agg:
            continue
        for member_id in agg["members"]:
            s = schedules[member_id]
            bounds = steps(offers[member_id]["profiles"][s["profile"]])
            for i, (x, (lo, hi)) in enumerate(zip(s["energy"], bounds, strict=True)):
                if lo + 0.02 < x < hi - 0.02:
                    found = agg["id"], s, i
                    break
            if found:
                break
        if found:
            break
    assert found is not None, "no aggregate member has a step strictly inside its bounds"
    agg_id, member, i = found
    member["energy"][i] += 0.01
    replace_schedule(copy, member)
    proc = check(copy)
    assert proc.returncode == 1
    assert "ok   1 schedules feasible" in proc.stdout
    assert "FAIL 2 aggregates disaggregated" in proc.stdout
    assert f"aggregate {agg_id}: step " in fail_lines(proc)


def test_a_ledger_row_without_payee_breaks_the_balance(copy):
    ledger = pd.read_parquet(copy / "ledger.parquet")
    i = int(ledger["eur"].abs().idxmax())
    ledger.loc[i, "payee"] = None
    ledger.to_parquet(copy / "ledger.parquet", index=False)
    proc = check(copy)
    assert proc.returncode == 1
    assert "FAIL 3 ledger balanced" in proc.stdout
    assert f"ledger.parquet row {i} (" in fail_lines(proc)
    assert "the parties' nets sum to" in fail_lines(proc)


def test_a_delivered_payment_a_cent_off_breaks_the_balance_and_the_award(copy):
    ledger = pd.read_parquet(copy / "ledger.parquet")
    paid = ledger.index[ledger["reason"] == "market_delivery"]
    assert len(paid), "the default run pays no market award"
    ledger.loc[paid[0], "eur"] = round(float(ledger.loc[paid[0], "eur"]) + 0.01, 2)
    ledger.to_parquet(copy / "ledger.parquet", index=False)
    proc = check(copy)
    assert proc.returncode == 1
    assert "FAIL 3 ledger balanced" in proc.stdout
    assert "market_purchase rows sum to" in fail_lines(proc)
    assert "FAIL 6 awards settled on delivery" in proc.stdout
    assert f"award {ledger.at[paid[0], 'award']}: market_delivery " in fail_lines(proc)


def test_a_delivery_beyond_the_award_fails_check_6(copy):
    deliveries = pd.read_parquet(copy / "deliveries.parquet")
    i = int(deliveries["awarded_kwh"].abs().idxmax())
    deliveries.loc[i, "delivered_kwh"] = 2 * deliveries.at[i, "awarded_kwh"]
    deliveries.to_parquet(copy / "deliveries.parquet", index=False)
    proc = check(copy)
    assert proc.returncode == 1
    assert "FAIL 6 awards settled on delivery" in proc.stdout
    assert f"deliveries.parquet row {i} (award {deliveries.at[i, 'award']}" in fail_lines(proc)
    assert "break the delivery rule" in fail_lines(proc)


def test_a_measurement_the_meters_do_not_show_fails_check_6(copy):
    deliveries = pd.read_parquet(copy / "deliveries.parquet")
    i = int(deliveries.index[deliveries["awarded_kwh"] == 0][0])  # delivered stays 0: only the meters disagree
    deliveries.loc[i, "measured_kwh"] += 0.5
    deliveries.to_parquet(copy / "deliveries.parquet", index=False)
    proc = check(copy)
    assert proc.returncode == 1
    assert "FAIL 6 awards settled on delivery" in proc.stdout
    assert "measurements.parquet shows" in fail_lines(proc)
    assert "break the delivery rule" not in fail_lines(proc)


def test_a_penalty_without_shortfall_fails_check_6(copy):
    deliveries = pd.read_parquet(copy / "deliveries.parquet")
    short = deliveries.groupby("award")["shortfall_kwh"].sum()
    award = str(short.index[short == 0][0])
    seller = deliveries.loc[deliveries["award"] == award, "seller"].iloc[0]
    ledger = pd.read_parquet(copy / "ledger.parquet")
    fmar = ledger.loc[ledger["reason"] == "market_delivery", "payer"].iloc[0]
    row = {"time": ledger["time"].iloc[0], "payer": seller, "payee": fmar, "reason": "market_shortfall"}
    ledger = pd.concat([ledger, pd.DataFrame([{**row, "eur": 0.01, "award": award}])], ignore_index=True)
    ledger.to_parquet(copy / "ledger.parquet", index=False)
    proc = check(copy)
    assert proc.returncode == 1
    assert "FAIL 6 awards settled on delivery" in proc.stdout
    assert f"award {award}: market_shortfall 0.01 EUR, not 0.0000 to the cent" in fail_lines(proc)


@pytest.mark.parametrize(
    "key", ["money.energy_flexible_eur", "money.ledger.by_role.prosumer", "settlement.margin_eur", "dso.cost_eur"]
)
def test_a_kpi_money_figure_a_cent_off_fails_check_4(copy, key):
    kpis = json.loads((copy / "kpi.json").read_text())
    *path, last = key.split(".")
    section = kpis
    for part in path:
        section = section[part]
    section[last] = round(section[last] + 0.01, 2)
    (copy / "kpi.json").write_text(json.dumps(kpis, indent=2))
    proc = check(copy)
    assert proc.returncode == 1
    assert "ok   3 ledger balanced" in proc.stdout
    assert "FAIL 4 kpi money = ledger" in proc.stdout
    assert f"kpi.json {key} = " in fail_lines(proc)


def test_periods_out_of_order_fail_check_5(copy):
    ts = pd.read_parquet(copy / "timeseries.parquet")
    first, last = ts.index[0], ts.index[-1]
    assert (ts.at[first, "period"], ts.at[last, "period"]) == ("warmup", "tail")
    ts.at[first, "period"] = "tail"
    ts.to_parquet(copy / "timeseries.parquet", index=False)
    proc = check(copy)
    assert proc.returncode == 1
    assert "FAIL 5 periods in order" in proc.stdout
    assert "timeseries.parquet: period 'warmup'" in fail_lines(proc)


@st.composite
def offer_and_schedule(draw):
    """A generated offer and a schedule of it: feasible, or broken one way (energy, start, deadline)."""
    case = draw(cases())
    schedule = draw(feasible_schedule(case))
    how = draw(st.sampled_from(["none", "energy", "start", "off_grid", "late"]))
    if how == "energy":
        i = draw(st.integers(0, len(schedule.energy) - 1))
        energy = list(schedule.energy)
        energy[i] += draw(st.sampled_from([-2.0, -0.3, 0.3, 2.0]))
        schedule = dataclasses.replace(schedule, energy=tuple(energy))
    elif how == "start":
        steps = draw(st.sampled_from([-3, -1, 1, 5, 100]))
        schedule = dataclasses.replace(schedule, start=schedule.start + timedelta(seconds=steps * case.offer.slice_s))
    elif how == "off_grid":
        schedule = dataclasses.replace(schedule, start=schedule.start + timedelta(seconds=60))
    elif how == "late":
        schedule = dataclasses.replace(schedule, assigned_at=schedule.assigned_at + timedelta(hours=30))
    return case.offer, schedule


@given(offer_and_schedule())
def test_the_checker_and_the_platform_agree_on_feasibility(pair):
    offer, schedule = pair
    data = encode(schedule)
    now = schedule.assigned_at or offer.created_at
    theirs = check_schedule(offer, schedule)
    ours = schedule_problems(encode(offer), data, now=now)
    assert bool(ours) == bool(theirs), (ours, theirs)

"""The world against real services (`atp.deployment=services`, sim/deployment.py): SWW runs with
its FMAN and FMAR as `goflex-atp serve` processes on loopback, reached only over HTTP, and its
run folder equals the in-process run's: kpi.json to the last digit, the offers, schedules,
aggregates, market results and ledger; the independent checker passes on it; the services'
stores and logs are in the run folder and no process is left behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from sim.app import run
from sim.config import ConfigError
from tests.check_run_folder import check_run_folder
from tests.test_world import config_for

# half a day of SWW across the evening peak, with 3 h of warm-up and of tail: 72 steps (a full
# default day, 192 steps, gives equal kpi.json too: python -m benchmarks.deployment)
SWW = (
    "scenario=sww",
    "sim.start=2026-01-12T12:00:00Z",
    "sim.days=0.5",
    "sim.warmup_s=10800",
    "sim.tail_s=10800",
    "output.report=false",
)


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory) -> tuple[Path, Path]:
    in_process = tmp_path_factory.mktemp("sww-in-process")
    served = tmp_path_factory.mktemp("sww-services")
    run(config_for(*SWW), in_process)
    run(config_for(*SWW, "atp.deployment=services"), served)
    return in_process, served


def test_kpis_equal_the_in_process_run(both_runs) -> None:
    in_process, served = both_runs
    a = json.loads((in_process / "kpi.json").read_text())
    b = json.loads((served / "kpi.json").read_text())
    assert a["fman"]["planning_rounds"] > 0 and a["offers"]["total"] > 0 and a["market"]["awards"] > 0
    assert a == b


@pytest.mark.parametrize("name", ["flexoffers.jsonl", "schedules.jsonl", "aggregates.jsonl"])
def test_offers_schedules_and_aggregates_equal(both_runs, name) -> None:
    in_process, served = both_runs
    assert (in_process / name).read_text() == (served / name).read_text()


@pytest.mark.parametrize("name", ["market.parquet", "ledger.parquet", "deliveries.parquet", "measurements.parquet"])
def test_market_ledger_and_measurements_equal(both_runs, name) -> None:
    in_process, served = both_runs
    pd.testing.assert_frame_equal(pd.read_parquet(in_process / name), pd.read_parquet(served / name))


def test_the_checker_passes_and_the_services_left_their_files(both_runs) -> None:
    _, served = both_runs
    failed = [(r.name, r.problems[:3]) for r in check_run_folder(served) if not r.ok]
    assert failed == []
    atp = served / "atp"
    assert {"tokens.yaml", "prices.csv", "fman.sqlite", "fmar.sqlite", "fman.log", "fmar.log"} <= {
        p.name for p in atp.iterdir()
    }
    assert (atp / "tokens.yaml").stat().st_mode & 0o077 == 0  # the tokens are the run's secrets
    alive = subprocess.run(["pgrep", "-f", f"sqlite:///{atp}"], capture_output=True, text=True, check=False)
    assert alive.stdout == ""  # both processes stopped


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("atp.deployment=cloud",), "atp.deployment: 'cloud' is not one of in_process, services"),
        (("atp.deployment=services", "dso.strategy=dynamic_tariff"), "dso.strategy=dynamic_tariff is not served"),
        (("atp.deployment=services", "market=two_sided_pool"), "market.mechanism=two_sided_pool is not served"),
    ],
)
def test_what_does_not_travel_over_the_interface_yet_is_refused_by_name(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_for("scenario=sww", *overrides)

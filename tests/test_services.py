"""The ATP as separate processes on loopback: `goflex-atp serve --role fmar` trading on its own
clock, a DSO registering a congestion point and a seller offering over HTTP; an FMAN process
bidding into that market; an FOA process started from examples/foa/prosumer.yaml submitting
its offers to the FMAN and showing its status; and the three on operator clocks, driven
through a morning: the BRP's demand bought from the FMAN's bid of the FOA's offers, the award
reaching the FOA as its schedule, the FOA's metered energy settling its offers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from atp.flexoffer import DefaultSchedule, FlexOffer, Location, Mode, Price, Profile, Slice, encode
from atp.interface import FlexRequest, HttpClient, RequestState
from tests.http_support import wait_until

ROOT = Path(__file__).resolve().parents[1]
TOKENS = {
    "token-of-dso-foss-0123456789": "dso-foss",
    "token-of-seller-a-0123456789": "seller-a",
    "token-of-fman-1-at-fmar-0123": "fman-1",
    "token-of-foss-p017-012345678": "foss-p017",
    "token-of-brp-foss-0123456789": "brp-foss",
}
TOKEN_OF = {p: t for t, p in TOKENS.items()}
OPERATOR = "operator-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path: Path, role: str, *extra: str) -> tuple[subprocess.Popen, str]:
    tokens = tmp_path / f"{role}-tokens.yaml"
    tokens.write_text(yaml.safe_dump({"parties": TOKENS, "operators": [OPERATOR], "grid_operators": ["dso-foss"]}))
    port = _free_port()
    command = [sys.executable, "-m", "atp.cli", "serve", "--role", role, "--port", str(port), "--tokens", str(tokens)]
    command += ["--store", f"sqlite:///{tmp_path / f'{role}.db'}", "--log-level", "warning", *extra]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            httpx.get(f"{url}/openapi.json", timeout=2)
        except httpx.TransportError:
            return proc.poll() is not None
        return True

    assert wait_until(up, timeout_s=30) and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    return proc, url


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    out, err = proc.communicate(timeout=20)
    return out + err


def _seller_offer(start: datetime) -> FlexOffer:
    """Four quarter-hours of 1 kWh each that may be anything in [0, 2] kWh, at 0.05 EUR/kWh."""
    return FlexOffer(
        issuer="seller-a",
        mode=Mode.DIRECT,
        device="heat_pump",
        location=Location("M-A", congestion_point="cp-1"),
        created_at=start - timedelta(minutes=30),
        assignment_before=start,
        start_after=start,
        start_before=start,
        slice_s=900,
        profiles=(Profile((Slice(4, (0.0, 2.0)),)),),
        default_schedule=DefaultSchedule(start, 0, (1.0,) * 4),
        price=Price(per_kwh_deviation=0.05),
    )


@pytest.fixture()
def market(tmp_path) -> Iterator[str]:
    proc, url = _serve(tmp_path, "fmar", "--tick-every", "0.2", "--local-gate-after-s", "2")
    yield url
    _stop(proc)


def test_a_market_process_clears_a_dso_request_on_its_own_clock(market) -> None:
    now = datetime.now(UTC)
    start = now + timedelta(seconds=900 - now.timestamp() % 900) + timedelta(minutes=15)  # a whole step ahead
    seller = HttpClient(market, TOKEN_OF["seller-a"], party="seller-a", retries=0)
    events = []
    stop = seller.subscribe(events.append)
    offer = seller.submit(_seller_offer(start))
    point = {
        "point": "cp-1",
        "dso": "dso-foss",
        "start": encode(start),
        "slice_s": 900,
        "desired_kwh": [-0.5, -0.5, -0.5, -0.5],
        "price_eur_per_kwh": 0.30,
    }
    auth = {"Authorization": f"Bearer {TOKEN_OF['dso-foss']}"}
    with httpx.Client(base_url=market, headers=auth, timeout=10) as http:
        registered = http.post("/doms/congestion_point", json=point)
        assert registered.status_code == 201, registered.text
        assert http.get("/doms/cp-1/prosumers").json()["prosumers"] == ["seller-a"]
        dso = HttpClient(market, TOKEN_OF["dso-foss"], party="dso-foss", retries=0)
        request_id = registered.json()["id"]
        assert wait_until(lambda: dso.get_request(request_id).state is RequestState.CLEARED, timeout_s=20)
        result = dso.get_request(request_id).result
        assert np.allclose(result.cleared_kwh, [-0.5] * 4)  # less consumption: bought, not sold
        assert round(result.buyer_pays_eur * 100) == round(
            (result.sellers_receive_eur + result.transport_fees_eur + result.surplus_eur) * 100
        )
        assert [a.offer_id for a in result.awards] == [offer.id]
        assert wait_until(lambda: any(e.kind == "assigned" and e.offer.id == offer.id for e in events))
        assert np.allclose(seller.get(offer.id).schedule.energy, [0.5] * 4)
        bids = http.get("/doms/cp-1/bids").json()
        assert [b["request_id"] for b in bids] == [request_id]
        status = httpx.get(f"{market}/market/status", headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=10)
        assert status.json()["mechanism"] == "one_sided_pool"
        dso.close()
    stop()
    seller.close()


def test_an_fman_process_bids_into_the_market_and_an_foa_process_offers_to_it(tmp_path, market) -> None:
    (tmp_path / "fman-at-fmar.token").write_text(TOKEN_OF["fman-1"])
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = ["time,eur_per_kwh"] + [f"{(day + timedelta(hours=h)).isoformat()},0.60" for h in range(72)]
    (tmp_path / "prices.csv").write_text("\n".join(rows) + "\n")
    fman, fman_url = _serve(
        tmp_path,
        "fman",
        "--prices", str(tmp_path / "prices.csv"),
        "--plan-every", "0.5",
        "--market", market,
        "--market-party", "fman-1",
        "--market-token-file", str(tmp_path / "fman-at-fmar.token"),
    )  # fmt: skip
    config = yaml.safe_load((ROOT / "examples" / "foa" / "prosumer.yaml").read_text())
    config["prosumer"]["receiver"] = fman_url  # a direct prosumer: its FMAN trades for it on the market
    (tmp_path / "foa.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "foa.token").write_text(TOKEN_OF["foss-p017"])
    devices = tmp_path / "devices"
    devices.mkdir()
    departure = (datetime.now(UTC) + timedelta(hours=8)).isoformat()
    readings = {
        "ev-1": {"plugged_in": True, "now_energy_kwh": 20.0, "target_energy_kwh": 40.0, "departure": departure},
        "hp-1": {"indoor_temp_c": 21.0, "heat_on": False, "outdoor_temp_forecast_c": [3.0] * 100},
    }
    (devices / "readings.json").write_text(json.dumps(readings))
    foa_cmd = [sys.executable, "-m", "atp.cli", "foa", "--config", str(tmp_path / "foa.yaml")]
    foa_cmd += ["--token-file", str(tmp_path / "foa.token"), "--devices", str(devices), "--every", "0.5"]
    foa = subprocess.Popen(foa_cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = foa.stdout.readline()
        assert "status on " in line, line + (foa.stderr.read() if foa.poll() is not None else "")
        status_url = line.strip().rsplit("status on ", 1)[1]
        operator = {"Authorization": f"Bearer {OPERATOR}"}

        def offered() -> list[dict]:
            return httpx.get(f"{fman_url}/flexoffer", headers=operator, timeout=10).json()

        assert wait_until(lambda: {o["device"] for o in offered()} == {"ev", "heat_pump"}, timeout_s=30)
        assert all(o["issuer"] == "foss-p017" and o["mode"] == "direct" for o in offered())
        status = httpx.get(status_url, timeout=10).json()
        assert status["issuer"] == "foss-p017" and set(status["devices"]) == {"ev-1", "hp-1"}
        assert status["errors"] == [] and {o["state"] for o in status["offers"]} <= {"accepted", "assigned"}
        # The FMAN bids the direct offers into the market as its own (party fman-1 there).
        at_market = lambda: httpx.get(f"{market}/flexoffer", headers=operator, timeout=10).json()  # noqa: E731
        assert wait_until(lambda: any(o["issuer"] == "fman-1" for o in at_market()), timeout_s=30)
    finally:
        foa.terminate()
        foa.communicate(timeout=20)
        log = _stop(fman)
    assert "Traceback" not in log, log


def _at(url: str, method: str, path: str, body: object = None) -> object:
    response = httpx.request(
        method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=60
    )
    assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
    return response.json()


def test_market_fman_and_foa_processes_on_operator_clocks_trade_deliver_and_settle(tmp_path) -> None:
    t0 = datetime(2026, 11, 25, 6, tzinfo=UTC)
    clock = ("--clock", "operator", "--clock-start", encode(t0))
    market, market_url = _serve(tmp_path, "fmar", *clock)
    (tmp_path / "fman-at-fmar.token").write_text(TOKEN_OF["fman-1"])
    rows = ["time,eur_per_kwh"] + [f"{encode(t0 + timedelta(hours=h))},0.60" for h in range(-6, 48)]
    (tmp_path / "prices.csv").write_text("\n".join(rows) + "\n")
    fman, fman_url = _serve(
        tmp_path,
        "fman",
        *clock,
        "--prices", str(tmp_path / "prices.csv"),
        "--market", market_url,
        "--market-party", "fman-1",
        "--market-token-file", str(tmp_path / "fman-at-fmar.token"),
    )  # fmt: skip
    config = yaml.safe_load((ROOT / "examples" / "foa" / "prosumer.yaml").read_text())
    config["prosumer"]["receiver"] = fman_url
    config["devices"] = [d for d in config["devices"] if d["load_type"] == "ev"]  # one device: a clear trade
    (tmp_path / "foa.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "foa.token").write_text(TOKEN_OF["foss-p017"])
    (tmp_path / "operator.token").write_text(OPERATOR)
    devices = tmp_path / "devices"
    devices.mkdir()
    departure = t0 + timedelta(hours=4)
    readings = {
        "ev-1": {"plugged_in": True, "now_energy_kwh": 20.0, "target_energy_kwh": 30.0, "departure": encode(departure)}
    }
    (devices / "readings.json").write_text(json.dumps(readings))
    foa_cmd = [sys.executable, "-m", "atp.cli", "foa", "--config", str(tmp_path / "foa.yaml"), "--clock", "operator"]
    foa_cmd += ["--token-file", str(tmp_path / "foa.token"), "--devices", str(devices)]
    foa_cmd += ["--operator-token-file", str(tmp_path / "operator.token")]
    foa = subprocess.Popen(foa_cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    brp = HttpClient(market_url, TOKEN_OF["brp-foss"], party="brp-foss", retries=0)
    fman_events = HttpClient(market_url, TOKEN_OF["fman-1"], party="fman-1", retries=0)
    try:
        line = foa.stdout.readline()
        assert "status on " in line, line + (foa.stderr.read() if foa.poll() is not None else "")
        foa_url = line.strip().rsplit("status on ", 1)[1].removesuffix("/status")
        tick = lambda now: _at(foa_url, "POST", "/tick", {"now": encode(now)})  # noqa: E731
        assert httpx.post(f"{foa_url}/tick", json={"now": encode(t0)}, timeout=10).status_code == 403

        # 06:00: the FOA offers its EV (direct, priced); the operator opens a session for the morning
        tick(t0)
        [offer] = _at(fman_url, "GET", "/flexoffer")
        assert offer["issuer"] == "foss-p017" and offer["mode"] == "direct"
        start, gate = t0 + timedelta(minutes=15), t0 + timedelta(minutes=10)
        session = {"name": "intraday-0610", "kind": "intraday", "gate_closure": encode(gate),
                   "delivery_start": encode(start), "delivery_end": encode(departure), "slice_s": 900}  # fmt: skip
        _at(market_url, "POST", "/market/sessions", session)
        # the FMAN bids its aggregate of the offer into the market before the gate
        summary = _at(fman_url, "POST", "/fman/plan", {"next_gate": encode(gate)})
        bids = [o for o in _at(market_url, "GET", "/flexoffer") if o["issuer"] == "fman-1"]
        assert len(bids) == 1 and summary["n_assigned"] == 0  # bid, not planned
        # the BRP wants 1 kWh more consumption in each of the first eight steps
        request = brp.post_request(
            FlexRequest(buyer="brp-foss", start=start, slice_s=900, volume_kwh=(1.0,) * 8 + (0.0,) * 7,
                        cutoff_eur_per_kwh=0.90, session="intraday-0610")
        )  # fmt: skip
        for url in (market_url, fman_url):
            _at(url, "PUT", "/operator/clock", {"now": encode(gate)})
        [result] = _at(market_url, "POST", "/market/sessions/intraday-0610/clear")
        assert sum(result["cleared_kwh"]) > 0 and min(result["cleared_kwh"]) >= 0  # bought in the BRP's direction
        cents = lambda eur: round(eur * 100)  # noqa: E731
        assert cents(result["buyer_pays_eur"]) == cents(
            result["sellers_receive_eur"] + result.get("transport_fees_eur", 0.0) + result["surplus_eur"]
        )
        assert brp.get_request(request.id).state is RequestState.CLEARED
        assert [e.kind for e in fman_events.events() if e.offer.id == bids[0]["id"]][-1] == "assigned"
        # the FMAN reads its award and assigns the member: the FOA hears its schedule at its next tick
        assert _at(fman_url, "POST", "/fman/market/sync")["events"] >= 1
        assigned = _at(fman_url, "GET", f"/flexoffer/{offer['id']}")
        assert assigned["state"] == "assigned"
        energy = assigned["schedule"]["energy"]
        first = datetime.fromisoformat(assigned["schedule"]["start"].replace("Z", "+00:00"))

        # 06:15 to the departure: the EV follows its setpoints; each tick posts the step before
        now, metered = start, []
        while now <= departure:
            for url in (market_url, fman_url):
                _at(url, "PUT", "/operator/clock", {"now": encode(now)})
            if metered:
                with (devices / "metered.csv").open("a") as f:
                    f.write(metered[-1])
            answer = tick(now)
            setpoint = answer["setpoints"]["ev-1"]
            k = round((now - first).total_seconds() / 900)
            if 0 <= k < len(energy):
                assert setpoint == pytest.approx(energy[k])  # the schedule the award gave it
            kwh = setpoint if setpoint is not None else 0.0
            if not (devices / "metered.csv").exists():
                (devices / "metered.csv").write_text("time,device,kwh\n")
            metered.append(f"{encode(now)},ev-1,{kwh}\n")
            for url in (market_url, fman_url):
                _at(url, "POST", "/operator/advance", {"until": encode(now)})
            now += timedelta(minutes=15)
        final = _at(fman_url, "GET", f"/flexoffer/{offer['id']}")
        assert final["state"] == "settled"
        bid = _at(market_url, "GET", f"/flexoffer/{bids[0]['id']}")
        assert bid["state"] == "settled"
        status = httpx.get(f"{foa_url}/status", timeout=10).json()
        assert status["errors"] == [] and status["violations"] == []
        series = _at(fman_url, "GET", f"/timeseries/measurement/{encode(first)}/{encode(departure)}?slice_s=900")
        # every step's measurement is the energy the award scheduled: delivered, and settled on it
        assert series["values"][: len(energy)] == pytest.approx(energy) and sum(energy) > 0
    finally:
        brp.close()
        fman_events.close()
        foa.terminate()
        foa.communicate(timeout=20)
        logs = _stop(fman) + _stop(market)
    assert "Traceback" not in logs, logs

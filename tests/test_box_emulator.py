"""The box emulator (`goflex-box`, hil/box.py) as a separate process against a served FMAN over
MQTT (the machine's Mosquitto), both on operator clocks: through lost and duplicated requests
its EV offers once, is assigned, charges what its schedule says and its metered energy settles
the offer; its status shows the faults it suffered."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from atp.flexoffer import encode
from tests.test_services import OPERATOR, ROOT, _serve, _stop

P17 = "foss-p017"


def test_an_emulated_box_offers_charges_its_schedule_and_settles_through_faults(tmp_path) -> None:
    name = f"fman-{secrets.token_hex(4)}"
    t0 = datetime(2026, 11, 25, 16, tzinfo=UTC)
    prices = [f"{encode(t0 + timedelta(hours=h))},{0.05 if h in (3, 4) else 0.30}" for h in range(-4, 30)]
    (tmp_path / "prices.csv").write_text("time,eur_per_kwh\n" + "\n".join(prices) + "\n")
    clock = ("--clock", "operator", "--clock-start", encode(t0))
    fman, url = _serve(tmp_path, "fman", "--name", name, "--mqtt", "mqtt://127.0.0.1:1883",
                       "--prices", str(tmp_path / "prices.csv"), *clock)  # fmt: skip
    config = yaml.safe_load((ROOT / "examples" / "foa" / "prosumer.yaml").read_text())
    config["prosumer"].update(receiver=f"mqtt://127.0.0.1:1883/{name}", mode="delegated")
    for key in ("priority", "base_eur_per_kwh"):
        config["prosumer"].pop(key, None)
    config["devices"] = [d for d in config["devices"] if d["load_type"] == "ev"]
    (tmp_path / "box.yaml").write_text(yaml.safe_dump(config))
    departure = t0 + timedelta(hours=8)
    ev = {"plugged_in": True, "now_energy_kwh": 20.0, "target_energy_kwh": 30.0, "departure": encode(departure)}
    (tmp_path / "initial.json").write_text(json.dumps({"ev-1": ev}))
    (tmp_path / "box.token").write_text("token-of-foss-p017-012345678")
    (tmp_path / "operator.token").write_text(OPERATOR)
    command = [sys.executable, "-m", "hil.box", "--config", str(tmp_path / "box.yaml"),
               "--initial", str(tmp_path / "initial.json"), "--token-file", str(tmp_path / "box.token"),
               "--clock", "operator", "--operator-token-file", str(tmp_path / "operator.token"),
               "--drop-every", "5", "--duplicate-every", "3"]  # fmt: skip
    box = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    try:
        line = box.stdout.readline()
        assert "status on " in line, line + (box.stderr.read() if box.poll() is not None else "")
        box_url = line.strip().rsplit("status on ", 1)[1].removesuffix("/status")

        def tick(now: datetime) -> dict:
            answer = httpx.post(f"{box_url}/tick", json={"now": encode(now)}, headers=operator, timeout=60)
            assert answer.status_code == 200, answer.text
            return answer.json()

        tick(t0)
        [offer] = httpx.get(f"{url}/flexoffer", headers=operator, timeout=10).json()  # once, whatever was resent
        assert httpx.post(f"{url}/fman/plan", headers=operator, timeout=60).json()["n_assigned"] == 1
        schedule = httpx.get(f"{url}/flexoffer/{offer['id']}", headers=operator, timeout=10).json()["schedule"]
        start = datetime.fromisoformat(schedule["start"].replace("Z", "+00:00"))
        end = start + timedelta(minutes=15 * len(schedule["energy"]))
        now = t0 + timedelta(minutes=15)
        while now <= end:
            httpx.put(f"{url}/operator/clock", json={"now": encode(now)}, headers=operator, timeout=10)
            tick(now)
            httpx.post(f"{url}/operator/advance", json={"until": encode(now)}, headers=operator, timeout=10)
            now += timedelta(minutes=15)
        final = httpx.get(f"{url}/flexoffer/{offer['id']}", headers=operator, timeout=10).json()
        assert final["state"] == "settled"
        path = f"/timeseries/measurement/{encode(start)}/{encode(end)}"
        series = httpx.get(f"{url}{path}", params={"slice_s": 900}, headers=operator, timeout=10).json()
        assert series["values"] == pytest.approx(schedule["energy"])  # the EV drew what it was scheduled
        status = httpx.get(f"{box_url}/status", timeout=10).json()
        assert status["faults"]["drop"] >= 1 and status["faults"]["duplicate"] >= 1
        assert status["errors"] == [] and status["violations"] == []
        # the schedule's energy, then (on its own after the schedule) the rest up to the user's target
        assert 20.0 + 0.92 * sum(schedule["energy"]) <= status["devices_state"]["ev-1"]["now_energy_kwh"]
        assert status["devices_state"]["ev-1"]["now_energy_kwh"] == pytest.approx(30.0)
        assert len(httpx.get(f"{url}/flexoffer", headers=operator, params={"limit": 100}, timeout=10).json()) <= 1
    finally:
        box.terminate()
        box.communicate(timeout=20)
        log = _stop(fman)
    assert "Traceback" not in log, log


def test_the_box_refuses_what_it_cannot_emulate(tmp_path) -> None:
    config = yaml.safe_load((ROOT / "examples" / "foa" / "all_devices.yaml").read_text())
    (tmp_path / "box.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "initial.json").write_text("{}")
    (tmp_path / "box.token").write_text("t" * 20)
    command = [sys.executable, "-m", "hil.box", "--config", str(tmp_path / "box.yaml"),
               "--initial", str(tmp_path / "initial.json"), "--token-file", str(tmp_path / "box.token")]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stderr.startswith("goflex-box: device ") and "emulator has no" in done.stderr

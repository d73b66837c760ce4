"""The box emulator (`goflex-box`, hil/box.py) as a separate process against a served FMAN over
MQTT (the machine's Mosquitto), both on operator clocks: through lost and duplicated requests
its EV offers once, is assigned, charges what its schedule says and its metered energy settles
the offer; its status shows the faults it suffered."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import httpx
import pytest
import yaml

from atp.flexoffer import encode
from tests.test_interface_mqtt import ev_lab
from tests.test_services import OPERATOR, ROOT, _stop

P17 = "foss-p017"


def test_an_emulated_box_offers_charges_its_schedule_and_settles_through_faults(tmp_path) -> None:
    lab = ev_lab(tmp_path)  # the EV's cheap hours are 4 h after t0
    fman, url, t0 = lab.fman, lab.url, lab.t0
    (tmp_path / "initial.json").write_text(json.dumps({"ev-1": lab.ev}))
    command = [sys.executable, "-m", "hil.box", "--config", str(lab.config),
               "--initial", str(tmp_path / "initial.json"), "--token-file", str(lab.token),
               "--clock", "operator", "--operator-token-file", str(lab.operator_token),
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

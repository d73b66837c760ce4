"""A stand-alone FOA (atp.foa.service) against a served FMAN over a real socket: it reads its
devices from files, submits offers, executes the schedules it is given, posts what its meters
read, and the offers settle with the metered energy equal to the schedules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import yaml

from atp.data import ArrayDataSource
from atp.flexoffer import OfferState
from atp.fman import AggregationParams, FlexOfferManager, PriceSeries
from atp.foa.config import load_config
from atp.foa.service import FileDeviceIO, FoaService, create_status_app
from atp.interface import HttpClient, OfferStore, create_app
from atp.interface.lifecycle import advance
from atp.interface.serve import ServerThread
from tests.http_support import TOKEN_OF, TOKENS, Clock, wait_until

P17 = "foss-p017"
NOW = datetime(2026, 11, 25, 17, 40, tzinfo=UTC)
STEP = timedelta(minutes=15)


def _config(folder, url: str):
    data = yaml.safe_load(Path("examples/foa/prosumer.yaml").read_text(encoding="utf-8"))
    data["prosumer"].update(mode="delegated", receiver=url)  # an FMAN without a market takes delegated offers
    for key in ("priority", "base_eur_per_kwh"):
        data["prosumer"].pop(key, None)
    path = folder / "foa.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _readings(folder) -> None:
    (folder / "readings.json").write_text(
        json.dumps(
            {
                "ev-1": {
                    "plugged_in": True,
                    "now_energy_kwh": 30.0,
                    "target_energy_kwh": 50.0,
                    "departure": "2026-11-25T23:00:00Z",
                },
                "hp-1": {"indoor_temp_c": 21.0, "heat_on": False},
            }
        )
    )


def test_a_standalone_foa_submits_executes_meters_and_settles(tmp_path) -> None:
    clock = Clock(NOW)
    store = OfferStore("fman", clock=clock, opaque_ids=True)
    app = create_app(store, tokens=TOKENS, sse_keepalive_s=0.2)
    prices = np.full(96, 0.30)
    prices[80:88] = 0.05  # cheap from 20:00 to 22:00
    day = PriceSeries(datetime(2026, 11, 25, tzinfo=UTC), 900, prices)
    fman = FlexOfferManager(store, name="fman", params=AggregationParams())
    weather = ArrayDataSource(
        start=datetime(2026, 11, 25, tzinfo=UTC), slice_s=3600, series={("outdoor_temp_c", None): np.full(72, 2.0)}
    )
    _readings(tmp_path)
    with ServerThread(app, graceful_s=0.2) as server:
        config = _config(tmp_path, server.url)
        client = HttpClient(server.url, TOKEN_OF[P17], party=P17, retries=0)
        foa = FoaService(config, client, FileDeviceIO(tmp_path), data=weather)
        foa.tick(NOW)
        offers = {o.device: o for o in client.active()}
        assert set(offers) == {"ev", "heat_pump"}, offers  # one offer per configured device
        with app.state.lock:
            fman.plan(NOW, day)
        assert wait_until(lambda: all(t.schedule is not None for t in foa.agent.offers.values()))
        schedules = {t.id: t.schedule for t in foa.agent.offers.values()}

        # The devices follow their setpoints; the meter reads what they drew.
        metered = tmp_path / "metered.csv"
        metered.write_text("time,device,kwh\n")
        t = NOW.replace(minute=45)
        drawn: dict[datetime, dict[str, float]] = {}
        end = max(s.start + STEP * len(s.energy) for s in schedules.values())
        while t <= end + STEP:
            clock.now = t
            setpoints = foa.tick(t)
            step = t - timedelta(seconds=t.timestamp() % 900)
            with open(metered, "a", encoding="utf-8") as rows:
                for device, kwh in setpoints.items():
                    if kwh is not None:
                        rows.write(f"{step.isoformat()},{device},{kwh}\n")
                        drawn.setdefault(step, {})[device] = kwh
            readings = json.loads((tmp_path / "readings.json").read_text())
            readings["ev-1"]["now_energy_kwh"] += 0.92 * (setpoints["ev-1"] or 0.0)  # the car charges
            (tmp_path / "readings.json").write_text(json.dumps(readings))
            with app.state.lock:
                advance(store, t)
            t += STEP
        for offer_id, schedule in schedules.items():
            got = client.get(offer_id)
            assert got.state is OfferState.SETTLED, (offer_id, got.state)
            record = next(r for r in store.records() if r.offer.id == offer_id)
            measured = [record.measurements.get(schedule.start + STEP * k) for k in range(len(schedule.energy))]
            np.testing.assert_allclose(measured, schedule.energy, atol=1e-9)  # executed as scheduled, metered
        assert foa.errors == [] and foa.agent.violations == []

        with ServerThread(create_status_app(foa), graceful_s=0.2) as monitor:
            status = httpx.get(f"{monitor.url}/status", timeout=5).json()
        assert status["issuer"] == P17 and set(status["devices"]) == {"ev-1", "hp-1"}
        assert status["pending_submissions"] == 0 and status["errors"] == []
        foa.agent.close()
        client.close()


def test_a_bad_reading_stops_only_its_device_and_is_reported(tmp_path) -> None:
    clock = Clock(NOW)
    store = OfferStore("fman", clock=clock, opaque_ids=True)
    app = create_app(store, tokens=TOKENS, sse_keepalive_s=0.2)
    readings = {
        "ev-1": {"plugged_in": True, "now_energy_kwh": 30.0, "target_energy_kwh": 50.0, "departure": "tomorrow"},
        "hp-1": {"indoor_temp_c": 21.0, "heat_on": False, "outdoor_temp_forecast_c": [2.0] * 20},
    }
    (tmp_path / "readings.json").write_text(json.dumps(readings))
    with ServerThread(app, graceful_s=0.2) as server:
        client = HttpClient(server.url, TOKEN_OF[P17], party=P17, retries=0)
        foa = FoaService(_config(tmp_path, server.url), client, FileDeviceIO(tmp_path))
        setpoints = foa.tick(NOW)
        assert setpoints == {"ev-1": None, "hp-1": None}
        assert len(foa.errors) == 1 and "ev-1" in foa.errors[0] and "departure" in foa.errors[0]
        assert [o.device for o in client.active()] == ["heat_pump"]  # the heat pump still offered
        lines = (tmp_path / "setpoints.jsonl").read_text().splitlines()
        assert [json.loads(line)["device"] for line in lines] == ["ev-1", "hp-1"]
        foa.agent.close()
        client.close()

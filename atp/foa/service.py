"""A stand-alone FOA (D2.1 F2.FOA3, NF2.3): a prosumer's agent that runs on its own, at home or
in the cloud, from its configuration file (`atp.foa.config`).

`FoaService` joins the pieces: the configured devices and their generators, a `FlexOfferAgent`
talking to the receiver the configuration names (any `ExchangeInterface`: `HttpClient` for a
URL), the external-data interface for forecasts (`atp.data`, `atp.foa.forecasts`), and the
devices themselves behind a `DeviceIO` (sensor readings in, setpoints out, metered energy in).
Each `tick(now)`:

1. posts the metered energy of the step that just ended for the offer that covered it;
2. reads every device's sensors and builds its state (`DeviceConfig.state`), taking a heat
   pump's outdoor forecast and a PV system's production forecast from the data source when the
   readings carry none;
3. makes an offer for a device that no open offer covers from the next step on (the agent's
   replacement rule keeps one offer per device and span);
4. hands each device the EMS setpoint of the schedule in force (None: uncontrolled, the device
   follows its own thermostat or user).

`FoaLoop` runs a tick at every step boundary of wall-clock time (or, on an operator clock,
whoever drives time posts `POST /tick`); `create_status_app(service)` serves `GET /status`
for monitoring (devices, offers and their states, pending submissions, violations, errors).
`FileDeviceIO` is the device binding of a folder: `readings.json` (one object per device,
re-read every tick), `setpoints.jsonl` (one line per setpoint) and `metered.csv`
(`time,device,kwh`).
"""

from __future__ import annotations

import csv
import hmac
import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from atp.data import DataSource
from atp.errors import InvalidOfferError
from atp.flexoffer.codec import encode, format_time, parse_wire_time
from atp.foa.agent import FlexOfferAgent
from atp.foa.config import DeviceConfig, FoaConfig
from atp.foa.errors import FoaError
from atp.foa.forecasts import outdoor_forecast_c, pv_forecast_kwh
from atp.foa.generator import GenerationContext
from atp.interface import ExchangeInterface
from atp.interface.clock import times_of
from atp.interface.errors import ConflictError
from atp.interface.periodic import PeriodicTask

__all__ = ["DeviceIO", "FileDeviceIO", "FoaLoop", "FoaService", "create_status_app"]

_log = logging.getLogger(__name__)
_FORECAST_STEPS = 96  # a day of quarter-hours: what the generators look ahead at most


class DeviceIO(Protocol):
    """The FOA's access to its devices (smart plugs, chargers, an xEMS, a lab's test bench)."""

    def readings(self, device: str, now: datetime) -> Mapping[str, Any]:
        """The device's sensor readings now: the keyword arguments of its config's `state`."""
        ...

    def actuate(self, device: str, now: datetime, setpoint_kwh: float | None) -> None:
        """Run the device at `setpoint_kwh` over the step starting `now` (None: uncontrolled)."""
        ...

    def metered_kwh(self, device: str, start: datetime) -> float | None:
        """The energy the device drew over the step starting `start` (None: not metered yet)."""
        ...


class FoaService:
    """One prosumer's FOA, driven by `tick(now)` (module docstring)."""

    def __init__(
        self,
        config: FoaConfig,
        client: ExchangeInterface,
        io: DeviceIO,
        *,
        data: DataSource | None = None,
        max_retries: int = 5,
    ) -> None:
        self.config = config
        self.io = io
        self.data = data
        p = config.prosumer
        self.agent = FlexOfferAgent(
            client,
            issuer=p.issuer,
            location=p.location,
            mode=p.mode,
            generators=config.generators(),
            max_retries=max_retries,
        )
        self.devices: dict[str, DeviceConfig] = {d.name: d for d in config.devices}
        self.setpoints: dict[str, float | None] = {}
        self.errors: list[str] = []
        self.last_tick: datetime | None = None

    @property
    def slice_s(self) -> int:
        """The FOA's step (the prosumer's `slice_s`)."""
        return self.config.prosumer.slice_s

    def context(self, now: datetime) -> GenerationContext:
        """The generation context at `now`: issuer, location, mode and (direct) price."""
        return self.agent.context(now, slice_s=self.slice_s, price_eur_per_kwh=self.config.prosumer.price_eur_per_kwh)

    def state(self, device: DeviceConfig, now: datetime) -> Any:
        """The device's state from its readings, with forecasts from the data source if needed."""
        readings = dict(self.io.readings(device.name, now))
        if self.data is not None:
            ctx = self.context(now)
            if device.load_type == "heat_pump" and "outdoor_temp_forecast_c" not in readings:
                readings["outdoor_temp_forecast_c"] = outdoor_forecast_c(self.data, ctx, _FORECAST_STEPS)
            if device.load_type == "pv" and "forecast_kwh" not in readings:
                kwp = float(getattr(device, "kwp", 0.0))
                readings["forecast_kwh"] = pv_forecast_kwh(self.data, ctx, kwp, _FORECAST_STEPS)
        build = getattr(device, "state", None)
        if build is None:
            raise FoaError(f"device {device.name!r}: load type {device.load_type!r} has no typed config for its state")
        return build(**readings)

    def _step_start(self, now: datetime) -> datetime:
        epoch = now.timestamp()
        return now - timedelta(seconds=epoch % self.slice_s)

    def tick(self, now: datetime) -> dict[str, float | None]:
        """One round at `now` (module docstring); the setpoint handed to each device."""
        step = self._step_start(now)
        previous = step - timedelta(seconds=self.slice_s)
        out: dict[str, float | None] = {}
        for name, device in self.devices.items():
            try:
                metered = self.io.metered_kwh(name, previous)
                if metered is not None and math.isfinite(metered):
                    self.agent.measure(name, previous, metered)
                state = self.state(device, now)
                ctx = self.context(now)
                if self.agent.in_force(name, ctx.first_start) is None:
                    self.agent.trigger(name, state, ctx)
                setpoint = self.agent.setpoint(name, step, state)
            except (FoaError, ValueError, TypeError) as exc:  # one device's bad reading stops only that device
                message = f"{format_time(now)}: {name}: {exc.__class__.__name__}: {exc}"
                self.errors.append(message)
                _log.error("%s", message)
                setpoint = None
            self.io.actuate(name, step, setpoint)
            out[name] = setpoint
        if self.agent.pending:  # submissions lost to the network go out again, with their keys
            self.agent.sync()
        self.setpoints = out
        self.last_tick = now
        return out

    def status(self) -> dict[str, Any]:
        """What a monitor shows: devices and setpoints, offers and their states, what is pending."""
        tracked = [
            {
                "offer_id": t.id,
                "device": t.device,
                "state": t.state.value if t.state is not None else None,
                "scheduled": t.schedule is not None,
            }
            for t in self.agent.offers.values()
        ]
        return {
            "issuer": self.config.prosumer.issuer,
            "receiver": self.config.prosumer.receiver,
            "last_tick": format_time(self.last_tick) if self.last_tick is not None else None,
            "devices": {
                name: {"load_type": d.load_type, "setpoint_kwh": self.setpoints.get(name)}
                for name, d in self.devices.items()
            },
            "offers": tracked,
            "pending_submissions": len(self.agent.pending),
            "violations": list(self.agent.violations[-20:]),
            "errors": self.errors[-20:],
        }


class FoaLoop(PeriodicTask[dict[str, float | None]]):
    """`FoaService.tick` every `every_s` seconds of wall-clock time (default: the FOA's step)."""

    name = "foa"

    def __init__(self, service: FoaService, **options: Any) -> None:
        options.setdefault("every_s", float(service.slice_s))
        super().__init__(**options)
        self.service = service

    def work(self, now: datetime) -> dict[str, float | None]:
        """One tick of the FOA at `now`."""
        return self.service.tick(now)


def create_status_app(
    service: FoaService,
    *,
    operator_token: str | None = None,
    events: Callable[[], int] | None = None,
) -> FastAPI:
    """`GET /status`: the FOA's state for monitoring (no secrets: ids, states, counts).

    With `operator_token` (an FOA on an operator clock, `goflex-atp foa --clock operator`) also
    `POST /tick {"now": T}`: whoever drives time runs one tick at T (never before the last:
    409), after `events` has read the receiver's new events (the schedules it assigned), and
    gets the setpoints handed out; 403 without that token.
    """
    app = FastAPI(title=f"GOFLEX FOA {service.config.prosumer.issuer!r}", docs_url=None, redoc_url=None)
    guard = threading.Lock()

    @app.get("/status", summary="The FOA's devices, offers and errors")
    async def status() -> JSONResponse:
        return JSONResponse(encode(service.status()))

    if operator_token is None:
        return app
    expected = f"Bearer {operator_token}".encode()

    @app.post("/tick", summary="One tick of the FOA at the operator's time")
    async def tick(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return JSONResponse({"error": "ticks are the operator's (use its token)", "details": []}, status_code=403)
        raw = await request.body()
        try:
            now = times_of(json.loads(raw) if raw.strip() else None, ("now",), required=("now",))["now"]
        except json.JSONDecodeError:
            return JSONResponse({"error": "the body is not JSON", "details": []}, status_code=422)
        except InvalidOfferError as exc:
            details = [{"path": p.path, "message": p.message} for p in exc.problems]
            return JSONResponse({"error": str(exc), "details": details}, status_code=422)

        def run() -> dict[str, float | None]:
            with guard:
                if service.last_tick is not None and now < service.last_tick:
                    raise ConflictError(
                        f"now {format_time(now)} is before the last tick {format_time(service.last_tick)}"
                    )
                if events is not None:
                    events()
                return service.tick(now)

        try:
            setpoints = await run_in_threadpool(run)
        except ConflictError as exc:
            return JSONResponse({"error": str(exc), "details": []}, status_code=409)
        return JSONResponse({"now": format_time(now), "setpoints": setpoints})

    return app


class FileDeviceIO:
    """The devices of a folder (a lab's test bench, a gateway that writes files):

    readings.json     {"ev-1": {"plugged_in": true, ...}, "hp-1": {...}}  (re-read every tick;
                      times as ISO 8601 strings, for the fields that are times)
    setpoints.jsonl   written: {"time", "device", "setpoint_kwh"} per device and tick
    metered.csv       read: time,device,kwh (the energy of the step starting `time`)
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FoaError(f"{self.folder}: no such folder")

    def readings(self, device: str, now: datetime) -> Mapping[str, Any]:
        """The device's object in readings.json (times parsed)."""
        path = self.folder / "readings.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FoaError(f"{path}: cannot be read as JSON ({exc.__class__.__name__})") from None
        entry = data.get(device) if isinstance(data, dict) else None
        if not isinstance(entry, dict):
            raise FoaError(f"{path}: has no object for device {device!r}")
        out: dict[str, Any] = {}
        for key, value in entry.items():
            if isinstance(value, str) and key in _TIME_FIELDS:
                try:
                    value = parse_wire_time(value)
                except ValueError as exc:
                    raise FoaError(f"{path}: {device}.{key}: {exc}") from None
            out[key] = value
        return out

    def actuate(self, device: str, now: datetime, setpoint_kwh: float | None) -> None:
        """Append the setpoint to setpoints.jsonl."""
        line = json.dumps({"time": format_time(now), "device": device, "setpoint_kwh": setpoint_kwh})
        with open(self.folder / "setpoints.jsonl", "a", encoding="utf-8") as out:
            out.write(line + "\n")

    def metered_kwh(self, device: str, start: datetime) -> float | None:
        """The row of metered.csv for the device and step (None when there is none)."""
        path = self.folder / "metered.csv"
        if not path.is_file():
            return None
        with open(path, encoding="utf-8", newline="") as rows:
            for row in csv.DictReader(rows):
                try:
                    if row.get("device") == device and parse_wire_time(row.get("time", "")) == start:
                        return float(row["kwh"])
                except (ValueError, KeyError, TypeError):
                    raise FoaError(f"{path}: a row for {device!r} is not time,device,kwh") from None
        return None


_TIME_FIELDS = frozenset({"departure", "pressed_at", "ready_by", "started_at", "plan_start"})

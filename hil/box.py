"""`goflex-box`: an emulated FOA box, a separate process that behaves like a real one: its FOA
(`atp.foa.service.FoaService`, from the box's configuration file) talks to its receiver only by
the public protocol (MQTT, `mqtt://BROKER:PORT/RECEIVER`, or HTTP), and behind it sit emulated
devices instead of a house (`EmulatedDevices`):

- an EV charges what its setpoint says (within its charger and battery), else at full power
  until its target; it leaves (unplugged) at its departure;
- a heat pump heats an RC building (the config's R, C and COP, outdoor temperature constant
  from the readings); without a setpoint its thermostat keeps the setpoint within the deadband;
- a battery stores what its setpoint charges (discharges when negative), within its window.

Other load types are refused at start with the device named (a lab gives those a real device).

    goflex-box --config box.yaml --initial readings.json --token-file box.token \\
        [--clock operator --operator-token-file op.token] [--drop-every N] [--duplicate-every N] \\
        [--garble-every N] [--delay-s S] [--reorder-hold-s S] [--clock-skew-s S]

Faults (hil/faults.py) are injected where its MQTT requests leave; `--clock-skew-s` makes the
box believe it is that much later (or earlier) than its clock says. `GET /status` shows the FOA,
its devices' state and the faults injected; on an operator clock `POST /tick {"now"}` drives it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from atp.errors import AtpError
from atp.flexoffer.codec import parse_wire_time
from atp.foa.config import FoaConfig, load_config
from atp.foa.config_devices import BatteryDeviceConfig, EVDeviceConfig, HeatPumpDeviceConfig
from atp.foa.errors import FoaError
from atp.foa.service import FoaLoop, FoaService, create_status_app

__all__ = ["EmulatedDevices", "main"]


@dataclass
class _Device:
    """One emulated device's state (what its sensors would read) and its metered steps."""

    config: Any
    state: dict[str, Any]
    metered: dict[datetime, float] = field(default_factory=dict)


class EmulatedDevices:
    """The `DeviceIO` of an emulated box (module docstring), on the FOA's step `slice_s`."""

    def __init__(self, config: FoaConfig, initial: Mapping[str, Mapping[str, Any]]) -> None:
        self.slice_s = config.prosumer.slice_s
        self.devices: dict[str, _Device] = {}
        for device in config.devices:
            if not isinstance(device, EVDeviceConfig | HeatPumpDeviceConfig | BatteryDeviceConfig):
                raise FoaError(
                    f"device {device.name!r}: the emulator has no {device.load_type} (ev, heat_pump, battery)"
                )
        for device in config.devices:
            readings = dict(initial.get(device.name) or {})
            if not readings:
                raise FoaError(f"device {device.name!r}: --initial has no readings for it")
            if isinstance(readings.get("departure"), str):
                readings["departure"] = parse_wire_time(readings["departure"])
            self.devices[device.name] = _Device(device, readings)

    def readings(self, device: str, now: datetime) -> Mapping[str, Any]:
        """What the device's sensors read now."""
        d = self.devices[device]
        if isinstance(d.config, EVDeviceConfig):
            return {**d.state, "plugged_in": bool(d.state["plugged_in"]) and now < d.state["departure"]}
        return dict(d.state)

    def actuate(self, device: str, now: datetime, setpoint_kwh: float | None) -> None:
        """Run the device through the step starting `now` at `setpoint_kwh` (None: on its own)."""
        d = self.devices[device]
        h = self.slice_s / 3600
        c = d.config
        if isinstance(c, EVDeviceConfig):
            room = max(0.0, (c.capacity_kwh - d.state["now_energy_kwh"]) / c.charge_efficiency)
            plugged = bool(d.state["plugged_in"]) and now < d.state["departure"]
            if not plugged:
                grid = 0.0
            elif setpoint_kwh is None:  # uncontrolled: full power until the target
                wanted = max(0.0, (d.state["target_energy_kwh"] - d.state["now_energy_kwh"]) / c.charge_efficiency)
                grid = min(c.max_power_kw * h, wanted)
            else:
                grid = min(max(setpoint_kwh, 0.0), c.max_power_kw * h, room)
            d.state["now_energy_kwh"] += grid * c.charge_efficiency
        elif isinstance(c, HeatPumpDeviceConfig):
            t, outdoor = float(d.state["indoor_temp_c"]), float(d.state["outdoor_temp_forecast_c"][0])
            if setpoint_kwh is None:  # the thermostat: on below the band, off above it
                on = t < c.setpoint_c - c.deadband_c / 2 or (d.state["heat_on"] and t < c.setpoint_c + c.deadband_c / 2)
                grid = c.max_power_kw * h if on else 0.0
            else:
                grid = min(max(setpoint_kwh, 0.0), c.max_power_kw * h)
            heat_kw = grid / h * c.cop
            d.state["indoor_temp_c"] = t + h / c.c_kwh_per_k * (heat_kw - (t - outdoor) / c.r_k_per_kw)
            d.state["heat_on"] = grid > 0
        else:  # battery: + charges, - discharges, within its window and powers
            soc = float(d.state["soc_kwh"])
            e = 0.0 if setpoint_kwh is None else setpoint_kwh
            if e >= 0:
                grid = min(e, c.max_charge_kw * h, max(0.0, (c.soc_max_kwh - soc) / c.charge_efficiency))
                d.state["soc_kwh"] = soc + grid * c.charge_efficiency
            else:
                grid = -min(-e, c.max_discharge_kw * h, max(0.0, (soc - c.soc_min_kwh) * c.discharge_efficiency))
                d.state["soc_kwh"] = soc + grid / c.discharge_efficiency
        d.metered[now] = grid

    def metered_kwh(self, device: str, start: datetime) -> float | None:
        """The energy the device drew in the step starting `start` (None: not run then)."""
        return self.devices[device].metered.get(start)

    def status(self) -> dict[str, Any]:
        """Each device's state, for the box's status page."""
        out = {}
        for name, d in self.devices.items():
            state = {k: v for k, v in d.state.items() if not isinstance(v, list | tuple)}
            out[name] = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in state.items()}
        return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="goflex-box", description="An emulated FOA box (hil/box.py).")
    p.add_argument(
        "--config", type=Path, required=True, help="the box's FOA configuration (examples/foa/prosumer.yaml)"
    )
    p.add_argument("--initial", type=Path, required=True, help="JSON: each device's first readings")
    p.add_argument("--token-file", type=Path, required=True, help="file holding the box's token at its receiver")
    p.add_argument("--mqtt-username", help="the box's user at the broker")
    p.add_argument("--mqtt-password-file", type=Path, help="file holding that user's password")
    p.add_argument("--clock", choices=["wall", "operator"], default="wall")
    p.add_argument("--operator-token-file", type=Path, help="with --clock operator: who may post /tick")
    p.add_argument("--every", type=float, help="wall clock: seconds between ticks (default: the box's slice_s)")
    p.add_argument("--status-port", type=int, default=0)
    for flag, kind, text in (
        ("--drop-every", int, "lose every N-th request"),
        ("--duplicate-every", int, "send every N-th request twice"),
        ("--garble-every", int, "corrupt every N-th request"),
        ("--delay-s", float, "send every request this late"),
        ("--reorder-hold-s", float, "hold every request this long (a later one overtakes it)"),
        ("--clock-skew-s", float, "the box's clock is this many seconds ahead (negative: behind)"),
    ):
        p.add_argument(flag, type=kind, default=0, help=text)
    return p


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FoaError(f"{what} {path}: {exc.strerror}") from None


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the box until SIGINT or SIGTERM; one sentence and exit code 2 for a wrong option."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        return _run(args, out)
    except (AtpError, ValueError) as exc:
        print(f"goflex-box: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from atp.interface import HttpClient
    from atp.interface.mqtt import MqttClient, MqttSettings
    from atp.interface.polled import PolledClient
    from atp.interface.serve import ServerThread
    from hil.faults import Faults, FaultyTransport

    config = load_config(args.config)
    try:
        initial = json.loads(_read(args.initial, "--initial"))
    except ValueError as exc:
        raise FoaError(f"--initial {args.initial}: not JSON ({exc})") from None
    devices = EmulatedDevices(config, initial if isinstance(initial, dict) else {})
    token = _read(args.token_file, "--token-file")
    receiver, party = config.prosumer.receiver, config.prosumer.issuer
    faults = Faults(args.drop_every, args.duplicate_every, args.garble_every, args.delay_s, args.reorder_hold_s)
    transport = None
    if receiver.startswith(("mqtt://", "mqtts://")):
        password = _read(args.mqtt_password_file, "--mqtt-password-file") if args.mqtt_password_file else None
        settings, name = MqttSettings.for_receiver(receiver, username=args.mqtt_username, password=password)
        transport = FaultyTransport(settings, faults=faults, receiver=name, party=party, timeout_s=2.0, attempts=5)
        client: Any = MqttClient(settings, receiver=name, token=token, party=party, transport=transport)
    elif faults != Faults():
        raise FoaError("faults are injected on MQTT only (prosumer.receiver mqtt://BROKER:PORT/RECEIVER)")
    else:
        client = HttpClient(receiver, token, party=party)
    operator = _read(args.operator_token_file, "--operator-token-file") if args.operator_token_file else None
    if (args.clock == "operator") != (operator is not None):
        raise FoaError("--clock operator and --operator-token-file go together (who may post /tick)")
    exchange = PolledClient(client) if operator is not None else client
    service = _SkewedService(config, exchange, devices, skew_s=args.clock_skew_s)
    service.extra_status = lambda: {
        "devices_state": devices.status(),
        "faults": dict(transport.injected) if transport is not None else {},
    }
    app = create_status_app(service, operator_token=operator, events=exchange.poll if operator else None)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ServerThread(app, port=args.status_port) as status:
        print(f"box {party} -> {receiver}, {len(devices.devices)} emulated devices, status on {status.url}/status",
              file=out, flush=True)  # fmt: skip
        if operator is not None:
            stop.wait()
        else:
            with FoaLoop(service, **({"every_s": args.every} if args.every else {})):
                stop.wait()
    service.agent.close()
    client.close()
    return 0


class _SkewedService(FoaService):
    """The FOA of a box whose clock is `skew_s` off, with the box's own status beside."""

    def __init__(self, *args: Any, skew_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skew = timedelta(seconds=skew_s)
        self.extra_status: Any = dict

    def tick(self, now: datetime) -> dict[str, float | None]:
        """A tick at what the box believes the time is."""
        return super().tick(now + self.skew)

    def status(self) -> dict[str, Any]:
        """The FOA's status, the devices' state and the faults injected."""
        return {**super().status(), **self.extra_status()}


if __name__ == "__main__":
    raise SystemExit(main())

"""User configuration of a stand-alone FOA (F2.FOA3): the prosumer and its devices, from YAML or JSON.

A configuration file has two top-level keys:

```yaml
prosumer:
  issuer: foss-p017            # the FOA's party name at its receiver
  meter_id: M-017
  bus: 12                      # optional
  congestion_point: cp-3       # optional
  mode: direct                 # direct or delegated
  receiver: http://fman.example/api   # an http(s) URL, mqtt://BROKER:PORT/RECEIVER, or a receiver name
  slice_s: 900                 # optional, divides 86400
  priority: normal             # direct mode only: a number in [0, 1] or low / normal / high
  base_eur_per_kwh: 0.12       # direct mode only
devices:
  - name: ev-1
    load_type: ev
    ...                        # the load type's fields (atp.foa.config_devices lists them)
```

`load_config(path)` reads `.yaml`, `.yml` (with omegaconf) or `.json` and returns a typed
`FoaConfig`, or raises `ConfigError` listing every problem, each naming the file and the key:
`foa.yaml: devices[1].comfort_c: low 23 is above high 20`. Problems are of five classes: a
missing key, a wrong type, a bad range (a field alone, or against another field or the
prosumer's `slice_s`), an unknown load type (the message lists `atp.foa.load_types()`), an
unknown field (the message lists the known ones).

Every built-in load type has a typed device config (`EVDeviceConfig`, `HeatPumpDeviceConfig`,
`BatteryDeviceConfig`, `PvDeviceConfig`, `IndustrialDeviceConfig` in `atp.foa.config_devices`;
`FreezerDeviceConfig`, `WaterHeaterDeviceConfig`, `WetApplianceDeviceConfig` in
`atp.foa.config_appliances`) with `generator()` and `state(...)` (its fixed fields joined with
a sensor's readings). A plug-in load type registers its parser with
`register_device_config(load_type)`; one registered as a generator without a parser keeps its
fields, unchecked, in `GenericDeviceConfig.params`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from atp.errors import Problem, ValidationError
from atp.flexoffer import Location, Mode
from atp.foa.config_appliances import FreezerDeviceConfig, WaterHeaterDeviceConfig, WetApplianceDeviceConfig
from atp.foa.config_devices import (
    BatteryDeviceConfig,
    DeviceConfig,
    EVDeviceConfig,
    GenericDeviceConfig,
    HeatPumpDeviceConfig,
    IndustrialDeviceConfig,
    PvDeviceConfig,
    parse_device,
    register_device_config,
)
from atp.foa.config_reader import MISSING, ConfigSection, complete, type_name
from atp.foa.errors import FoaError
from atp.foa.generator import FlexOfferGenerator
from atp.foa.pricing import PRIORITY_CLASSES, PricingError, priority_of, priority_to_price

__all__ = [
    "BatteryDeviceConfig",
    "ConfigError",
    "ConfigSection",
    "DeviceConfig",
    "EVDeviceConfig",
    "FoaConfig",
    "FreezerDeviceConfig",
    "GenericDeviceConfig",
    "HeatPumpDeviceConfig",
    "IndustrialDeviceConfig",
    "ProsumerConfig",
    "PvDeviceConfig",
    "WaterHeaterDeviceConfig",
    "WetApplianceDeviceConfig",
    "load_config",
    "parse_config",
    "register_device_config",
]


class ConfigError(FoaError, ValidationError):
    """A configuration file is wrong; `problems` lists every problem with its key, the message names the file."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "; ".join(f"{source}: {p}" for p in self.problems[:8])
        more = f" (and {len(self.problems) - 8} more)" if len(self.problems) > 8 else ""
        super().__init__(source, self.problems, message=f"invalid FOA configuration: {lines}{more}")


# -- typed configuration ------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ProsumerConfig:
    """Who the FOA is, where it connects, whom it talks to, and (direct mode) how it prices."""

    issuer: str
    meter_id: str
    bus: int | None = None
    congestion_point: str | None = None
    mode: Mode
    receiver: str
    slice_s: int = 900
    priority: float | None = None
    base_eur_per_kwh: float | None = None

    @property
    def location(self) -> Location:
        """The grid location of the prosumer's offers."""
        return Location(meter_id=self.meter_id, bus=self.bus, congestion_point=self.congestion_point)

    @property
    def receiver_is_url(self) -> bool:
        """True when `receiver` is an http(s) URL or an MQTT one (`mqtt://HOST:PORT/RECEIVER`,
        `mqtts://...`: the receiver's name at that broker), False when it names an in-process
        receiver."""
        return self.receiver.startswith(("http://", "https://", "mqtt://", "mqtts://"))

    @property
    def price_eur_per_kwh(self) -> float | None:
        """The deviation price of direct offers (`priority_to_price`); None in delegated mode."""
        if self.mode is not Mode.DIRECT or self.priority is None or self.base_eur_per_kwh is None:
            return None
        return priority_to_price(self.priority, base_eur_per_kwh=self.base_eur_per_kwh)


@dataclass(frozen=True, kw_only=True)
class FoaConfig:
    """A whole configuration: the prosumer and its devices, and the file it came from."""

    prosumer: ProsumerConfig
    devices: tuple[DeviceConfig, ...]
    source: str = "<config>"

    def generators(self) -> dict[str, FlexOfferGenerator]:
        """One generator per device name, for `FlexOfferAgent(generators=...)`."""
        return {d.name: d.generator() for d in self.devices}


# -- reading ------------------------------------------------------------------------------------
def _parse_prosumer(s: ConfigSection) -> ProsumerConfig | None:
    issuer = s.string("issuer")
    meter_id = s.string("meter_id")
    bus = s.integer("bus", None, low=0)
    congestion_point = s.string("congestion_point", None)
    receiver = s.string("receiver")
    slice_s = s.integer("slice_s", 900, low=1)
    if slice_s is not MISSING and 86_400 % slice_s:
        s.fail("slice_s", f"{slice_s} is out of range: it must divide 86400 (e.g. 900 or 3600)", "range")
        slice_s = MISSING
    mode_text = s.string("mode")
    mode: Any = MISSING
    if mode_text is not MISSING:
        try:
            mode = Mode(mode_text)
        except ValueError:
            s.fail("mode", f"{mode_text!r} is not a mode; use direct or delegated", "range")
    priority: Any = None
    base: Any = None
    if mode is Mode.DIRECT:
        raw, given = s.get("priority", MISSING)
        if given:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                s.fail("priority", f"must be a number in [0, 1] or one of {', '.join(PRIORITY_CLASSES)}", "type")
            else:
                try:
                    priority = priority_of(raw)
                except PricingError as exc:
                    s.fail("priority", str(exc), "range")
        base = s.number("base_eur_per_kwh", low=0.0)
        if priority is None or priority is MISSING or base is MISSING:
            return None
    elif mode is MISSING:
        s.used.update(("priority", "base_eur_per_kwh"))  # judged once the mode is known
    else:
        for name in ("priority", "base_eur_per_kwh"):
            s.used.add(name)
            if s.data.get(name) is not None:
                s.fail(name, "is only for direct mode: a delegated offer carries no price", "unknown")
    if not complete(issuer, meter_id, bus, congestion_point, receiver, slice_s, mode):
        return None
    return ProsumerConfig(
        issuer=issuer,
        meter_id=meter_id,
        bus=bus,
        congestion_point=congestion_point,
        mode=mode,
        receiver=receiver,
        slice_s=slice_s,
        priority=priority,
        base_eur_per_kwh=base,
    )


def parse_config(data: Any, *, source: str = "<config>") -> FoaConfig:
    """A typed FoaConfig from parsed YAML/JSON data, or ConfigError listing every problem."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("", f"must be a mapping with prosumer and devices, not {type_name(data)}")])
    root = ConfigSection(data, "", problems)
    prosumer: ProsumerConfig | None = None
    raw_prosumer, given = root.get("prosumer", MISSING)
    if given:
        if isinstance(raw_prosumer, dict):
            section = ConfigSection(raw_prosumer, "prosumer", problems)
            prosumer = _parse_prosumer(section)
            section.check_unknown()
        else:
            root.fail("prosumer", f"must be a mapping, not {type_name(raw_prosumer)}", "type")
    devices: list[DeviceConfig] = []
    raw_devices, given = root.get("devices", MISSING)
    if given:
        if not isinstance(raw_devices, list):
            root.fail("devices", f"must be a list of devices, not {type_name(raw_devices)}", "type")
        else:
            names: set[str] = set()
            for i, raw in enumerate(raw_devices):
                if not isinstance(raw, dict):
                    problems.append(Problem(f"devices[{i}]", f"must be a mapping, not {type_name(raw)}", "type"))
                    continue
                device = parse_device(ConfigSection(raw, f"devices[{i}]", problems), names)
                if device is not None:
                    devices.append(device)
                    if prosumer is not None:
                        for key, message in device.slice_problems(prosumer.slice_s):
                            problems.append(Problem(f"devices[{i}].{key}", message, "range"))
    root.check_unknown()
    if problems or prosumer is None:
        raise ConfigError(source, problems)
    return FoaConfig(prosumer=prosumer, devices=tuple(devices), source=source)


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    if suffix in (".yaml", ".yml"):
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    raise ConfigError(path.name, [Problem("", f"unknown file type {suffix or '(none)'!r}; use .yaml, .yml or .json")])


def load_config(path: str | Path) -> FoaConfig:
    """Read a YAML or JSON configuration file (module docstring); ConfigError names the file and keys."""
    path = Path(path)
    source = path.name
    if not path.is_file():
        raise ConfigError(source, [Problem("", f"no such file: {path}")])
    try:
        data = _read(path)
    except ConfigError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(source, [Problem("", f"cannot be parsed: {exc}", "syntax")]) from exc
    return parse_config(data, source=source)

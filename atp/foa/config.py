"""User configuration of a stand-alone FOA (F2.FOA3): the prosumer and its devices, from YAML or JSON.

A configuration file has two top-level keys:

```yaml
prosumer:
  issuer: foss-p017            # the FOA's party name at its receiver
  meter_id: M-017
  bus: 12                      # optional
  congestion_point: cp-3       # optional
  mode: direct                 # direct or delegated
  receiver: http://fman.example/api   # a URL or a receiver name (e.g. fman-1)
  slice_s: 900                 # optional, divides 86400
  priority: normal             # direct mode only: a number in [0, 1] or low / normal / high
  base_eur_per_kwh: 0.12       # direct mode only
devices:
  - name: ev-1
    load_type: ev
    ...                        # the load type's fields (EVDeviceConfig, HeatPumpDeviceConfig)
```

`load_config(path)` reads `.yaml`, `.yml` (with omegaconf) or `.json` and returns a typed
`FoaConfig`, or raises `ConfigError` listing every problem, each naming the file and the key:
`foa.yaml: devices[1].comfort_c: low 23 is above high 20`. Problems are of five classes: a
missing key, a wrong type, a bad range, an unknown load type (the message lists
`atp.foa.load_types()`), an unknown field (the message lists the known ones).

Device fields are defined per load type by a parser registered with
`register_device_config(load_type)`; `ev` and `heat_pump` are built in. A load type that is
registered as a generator but has no parser here keeps its fields, unchecked, in
`GenericDeviceConfig.params` (numbers, strings, booleans or lists of numbers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf

from atp.errors import Problem, ValidationError
from atp.flexoffer import Location, Mode
from atp.foa.errors import FoaError
from atp.foa.generator import FlexOfferGenerator, generator_for, load_types
from atp.foa.pricing import PRIORITY_CLASSES, PricingError, priority_of, priority_to_price

__all__ = [
    "ConfigError",
    "DeviceConfig",
    "EVDeviceConfig",
    "FoaConfig",
    "GenericDeviceConfig",
    "HeatPumpDeviceConfig",
    "ProsumerConfig",
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
        """True when `receiver` is an http(s) URL, False when it names an in-process receiver."""
        return self.receiver.startswith(("http://", "https://"))

    @property
    def price_eur_per_kwh(self) -> float | None:
        """The deviation price of direct offers (`priority_to_price`); None in delegated mode."""
        if self.mode is not Mode.DIRECT or self.priority is None or self.base_eur_per_kwh is None:
            return None
        return priority_to_price(self.priority, base_eur_per_kwh=self.base_eur_per_kwh)


@dataclass(frozen=True, kw_only=True)
class DeviceConfig:
    """One configured device: its name (unique in the file) and load type."""

    name: str
    load_type: str

    def generator_options(self) -> dict[str, Any]:
        """Keyword options of the load type's generator (none by default)."""
        return {}

    def generator(self) -> FlexOfferGenerator:
        """A generator for this device (`generator_for(load_type, **generator_options())`)."""
        return generator_for(self.load_type, **self.generator_options())


@dataclass(frozen=True, kw_only=True)
class EVDeviceConfig(DeviceConfig):
    """An EV charger: grid-side power, the battery and the charging efficiency."""

    load_type: str = "ev"
    max_power_kw: float
    capacity_kwh: float
    charge_efficiency: float = 0.92


@dataclass(frozen=True, kw_only=True)
class HeatPumpDeviceConfig(DeviceConfig):
    """A heat pump in an RC building: comfort band, thermostat, building model, block length."""

    load_type: str = "heat_pump"
    max_power_kw: float
    comfort_min_c: float
    comfort_max_c: float
    setpoint_c: float
    deadband_c: float = 1.0
    r_k_per_kw: float
    c_kwh_per_k: float
    cop: float
    block_steps: int = 16

    def generator_options(self) -> dict[str, Any]:
        """The heat-pump generator's block length."""
        return {"block_steps": self.block_steps}


@dataclass(frozen=True, kw_only=True)
class GenericDeviceConfig(DeviceConfig):
    """A device of a registered load type without a config parser: its other fields, unchecked."""

    params: Mapping[str, Any] = field(default_factory=dict)


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
_MISSING = object()
_T = TypeVar("_T")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class _Section:
    """Typed access to one mapping of the file; problems are collected, unknown keys reported."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: list[Problem]) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, message: str, rule: str) -> None:
        self.problems.append(Problem(self.key(name), message, rule))

    def _get(self, name: str, default: Any) -> tuple[Any, bool]:
        """(value, given): the file's value, or the default (given False); a missing required key fails."""
        self.used.add(name)
        value = self.data.get(name)
        if value is None:
            if default is _MISSING:
                self.fail(name, "is missing (a required key)", "missing")
            return default, False
        return value, True

    def string(self, name: str, default: Any = _MISSING) -> Any:
        value, given = self._get(name, default)
        if not given:
            return value
        if not isinstance(value, str) or not value:
            self.fail(name, f"must be a non-empty string, not {_type_name(value)} ({value!r})", "type")
            return _MISSING
        return value

    def number(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
    ) -> Any:
        value, given = self._get(name, default)
        if not given:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(name, f"must be a number, not {_type_name(value)} ({value!r})", "type")
            return _MISSING
        value = float(value)
        if not math.isfinite(value):
            self.fail(name, f"must be a finite number, not {value!r}", "range")
            return _MISSING
        if low is not None and (value <= low if low_open else value < low):
            relation = "above" if low_open else "at least"
            self.fail(name, f"{value:g} is out of range: it must be {relation} {low:g}", "range")
            return _MISSING
        if high is not None and value > high:
            self.fail(name, f"{value:g} is out of range: it must be at most {high:g}", "range")
            return _MISSING
        return value

    def integer(self, name: str, default: Any = _MISSING, *, low: int | None = None) -> Any:
        value, given = self._get(name, default)
        if not given:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be a whole number, not {_type_name(value)} ({value!r})", "type")
            return _MISSING
        if low is not None and value < low:
            self.fail(name, f"{value} is out of range: it must be at least {low}", "range")
            return _MISSING
        return value

    def pair(self, name: str) -> Any:
        """A [low, high] pair of numbers with low <= high."""
        value, given = self._get(name, _MISSING)
        if not given:
            return value
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
        ):
            self.fail(name, f"must be a list [low, high] of two numbers, not {value!r}", "type")
            return _MISSING
        low, high = float(value[0]), float(value[1])
        if not (math.isfinite(low) and math.isfinite(high)):
            self.fail(name, f"must hold finite numbers, not {value!r}", "range")
            return _MISSING
        if low > high:
            self.fail(name, f"low {low:g} is above high {high:g}", "range")
            return _MISSING
        return low, high

    def check_unknown(self, extra_known: tuple[str, ...] = ()) -> None:
        known = sorted(self.used | set(extra_known))
        for name in self.data:
            if name not in self.used and name not in extra_known:
                self.fail(str(name), f"is an unknown field; known fields: {', '.join(known)}", "unknown")


_Parser = Callable[[_Section, str], DeviceConfig | None]
_DEVICE_PARSERS: dict[str, _Parser] = {}
_P = TypeVar("_P", bound=_Parser)


def register_device_config(load_type: str) -> Callable[[_P], _P]:
    """Decorator: `parser(section, name) -> DeviceConfig | None` reads the fields of `load_type`.

    The parser reads its fields from the section (`string`, `number`, `integer`, `pair`), returns
    None when a field had a problem (the section has recorded it), and leaves unknown fields to
    the caller. One parser per load type.
    """

    def decorate(parser: _P) -> _P:
        if load_type in _DEVICE_PARSERS and _DEVICE_PARSERS[load_type] is not parser:
            raise FoaError(f"a config parser for load type {load_type!r} is already registered")
        _DEVICE_PARSERS[load_type] = parser
        return parser

    return decorate


def _complete(*values: Any) -> bool:
    return all(v is not _MISSING for v in values)


@register_device_config("ev")
def _parse_ev(s: _Section, name: str) -> DeviceConfig | None:
    power = s.number("max_power_kw", low=0.0, low_open=True)
    capacity = s.number("capacity_kwh", low=0.0, low_open=True)
    efficiency = s.number("charge_efficiency", 0.92, low=0.0, high=1.0, low_open=True)
    if not _complete(power, capacity, efficiency):
        return None
    return EVDeviceConfig(name=name, max_power_kw=power, capacity_kwh=capacity, charge_efficiency=efficiency)


@register_device_config("heat_pump")
def _parse_heat_pump(s: _Section, name: str) -> DeviceConfig | None:
    power = s.number("max_power_kw", low=0.0, low_open=True)
    comfort = s.pair("comfort_c")
    setpoint = s.number("setpoint_c", None)
    deadband = s.number("deadband_c", 1.0, low=0.0)
    r = s.number("r_k_per_kw", low=0.0, low_open=True)
    c = s.number("c_kwh_per_k", low=0.0, low_open=True)
    cop = s.number("cop", low=0.0, low_open=True)
    block = s.integer("block_steps", 16, low=1)
    if not _complete(power, comfort, setpoint, deadband, r, c, cop, block):
        return None
    low, high = comfort
    if setpoint is None:
        setpoint = (low + high) / 2
    elif not low <= setpoint <= high:
        s.fail("setpoint_c", f"{setpoint:g} is out of range: it must lie within comfort_c [{low:g}, {high:g}]", "range")
        return None
    if deadband > high - low:
        s.fail("deadband_c", f"{deadband:g} is out of range: it must not exceed the comfort band's width", "range")
        return None
    return HeatPumpDeviceConfig(
        name=name,
        max_power_kw=power,
        comfort_min_c=low,
        comfort_max_c=high,
        setpoint_c=setpoint,
        deadband_c=deadband,
        r_k_per_kw=r,
        c_kwh_per_k=c,
        cop=cop,
        block_steps=block,
    )


def _generic_value(value: Any) -> bool:
    if isinstance(value, str | bool | int | float):
        return not isinstance(value, float) or math.isfinite(value)
    return isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )


def _parse_prosumer(s: _Section) -> ProsumerConfig | None:
    issuer = s.string("issuer")
    meter_id = s.string("meter_id")
    bus = s.integer("bus", None, low=0)
    congestion_point = s.string("congestion_point", None)
    receiver = s.string("receiver")
    slice_s = s.integer("slice_s", 900, low=1)
    if slice_s is not _MISSING and 86_400 % slice_s:
        s.fail("slice_s", f"{slice_s} is out of range: it must divide 86400 (e.g. 900 or 3600)", "range")
        slice_s = _MISSING
    mode_text = s.string("mode")
    mode: Any = _MISSING
    if mode_text is not _MISSING:
        try:
            mode = Mode(mode_text)
        except ValueError:
            s.fail("mode", f"{mode_text!r} is not a mode; use direct or delegated", "range")
    priority: Any = None
    base: Any = None
    if mode is Mode.DIRECT:
        raw, given = s._get("priority", _MISSING)
        if given:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                s.fail("priority", f"must be a number in [0, 1] or one of {', '.join(PRIORITY_CLASSES)}", "type")
            else:
                try:
                    priority = priority_of(raw)
                except PricingError as exc:
                    s.fail("priority", str(exc), "range")
        base = s.number("base_eur_per_kwh", low=0.0)
        if priority is None or priority is _MISSING or base is _MISSING:
            return None
    elif mode is _MISSING:
        s.used.update(("priority", "base_eur_per_kwh"))  # judged once the mode is known
    else:
        for name in ("priority", "base_eur_per_kwh"):
            s.used.add(name)
            if s.data.get(name) is not None:
                s.fail(name, "is only for direct mode: a delegated offer carries no price", "unknown")
    if not _complete(issuer, meter_id, bus, congestion_point, receiver, slice_s, mode):
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


def _parse_device(s: _Section, names: set[str]) -> DeviceConfig | None:
    name = s.string("name")
    load_type = s.string("load_type")
    if name is not _MISSING:
        if name in names:
            s.fail("name", f"{name!r} is used by another device; device names must be unique", "range")
        names.add(name)
    if load_type is _MISSING:
        s.check_unknown(tuple(s.data))  # without a load type, its fields cannot be judged
        return None
    known = load_types()
    if load_type not in known:
        s.fail("load_type", f"unknown load type {load_type!r}; known load types: {', '.join(known)}", "load_type")
        s.check_unknown(tuple(s.data))
        return None
    parser = _DEVICE_PARSERS.get(load_type)
    if parser is None:
        params = {k: v for k, v in s.data.items() if k not in ("name", "load_type")}
        for k, v in params.items():
            s.used.add(k)
            if not _generic_value(v):
                s.fail(k, f"must be a number, string, boolean or list of numbers, not {_type_name(v)}", "type")
        return GenericDeviceConfig(name=name, load_type=load_type, params=params) if name is not _MISSING else None
    device = parser(s, name if name is not _MISSING else "")
    s.check_unknown()
    return device if name is not _MISSING else None


def parse_config(data: Any, *, source: str = "<config>") -> FoaConfig:
    """A typed FoaConfig from parsed YAML/JSON data, or ConfigError listing every problem."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("", f"must be a mapping with prosumer and devices, not {_type_name(data)}")])
    root = _Section(data, "", problems)
    prosumer: ProsumerConfig | None = None
    raw_prosumer, given = root._get("prosumer", _MISSING)
    if given:
        if isinstance(raw_prosumer, dict):
            section = _Section(raw_prosumer, "prosumer", problems)
            prosumer = _parse_prosumer(section)
            section.check_unknown()
        else:
            root.fail("prosumer", f"must be a mapping, not {_type_name(raw_prosumer)}", "type")
    devices: list[DeviceConfig] = []
    raw_devices, given = root._get("devices", _MISSING)
    if given:
        if not isinstance(raw_devices, list):
            root.fail("devices", f"must be a list of devices, not {_type_name(raw_devices)}", "type")
        else:
            names: set[str] = set()
            for i, raw in enumerate(raw_devices):
                if not isinstance(raw, dict):
                    problems.append(Problem(f"devices[{i}]", f"must be a mapping, not {_type_name(raw)}", "type"))
                    continue
                device = _parse_device(_Section(raw, f"devices[{i}]", problems), names)
                if device is not None:
                    devices.append(device)
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

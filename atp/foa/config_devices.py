"""Device sections of an FOA configuration file: one typed config and parser per load type.

A device section is `name`, `load_type` and the load type's fields; units are in the names.
Every field's range is checked, cross-field rules where the physics demands them, and the
defaults are those of the simulated devices (`sim/agents/`). Fields per load type (`?` =
optional, with its default):

- `ev`: `max_power_kw`, `capacity_kwh`, `charge_efficiency?` 0.92.
- `heat_pump`: `max_power_kw`, `comfort_c` [low, high], `setpoint_c?` mid-band (within the
  band), `deadband_c?` 1 (at most the band's width), `r_k_per_kw`, `c_kwh_per_k` (R*C longer
  than one `slice_s` step), `cop`, `block_steps?` 16, `keep_end_level?` true.
- `battery`: `capacity_kwh`, `max_charge_kw`, `max_discharge_kw?` = max_charge_kw,
  `soc_min_kwh?` 0 < `soc_max_kwh?` capacity_kwh (at most capacity_kwh), `charge_efficiency?`
  0.95, `discharge_efficiency?` 0.95, `block_steps?` 16, `form?` dependency (or polytope),
  `energy_neutral?` true.
- `pv`: `kwp`, `inverter_kw?` = kwp, `block_steps?` 16.
- `industrial`: `up_kw`, `down_kw` (not both 0), `max_backlog_kwh?` down_kw over adapt_s,
  `tolerance_kwh?` 2 % of max_backlog_kwh (at most max_backlog_kwh), `makeup_s?` 7200,
  `adapt_s?` 3600, `baseline_kw_by_hour?` (a standing hourly plan, kW >= 0).
- `freezer`: `kind?` freezer (or fridge: its defaults below), `power_kw`, `band_c?`,
  `setpoint_c?`, `deadband_c?` (the thermostat within the band), `ua_kw_per_k?`,
  `c_kwh_per_k?` (C/ua longer than a sub-step), `cop?`, `ambient_c?` 20, `substep_s?` 60,
  `block_steps?` 16 (at least 2: a step off and one to recover).
- `water_heater`: `tank_l`, `element_kw`, `ua_kw_per_k?` 0.0015, `band_c?` [45, 75] (within
  [0, 100]), `setpoint_c?` mid-band, `deadband_c?` 5 (at most the band's width), `ambient_c?`
  18, `inlet_c?` 10, `block_steps?` 16, `keep_end_level?` true; the standing loss over one
  `slice_s` step below the tank's heat capacity.
- `wet_appliance`: `kind` (dishwasher, washing_machine or another name), `programmes?` (the
  kind's catalogue; each `name`, `energy_kwh` per step with the first > 0, `step_s?` 900; names
  unique), `allowed?` all programmes, `preferred?` the first allowed (one of the allowed).

Freezer defaults by `kind` (the middle of `sim.agents.freezer`'s ranges): a freezer keeps
[-22, -16] C with its thermostat at -19 +/- 1 C, ua 0.0006 kW/K, C 0.04 kWh/K, COP 1.6; a fridge
[2, 7] C at 4.5 +/- 1 C, ua 0.00115 kW/K, C 0.02 kWh/K, COP 2.5.

`config.generator()` builds the load type's generator with `generator_options()` (the
generator's keyword options). The FOA never owns a device's dynamic state: the device owner
(a sensor, an xEMS) reads it at each trigger and setpoint (`FlexOfferAgent.trigger(device,
state, ctx)`, `InProcessXemsAdapter`'s sensors). So each typed config has `state(...)`, which
joins its fixed fields with a sensor's readings (e.g. `BatteryDeviceConfig.state(soc_kwh=4.2)`)
into the state dataclass its generator consumes.

A plug-in load type registers its parser with `register_device_config(load_type)`; a load type
registered as a generator without a parser keeps its fields, unchecked, in
`GenericDeviceConfig.params`. The appliances (freezer, water heater, wet appliance) are in
`atp.foa.config_appliances`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from atp.foa.config_reader import MISSING, ConfigSection, complete, type_name
from atp.foa.errors import FoaError, StateError
from atp.foa.generator import FlexOfferGenerator, generator_for, load_types
from atp.foa.generators.battery import BatteryState
from atp.foa.generators.industrial import IndustrialState
from atp.foa.generators.pv import PvState
from atp.foa.states import EVState, ThermalState

__all__ = [
    "BatteryDeviceConfig",
    "DeviceConfig",
    "EVDeviceConfig",
    "GenericDeviceConfig",
    "HeatPumpDeviceConfig",
    "IndustrialDeviceConfig",
    "PvDeviceConfig",
    "parse_device",
    "register_device_config",
]


_TOL = 1e-9  # the rounding of values the file's author computed (e.g. a band's limits)


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

    def slice_problems(self, slice_s: int) -> list[tuple[str, str]]:
        """(field, message) for each field the prosumer's `slice_s` makes impossible (none by default)."""
        return []


@dataclass(frozen=True, kw_only=True)
class GenericDeviceConfig(DeviceConfig):
    """A device of a plug-in load type without a config parser: its other fields, unchecked."""

    params: Mapping[str, Any] = field(default_factory=dict)


# -- the parsers' registry ----------------------------------------------------------------------
_Parser = Callable[[ConfigSection, str], DeviceConfig | None]
_DEVICE_PARSERS: dict[str, _Parser] = {}
_P = TypeVar("_P", bound=_Parser)


def register_device_config(load_type: str) -> Callable[[_P], _P]:
    """Decorator: `parser(section, name) -> DeviceConfig | None` reads the fields of `load_type`.

    The parser reads its fields from the `ConfigSection` (`string`, `number`, `integer`,
    `boolean`, `choice`, `pair`, `numbers`, `strings`, `sections`), returns None when a field
    had a problem (the section has recorded it), and leaves unknown fields to the caller. One
    parser per load type.
    """

    def decorate(parser: _P) -> _P:
        if load_type in _DEVICE_PARSERS and _DEVICE_PARSERS[load_type] is not parser:
            raise FoaError(f"a config parser for load type {load_type!r} is already registered")
        _DEVICE_PARSERS[load_type] = parser
        return parser

    return decorate


def _generic_value(value: Any) -> bool:
    if isinstance(value, str | bool | int | float):
        return not isinstance(value, float) or math.isfinite(value)
    return isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )


def parse_device(s: ConfigSection, names: set[str]) -> DeviceConfig | None:
    """The typed config of one device section (`names`: the names seen so far), None after a problem."""
    name = s.string("name")
    load_type = s.string("load_type")
    if name is not MISSING:
        if name in names:
            s.fail("name", f"{name!r} is used by another device; device names must be unique", "range")
        names.add(name)
    if load_type is MISSING:
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
                s.fail(k, f"must be a number, string, boolean or list of numbers, not {type_name(v)}", "type")
        return GenericDeviceConfig(name=name, load_type=load_type, params=params) if name is not MISSING else None
    device = parser(s, name if name is not MISSING else "")
    s.check_unknown()
    return device if name is not MISSING else None


def _positive(s: ConfigSection, name: str, default: Any = MISSING) -> Any:
    return s.number(name, default, low=0.0, low_open=True)


def _efficiency(s: ConfigSection, name: str, default: float) -> Any:
    return s.number(name, default, low=0.0, high=1.0, low_open=True)


# -- EV -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class EVDeviceConfig(DeviceConfig):
    """An EV charger: grid-side power, the battery and the charging efficiency."""

    load_type: str = "ev"
    max_power_kw: float
    capacity_kwh: float
    charge_efficiency: float = 0.92

    def state(
        self, *, plugged_in: bool, now_energy_kwh: float, target_energy_kwh: float, departure: datetime
    ) -> EVState:
        """The EVState of a charging session: the car's readings and the user's target with this charger."""
        return EVState(
            plugged_in=plugged_in,
            now_energy_kwh=now_energy_kwh,
            capacity_kwh=self.capacity_kwh,
            target_energy_kwh=target_energy_kwh,
            departure=departure,
            max_power_kw=self.max_power_kw,
            charge_efficiency=self.charge_efficiency,
        )


@register_device_config("ev")
def _parse_ev(s: ConfigSection, name: str) -> DeviceConfig | None:
    power = _positive(s, "max_power_kw")
    capacity = _positive(s, "capacity_kwh")
    efficiency = _efficiency(s, "charge_efficiency", 0.92)
    if not complete(power, capacity, efficiency):
        return None
    return EVDeviceConfig(name=name, max_power_kw=power, capacity_kwh=capacity, charge_efficiency=efficiency)


# -- heat pump ----------------------------------------------------------------------------------
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
    keep_end_level: bool = True

    def generator_options(self) -> dict[str, Any]:
        """The heat-pump generator's block length and end-level rule."""
        return {"block_steps": self.block_steps, "keep_end_level": self.keep_end_level}

    def slice_problems(self, slice_s: int) -> list[tuple[str, str]]:
        """The building's time constant R*C must be longer than one step (the model's stability)."""
        rc_h = self.r_k_per_kw * self.c_kwh_per_k
        if rc_h * 3600.0 <= slice_s:
            return [
                (
                    "c_kwh_per_k",
                    f"the building's time constant r_k_per_kw * c_kwh_per_k = {rc_h:g} h must be longer "
                    f"than one step (prosumer.slice_s = {slice_s} s)",
                )
            ]
        return []

    def state(self, *, indoor_temp_c: float, heat_on: bool, outdoor_temp_forecast_c: Sequence[float]) -> ThermalState:
        """The ThermalState: the measured indoor temperature, the thermostat and the outdoor forecast."""
        return ThermalState(
            indoor_temp_c=indoor_temp_c,
            comfort_min_c=self.comfort_min_c,
            comfort_max_c=self.comfort_max_c,
            setpoint_c=self.setpoint_c,
            deadband_c=self.deadband_c,
            r_k_per_kw=self.r_k_per_kw,
            c_kwh_per_k=self.c_kwh_per_k,
            cop=self.cop,
            max_power_kw=self.max_power_kw,
            heat_on=heat_on,
            outdoor_temp_forecast_c=tuple(float(t) for t in outdoor_temp_forecast_c),
        )


def setpoint_in_band(
    s: ConfigSection, band: tuple[float, float], setpoint: float | None, deadband: float, band_key: str
) -> float | None:
    """The thermostat's setpoint (mid-band by default), None after a problem: within the band, and
    the deadband no wider than the band."""
    low, high = band
    if setpoint is None:
        setpoint = (low + high) / 2
    elif not low - _TOL <= setpoint <= high + _TOL:
        s.fail(
            "setpoint_c", f"{setpoint:g} is out of range: it must lie within {band_key} [{low:g}, {high:g}]", "range"
        )
        return None
    if deadband > high - low + _TOL:
        s.fail(
            "deadband_c",
            f"{deadband:g} is out of range: it must not exceed the width of {band_key} ({high - low:g})",
            "range",
        )
        return None
    return setpoint


@register_device_config("heat_pump")
def _parse_heat_pump(s: ConfigSection, name: str) -> DeviceConfig | None:
    power = _positive(s, "max_power_kw")
    comfort = s.pair("comfort_c")
    setpoint = s.number("setpoint_c", None)
    deadband = s.number("deadband_c", 1.0, low=0.0)
    r = _positive(s, "r_k_per_kw")
    c = _positive(s, "c_kwh_per_k")
    cop = _positive(s, "cop")
    block = s.integer("block_steps", 16, low=1)
    keep_end = s.boolean("keep_end_level", True)
    if not complete(power, comfort, setpoint, deadband, r, c, cop, block, keep_end):
        return None
    setpoint = setpoint_in_band(s, comfort, setpoint, deadband, "comfort_c")
    if setpoint is None:
        return None
    return HeatPumpDeviceConfig(
        name=name,
        max_power_kw=power,
        comfort_min_c=comfort[0],
        comfort_max_c=comfort[1],
        setpoint_c=setpoint,
        deadband_c=deadband,
        r_k_per_kw=r,
        c_kwh_per_k=c,
        cop=cop,
        block_steps=block,
        keep_end_level=keep_end,
    )


# -- battery ------------------------------------------------------------------------------------
_BATTERY_FORMS = ("dependency", "polytope")


@dataclass(frozen=True, kw_only=True)
class BatteryDeviceConfig(DeviceConfig):
    """A stationary battery behind an inverter: size, state-of-charge window, powers, efficiencies
    and the generator's block, constraint form and energy neutrality."""

    load_type: str = "battery"
    capacity_kwh: float
    soc_min_kwh: float = 0.0
    soc_max_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    block_steps: int = 16
    form: str = "dependency"
    energy_neutral: bool = True

    def generator_options(self) -> dict[str, Any]:
        """The battery generator's block length, constraint form and energy neutrality."""
        return {"block_steps": self.block_steps, "form": self.form, "energy_neutral": self.energy_neutral}

    def state(self, *, soc_kwh: float) -> BatteryState:
        """The BatteryState with the measured stored energy `soc_kwh` (within the window)."""
        return BatteryState(
            capacity_kwh=self.capacity_kwh,
            soc_kwh=soc_kwh,
            soc_min_kwh=self.soc_min_kwh,
            soc_max_kwh=self.soc_max_kwh,
            max_charge_kw=self.max_charge_kw,
            max_discharge_kw=self.max_discharge_kw,
            charge_efficiency=self.charge_efficiency,
            discharge_efficiency=self.discharge_efficiency,
        )


@register_device_config("battery")
def _parse_battery(s: ConfigSection, name: str) -> DeviceConfig | None:
    capacity = _positive(s, "capacity_kwh")
    soc_min = s.number("soc_min_kwh", 0.0, low=0.0)
    soc_max = s.number("soc_max_kwh", None, low=0.0, low_open=True)
    charge = _positive(s, "max_charge_kw")
    discharge = _positive(s, "max_discharge_kw", None)
    eta_c = _efficiency(s, "charge_efficiency", 0.95)
    eta_d = _efficiency(s, "discharge_efficiency", 0.95)
    block = s.integer("block_steps", 16, low=1)
    form = s.choice("form", _BATTERY_FORMS, "dependency")
    neutral = s.boolean("energy_neutral", True)
    if not complete(capacity, soc_min, soc_max, charge, discharge, eta_c, eta_d, block, form, neutral):
        return None
    if soc_max is None:
        soc_max = capacity
    elif soc_max > capacity:
        s.fail("soc_max_kwh", f"{soc_max:g} is out of range: it must be at most capacity_kwh ({capacity:g})", "range")
        return None
    if soc_min >= soc_max:
        s.fail(
            "soc_min_kwh",
            f"{soc_min:g} is out of range: it must be below soc_max_kwh ({soc_max:g}), or the battery has no window",
            "range",
        )
        return None
    return BatteryDeviceConfig(
        name=name,
        capacity_kwh=capacity,
        soc_min_kwh=soc_min,
        soc_max_kwh=soc_max,
        max_charge_kw=charge,
        max_discharge_kw=charge if discharge is None else discharge,
        charge_efficiency=eta_c,
        discharge_efficiency=eta_d,
        block_steps=block,
        form=form,
        energy_neutral=neutral,
    )


# -- PV -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PvDeviceConfig(DeviceConfig):
    """A curtailable PV system: its peak power, its inverter and the generator's block length."""

    load_type: str = "pv"
    kwp: float
    inverter_kw: float
    block_steps: int = 16

    def generator_options(self) -> dict[str, Any]:
        """The PV generator's block length."""
        return {"block_steps": self.block_steps}

    def state(self, *, available_kwh: float, forecast_kwh: Sequence[float]) -> PvState:
        """The PvState: the potential now and the forecast per step (production, <= 0 kWh)."""
        return PvState(
            kwp=self.kwp,
            inverter_kw=self.inverter_kw,
            available_kwh=available_kwh,
            forecast_kwh=tuple(float(e) for e in forecast_kwh),
        )


@register_device_config("pv")
def _parse_pv(s: ConfigSection, name: str) -> DeviceConfig | None:
    kwp = _positive(s, "kwp")
    inverter = _positive(s, "inverter_kw", None)
    block = s.integer("block_steps", 16, low=1)
    if not complete(kwp, inverter, block):
        return None
    return PvDeviceConfig(name=name, kwp=kwp, inverter_kw=kwp if inverter is None else inverter, block_steps=block)


# -- industrial ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class IndustrialDeviceConfig(DeviceConfig):
    """An industrial process: its adaptation capacity, backlog rule, make-up window, adaptation
    period, and optionally a standing hourly plan."""

    load_type: str = "industrial"
    up_kw: float
    down_kw: float
    max_backlog_kwh: float
    tolerance_kwh: float
    makeup_s: int = 7200
    adapt_s: int = 3600
    baseline_kw_by_hour: tuple[float, ...] | None = None

    def generator_options(self) -> dict[str, Any]:
        """The industrial generator's adaptation period."""
        return {"adapt_s": self.adapt_s}

    def state(
        self,
        *,
        plan_start: datetime,
        backlog_kwh: float = 0.0,
        baseline_kw_by_hour: Sequence[float] | None = None,
    ) -> IndustrialState:
        """The IndustrialState: the plan from `plan_start` (the standing plan unless one is given)
        and the measured backlog."""
        plan = baseline_kw_by_hour if baseline_kw_by_hour is not None else self.baseline_kw_by_hour
        if plan is None:
            raise StateError(
                f"industrial device {self.name!r} has no baseline_kw_by_hour in its configuration: "
                "pass the process's plan (baseline_kw_by_hour=...)"
            )
        return IndustrialState(
            plan_start=plan_start,
            baseline_kw_by_hour=tuple(float(p) for p in plan),
            up_kw=self.up_kw,
            down_kw=self.down_kw,
            max_backlog_kwh=self.max_backlog_kwh,
            tolerance_kwh=self.tolerance_kwh,
            makeup_s=self.makeup_s,
            backlog_kwh=backlog_kwh,
        )


_MAX_PROCESS_KW = 1e6  # 1 GW: beyond any one meter's process


@register_device_config("industrial")
def _parse_industrial(s: ConfigSection, name: str) -> DeviceConfig | None:
    up = s.number("up_kw", low=0.0, high=_MAX_PROCESS_KW)
    down = s.number("down_kw", low=0.0, high=_MAX_PROCESS_KW)
    max_backlog = s.number("max_backlog_kwh", None, low=0.0)
    tolerance = s.number("tolerance_kwh", None, low=0.0)
    makeup = s.integer("makeup_s", 7200, low=0, high=86_400)
    adapt = s.integer("adapt_s", 3600, low=1, high=86_400)
    plan = s.numbers("baseline_kw_by_hour", None, low=0.0)
    if not complete(up, down, max_backlog, tolerance, makeup, adapt, plan):
        return None
    if up == 0 and down == 0:
        s.fail("down_kw", "up_kw and down_kw are both 0: the process has no adaptation capacity to offer", "range")
        return None
    if max_backlog is None:
        max_backlog = down * adapt / 3600.0
    if tolerance is None:
        tolerance = 0.02 * max_backlog
    elif tolerance > max_backlog:
        s.fail(
            "tolerance_kwh",
            f"{tolerance:g} is out of range: it must be at most max_backlog_kwh ({max_backlog:g})",
            "range",
        )
        return None
    return IndustrialDeviceConfig(
        name=name,
        up_kw=up,
        down_kw=down,
        max_backlog_kwh=max_backlog,
        tolerance_kwh=tolerance,
        makeup_s=makeup,
        adapt_s=adapt,
        baseline_kw_by_hour=plan,
    )

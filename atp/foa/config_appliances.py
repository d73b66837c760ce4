"""Appliance sections of an FOA configuration file: freezer, water heater and wet appliance.

The typed configs and parsers of these three load types, registered like those of
`atp.foa.config_devices` (whose docstring lists every load type's fields and defaults); each
config's `state(...)` joins its fixed fields with a sensor's readings into the state its
generator consumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from atp.foa.config_devices import DeviceConfig, register_device_config, setpoint_in_band
from atp.foa.config_reader import MISSING, ConfigSection, complete
from atp.foa.generators.freezer import FreezerState
from atp.foa.states_appliances import (
    WATER_KWH_PER_L_K,
    ApplianceStatus,
    Programme,
    WaterHeaterState,
    WetApplianceState,
)

__all__ = [
    "FREEZER_KINDS",
    "PROGRAMME_CATALOGUE",
    "FreezerDeviceConfig",
    "WaterHeaterDeviceConfig",
    "WetApplianceDeviceConfig",
]


# -- freezer ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ColdDefaults:
    band_c: tuple[float, float]
    setpoint_c: float
    deadband_c: float
    ua_kw_per_k: float
    c_kwh_per_k: float
    cop: float


FREEZER_KINDS: dict[str, _ColdDefaults] = {
    "freezer": _ColdDefaults((-22.0, -16.0), -19.0, 2.0, 0.0006, 0.04, 1.6),
    "fridge": _ColdDefaults((2.0, 7.0), 4.5, 2.0, 0.00115, 0.02, 2.5),
}
"""Defaults of a freezer's fields by `kind`: the middle of `sim.agents.freezer`'s ranges."""


@dataclass(frozen=True, kw_only=True)
class FreezerDeviceConfig(DeviceConfig):
    """A freezer or fridge on a smart plug: the user's band, the thermostat, the compressor, the
    FOA's thermal model, the kitchen's ambient temperature and the generator's block length."""

    load_type: str = "freezer"
    kind: str = "freezer"
    power_kw: float
    temp_min_c: float
    temp_max_c: float
    setpoint_c: float
    deadband_c: float
    ua_kw_per_k: float
    c_kwh_per_k: float
    cop: float
    ambient_c: float = 20.0
    substep_s: int = 60
    block_steps: int = 16

    def generator_options(self) -> dict[str, Any]:
        """The freezer generator's block length (switch-off plus recovery)."""
        return {"block_steps": self.block_steps}

    def state(
        self, *, temp_c: float, compressor_on: bool, ambient_forecast_c: Sequence[float] | None = None
    ) -> FreezerState:
        """The FreezerState: the measured temperature and thermostat demand; the ambient forecast
        (default: the configured `ambient_c`)."""
        ambient = (self.ambient_c,) if ambient_forecast_c is None else tuple(float(t) for t in ambient_forecast_c)
        return FreezerState(
            temp_c=temp_c,
            temp_min_c=self.temp_min_c,
            temp_max_c=self.temp_max_c,
            setpoint_c=self.setpoint_c,
            deadband_c=self.deadband_c,
            compressor_on=compressor_on,
            power_kw=self.power_kw,
            ua_kw_per_k=self.ua_kw_per_k,
            c_kwh_per_k=self.c_kwh_per_k,
            cop=self.cop,
            ambient_forecast_c=ambient,
            substep_s=self.substep_s,
        )


@register_device_config("freezer")
def _parse_freezer(s: ConfigSection, name: str) -> DeviceConfig | None:
    kind = s.choice("kind", tuple(FREEZER_KINDS), "freezer")
    preset = FREEZER_KINDS.get(kind, FREEZER_KINDS["freezer"])
    power = s.number("power_kw", low=0.0, low_open=True)
    band = s.pair("band_c", preset.band_c)
    setpoint = s.number("setpoint_c", None)
    deadband = s.number("deadband_c", preset.deadband_c, low=0.0)
    ua = s.number("ua_kw_per_k", preset.ua_kw_per_k, low=0.0, low_open=True)
    c = s.number("c_kwh_per_k", preset.c_kwh_per_k, low=0.0, low_open=True)
    cop = s.number("cop", preset.cop, low=0.0, low_open=True)
    ambient = s.number("ambient_c", 20.0, low=-40.0, high=60.0)
    substep = s.integer("substep_s", 60, low=1, high=3600)
    block = s.integer("block_steps", 16, low=2)
    if not complete(kind, power, band, setpoint, deadband, ua, c, cop, ambient, substep, block):
        return None
    low, high = band
    if low >= high:
        s.fail("band_c", f"low {low:g} must be below high {high:g}", "range")
        return None
    if setpoint is None:
        setpoint = preset.setpoint_c if band == preset.band_c else (low + high) / 2
    if not low <= setpoint - deadband / 2 <= setpoint + deadband / 2 <= high:  # as strict as FreezerState
        s.fail(
            "setpoint_c" if s.data.get("setpoint_c") is not None else "deadband_c",
            f"the thermostat {setpoint:g} +/- {deadband / 2:g} C must lie within band_c [{low:g}, {high:g}]",
            "range",
        )
        return None
    if ua * substep / 3600.0 >= c:
        s.fail(
            "c_kwh_per_k",
            f"the compartment's time constant c_kwh_per_k / ua_kw_per_k = {c / ua:g} h must be longer "
            f"than one sub-step (substep_s = {substep} s)",
            "range",
        )
        return None
    return FreezerDeviceConfig(
        name=name,
        kind=kind,
        power_kw=power,
        temp_min_c=low,
        temp_max_c=high,
        setpoint_c=setpoint,
        deadband_c=deadband,
        ua_kw_per_k=ua,
        c_kwh_per_k=c,
        cop=cop,
        ambient_c=ambient,
        substep_s=substep,
        block_steps=block,
    )


# -- water heater -------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class WaterHeaterDeviceConfig(DeviceConfig):
    """An electric storage water heater: tank, element, standing loss, the user's limits, the
    thermostat, the surroundings and the generator's block options."""

    load_type: str = "water_heater"
    tank_l: float
    element_kw: float
    ua_kw_per_k: float = 0.0015
    min_c: float = 45.0
    max_c: float = 75.0
    setpoint_c: float = 60.0
    deadband_c: float = 5.0
    ambient_c: float = 18.0
    inlet_c: float = 10.0
    block_steps: int = 16
    keep_end_level: bool = True

    def generator_options(self) -> dict[str, Any]:
        """The water-heater generator's block length and end-level rule."""
        return {"block_steps": self.block_steps, "keep_end_level": self.keep_end_level}

    def slice_problems(self, slice_s: int) -> list[tuple[str, str]]:
        """The tank's standing loss over one step must not exceed its heat (the model's stability)."""
        capacity = self.tank_l * WATER_KWH_PER_L_K
        if self.ua_kw_per_k * slice_s / 3600.0 >= capacity:
            return [
                (
                    "ua_kw_per_k",
                    f"{self.ua_kw_per_k:g} is out of range: the {self.tank_l:g} L tank would lose more than "
                    f"its heat in one step (prosumer.slice_s = {slice_s} s)",
                )
            ]
        return []

    def state(self, *, temp_c: float, heat_on: bool, draw_forecast_l: Sequence[float] = ()) -> WaterHeaterState:
        """The WaterHeaterState: the measured tank temperature, the element's thermostat state and
        the draw forecast (litres per step from now; none by default)."""
        return WaterHeaterState(
            temp_c=temp_c,
            min_c=self.min_c,
            max_c=self.max_c,
            setpoint_c=self.setpoint_c,
            deadband_c=self.deadband_c,
            tank_l=self.tank_l,
            element_kw=self.element_kw,
            ua_kw_per_k=self.ua_kw_per_k,
            ambient_c=self.ambient_c,
            inlet_c=self.inlet_c,
            heat_on=heat_on,
            draw_forecast_l=tuple(float(v) for v in draw_forecast_l),
        )


@register_device_config("water_heater")
def _parse_water_heater(s: ConfigSection, name: str) -> DeviceConfig | None:
    tank = s.number("tank_l", low=0.0, low_open=True)
    element = s.number("element_kw", low=0.0, low_open=True)
    ua = s.number("ua_kw_per_k", 0.0015, low=0.0)
    band = s.pair("band_c", (45.0, 75.0))
    setpoint = s.number("setpoint_c", None)
    deadband = s.number("deadband_c", 5.0, low=0.0)
    ambient = s.number("ambient_c", 18.0, low=-40.0, high=60.0)
    inlet = s.number("inlet_c", 10.0, low=0.0, high=100.0)
    block = s.integer("block_steps", 16, low=1)
    keep_end = s.boolean("keep_end_level", True)
    if not complete(tank, element, ua, band, setpoint, deadband, ambient, inlet, block, keep_end):
        return None
    low, high = band
    if low < 0 or high > 100:
        s.fail("band_c", f"[{low:g}, {high:g}] is out of range: liquid water lies within [0, 100] C", "range")
        return None
    setpoint = setpoint_in_band(s, band, setpoint, deadband, "band_c")
    if setpoint is None:
        return None
    return WaterHeaterDeviceConfig(
        name=name,
        tank_l=tank,
        element_kw=element,
        ua_kw_per_k=ua,
        min_c=low,
        max_c=high,
        setpoint_c=setpoint,
        deadband_c=deadband,
        ambient_c=ambient,
        inlet_c=inlet,
        block_steps=block,
        keep_end_level=keep_end,
    )


# -- wet appliance ------------------------------------------------------------------------------
PROGRAMME_CATALOGUE: dict[str, tuple[Programme, ...]] = {
    "dishwasher": (
        Programme("eco", (0.03, 0.28, 0.08, 0.02, 0.02, 0.25, 0.06, 0.01)),  # 2 h, 0.75 kWh
        Programme("normal", (0.05, 0.45, 0.10, 0.05, 0.40, 0.05)),  # 1.5 h, 1.10 kWh
        Programme("quick", (0.40, 0.10, 0.30, 0.05)),  # 1 h, 0.85 kWh
    ),
    "washing_machine": (
        Programme("cotton_60", (0.06, 0.45, 0.35, 0.06, 0.04, 0.04, 0.05, 0.08)),  # 2 h, 1.13 kWh
        Programme("eco_40", (0.04, 0.20, 0.15) + (0.03,) * 7 + (0.04, 0.07)),  # 3 h, 0.71 kWh
        Programme("quick_30", (0.20, 0.10)),  # 30 min, 0.30 kWh
    ),
}
"""Programmes of a wet appliance whose section names none, by `kind` (kWh per 15 min step;
representative programmes after the EU energy labels; the simulation's appliances run these)."""


@dataclass(frozen=True, kw_only=True)
class WetApplianceDeviceConfig(DeviceConfig):
    """A dishwasher or washing machine: its programmes, those the user allows and the preferred one."""

    load_type: str = "wet_appliance"
    kind: str
    programmes: tuple[Programme, ...]
    allowed: tuple[str, ...]
    preferred: str

    def state(
        self,
        *,
        status: ApplianceStatus = ApplianceStatus.IDLE,
        pressed_at: datetime | None = None,
        ready_by: datetime | None = None,
        preferred: str | None = None,
        running: str | None = None,
        started_at: datetime | None = None,
    ) -> WetApplianceState:
        """The WetApplianceState: the appliance's status and the user's request (start pressed at,
        ready by; the configured preferred programme unless another is given) or the running programme."""
        return WetApplianceState(
            kind=self.kind,
            status=status,
            programmes=self.programmes,
            allowed=self.allowed,
            preferred=self.preferred if preferred is None else preferred,
            pressed_at=pressed_at,
            ready_by=ready_by,
            running=running,
            started_at=started_at,
        )


def _programme(s: ConfigSection) -> Programme | None:
    name = s.string("name")
    energy = s.numbers("energy_kwh", low=0.0)
    step = s.integer("step_s", 900, low=1, high=86_400)
    s.check_unknown()
    if not complete(name, energy, step):
        return None
    if energy[0] <= 1e-6:
        s.fail("energy_kwh", "the first step must draw energy (a positive setpoint signals the start)", "range")
        return None
    return Programme(name, energy, step)


def _programmes(s: ConfigSection, kind: Any) -> Any:
    """The section's programmes, else the kind's catalogue; MISSING after a problem."""
    sections = s.sections("programmes", None)
    if sections is MISSING:
        return MISSING
    if sections is None:
        if kind is MISSING:
            return MISSING
        catalogue = PROGRAMME_CATALOGUE.get(kind)
        if catalogue is None:
            s.fail(
                "programmes",
                f"is missing: kind {kind!r} has no built-in programmes ({', '.join(PROGRAMME_CATALOGUE)} have); "
                "list the appliance's programmes",
                "missing",
            )
            return MISSING
        return catalogue
    parsed = [_programme(p) for p in sections]
    if kind is MISSING or any(p is None for p in parsed):
        return MISSING
    names = [p.name for p in parsed if p is not None]
    for i, n in enumerate(names):
        if n in names[:i]:
            s.fail(f"programmes[{i}].name", f"{n!r} is used by another programme; names must be unique", "range")
            return MISSING
    return tuple(p for p in parsed if p is not None)


@register_device_config("wet_appliance")
def _parse_wet_appliance(s: ConfigSection, name: str) -> DeviceConfig | None:
    kind = s.string("kind")
    programmes = _programmes(s, kind)
    allowed = s.strings("allowed", None)
    preferred = s.string("preferred", None)
    if not complete(kind, programmes, allowed, preferred):
        return None
    names = [p.name for p in programmes]
    if allowed is None:
        allowed = tuple(names)
    for i, a in enumerate(allowed):
        if a not in names:
            s.fail(f"allowed[{i}]", f"{a!r} is not one of the appliance's programmes: {', '.join(names)}", "range")
            return None
    if preferred is None:
        preferred = allowed[0]
    elif preferred not in allowed:
        s.fail("preferred", f"{preferred!r} must be one of the allowed programmes: {', '.join(allowed)}", "range")
        return None
    return WetApplianceDeviceConfig(
        name=name, kind=kind, programmes=programmes, allowed=tuple(allowed), preferred=preferred
    )

"""FOA device configs (F2.FOA3, issue 15): a typed, checked config for each of the eight load types.

Every example file loads; a valid section of each load type parses to its typed config with the
values; every bad field (missing, wrong type, out of range, unknown, cross-field, against
`slice_s`) is named; `state(...)` builds the state the generator consumes. Properties: any
generated valid section parses, builds its load type's generator and a state that generator
runs on; invalid values never raise anything but ConfigError.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atp.flexoffer import Location, validate_offer
from atp.foa import GenerationContext, StateError, load_types
from atp.foa.config import (
    BatteryDeviceConfig,
    ConfigError,
    DeviceConfig,
    EVDeviceConfig,
    FreezerDeviceConfig,
    HeatPumpDeviceConfig,
    IndustrialDeviceConfig,
    PvDeviceConfig,
    WaterHeaterDeviceConfig,
    WetApplianceDeviceConfig,
    load_config,
    parse_config,
)
from atp.foa.config_appliances import PROGRAMME_CATALOGUE
from atp.foa.generators import BatteryState, FreezerState, IndustrialState, PvState
from atp.foa.states import EVState, ThermalState
from atp.foa.states_appliances import ApplianceStatus, WaterHeaterState, WetApplianceState

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "foa").glob("*.yaml"))
PROSUMER = {"issuer": "p1", "meter_id": "M-1", "mode": "delegated", "receiver": "fman-1"}
NOW = datetime(2026, 1, 5, 10, 7, tzinfo=UTC)

# The least valid section of each load type (only the required fields).
MINIMAL: dict[str, dict[str, Any]] = {
    "ev": {"max_power_kw": 11, "capacity_kwh": 60},
    "heat_pump": {"max_power_kw": 3, "comfort_c": [20, 23], "r_k_per_kw": 5, "c_kwh_per_k": 10, "cop": 3},
    "battery": {"capacity_kwh": 10, "max_charge_kw": 5},
    "pv": {"kwp": 6},
    "industrial": {"up_kw": 40, "down_kw": 20},
    "freezer": {"power_kw": 0.1},
    "water_heater": {"tank_l": 150, "element_kw": 3},
    "wet_appliance": {"kind": "dishwasher"},
}
CLASSES: dict[str, type[DeviceConfig]] = {
    "ev": EVDeviceConfig,
    "heat_pump": HeatPumpDeviceConfig,
    "battery": BatteryDeviceConfig,
    "pv": PvDeviceConfig,
    "industrial": IndustrialDeviceConfig,
    "freezer": FreezerDeviceConfig,
    "water_heater": WaterHeaterDeviceConfig,
    "wet_appliance": WetApplianceDeviceConfig,
}


def parse_one(load_type: str, fields: dict[str, Any], *, slice_s: int = 900) -> DeviceConfig:
    data = {"prosumer": {**PROSUMER, "slice_s": slice_s}, "devices": [{"name": "d", "load_type": load_type, **fields}]}
    [device] = parse_config(data, source="foa.yaml").devices
    return device


def problems(load_type: str, fields: dict[str, Any], *, slice_s: int = 900) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_one(load_type, fields, slice_s=slice_s)
    assert "foa.yaml: devices[0]." in str(info.value)
    return [str(p) for p in info.value.problems]


def changed(load_type: str, **changes: Any) -> dict[str, Any]:
    fields = copy.deepcopy(MINIMAL[load_type])
    for key, value in changes.items():
        if value is KeyError:
            del fields[key]
        else:
            fields[key] = value
    return fields


def ctx() -> GenerationContext:
    return GenerationContext(now=NOW, slice_s=900, issuer="p1", location=Location("M-1"))


def typical_state(device: DeviceConfig) -> object:
    """A state of the device as a sensor would read it at NOW (mid-window, a request waiting)."""
    if isinstance(device, EVDeviceConfig):
        cap = device.capacity_kwh
        return device.state(
            plugged_in=True, now_energy_kwh=0.2 * cap, target_energy_kwh=0.8 * cap, departure=NOW + timedelta(hours=9)
        )
    if isinstance(device, HeatPumpDeviceConfig):
        return device.state(indoor_temp_c=device.setpoint_c, heat_on=False, outdoor_temp_forecast_c=(4.0, 3.0))
    if isinstance(device, BatteryDeviceConfig):
        return device.state(soc_kwh=(device.soc_min_kwh + device.soc_max_kwh) / 2)
    if isinstance(device, PvDeviceConfig):
        return device.state(available_kwh=-0.1 * device.kwp, forecast_kwh=[-0.12 * device.kwp] * 16)
    if isinstance(device, IndustrialDeviceConfig):
        plan = None if device.baseline_kw_by_hour is not None else [50.0] * 24
        return device.state(plan_start=NOW.replace(minute=0), backlog_kwh=0.0, baseline_kw_by_hour=plan)
    if isinstance(device, FreezerDeviceConfig):
        return device.state(temp_c=device.setpoint_c, compressor_on=False)
    if isinstance(device, WaterHeaterDeviceConfig):
        return device.state(temp_c=device.setpoint_c, heat_on=False, draw_forecast_l=(0.0, 10.0, 0.0))
    assert isinstance(device, WetApplianceDeviceConfig)
    return device.state(status=ApplianceStatus.WAITING, pressed_at=NOW, ready_by=NOW + timedelta(hours=10))


# -- example files ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_file_loads_and_builds_its_generators(path: Path) -> None:
    config = load_config(path)
    assert config.devices
    for device in config.devices:
        assert type(device) is CLASSES[device.load_type]
        generator = device.generator()
        assert generator.load_type == device.load_type
        generator.captured_flexibility(typical_state(device), None, ctx())


def test_the_all_devices_example_holds_every_load_type() -> None:
    config = load_config(EXAMPLES[0].parent / "all_devices.yaml")
    assert {d.load_type for d in config.devices} == set(load_types()) == set(CLASSES)


# -- valid sections -----------------------------------------------------------------------------
def test_minimal_sections_take_the_defaults() -> None:
    battery = parse_one("battery", MINIMAL["battery"])
    assert battery == BatteryDeviceConfig(
        name="d", capacity_kwh=10, soc_max_kwh=10, max_charge_kw=5, max_discharge_kw=5
    )
    assert battery.generator_options() == {"block_steps": 16, "form": "dependency", "energy_neutral": True}
    pv = parse_one("pv", MINIMAL["pv"])
    assert (pv.inverter_kw, pv.generator_options()) == (6.0, {"block_steps": 16})
    industrial = parse_one("industrial", MINIMAL["industrial"])
    assert isinstance(industrial, IndustrialDeviceConfig)
    assert (industrial.max_backlog_kwh, industrial.tolerance_kwh, industrial.makeup_s) == (20.0, 0.4, 7200)
    assert industrial.generator_options() == {"adapt_s": 3600} and industrial.baseline_kw_by_hour is None
    freezer = parse_one("freezer", MINIMAL["freezer"])
    assert isinstance(freezer, FreezerDeviceConfig)
    assert (freezer.kind, freezer.temp_min_c, freezer.temp_max_c, freezer.setpoint_c) == ("freezer", -22, -16, -19)
    fridge = parse_one("freezer", {"kind": "fridge", "power_kw": 0.08})
    assert isinstance(fridge, FreezerDeviceConfig)
    assert (fridge.temp_min_c, fridge.temp_max_c, fridge.setpoint_c, fridge.cop) == (2, 7, 4.5, 2.5)
    heater = parse_one("water_heater", MINIMAL["water_heater"])
    assert isinstance(heater, WaterHeaterDeviceConfig)
    assert (heater.min_c, heater.max_c, heater.setpoint_c, heater.deadband_c, heater.inlet_c) == (45, 75, 60, 5, 10)
    assert heater.generator_options() == {"block_steps": 16, "keep_end_level": True}
    dishwasher = parse_one("wet_appliance", MINIMAL["wet_appliance"])
    assert isinstance(dishwasher, WetApplianceDeviceConfig)
    assert dishwasher.programmes == PROGRAMME_CATALOGUE["dishwasher"]
    assert (dishwasher.allowed, dishwasher.preferred) == (("eco", "normal", "quick"), "eco")
    assert dishwasher.generator_options() == {}


def test_full_sections_keep_their_values() -> None:
    battery = parse_one(
        "battery",
        {
            "capacity_kwh": 13.5,
            "soc_min_kwh": 1.5,
            "soc_max_kwh": 12,
            "max_charge_kw": 5,
            "max_discharge_kw": 4,
            "charge_efficiency": 0.9,
            "discharge_efficiency": 0.97,
            "block_steps": 8,
            "form": "polytope",
            "energy_neutral": False,
        },
    )
    assert battery == BatteryDeviceConfig(
        name="d",
        capacity_kwh=13.5,
        soc_min_kwh=1.5,
        soc_max_kwh=12,
        max_charge_kw=5,
        max_discharge_kw=4,
        charge_efficiency=0.9,
        discharge_efficiency=0.97,
        block_steps=8,
        form="polytope",
        energy_neutral=False,
    )
    generator = battery.generator()
    assert (generator.block_steps, generator.form, generator.energy_neutral) == (8, "polytope", False)
    assert parse_one("pv", {"kwp": 10, "inverter_kw": 8, "block_steps": 4}) == PvDeviceConfig(
        name="d", kwp=10, inverter_kw=8, block_steps=4
    )
    industrial = parse_one(
        "industrial",
        {
            "up_kw": 10,
            "down_kw": 0,
            "max_backlog_kwh": 5,
            "tolerance_kwh": 0.5,
            "makeup_s": 3600,
            "adapt_s": 1800,
            "baseline_kw_by_hour": [20, 30],
        },
    )
    assert industrial == IndustrialDeviceConfig(
        name="d",
        up_kw=10,
        down_kw=0,
        max_backlog_kwh=5,
        tolerance_kwh=0.5,
        makeup_s=3600,
        adapt_s=1800,
        baseline_kw_by_hour=(20.0, 30.0),
    )
    assert industrial.generator().adapt_s == 1800
    freezer = parse_one(
        "freezer",
        {
            "kind": "fridge",
            "power_kw": 0.1,
            "band_c": [1, 8],
            "setpoint_c": 4,
            "deadband_c": 3,
            "ua_kw_per_k": 0.001,
            "c_kwh_per_k": 0.03,
            "cop": 2.2,
            "ambient_c": 25,
            "substep_s": 30,
            "block_steps": 12,
        },
    )
    assert freezer == FreezerDeviceConfig(
        name="d",
        kind="fridge",
        power_kw=0.1,
        temp_min_c=1,
        temp_max_c=8,
        setpoint_c=4,
        deadband_c=3,
        ua_kw_per_k=0.001,
        c_kwh_per_k=0.03,
        cop=2.2,
        ambient_c=25,
        substep_s=30,
        block_steps=12,
    )
    assert freezer.generator().block_steps == 12
    heater = parse_one(
        "water_heater",
        {
            "tank_l": 80,
            "element_kw": 2,
            "ua_kw_per_k": 0.001,
            "band_c": [50, 70],
            "setpoint_c": 55,
            "deadband_c": 4,
            "ambient_c": 20,
            "inlet_c": 12,
            "block_steps": 24,
            "keep_end_level": False,
        },
    )
    assert heater == WaterHeaterDeviceConfig(
        name="d",
        tank_l=80,
        element_kw=2,
        ua_kw_per_k=0.001,
        min_c=50,
        max_c=70,
        setpoint_c=55,
        deadband_c=4,
        ambient_c=20,
        inlet_c=12,
        block_steps=24,
        keep_end_level=False,
    )
    assert (heater.generator().block_steps, heater.generator().keep_end_level) == (24, False)
    washer = parse_one(
        "wet_appliance",
        {
            "kind": "washer_dryer",
            "programmes": [
                {"name": "wash", "energy_kwh": [0.5, 0.2]},
                {"name": "dry", "energy_kwh": [1], "step_s": 600},
            ],
            "allowed": ["dry", "wash"],
            "preferred": "wash",
        },
    )
    assert isinstance(washer, WetApplianceDeviceConfig)
    assert [(p.name, p.energy_kwh, p.step_s) for p in washer.programmes] == [
        ("wash", (0.5, 0.2), 900),
        ("dry", (1.0,), 600),
    ]
    assert (washer.kind, washer.allowed, washer.preferred) == ("washer_dryer", ("dry", "wash"), "wash")
    hp = parse_one("heat_pump", {**MINIMAL["heat_pump"], "keep_end_level": False})
    assert hp.generator().keep_end_level is False


# -- bad fields ---------------------------------------------------------------------------------
BAD: list[tuple[str, dict[str, Any], str]] = [
    # missing
    ("battery", changed("battery", capacity_kwh=KeyError), "capacity_kwh: is missing (a required key)"),
    ("pv", changed("pv", kwp=KeyError), "kwp: is missing (a required key)"),
    ("industrial", changed("industrial", up_kw=KeyError), "up_kw: is missing (a required key)"),
    ("freezer", changed("freezer", power_kw=KeyError), "power_kw: is missing (a required key)"),
    ("water_heater", changed("water_heater", tank_l=KeyError), "tank_l: is missing (a required key)"),
    ("wet_appliance", changed("wet_appliance", kind=KeyError), "kind: is missing (a required key)"),
    (
        "wet_appliance",
        changed("wet_appliance", kind="toaster"),
        "programmes: is missing: kind 'toaster' has no built-in programmes (dishwasher, washing_machine have); "
        "list the appliance's programmes",
    ),
    (
        "wet_appliance",
        changed("wet_appliance", programmes=[{"energy_kwh": [1]}]),
        "programmes[0].name: is missing (a required key)",
    ),
    # wrong type
    ("battery", changed("battery", max_charge_kw="5 kW"), "max_charge_kw: must be a number, not a string ('5 kW')"),
    (
        "battery",
        changed("battery", energy_neutral="yes"),
        "energy_neutral: must be true or false, not a string ('yes')",
    ),
    ("battery", changed("battery", form=1), "form: must be one of dependency, polytope, not a number (1)"),
    ("pv", changed("pv", block_steps=4.5), "block_steps: must be a whole number, not a number (4.5)"),
    (
        "industrial",
        changed("industrial", baseline_kw_by_hour=5),
        "baseline_kw_by_hour: must be a list of numbers, not a number (5)",
    ),
    ("freezer", changed("freezer", band_c=-18), "band_c: must be a list [low, high] of two numbers, not -18"),
    (
        "water_heater",
        changed("water_heater", keep_end_level=1),
        "keep_end_level: must be true or false, not a number (1)",
    ),
    (
        "wet_appliance",
        changed("wet_appliance", programmes={"eco": [1]}),
        "programmes: must be a list of mappings, not a mapping ({'eco': [1]})",
    ),
    (
        "wet_appliance",
        changed("wet_appliance", allowed="eco"),
        "allowed: must be a list of non-empty strings, not a string ('eco')",
    ),
    # out of range
    ("battery", changed("battery", capacity_kwh=10**400), "capacity_kwh: must be a finite number, not inf"),
    (
        "freezer",
        changed("freezer", deadband_c=7),
        "deadband_c: the thermostat -19 +/- 3.5 C must lie within band_c [-22, -16]",
    ),
    ("battery", changed("battery", capacity_kwh=0), "capacity_kwh: 0 is out of range: it must be above 0"),
    (
        "battery",
        changed("battery", discharge_efficiency=1.1),
        "discharge_efficiency: 1.1 is out of range: it must be at most 1",
    ),
    ("battery", changed("battery", form="lp"), "form: 'lp' is not one of dependency, polytope"),
    ("pv", changed("pv", inverter_kw=-1), "inverter_kw: -1 is out of range: it must be above 0"),
    ("industrial", changed("industrial", down_kw=-5), "down_kw: -5 is out of range: it must be at least 0"),
    ("industrial", changed("industrial", adapt_s=0), "adapt_s: 0 is out of range: it must be at least 1"),
    (
        "industrial",
        changed("industrial", baseline_kw_by_hour=[10, -1]),
        "baseline_kw_by_hour[1]: -1 is out of range: it must be at least 0",
    ),
    ("freezer", changed("freezer", kind="chest"), "kind: 'chest' is not one of freezer, fridge"),
    ("freezer", changed("freezer", block_steps=1), "block_steps: 1 is out of range: it must be at least 2"),
    ("freezer", changed("freezer", ambient_c=90), "ambient_c: 90 is out of range: it must be at most 60"),
    ("water_heater", changed("water_heater", inlet_c=-3), "inlet_c: -3 is out of range: it must be at least 0"),
    (
        "water_heater",
        changed("water_heater", band_c=[45, 110]),
        "band_c: [45, 110] is out of range: liquid water lies within [0, 100] C",
    ),
    (
        "wet_appliance",
        changed("wet_appliance", programmes=[{"name": "p", "energy_kwh": [0, 1]}]),
        "programmes[0].energy_kwh: the first step must draw energy (a positive setpoint signals the start)",
    ),
    (
        "wet_appliance",
        changed("wet_appliance", programmes=[{"name": "p", "energy_kwh": []}]),
        "programmes[0].energy_kwh: needs at least 1 value(s), not 0",
    ),
    # unknown fields
    (
        "wet_appliance",
        changed("wet_appliance", programmes=[{"name": "p", "energy_kwh": [1], "temp_c": 40}]),
        "programmes[0].temp_c: is an unknown field; known fields: energy_kwh, name, step_s",
    ),
    # cross-field
    (
        "battery",
        changed("battery", soc_max_kwh=12),
        "soc_max_kwh: 12 is out of range: it must be at most capacity_kwh (10)",
    ),
    (
        "battery",
        changed("battery", soc_min_kwh=6, soc_max_kwh=6),
        "soc_min_kwh: 6 is out of range: it must be below soc_max_kwh (6), or the battery has no window",
    ),
    (
        "industrial",
        changed("industrial", up_kw=0, down_kw=0),
        "down_kw: up_kw and down_kw are both 0: the process has no adaptation capacity to offer",
    ),
    (
        "industrial",
        changed("industrial", max_backlog_kwh=1, tolerance_kwh=2),
        "tolerance_kwh: 2 is out of range: it must be at most max_backlog_kwh (1)",
    ),
    ("freezer", changed("freezer", band_c=[-18, -18]), "band_c: low -18 must be below high -18"),
    (
        "freezer",
        changed("freezer", setpoint_c=-16.5),
        "setpoint_c: the thermostat -16.5 +/- 1 C must lie within band_c [-22, -16]",
    ),
    (
        "freezer",
        changed("freezer", ua_kw_per_k=0.1, c_kwh_per_k=0.001),
        "c_kwh_per_k: the compartment's time constant c_kwh_per_k / ua_kw_per_k = 0.01 h must be longer than one "
        "sub-step (substep_s = 60 s)",
    ),
    (
        "water_heater",
        changed("water_heater", setpoint_c=80),
        "setpoint_c: 80 is out of range: it must lie within band_c [45, 75]",
    ),
    (
        "water_heater",
        changed("water_heater", band_c=[55, 60], deadband_c=8),
        "deadband_c: 8 is out of range: it must not exceed the width of band_c (5)",
    ),
    (
        "wet_appliance",
        changed("wet_appliance", allowed=["eco", "turbo"]),
        "allowed[1]: 'turbo' is not one of the appliance's programmes: eco, normal, quick",
    ),
    (
        "wet_appliance",
        changed("wet_appliance", allowed=["eco"], preferred="quick"),
        "preferred: 'quick' must be one of the allowed programmes: eco",
    ),
    (
        "wet_appliance",
        changed("wet_appliance", programmes=[{"name": "p", "energy_kwh": [1]}, {"name": "p", "energy_kwh": [2]}]),
        "programmes[1].name: 'p' is used by another programme; names must be unique",
    ),
    (
        "heat_pump",
        changed("heat_pump", setpoint_c=25),
        "setpoint_c: 25 is out of range: it must lie within comfort_c [20, 23]",
    ),
]


@pytest.mark.parametrize(("load_type", "fields", "expected"), BAD, ids=[f"{b[0]}:{b[2][:40]}" for b in BAD])
def test_each_bad_field_is_named(load_type: str, fields: dict[str, Any], expected: str) -> None:
    assert problems(load_type, fields) == [f"devices[0].{expected}"]


@pytest.mark.parametrize("load_type", sorted(MINIMAL))
def test_an_unknown_field_lists_the_load_types_fields(load_type: str) -> None:
    [problem] = problems(load_type, changed(load_type, colour="red"))
    assert problem.startswith("devices[0].colour: is an unknown field; known fields: ")
    assert all(key in problem for key in MINIMAL[load_type])


def test_every_problem_of_a_section_is_listed_at_once() -> None:
    wet = changed("wet_appliance", kind=KeyError, programmes=[{"name": "p", "energy_kwh": [1], "temp_c": 40}])
    assert problems("wet_appliance", wet) == [
        "devices[0].kind: is missing (a required key)",
        "devices[0].programmes[0].temp_c: is an unknown field; known fields: energy_kwh, name, step_s",
    ]
    battery = changed("battery", capacity_kwh="ten", max_charge_kw=-1, form="lp", size="L")
    assert [p.split(":")[0] for p in problems("battery", battery)] == [
        "devices[0].capacity_kwh",
        "devices[0].max_charge_kw",
        "devices[0].form",
        "devices[0].size",
    ]


def test_fields_the_slice_makes_impossible_are_named() -> None:
    fast = changed("heat_pump", r_k_per_kw=0.5, c_kwh_per_k=0.4)
    assert problems("heat_pump", fast) == [
        "devices[0].c_kwh_per_k: the building's time constant r_k_per_kw * c_kwh_per_k = 0.2 h must be longer "
        "than one step (prosumer.slice_s = 900 s)"
    ]
    assert isinstance(parse_one("heat_pump", fast, slice_s=300), HeatPumpDeviceConfig)
    leaky = changed("water_heater", tank_l=1, ua_kw_per_k=0.01)
    assert problems("water_heater", leaky, slice_s=3600) == [
        "devices[0].ua_kw_per_k: 0.01 is out of range: the 1 L tank would lose more than its heat in one step "
        "(prosumer.slice_s = 3600 s)"
    ]


# -- states -------------------------------------------------------------------------------------
STATE_CLASSES = {
    "ev": EVState,
    "heat_pump": ThermalState,
    "battery": BatteryState,
    "pv": PvState,
    "industrial": IndustrialState,
    "freezer": FreezerState,
    "water_heater": WaterHeaterState,
    "wet_appliance": WetApplianceState,
}


@pytest.mark.parametrize("load_type", sorted(MINIMAL))
def test_state_joins_the_config_with_the_readings_and_the_generator_offers(load_type: str) -> None:
    device = parse_one(load_type, MINIMAL[load_type])
    state = typical_state(device)
    assert type(state) is STATE_CLASSES[load_type]
    offer = device.generator().generate(state, ctx())
    assert offer is not None and offer.device == load_type
    assert validate_offer(offer) == []


def test_state_values_come_from_config_and_readings() -> None:
    battery = parse_one("battery", {**MINIMAL["battery"], "soc_min_kwh": 1})
    assert battery.state(soc_kwh=4.0) == BatteryState(
        capacity_kwh=10, soc_kwh=4, soc_min_kwh=1, soc_max_kwh=10, max_charge_kw=5, max_discharge_kw=5
    )
    with pytest.raises(StateError, match=r"soc_kwh 0\.5 must lie within"):
        battery.state(soc_kwh=0.5)
    industrial = parse_one("industrial", MINIMAL["industrial"])
    assert isinstance(industrial, IndustrialDeviceConfig)
    with pytest.raises(StateError, match=r"no baseline_kw_by_hour in its configuration"):
        industrial.state(plan_start=NOW.replace(minute=0))
    fridge = parse_one("freezer", {"kind": "fridge", "power_kw": 0.1, "ambient_c": 24})
    assert isinstance(fridge, FreezerDeviceConfig)
    assert fridge.state(temp_c=5, compressor_on=True).ambient_forecast_c == (24.0,)
    assert fridge.state(temp_c=5, compressor_on=True, ambient_forecast_c=[20, 21]).ambient_forecast_c == (20.0, 21.0)
    dishwasher = parse_one("wet_appliance", MINIMAL["wet_appliance"])
    assert isinstance(dishwasher, WetApplianceDeviceConfig)
    idle = dishwasher.state()
    assert (idle.status, idle.preferred, idle.allowed) == (ApplianceStatus.IDLE, "eco", ("eco", "normal", "quick"))
    waiting = dishwasher.state(
        status=ApplianceStatus.WAITING, pressed_at=NOW, ready_by=NOW + timedelta(hours=3), preferred="quick"
    )
    assert dishwasher.generator().offered_programmes(waiting, ctx()) == ("eco", "normal", "quick")
    assert waiting.preferred == "quick"


# -- properties ---------------------------------------------------------------------------------
def _f(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def _heat_pump(draw: st.DrawFn) -> dict[str, Any]:
    low, width = draw(_f(15, 22)), draw(_f(0.5, 5))
    deadband = draw(_f(0, width))
    return {
        "max_power_kw": draw(_f(0.5, 10)),
        "comfort_c": [low, low + width],
        "setpoint_c": draw(_maybe(_f(low, low + width))),
        "deadband_c": deadband,
        "r_k_per_kw": draw(_f(1, 20)),
        "c_kwh_per_k": draw(_f(1, 30)),
        "cop": draw(_f(1, 5)),
        "block_steps": draw(st.integers(1, 96)),
        "keep_end_level": draw(st.booleans()),
    }


@st.composite
def _battery(draw: st.DrawFn) -> dict[str, Any]:
    capacity = draw(_f(1, 50))
    return {
        "capacity_kwh": capacity,
        "soc_min_kwh": draw(_f(0, 0.4)) * capacity,
        "soc_max_kwh": draw(_maybe(_f(0.5, 1).map(lambda x: x * capacity))),
        "max_charge_kw": draw(_f(0.5, 20)),
        "max_discharge_kw": draw(_maybe(_f(0.5, 20))),
        "charge_efficiency": draw(_f(0.8, 1)),
        "discharge_efficiency": draw(_f(0.8, 1)),
        "block_steps": draw(st.integers(1, 96)),
        "form": draw(st.sampled_from(["dependency", "polytope"])),
        "energy_neutral": draw(st.booleans()),
    }


@st.composite
def _industrial(draw: st.DrawFn) -> dict[str, Any]:
    max_backlog = draw(_maybe(_f(0, 200)))
    tolerance = None if max_backlog is None else draw(_f(0, 1)) * max_backlog
    return {
        "up_kw": draw(_f(0, 100)),
        "down_kw": draw(_f(1, 100)),
        "max_backlog_kwh": max_backlog,
        "tolerance_kwh": tolerance,
        "makeup_s": draw(st.integers(0, 14_400)),
        "adapt_s": draw(st.sampled_from([900, 1800, 3600, 7200])),
        "baseline_kw_by_hour": draw(_maybe(st.lists(_f(0, 100), min_size=1, max_size=48))),
    }


@st.composite
def _freezer(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": draw(st.sampled_from(["freezer", "fridge"])), "power_kw": draw(_f(0.05, 0.3))}
    if draw(st.booleans()):
        low, width = draw(_f(-30, 5)), draw(_f(2, 10))
        deadband = draw(_f(0, width / 2))
        fields.update(
            band_c=[low, low + width],
            deadband_c=deadband,
            setpoint_c=low + deadband / 2 + draw(_f(0.01, 0.99)) * (width - deadband),
            ua_kw_per_k=draw(_f(0.0002, 0.002)),
            c_kwh_per_k=draw(_f(0.01, 0.1)),
            cop=draw(_f(1, 3)),
        )
    fields.update(
        ambient_c=draw(_f(-10, 40)),
        substep_s=draw(st.sampled_from([10, 60, 300])),
        block_steps=draw(st.integers(2, 48)),
    )
    return fields


@st.composite
def _water_heater(draw: st.DrawFn) -> dict[str, Any]:
    low, width = draw(_f(30, 55)), draw(_f(5, 40))
    return {
        "tank_l": draw(_f(50, 300)),
        "element_kw": draw(_f(1, 6)),
        "ua_kw_per_k": draw(_f(0, 0.005)),
        "band_c": [low, low + width],
        "setpoint_c": draw(_maybe(_f(low, low + width))),
        "deadband_c": draw(_f(0, width)),
        "ambient_c": draw(_f(0, 30)),
        "inlet_c": draw(_f(5, 20)),
        "block_steps": draw(st.integers(1, 96)),
        "keep_end_level": draw(st.booleans()),
    }


@st.composite
def _wet_appliance(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        kind = draw(st.sampled_from(sorted(PROGRAMME_CATALOGUE)))
        names = [p.name for p in PROGRAMME_CATALOGUE[kind]]
        fields: dict[str, Any] = {"kind": kind}
    else:
        names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3, unique=True))
        programmes = [
            {
                "name": n,
                "energy_kwh": [draw(_f(0.01, 1)), *draw(st.lists(_f(0, 1), max_size=11))],
                "step_s": draw(st.sampled_from([300, 900, 1800])),
            }
            for n in names
        ]
        fields = {"kind": "washer_dryer", "programmes": programmes}
    allowed = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    fields.update(allowed=allowed, preferred=draw(st.sampled_from(allowed)))
    return fields


SECTIONS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "ev": st.fixed_dictionaries(
        {"max_power_kw": _f(0.1, 50), "capacity_kwh": _f(1, 200), "charge_efficiency": _maybe(_f(0.5, 1))}
    ),
    "heat_pump": _heat_pump(),
    "battery": _battery(),
    "pv": st.fixed_dictionaries(
        {"kwp": _f(1, 100), "inverter_kw": _maybe(_f(0.5, 100)), "block_steps": st.integers(1, 96)}
    ),
    "industrial": _industrial(),
    "freezer": _freezer(),
    "water_heater": _water_heater(),
    "wet_appliance": _wet_appliance(),
}
SECTION = st.sampled_from(sorted(SECTIONS)).flatmap(lambda t: st.tuples(st.just(t), SECTIONS[t]))


@given(SECTION)
def test_any_valid_section_parses_builds_its_generator_and_a_state_it_runs_on(case: tuple[str, dict]) -> None:
    load_type, fields = case
    device = parse_one(load_type, fields)
    assert type(device) is CLASSES[load_type] and device.load_type == load_type
    for key, value in fields.items():
        if isinstance(value, bool | str) and hasattr(device, key):
            assert getattr(device, key) == value
    generator = device.generator()
    assert generator.load_type == load_type
    state = typical_state(device)
    offer = generator.generate(state, ctx())
    if offer is not None:
        assert validate_offer(offer) == []
    assert 0.0 <= generator.captured_flexibility(state, offer, ctx()) <= 1.0


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.booleans()), max_size=4),
    st.lists(st.dictionaries(st.sampled_from(["name", "energy_kwh", "step_s", "x"]), st.integers(-2, 2)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(SECTION, st.data())
def test_invalid_values_raise_config_error_and_nothing_else(case: tuple[str, dict], data: st.DataObject) -> None:
    load_type, fields = case
    key = data.draw(st.sampled_from([*sorted(fields), "extra_field"]))
    fields = {**fields, key: data.draw(JUNK)}
    try:
        device = parse_one(load_type, fields)
    except ConfigError as exc:
        assert exc.problems and all(str(p).startswith("devices[0].") for p in exc.problems)
        return
    assert type(device) is CLASSES[load_type]
    assert device.generator().load_type == load_type

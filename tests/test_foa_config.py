"""FOA user configuration (F2.FOA3): the example file loads; every error class names the file and key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from atp.flexoffer import Mode
from atp.foa import EVGenerator, HeatPumpGenerator, load_types
from atp.foa import generator as registry
from atp.foa.config import (
    ConfigError,
    EVDeviceConfig,
    FoaConfig,
    GenericDeviceConfig,
    HeatPumpDeviceConfig,
    load_config,
    parse_config,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "foa" / "prosumer.yaml"
BASE = {
    "prosumer": {
        "issuer": "p1",
        "meter_id": "M-1",
        "mode": "delegated",
        "receiver": "fman-1",
    },
    "devices": [
        {"name": "ev-1", "load_type": "ev", "max_power_kw": 11, "capacity_kwh": 60},
        {
            "name": "hp-1",
            "load_type": "heat_pump",
            "max_power_kw": 3,
            "comfort_c": [20, 23],
            "r_k_per_kw": 5,
            "c_kwh_per_k": 10,
            "cop": 3,
        },
    ],
}


def problems_of(data, source: str = "foa.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source=source)
    assert str(info.value).count(f"{source}: ") == min(len(info.value.problems), 8)
    return [str(p) for p in info.value.problems]


def with_change(path: tuple, value) -> dict:
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def test_example_file_loads_into_typed_dataclasses() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, FoaConfig) and config.source == "prosumer.yaml"
    p = config.prosumer
    assert (p.issuer, p.mode, p.receiver_is_url, p.location.congestion_point) == (
        "foss-p017",
        Mode.DIRECT,
        True,
        "cp-3",
    )
    assert p.priority == 0.5 and p.price_eur_per_kwh == pytest.approx(0.12 * 2.5)
    ev, hp = config.devices
    assert isinstance(ev, EVDeviceConfig) and ev.max_power_kw == 11.0
    assert isinstance(hp, HeatPumpDeviceConfig) and (hp.comfort_min_c, hp.comfort_max_c) == (20.0, 23.0)
    generators = config.generators()
    assert isinstance(generators["ev-1"], EVGenerator) and isinstance(generators["hp-1"], HeatPumpGenerator)
    assert generators["hp-1"].block_steps == 16


def test_json_file_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "foa.json"
    path.write_text(json.dumps(BASE))
    config = load_config(path)
    assert config.prosumer.mode is Mode.DELEGATED and config.prosumer.price_eur_per_kwh is None
    assert config.prosumer.slice_s == 900 and not config.prosumer.receiver_is_url
    ev, hp = config.devices
    assert ev.charge_efficiency == 0.92
    assert (hp.setpoint_c, hp.deadband_c, hp.block_steps) == (21.5, 1.0, 16)


def test_missing_keys() -> None:
    assert problems_of(with_change(("prosumer", "issuer"), KeyError)) == [
        "prosumer.issuer: is missing (a required key)"
    ]
    assert problems_of(with_change(("devices", 0, "capacity_kwh"), KeyError)) == [
        "devices[0].capacity_kwh: is missing (a required key)"
    ]
    assert problems_of({"prosumer": BASE["prosumer"]}) == ["devices: is missing (a required key)"]
    direct = with_change(("prosumer", "mode"), "direct")
    assert problems_of(direct) == [
        "prosumer.priority: is missing (a required key)",
        "prosumer.base_eur_per_kwh: is missing (a required key)",
    ]


def test_wrong_types() -> None:
    assert problems_of(with_change(("devices", 0, "max_power_kw"), "11 kW")) == [
        "devices[0].max_power_kw: must be a number, not a string ('11 kW')"
    ]
    assert problems_of(with_change(("devices", 1, "block_steps"), 2.5)) == [
        "devices[1].block_steps: must be a whole number, not a number (2.5)"
    ]
    assert problems_of(with_change(("devices",), {"ev": 1})) == ["devices: must be a list of devices, not a mapping"]
    assert problems_of(with_change(("devices", 1, "comfort_c"), 21)) == [
        "devices[1].comfort_c: must be a list [low, high] of two numbers, not 21"
    ]
    assert problems_of([1, 2]) == ["must be a mapping with prosumer and devices, not a list"]


def test_bad_ranges() -> None:
    assert problems_of(with_change(("devices", 1, "comfort_c"), [23, 20])) == [
        "devices[1].comfort_c: low 23 is above high 20"
    ]
    assert problems_of(with_change(("devices", 0, "charge_efficiency"), 1.2)) == [
        "devices[0].charge_efficiency: 1.2 is out of range: it must be at most 1"
    ]
    assert problems_of(with_change(("devices", 0, "max_power_kw"), 0)) == [
        "devices[0].max_power_kw: 0 is out of range: it must be above 0"
    ]
    assert problems_of(with_change(("prosumer", "slice_s"), 7000)) == [
        "prosumer.slice_s: 7000 is out of range: it must divide 86400 (e.g. 900 or 3600)"
    ]
    assert problems_of(with_change(("prosumer", "mode"), "auction")) == [
        "prosumer.mode: 'auction' is not a mode; use direct or delegated"
    ]
    direct = with_change(("prosumer", "mode"), "direct")
    direct["prosumer"].update(priority=1.5, base_eur_per_kwh=0.1)
    assert problems_of(direct) == [
        "prosumer.priority: priority 1.5 must lie within [0, 1] (0 = indifferent, 1 = do not touch)"
    ]
    twice = with_change(("devices", 1, "name"), "ev-1")
    assert problems_of(twice) == ["devices[1].name: 'ev-1' is used by another device; device names must be unique"]


def test_unknown_load_type_lists_the_known_ones() -> None:
    [problem] = problems_of(with_change(("devices", 0, "load_type"), "toaster"))
    assert problem.startswith("devices[0].load_type: unknown load type 'toaster'; known load types: ")
    assert all(name in problem for name in load_types())


def test_unknown_fields() -> None:
    [problem] = problems_of(with_change(("devices", 0, "colour"), "red"))
    assert problem.startswith("devices[0].colour: is an unknown field; known fields: ")
    assert "capacity_kwh" in problem and "max_power_kw" in problem
    [top] = problems_of(with_change(("extra",), 1))
    assert top.startswith("extra: is an unknown field")
    delegated_price = with_change(("prosumer", "base_eur_per_kwh"), 0.1)
    assert problems_of(delegated_price) == [
        "prosumer.base_eur_per_kwh: is only for direct mode: a delegated offer carries no price"
    ]


def test_every_problem_is_listed_at_once() -> None:
    data = with_change(("devices", 1, "comfort_c"), [23, 20])
    data["devices"][0]["max_power_kw"] = "x"
    del data["prosumer"]["meter_id"]
    assert len(problems_of(data)) == 3


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("prosumer: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: cannot be parsed"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file"):
        load_config(tmp_path / "nope.yaml")
    other = tmp_path / "foa.toml"
    other.write_text("")
    with pytest.raises(ConfigError, match=r"foa\.toml: unknown file type '\.toml'"):
        load_config(other)
    yaml_bad = tmp_path / "foa.yaml"
    yaml_bad.write_text(EXAMPLE.read_text().replace("comfort_c: [20.0, 23.0]", "comfort_c: [23, 20]"))
    with pytest.raises(ConfigError, match=r"foa\.yaml: devices\[1\]\.comfort_c: low 23 is above high 20"):
        load_config(yaml_bad)


def test_registered_load_type_without_a_parser_keeps_its_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    class KettleGenerator(EVGenerator):
        load_type = "kettle_test"

    monkeypatch.setitem(registry._REGISTRY, "kettle_test", KettleGenerator)
    data = copy.deepcopy(BASE)
    data["devices"].append({"name": "k-1", "load_type": "kettle_test", "power_kw": 2.0, "modes": [0, 2]})
    device = parse_config(data).devices[-1]
    assert isinstance(device, GenericDeviceConfig) and device.params == {"power_kw": 2.0, "modes": [0, 2]}
    assert isinstance(device.generator(), KettleGenerator)
    data["devices"][-1]["power_kw"] = {"nested": 1}
    assert problems_of(data) == [
        "devices[2].power_kw: must be a number, string, boolean or list of numbers, not a mapping"
    ]

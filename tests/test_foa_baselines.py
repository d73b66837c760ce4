"""Declared baselines on a small site: the baseline in force against the uncontrolled twins.

The FOA's default schedules are what prosumers are settled against, so over a day the baseline
in force (the newest open offer's default at each step, the metered energy where no offer
covers the step) must stay close to what an uncontrolled twin of each device drew: within 10 %
per device type, and exactly for the load types whose default is the twin's own operation and
whose plans only shift it in time (EV charging, wet-appliance programmes: a schedule shifted
past its default declares nothing there, so the shifted energy is not declared twice).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.kpi import compute_kpis
from sim.world import World
from tests.test_world import config_for

SMALL_SITE = (
    "scenario=foss",
    "output.report=false",
    "scenario.prosumers.delegated=16",
    "scenario.prosumers.direct=8",
    "devices.ev.delegated=6",
    "devices.ev.direct=4",
    "devices.heat_pump.delegated=12",
    "devices.heat_pump.direct=6",
    "devices.wet_appliance.delegated=10",
    "devices.wet_appliance.direct=5",
    "devices.water_heater.delegated=8",
    "devices.water_heater.direct=4",
    "devices.freezer.delegated=14",
    "devices.freezer.direct=0",
)


def baselines(seed: int) -> dict[str, tuple[float, float]]:
    """Per device type of one day on the small site: (uncontrolled twin kWh, baseline in force kWh)."""
    world = World(config_for(*SMALL_SITE, f"sim.seed={seed}"))
    world.run()
    by_device = compute_kpis(world)["energy"]["by_device"]
    return {device: (e["uncontrolled_kwh"], e["baseline_in_force_kwh"]) for device, e in by_device.items()}


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_baseline_in_force_follows_the_uncontrolled_twins(seed):
    figures = baselines(seed)
    assert set(figures) == {"ev", "heat_pump", "wet_appliance", "water_heater", "freezer"}
    for device, (twin, in_force) in figures.items():
        assert twin > 1.0, (device, twin)  # every type draws enough for a share to mean something
        assert abs(in_force - twin) <= 0.10 * twin, (seed, device, twin, in_force)
    for device in ("ev", "wet_appliance"):
        twin, in_force = figures[device]
        assert abs(in_force - twin) <= 1e-6 * twin + 1e-6, (seed, device, twin, in_force)

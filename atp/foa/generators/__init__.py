"""The built-in load types; importing this package registers their generators."""

from atp.foa.generators.battery import BatteryGenerator, BatteryState
from atp.foa.generators.ev import EVGenerator
from atp.foa.generators.freezer import FreezerGenerator, FreezerState
from atp.foa.generators.heat_pump import HeatPumpGenerator
from atp.foa.generators.industrial import IndustrialGenerator, IndustrialState
from atp.foa.generators.pv import PvGenerator, PvState
from atp.foa.generators.water_heater import WaterHeaterGenerator
from atp.foa.generators.wet_appliance import WetApplianceGenerator

__all__ = [
    "BatteryGenerator",
    "BatteryState",
    "EVGenerator",
    "FreezerGenerator",
    "FreezerState",
    "HeatPumpGenerator",
    "IndustrialGenerator",
    "IndustrialState",
    "PvGenerator",
    "PvState",
    "WaterHeaterGenerator",
    "WetApplianceGenerator",
]

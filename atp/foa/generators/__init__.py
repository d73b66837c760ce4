"""The built-in load types; importing this package registers their generators."""

from atp.foa.generators.ev import EVGenerator
from atp.foa.generators.heat_pump import HeatPumpGenerator

__all__ = ["EVGenerator", "HeatPumpGenerator"]

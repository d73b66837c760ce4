"""The Flex-Offer Agent (FOA): core agent, load-type generators, built-in EMS and xEMS seam."""

from atp.foa.agent import FlexOfferAgent, PendingSubmission, TrackedOffer
from atp.foa.ems import BuiltInEMS, Deviation, InProcessXemsAdapter, XemsAdapter, schedule_step
from atp.foa.errors import (
    CommunicationError,
    EmsError,
    FoaError,
    GenerationError,
    ScheduleRefusedError,
    StateError,
    UnknownDeviceError,
    UnknownLoadTypeError,
)
from atp.foa.generator import (
    MAX_HORIZON_S,
    FlexOfferGenerator,
    GenerationContext,
    generator_for,
    load_types,
    register_generator,
)
from atp.foa.generators import EVGenerator, HeatPumpGenerator
from atp.foa.states import EVState, ThermalState

__all__ = [
    "MAX_HORIZON_S",
    "BuiltInEMS",
    "CommunicationError",
    "Deviation",
    "EVGenerator",
    "EVState",
    "EmsError",
    "FlexOfferAgent",
    "FlexOfferGenerator",
    "FoaError",
    "GenerationContext",
    "GenerationError",
    "HeatPumpGenerator",
    "InProcessXemsAdapter",
    "PendingSubmission",
    "ScheduleRefusedError",
    "StateError",
    "ThermalState",
    "TrackedOffer",
    "UnknownDeviceError",
    "UnknownLoadTypeError",
    "XemsAdapter",
    "generator_for",
    "load_types",
    "register_generator",
    "schedule_step",
]

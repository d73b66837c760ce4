"""Device kinds: how the world builds, observes, triggers and steps each load type.

One `DeviceKind` per load type binds the physics (`sim/agents/*`) to the FOA's generator
(`atp/foa/generators/*`): it checks its config section, draws a device from the seed, says when
the FOA should generate an offer, fills the FOA's state dataclass from the physics, and advances
the physics one step. Adding a load type to the world = one `DeviceKind` registered here with
`register_kind`; the prosumer, the world, the outputs and the KPIs iterate over kinds.
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

from atp.foa import EVGenerator, FlexOfferGenerator, HeatPumpGenerator
from atp.foa.generators import (
    BatteryGenerator,
    FreezerGenerator,
    IndustrialGenerator,
    PvGenerator,
    WaterHeaterGenerator,
    WetApplianceGenerator,
)
from sim.agents.battery import Battery
from sim.agents.devices import EVCharger, HeatPump
from sim.agents.freezer import Freezer
from sim.agents.industrial import IndustrialProcess
from sim.agents.pv import PvSystem
from sim.agents.water_heater import WaterHeater
from sim.agents.wet_appliance import WetAppliance

__all__ = [
    "BlockKind",
    "BuildContext",
    "DeviceKind",
    "KindError",
    "StepEnv",
    "block_phase",
    "check_number",
    "check_range",
    "get_kind",
    "kind_names",
    "register_kind",
]


class KindError(ValueError):
    """A device section of the config is wrong; the message names the key."""


@dataclass(frozen=True)
class StepEnv:
    """What the world knows at step k: time, weather now and ahead, PV potential."""

    k: int
    window_k: int  # steps since the reporting window began (negative in the warm-up)
    now: datetime
    slice_s: int
    outdoor_c: float
    outdoor_forecast_c: np.ndarray  # from step k+1 on
    pv_kwh_per_kwp: float  # production potential per kWp installed over step k (>= 0)
    pv_forecast_kwh_per_kwp: np.ndarray  # from step k+1 on
    block_phase: int = 0  # the prosumer's block phase (`block_phase`); the prosumer sets it


@dataclass(frozen=True)
class BuildContext:
    """What a kind needs to draw a device: the run's start, length and the site's UTC offset."""

    start: datetime
    days: int
    utc_offset_s: int
    slice_s: int


def check_number(params: Mapping[str, Any], key: str, prefix: str, *, minimum: float | None = None) -> float:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KindError(f"{prefix}.{key}: must be a number, not {value!r}")
    if minimum is not None and value < minimum:
        raise KindError(f"{prefix}.{key}: must be at least {minimum}, not {value}")
    return float(value)


def check_range(params: Mapping[str, Any], key: str, prefix: str, *, minimum: float = 0.0) -> tuple[float, float]:
    value = params.get(key)
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise KindError(f"{prefix}.{key}: must be a pair [low, high], not {value!r}")
    lo, hi = value
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (lo, hi)):
        raise KindError(f"{prefix}.{key}: must hold two numbers, not {value!r}")
    if lo > hi:
        raise KindError(f"{prefix}.{key}: low {lo} is above high {hi}")
    if lo < minimum:
        raise KindError(f"{prefix}.{key}: must not be below {minimum}, not {lo}")
    return float(lo), float(hi)


_WATER_KWH_PER_L_K = 4.186 / 3600  # heat capacity of water
HP_BLOCK_STEPS = 16  # block offers (heat pump, water heater, battery, PV) cover 16 steps (4 h at 15 min)


def block_phase(name: str) -> int:
    """The step (0 <= phase < HP_BLOCK_STEPS) at which a prosumer's blocks start, from its name.

    Staggered: were every device's blocks to start and end at the same step, the last blocks of
    the window would hand every heat pump, boiler and battery of the site back to its own control
    at once, a synchronised rebound (all thermostats switching on together) that no plan saw;
    real FOAs are not synchronised either. Stable across runs and seeds (crc32 of the name)."""
    return zlib.crc32(name.encode()) % HP_BLOCK_STEPS


class DeviceKind(abc.ABC):
    """The world's binding of one load type (see the module docstring)."""

    load_type: ClassVar[str]
    #: Parameter keys of the config section (besides `delegated` and `direct`).
    keys: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def check(self, params: Mapping[str, Any], prefix: str) -> Any:
        """Typed, checked parameters of the config section (KindError naming the key)."""

    @abc.abstractmethod
    def build(self, rng: np.random.Generator, params: Any, ctx: BuildContext) -> Any:
        """One device (physics) drawn from `rng`."""

    @abc.abstractmethod
    def generator(self, params: Any) -> FlexOfferGenerator:
        """The FOA generator plug-in for this load type."""

    @abc.abstractmethod
    def wants_offer(self, device: Any, env: StepEnv) -> bool:
        """True when the FOA should (re)generate an offer at this step (a device event or refresh)."""

    def offer_horizon_s(self, env: StepEnv) -> int | None:
        """How far an offer made at this step may reach (s); None (the default): the generator's own limit."""
        return None

    def state(self, device: Any, env: StepEnv) -> Any:
        """The FOA's view of the device now (its state dataclass); by default `device.state(now)`."""
        return device.state(env.now)

    def step(self, device: Any, setpoint_kwh: float | None, env: StepEnv) -> float:
        """Advance the physics over step k; the grid kWh really drawn (negative = injected); by
        default `device.step(now, setpoint_kwh, slice_s)`."""
        return device.step(env.now, setpoint_kwh, env.slice_s)

    def context_time(self, device: Any, env: StepEnv) -> datetime:
        """The `now` of the FOA's generation context (the step start, or a device event within it)."""
        return env.now

    def limit_violations(self, device: Any, *, start: datetime, end: datetime) -> int:
        """How many times the device left its user's limits in [start, end) (0 when not tracked)."""
        return 0

    #: Unit of `comfort_gap` (None: the kind tracks no comfort limit).
    comfort_unit: ClassVar[str | None] = None

    def comfort_gap(self, device: Any, *, start: datetime, end: datetime, slice_s: int) -> float:
        """How far the device fell outside its user's limits in [start, end), in `comfort_unit`."""
        return 0.0

    def stored_kwh(self, device: Any, now: datetime) -> float:
        """Energy held in the device's store at `now` (kWh; heat for thermal stores, relative to
        0 degC; the plugged-in EV's battery; a battery's charge; minus an industrial backlog).
        Only differences between a device and its twin are reported (terminal state)."""
        return 0.0


def _kelvin_hours_outside(
    steps: list[Any],
    band: tuple[float, float],
    *,
    start: datetime,
    end: datetime,
    dt_h: float,
    temp: str = "temp_end_c",
) -> float:
    """Degree-hours outside `band` of the step-end temperatures of `steps` in [start, end)."""
    low, high = band
    total = 0.0
    for h in steps:
        if start <= h.time < end:
            t = getattr(h, temp)
            total += (max(low - t, 0.0) + max(t - high, 0.0)) * dt_h
    return total


class BlockKind(DeviceKind):
    """A device whose FOA offers it block by block (heat pump, water heater, battery, PV): one
    offer per block of `HP_BLOCK_STEPS` steps, each prosumer's blocks in its own phase."""

    def wants_offer(self, device: Any, env: StepEnv) -> bool:
        """At the window's start and then at the start of every block of `HP_BLOCK_STEPS`
        steps of the prosumer's phase (`env.block_phase`, see `block_phase`)."""
        return env.window_k == 0 or (env.window_k - env.block_phase) % HP_BLOCK_STEPS == 0

    def offer_horizon_s(self, env: StepEnv) -> int | None:
        """How far an offer made at this step may reach (s): to the prosumer's next block
        boundary. An offer at the window's start covers the steps up to the first boundary of
        its phase (a shorter first block), later ones a whole block; an offer's first step is
        the one after `env.now` (`GenerationContext.first_start`)."""
        steps = (env.block_phase - env.window_k) % HP_BLOCK_STEPS or HP_BLOCK_STEPS
        return (steps + 1) * env.slice_s


# -- EV ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EvParams:
    charger_kw: tuple[float, float]
    battery_kwh: tuple[float, float]


class EvKind(DeviceKind):
    """Home EV charging: an offer at each arrival (or at the start when already plugged in)."""

    load_type = "ev"
    keys = ("charger_kw", "battery_kwh")

    def check(self, params: Mapping[str, Any], prefix: str) -> _EvParams:
        return _EvParams(
            charger_kw=check_range(params, "charger_kw", prefix, minimum=0.1),
            battery_kwh=check_range(params, "battery_kwh", prefix, minimum=1.0),
        )

    def build(self, rng: np.random.Generator, params: _EvParams, ctx: BuildContext) -> EVCharger:
        return EVCharger.draw(
            rng,
            first_day=ctx.start,
            days=ctx.days,
            utc_offset_s=ctx.utc_offset_s,
            battery_kwh=params.battery_kwh,
            charger_kw=params.charger_kw,
        )

    def generator(self, params: _EvParams) -> FlexOfferGenerator:
        return EVGenerator()

    def wants_offer(self, device: EVCharger, env: StepEnv) -> bool:
        return device.arrived(env.now, env.slice_s) or (env.window_k == 0 and device.session_at(env.now) is not None)

    def limit_violations(self, device: EVCharger, *, start: datetime, end: datetime) -> int:
        """Sessions inside [start, end) that departed below their target energy."""
        missed = 0
        for session in device.sessions:
            if session.arrival < start or session.departure > end:
                continue
            stored = [e for t, _, e in device.history if session.arrival <= t < session.departure]
            if stored and stored[-1] < session.target_energy_kwh - 1e-6:
                missed += 1
        return missed

    comfort_unit = "kwh_short_at_departure"

    def comfort_gap(self, device: EVCharger, *, start: datetime, end: datetime, slice_s: int) -> float:
        """kWh below target at departure, over the sessions that departed in [start, end)."""
        short = 0.0
        for session in device.sessions:
            if not start <= session.departure <= end:
                continue
            stored = [e for t, _, e in device.history if session.arrival <= t < session.departure]
            if stored:
                short += max(session.target_energy_kwh - stored[-1], 0.0)
        return short

    def stored_kwh(self, device: EVCharger, now: datetime) -> float:
        return device.energy_kwh if device.session_at(now) is not None else 0.0


# -- heat pump -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HeatPumpParams:
    max_power_kw: tuple[float, float]
    cop: float
    ua_kw_per_k: tuple[float, float]
    capacity_kwh_per_k: tuple[float, float]
    comfort_c: tuple[float, float]
    model_error: float


class HeatPumpKind(BlockKind):
    """A heat pump in an RC building: an offer per block of `HP_BLOCK_STEPS` steps."""

    load_type = "heat_pump"
    keys = ("max_power_kw", "cop", "ua_kw_per_k", "capacity_kwh_per_k", "comfort_c", "model_error")

    def check(self, params: Mapping[str, Any], prefix: str) -> _HeatPumpParams:
        return _HeatPumpParams(
            max_power_kw=check_range(params, "max_power_kw", prefix, minimum=0.1),
            cop=check_number(params, "cop", prefix, minimum=1.0),
            ua_kw_per_k=check_range(params, "ua_kw_per_k", prefix, minimum=0.001),
            capacity_kwh_per_k=check_range(params, "capacity_kwh_per_k", prefix, minimum=0.1),
            comfort_c=check_range(params, "comfort_c", prefix, minimum=-50.0),
            model_error=check_number(params, "model_error", prefix, minimum=0.0),
        )

    def build(self, rng: np.random.Generator, params: _HeatPumpParams, ctx: BuildContext) -> HeatPump:
        return HeatPump.draw(
            rng,
            max_power_kw=params.max_power_kw,
            cop=params.cop,
            ua_kw_per_k=params.ua_kw_per_k,
            capacity_kwh_per_k=params.capacity_kwh_per_k,
            comfort_c=params.comfort_c,
            model_error=params.model_error,
        )

    def generator(self, params: _HeatPumpParams) -> FlexOfferGenerator:
        return HeatPumpGenerator(block_steps=HP_BLOCK_STEPS)

    def state(self, device: HeatPump, env: StepEnv) -> Any:
        forecast = np.concatenate(([env.outdoor_c], env.outdoor_forecast_c))
        return device.state(env.now, forecast)

    def step(self, device: HeatPump, setpoint_kwh: float | None, env: StepEnv) -> float:
        return device.step(env.now, setpoint_kwh, env.slice_s, env.outdoor_c)

    def limit_violations(self, device: HeatPump, *, start: datetime, end: datetime) -> int:
        """Steps that ended outside the comfort band."""
        return sum(
            1
            for h in device.history
            if start <= h.time < end
            and not (device.comfort_min_c - 1e-6 <= h.indoor_end_c <= device.comfort_max_c + 1e-6)
        )

    comfort_unit = "kelvin_hours"

    def comfort_gap(self, device: HeatPump, *, start: datetime, end: datetime, slice_s: int) -> float:
        """Degree-hours of indoor temperature outside the comfort band."""
        band = (device.comfort_min_c, device.comfort_max_c)
        return _kelvin_hours_outside(
            device.history, band, start=start, end=end, dt_h=slice_s / 3600, temp="indoor_end_c"
        )

    def stored_kwh(self, device: HeatPump, now: datetime) -> float:
        return device.truth.c_kwh_per_k * device.indoor_temp_c


# -- wet appliances -------------------------------------------------------------------------


@dataclass(frozen=True)
class _WetParams:
    dishwasher_share: float


class WetApplianceKind(DeviceKind):
    """Dishwashers and washing machines: an offer when the user presses start (XOR programmes)."""

    load_type = "wet_appliance"
    keys = ("dishwasher_share",)

    def check(self, params: Mapping[str, Any], prefix: str) -> _WetParams:
        share = check_number(params, "dishwasher_share", prefix, minimum=0.0)
        if share > 1:
            raise KindError(f"{prefix}.dishwasher_share: must be at most 1, not {share}")
        return _WetParams(share)

    def build(self, rng: np.random.Generator, params: _WetParams, ctx: BuildContext) -> WetAppliance:
        kind = "dishwasher" if rng.random() < params.dishwasher_share else "washing_machine"
        return WetAppliance.draw(rng, kind=kind, first_day=ctx.start, days=ctx.days, utc_offset_s=ctx.utc_offset_s)

    def generator(self, params: _WetParams) -> FlexOfferGenerator:
        return WetApplianceGenerator()

    def wants_offer(self, device: WetAppliance, env: StepEnv) -> bool:
        return device.pressed(env.now, env.slice_s) is not None

    def state(self, device: WetAppliance, env: StepEnv) -> Any:
        request = device.pressed(env.now, env.slice_s)
        # The offer is made when the user presses start (within the coming step).
        return device.state(request.pressed_at if request is not None else env.now)

    def context_time(self, device: WetAppliance, env: StepEnv) -> datetime:
        request = device.pressed(env.now, env.slice_s)
        return request.pressed_at if request is not None else env.now

    def limit_violations(self, device: WetAppliance, *, start: datetime, end: datetime) -> int:
        """Steps where a running programme was asked to change (and ran on regardless)."""
        return sum(1 for h in device.deviations() if start <= h.time < end)


# -- water heater ----------------------------------------------------------------------------


class WaterHeaterKind(BlockKind):
    """An electric water heater (boiler): an offer per block, like the heat pump."""

    load_type = "water_heater"
    keys = ()

    def check(self, params: Mapping[str, Any], prefix: str) -> None:
        return None

    def build(self, rng: np.random.Generator, params: None, ctx: BuildContext) -> WaterHeater:
        return WaterHeater.draw(rng, first_day=ctx.start, days=ctx.days, utc_offset_s=ctx.utc_offset_s)

    def generator(self, params: None) -> FlexOfferGenerator:
        return WaterHeaterGenerator(block_steps=HP_BLOCK_STEPS)

    def state(self, device: WaterHeater, env: StepEnv) -> Any:
        return device.state(env.now, slice_s=env.slice_s, n_steps=HP_BLOCK_STEPS + 1)

    comfort_unit = "kelvin_hours"

    def comfort_gap(self, device: WaterHeater, *, start: datetime, end: datetime, slice_s: int) -> float:
        """Degree-hours of tank temperature outside its band."""
        return _kelvin_hours_outside(
            device.history, (device.min_c, device.max_c), start=start, end=end, dt_h=slice_s / 3600
        )

    def stored_kwh(self, device: WaterHeater, now: datetime) -> float:
        return device.tank_l * _WATER_KWH_PER_L_K * device.temp_c


# -- freezer / fridge on a smart plug --------------------------------------------------------

_FREEZER_REFRESH_STEPS = 16  # a new always-on offer every 4 h at 15 min
_FREEZER_SUBSTEP_S = 300  # the thermostat decides every 5 min (truth and model alike)


@dataclass(frozen=True)
class _FreezerParams:
    fridge_share: float
    ambient_c: float


class FreezerKind(DeviceKind):
    """Freezers and fridges on smart plugs: implicit time flexibility with a rebound."""

    load_type = "freezer"
    keys = ("fridge_share", "ambient_c")

    def check(self, params: Mapping[str, Any], prefix: str) -> _FreezerParams:
        share = check_number(params, "fridge_share", prefix, minimum=0.0)
        if share > 1:
            raise KindError(f"{prefix}.fridge_share: must be at most 1, not {share}")
        return _FreezerParams(share, check_number(params, "ambient_c", prefix, minimum=-10.0))

    def build(self, rng: np.random.Generator, params: _FreezerParams, ctx: BuildContext) -> Freezer:
        kind = "fridge" if rng.random() < params.fridge_share else "freezer"
        device = Freezer.draw(rng, kind=kind, model_error=0.05)
        device.substep_s = _FREEZER_SUBSTEP_S
        device.world_ambient_c = params.ambient_c  # indoor air temperature around the appliance
        return device

    def generator(self, params: _FreezerParams) -> FlexOfferGenerator:
        return FreezerGenerator()

    def wants_offer(self, device: Freezer, env: StepEnv) -> bool:
        return env.window_k % _FREEZER_REFRESH_STEPS == 0

    def state(self, device: Freezer, env: StepEnv) -> Any:
        return device.state(env.now, (device.world_ambient_c,) * (HP_BLOCK_STEPS + 1))

    def step(self, device: Freezer, setpoint_kwh: float | None, env: StepEnv) -> float:
        return device.step(env.now, setpoint_kwh, env.slice_s, device.world_ambient_c)

    comfort_unit = "kelvin_hours"

    def comfort_gap(self, device: Freezer, *, start: datetime, end: datetime, slice_s: int) -> float:
        """Degree-hours of compartment temperature outside its band."""
        return _kelvin_hours_outside(
            device.history, (device.temp_min_c, device.temp_max_c), start=start, end=end, dt_h=slice_s / 3600
        )

    def stored_kwh(self, device: Freezer, now: datetime) -> float:
        return -device.truth.c_kwh_per_k * device.temp_c  # cold is stored: colder = more


# -- industrial process (KIBERnet) ------------------------------------------------------------


@dataclass(frozen=True)
class _IndustrialParams:
    base_kw: tuple[float, float]
    shift_kw: tuple[float, float]


class IndustrialKind(DeviceKind):
    """A factory offering its adaptation capacity for the hour ahead (KIBERnet)."""

    load_type = "industrial"
    keys = ("base_kw", "shift_kw")

    def check(self, params: Mapping[str, Any], prefix: str) -> _IndustrialParams:
        return _IndustrialParams(check_range(params, "base_kw", prefix), check_range(params, "shift_kw", prefix))

    def build(self, rng: np.random.Generator, params: _IndustrialParams, ctx: BuildContext) -> IndustrialProcess:
        return IndustrialProcess.draw(
            rng, first_day=ctx.start, days=ctx.days + 1, base_kw=params.base_kw, shift_kw=params.shift_kw
        )

    def generator(self, params: _IndustrialParams) -> FlexOfferGenerator:
        return IndustrialGenerator()

    def wants_offer(self, device: IndustrialProcess, env: StepEnv) -> bool:
        return env.window_k % max(3600 // env.slice_s, 1) == 0

    def stored_kwh(self, device: IndustrialProcess, now: datetime) -> float:
        return -device.backlog_kwh  # production still owed


# -- battery storage -------------------------------------------------------------------------


@dataclass(frozen=True)
class _BatteryParams:
    capacity_kwh: tuple[float, float]


class BatteryKind(BlockKind):
    """A home battery: an offer per block with its state-of-charge limits as a dependency constraint."""

    load_type = "battery"
    keys = ("capacity_kwh",)

    def check(self, params: Mapping[str, Any], prefix: str) -> _BatteryParams:
        return _BatteryParams(check_range(params, "capacity_kwh", prefix, minimum=0.1))

    def build(self, rng: np.random.Generator, params: _BatteryParams, ctx: BuildContext) -> Battery:
        return Battery.draw(rng, capacity_kwh=params.capacity_kwh)

    def generator(self, params: _BatteryParams) -> FlexOfferGenerator:
        return BatteryGenerator(block_steps=HP_BLOCK_STEPS)

    def stored_kwh(self, device: Battery, now: datetime) -> float:
        return device.soc_kwh


# -- curtailable PV --------------------------------------------------------------------------


@dataclass(frozen=True)
class _PvParams:
    kwp: tuple[float, float]


class PvKind(BlockKind):
    """A curtailable PV system (beyond the rooftop PV of the site's profiles): curtailment as flexibility."""

    load_type = "pv"
    keys = ("kwp",)

    def check(self, params: Mapping[str, Any], prefix: str) -> _PvParams:
        return _PvParams(check_range(params, "kwp", prefix, minimum=0.1))

    def build(self, rng: np.random.Generator, params: _PvParams, ctx: BuildContext) -> PvSystem:
        return PvSystem.draw(rng, kwp=params.kwp)

    def generator(self, params: _PvParams) -> FlexOfferGenerator:
        return PvGenerator(block_steps=HP_BLOCK_STEPS)

    @staticmethod
    def _available_kwh(device: PvSystem, per_kwp: float | np.ndarray, slice_s: int) -> Any:
        cap = device.inverter_kw * slice_s / 3600
        return -np.minimum(device.kwp * np.asarray(per_kwp, dtype=float), cap)

    def state(self, device: PvSystem, env: StepEnv) -> Any:
        available = float(self._available_kwh(device, env.pv_kwh_per_kwp, env.slice_s))
        forecast = self._available_kwh(device, env.pv_forecast_kwh_per_kwp, env.slice_s)
        return device.state(env.now, available, tuple(float(v) for v in forecast))

    def step(self, device: PvSystem, setpoint_kwh: float | None, env: StepEnv) -> float:
        available = float(self._available_kwh(device, env.pv_kwh_per_kwp, env.slice_s))
        return device.step(env.now, setpoint_kwh, env.slice_s, available)


_KINDS: dict[str, DeviceKind] = {}


def register_kind(kind: DeviceKind) -> DeviceKind:
    """Add a device kind to the world's registry (by its load type)."""
    _KINDS[kind.load_type] = kind
    return kind


def get_kind(load_type: str) -> DeviceKind:
    """The registered kind of `load_type`; KindError listing the known ones otherwise."""
    kind = _KINDS.get(load_type)
    if kind is None:
        raise KindError(f"{load_type!r} is not a device kind of the world (known: {', '.join(sorted(_KINDS))})")
    return kind


def kind_names() -> tuple[str, ...]:
    """The registered load types, in registration order."""
    return tuple(_KINDS)


register_kind(EvKind())
register_kind(HeatPumpKind())
register_kind(WetApplianceKind())
register_kind(WaterHeaterKind())
register_kind(FreezerKind())
register_kind(IndustrialKind())
register_kind(BatteryKind())
register_kind(PvKind())

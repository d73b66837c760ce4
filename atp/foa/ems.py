"""The built-in EMS (direct control, F2.FOA2) and the xEMS adapter seam (indirect control).

`BuiltInEMS` executes a schedule step by step: for the step starting `now` it returns the kWh
the device is told to consume. It refuses a schedule that is not feasible for its offer
(`check_schedule`), and it keeps the user's limits (NF2.1) through the load type's generator
(`FlexOfferGenerator.keep_limits`): a heat pump never leaves the comfort band because of a
schedule, an EV never misses its departure target. Every override is recorded as a
`Deviation`.

An `XemsAdapter` hands schedules to an external EMS that controls the device itself, and reads
the device state back (indirect control). `InProcessXemsAdapter` is the in-process one: it
wraps a `BuiltInEMS` and a sensor function per device, without any network.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from atp.flexoffer import DefaultSchedule, FlexOffer, Schedule, check_schedule
from atp.foa.errors import EmsError, ScheduleRefusedError
from atp.foa.generator import FlexOfferGenerator, generator_for

__all__ = ["BuiltInEMS", "Deviation", "InProcessXemsAdapter", "XemsAdapter", "schedule_step"]

_log = logging.getLogger(__name__)
_CHECK_CACHE_SIZE = 256


@dataclass(frozen=True)
class Deviation:
    """One step where the EMS executed something else than the schedule, and why."""

    time: datetime
    device: str
    flex_offer_id: str | None
    scheduled_kwh: float
    executed_kwh: float
    reason: str


def schedule_step(offer: FlexOffer, schedule: Schedule | DefaultSchedule, now: datetime) -> float | None:
    """The schedule's kWh for the step that contains `now`, or None when the offer does not cover `now`.

    An offer covers its earliest start (`start_after`, else the offer's creation) up to the end
    of the schedule; between the earliest start and the schedule's start the device waits (0 kWh).
    """
    earliest = offer.window(offer.created_at).earliest or schedule.start
    end = schedule.start + timedelta(seconds=offer.slice_s * len(schedule.energy))
    if now < min(earliest, schedule.start) or now >= end:
        return None
    if now < schedule.start:
        return 0.0
    k = int((now - schedule.start).total_seconds() // offer.slice_s)
    return float(schedule.energy[k])


class BuiltInEMS:
    """Direct control of devices from schedules, keeping the users' limits.

    `generators` maps a load type (an offer's `device` label) to the generator whose
    `keep_limits` guards it; load types not given come from the registry (`generator_for`).
    `deviations` lists every override, oldest first.
    """

    def __init__(self, *, generators: Mapping[str, FlexOfferGenerator] | None = None) -> None:
        self._generators: dict[str, FlexOfferGenerator] = dict(generators or {})
        self.deviations: list[Deviation] = []
        # Keyed by object identity (offers and schedules are immutable); the value pins both
        # objects so that their ids cannot be reused while cached.
        self._checked: OrderedDict[tuple[int, int], tuple[FlexOffer, Schedule | DefaultSchedule]] = OrderedDict()

    def _guard(self, load_type: str | None) -> FlexOfferGenerator | None:
        if load_type is None:
            return None
        generator = self._generators.get(load_type)
        if generator is None:
            generator = generator_for(load_type)
            self._generators[load_type] = generator
        return generator

    def check(self, offer: FlexOffer, schedule: Schedule | DefaultSchedule) -> None:
        """Raise ScheduleRefusedError unless `schedule` is feasible for `offer` (cached per pair)."""
        key = (id(offer), id(schedule))
        if key in self._checked:
            return
        problems = check_schedule(offer, schedule)
        if problems:
            raise ScheduleRefusedError(offer.id, problems)
        self._checked[key] = (offer, schedule)
        if len(self._checked) > _CHECK_CACHE_SIZE:
            self._checked.popitem(last=False)

    def setpoint(
        self,
        offer: FlexOffer,
        schedule: Schedule | DefaultSchedule,
        state: Any,
        *,
        now: datetime,
        device: str | None = None,
    ) -> float | None:
        """kWh for the step starting `now` under `schedule`, after keeping the device's limits.

        None when the schedule does not cover `now` (the device runs uncontrolled). Raises
        ScheduleRefusedError for a schedule that is not feasible for `offer`.
        """
        self.check(offer, schedule)
        scheduled = schedule_step(offer, schedule, now)
        if scheduled is None:
            return None
        guard = self._guard(offer.device)
        if guard is None:
            return scheduled
        executed, reason = guard.keep_limits(state, scheduled, now=now, slice_s=offer.slice_s)
        if reason is not None and abs(executed - scheduled) > 1e-9:
            deviation = Deviation(now, device or offer.device or "", offer.id, scheduled, executed, reason)
            self.deviations.append(deviation)
            _log.info("EMS override of %s at %s: %s", deviation.device, now.isoformat(), reason)
        return executed


@runtime_checkable
class XemsAdapter(Protocol):
    """An external EMS the FOA controls indirectly: it receives schedules and reports states."""

    def send_schedule(self, device: str, offer: FlexOffer, schedule: Schedule | DefaultSchedule) -> None:
        """Hand the schedule in force for `device` to the xEMS (it replaces the previous one)."""
        ...

    def read_state(self, device: str, now: datetime) -> Any:
        """The device state (e.g. an EVState) the xEMS reports at `now`."""
        ...

    def deviations(self) -> list[Deviation]:
        """The xEMS's overrides of the schedules it received."""
        ...


class InProcessXemsAdapter:
    """`XemsAdapter` for an xEMS living in the same process: a BuiltInEMS plus device sensors.

    `sensors` maps a device to a function returning its state at a time. The xEMS runs its
    devices with `control(device, now)`, which the device owner (the world) calls every step.
    """

    def __init__(self, ems: BuiltInEMS, sensors: Mapping[str, Callable[[datetime], Any]]) -> None:
        self.ems = ems
        self._sensors = dict(sensors)
        self._schedules: dict[str, tuple[FlexOffer, Schedule | DefaultSchedule]] = {}

    def _sensor(self, device: str) -> Callable[[datetime], Any]:
        sensor = self._sensors.get(device)
        if sensor is None:
            raise EmsError(f"the xEMS has no device {device!r}; its devices: {', '.join(sorted(self._sensors))}")
        return sensor

    def send_schedule(self, device: str, offer: FlexOffer, schedule: Schedule | DefaultSchedule) -> None:
        self._sensor(device)
        self.ems.check(offer, schedule)
        self._schedules[device] = (offer, schedule)

    def read_state(self, device: str, now: datetime) -> Any:
        return self._sensor(device)(now)

    def deviations(self) -> list[Deviation]:
        return list(self.ems.deviations)

    def control(self, device: str, now: datetime) -> float | None:
        """The xEMS's setpoint for `device` over the step starting `now` (None: uncontrolled)."""
        entry = self._schedules.get(device)
        if entry is None:
            return None
        offer, schedule = entry
        return self.ems.setpoint(offer, schedule, self.read_state(device, now), now=now, device=device)

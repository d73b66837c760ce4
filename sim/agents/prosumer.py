"""Prosumer agent: a household or business on a grid bus with its devices, PV and its FOA.

The prosumer owns the truth (device physics, non-flexible load, PV) and an FOA (`atp.foa`)
that sees the devices only through their sensor states. Devices are driven through their
`DeviceKind` (sim/agents/kinds.py). Each step it records, per device, what ran (metered), what
an uncontrolled twin of the device drew (the counterfactual: the same device without the ATP),
the baseline the offer declared (its default schedule, 0 kWh where the offer's schedule runs past
the default's end, the metered energy where no offer covers the step) and what was scheduled.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import mesa
import numpy as np

from atp.flexoffer import Mode
from atp.foa import FlexOfferAgent, GenerationContext
from atp.foa.ems import schedule_step
from sim.agents.kinds import StepEnv, block_phase, get_kind

__all__ = ["Prosumer", "StepRecord"]


@dataclass
class StepRecord:
    """One device's energies over one step (kWh)."""

    metered_kwh: float
    counterfactual_kwh: float
    baseline_kwh: float
    scheduled_kwh: float
    setpoint_kwh: float | None
    flex_offer_id: str | None


class Prosumer(mesa.Agent):
    """A prosumer: non-flexible load and PV profiles, flexible devices, and an FOA."""

    def __init__(
        self,
        model: mesa.Model,
        *,
        name: str,
        mode: Mode,
        bus: int,
        meter_id: str,
        commercial: bool,
        nonflex_kwh: np.ndarray,
        pv_kwh: np.ndarray,
        foa: FlexOfferAgent,
        devices: dict[str, Any],
        price_eur_per_kwh: float | None = None,
    ) -> None:
        super().__init__(model)
        self.name = name
        self.mode = mode
        self.bus = bus
        self.meter_id = meter_id
        self.commercial = commercial
        self.nonflex_kwh = nonflex_kwh
        self.pv_kwh = pv_kwh
        self.foa = foa
        self.devices = devices  # load type -> physics
        self.kinds = {load_type: get_kind(load_type) for load_type in devices}
        self.price_eur_per_kwh = price_eur_per_kwh
        # The counterfactual: a copy of each device that always runs uncontrolled, as it would
        # without the ATP. Its energy is the true "no flexibility" baseline of the KPIs.
        self.shadow = {name: copy.deepcopy(device) for name, device in devices.items()}
        self.net_kwh = 0.0  # last step's metered net energy at the meter (load - PV)
        self.block_phase = block_phase(name)  # when its block offers start (staggered over the site)

    def trigger(self, env: StepEnv) -> int:
        """Device events and FOA refreshes at step k; returns how many offers were generated."""
        generated = 0
        for load_type, device in self.devices.items():
            ctx = self.offer_context(load_type, device, env)
            if ctx is not None:
                generated += self.foa.trigger(load_type, self.kinds[load_type].state(device, env), ctx) is not None
        return generated

    def offer_context(self, load_type: str, device: Any, env: StepEnv) -> GenerationContext | None:
        """The FOA's generation context if `device` (of `load_type`) gets an offer at this step, else None."""
        kind = self.kinds[load_type]
        env = dataclasses.replace(env, block_phase=self.block_phase)
        if not kind.wants_offer(device, env):
            return None
        horizon_s = kind.offer_horizon_s(env)
        return self.foa.context(
            kind.context_time(device, env),
            slice_s=env.slice_s,
            price_eur_per_kwh=self.price_eur_per_kwh,
            **({} if horizon_s is None else {"horizon_s": horizon_s}),
        )

    def _device_step(self, load_type: str, env: StepEnv, *, blocked: bool = False) -> StepRecord:
        kind = self.kinds[load_type]
        physics = self.devices[load_type]
        now = env.now
        found = self.foa.in_force(load_type, now)
        setpoint = self.foa.setpoint(load_type, now, kind.state(physics, env)) if found is not None else None
        if blocked:  # the DSO's direct load control switches the device off for this step
            setpoint = 0.0
        metered = kind.step(physics, setpoint, env)
        counterfactual = kind.step(self.shadow[load_type], None, env)
        if found is None:
            return StepRecord(metered, counterfactual, metered, metered, None, None)
        tracked, schedule = found
        scheduled = schedule_step(tracked.offer, schedule, now)
        default = tracked.offer.default_schedule
        baseline: float | None = None
        if default is not None:
            # Past the default's end (a schedule shifted later) the default declares 0 kWh: the
            # device would have finished by then, so the shifted energy is not declared twice.
            baseline = schedule_step(tracked.offer, default, now) or 0.0
        self.foa.measure(load_type, now, metered)
        return StepRecord(
            metered_kwh=metered,
            counterfactual_kwh=counterfactual,
            baseline_kwh=float(baseline) if baseline is not None else metered,
            scheduled_kwh=float(scheduled) if scheduled is not None else metered,
            setpoint_kwh=setpoint,
            flex_offer_id=tracked.id,
        )

    def execute(self, env: StepEnv, *, blocked: frozenset[str] = frozenset()) -> dict[str, StepRecord]:
        """Run step k: the EMS sets each device, physics advance, the meter reports.

        Devices whose load type is in `blocked` are switched off by the DSO for this step.
        """
        records = {
            load_type: self._device_step(load_type, env, blocked=load_type in blocked) for load_type in self.devices
        }
        flex = sum(r.metered_kwh for r in records.values())
        self.net_kwh = float(self.nonflex_kwh[env.k] - self.pv_kwh[env.k] + flex)
        return records

    def limit_violations(self, load_type: str, *, start: datetime, end: datetime) -> int:
        """How often the device of `load_type` left its user's limits in [start, end)."""
        return self.kinds[load_type].limit_violations(self.devices[load_type], start=start, end=end)

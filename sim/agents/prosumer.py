"""Prosumer agent: a household or business on a grid bus with its devices, PV and its FOA.

The prosumer owns the truth (device physics, non-flexible load, PV) and an FOA (`atp.foa`)
that sees the devices only through their sensor states. Each step it records, per device,
what ran (metered), what an uncontrolled twin of the device drew (the counterfactual: the same
device without the ATP), the baseline the offer declared (its default schedule, or the metered
energy where no offer covers the step) and what was scheduled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime

import mesa
import numpy as np

from atp.flexoffer import Mode
from atp.foa import FlexOfferAgent
from atp.foa.ems import schedule_step
from sim.agents.devices import EVCharger, HeatPump

__all__ = ["DEVICES", "Prosumer", "StepRecord"]

DEVICES = ("ev", "heat_pump")


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
        ev: EVCharger | None = None,
        heat_pump: HeatPump | None = None,
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
        self.ev = ev
        self.heat_pump = heat_pump
        self.price_eur_per_kwh = price_eur_per_kwh
        # The counterfactual: a copy of each device that always runs uncontrolled, as it would
        # without the ATP. Its energy is the true "no flexibility" baseline of the KPIs.
        self.shadow = {name: copy.deepcopy(device) for name, device in self.devices.items()}
        self.net_kwh = 0.0  # last step's metered net energy at the meter (load - PV)

    @property
    def devices(self) -> dict[str, EVCharger | HeatPump]:
        out: dict[str, EVCharger | HeatPump] = {}
        if self.ev is not None:
            out["ev"] = self.ev
        if self.heat_pump is not None:
            out["heat_pump"] = self.heat_pump
        return out

    def trigger(
        self, k: int, now: datetime, *, slice_s: int, outdoor_forecast_c: np.ndarray, hp_block_steps: int
    ) -> int:
        """Device events and FOA refreshes at step k; returns how many offers were generated."""
        generated = 0
        ctx = None
        if self.ev is not None and (self.ev.arrived(now, slice_s) or (k == 0 and self.ev.session_at(now))):
            ctx = self.foa.context(now, slice_s=slice_s, price_eur_per_kwh=self.price_eur_per_kwh)
            generated += self.foa.trigger("ev", self.ev.state(now), ctx) is not None
        if self.heat_pump is not None and k % hp_block_steps == 0:
            ctx = ctx or self.foa.context(now, slice_s=slice_s, price_eur_per_kwh=self.price_eur_per_kwh)
            state = self.heat_pump.state(now, outdoor_forecast_c)
            generated += self.foa.trigger("heat_pump", state, ctx) is not None
        return generated

    def _device_step(self, device: str, now: datetime, slice_s: int, outdoor_c: float) -> StepRecord:
        physics = self.devices[device]
        if device == "heat_pump":
            assert isinstance(physics, HeatPump)
            state = physics.state(now, (outdoor_c,))
        else:
            assert isinstance(physics, EVCharger)
            state = physics.state(now)
        found = self.foa.in_force(device, now)
        setpoint = self.foa.setpoint(device, now, state) if found is not None else None
        shadow = self.shadow[device]
        if device == "heat_pump":
            metered = physics.step(now, setpoint, slice_s, outdoor_c)  # type: ignore[call-arg]
            counterfactual = shadow.step(now, None, slice_s, outdoor_c)  # type: ignore[call-arg]
        else:
            metered = physics.step(now, setpoint, slice_s)  # type: ignore[call-arg]
            counterfactual = shadow.step(now, None, slice_s)  # type: ignore[call-arg]
        if found is None:
            return StepRecord(metered, counterfactual, metered, metered, None, None)
        tracked, schedule = found
        scheduled = schedule_step(tracked.offer, schedule, now)
        default = tracked.offer.default_schedule
        baseline = schedule_step(tracked.offer, default, now) if default is not None else None
        self.foa.measure(device, now, metered)
        return StepRecord(
            metered_kwh=metered,
            counterfactual_kwh=counterfactual,
            baseline_kwh=float(baseline) if baseline is not None else metered,
            scheduled_kwh=float(scheduled) if scheduled is not None else metered,
            setpoint_kwh=setpoint,
            flex_offer_id=tracked.id,
        )

    def execute(self, k: int, now: datetime, *, slice_s: int, outdoor_c: float) -> dict[str, StepRecord]:
        """Run step k: the EMS sets each device, physics advance, the meter reports."""
        records = {device: self._device_step(device, now, slice_s, outdoor_c) for device in self.devices}
        flex = sum(r.metered_kwh for r in records.values())
        self.net_kwh = float(self.nonflex_kwh[k] - self.pv_kwh[k] + flex)
        return records

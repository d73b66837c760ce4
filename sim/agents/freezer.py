"""Freezer and fridge physics: a cold compartment behind a smart plug (the truth).

The FOA never sees this class: the world reads `state(...)` (an `atp.foa.generators.freezer.
FreezerState`), passes the FOA's setpoints to `step(...)` and meters what `step` returns.

- The compartment is one thermal node, integrated in sub-steps of `substep_s` seconds:
  `T <- T + (dt_h * ua * (T_amb - T) - cop * e) / C`, with e the compressor's electric kWh in
  the sub-step (`ColdBox`: ua in kW/K, C in kWh/K, cop).
- The thermostat decides at the start of each sub-step: on above `setpoint + deadband/2`,
  off below `setpoint - deadband/2`, otherwise unchanged; the compressor then runs at
  `power_kw` (`atp.foa.generators.freezer.run_compressor`, the rule the FOA's model steps too).
- A setpoint is the plug's energy budget for the step: the compressor follows its thermostat
  until the budget is used, then the plug is off for the rest of the step (0 = off for the
  whole step). None = uncontrolled (the thermostat alone).

`kind` picks the defaults of `Freezer.draw`: a freezer keeps -22 to -16 C (thermostat
-19 +/- 1 C), a fridge 2 to 7 C (thermostat 4.5 +/- 1 C); compressors draw 80 to 150 W.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from atp.foa.generators.freezer import FreezerState, run_compressor

__all__ = ["ColdBox", "Freezer", "FreezerError", "FreezerStep"]

Kind = Literal["freezer", "fridge"]

_KINDS: dict[str, dict[str, tuple[float, float]]] = {
    # band, thermostat (setpoint, deadband), ua kW/K, C kWh/K, cop
    "freezer": {
        "band": (-22.0, -16.0),
        "thermostat": (-19.0, 2.0),
        "ua": (0.0004, 0.0008),
        "c": (0.02, 0.06),
        "cop": (1.2, 2.0),
    },
    "fridge": {
        "band": (2.0, 7.0),
        "thermostat": (4.5, 2.0),
        "ua": (0.0008, 0.0015),
        "c": (0.01, 0.03),
        "cop": (2.0, 3.0),
    },
}


class FreezerError(ValueError):
    """A freezer is configured or driven impossibly; the message names the field."""


@dataclass(frozen=True)
class ColdBox:
    """A one-node cold compartment: heat gain ua (kW/K), capacity C (kWh/K) and the compressor's COP."""

    ua_kw_per_k: float
    c_kwh_per_k: float
    cop: float

    def __post_init__(self) -> None:
        for name in ("ua_kw_per_k", "c_kwh_per_k", "cop"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise FreezerError(f"ColdBox.{name} must be a positive number, not {value}")


@dataclass(frozen=True)
class FreezerStep:
    """One step: start, temperature at start and end, ambient, kWh drawn, controlled or not."""

    time: datetime
    temp_start_c: float
    temp_end_c: float
    ambient_c: float
    energy_kwh: float
    controlled: bool


class Freezer:
    """A freezer or fridge with its thermostat behind a smart plug (see the module docstring).

    `truth` drives the temperature; `model` (default: the truth) is what `state()` reports as
    the FOA's predictive model. `history` lists every step.
    """

    def __init__(
        self,
        *,
        truth: ColdBox,
        model: ColdBox | None = None,
        power_kw: float,
        temp_c: float,
        temp_min_c: float,
        temp_max_c: float,
        setpoint_c: float,
        deadband_c: float,
        compressor_on: bool = False,
        substep_s: int = 60,
        kind: Kind = "freezer",
    ) -> None:
        if not (math.isfinite(power_kw) and power_kw > 0):
            raise FreezerError(f"power_kw must be positive, not {power_kw}")
        if not temp_min_c < temp_max_c:
            raise FreezerError(f"temp_min_c {temp_min_c} must be below temp_max_c {temp_max_c}")
        if deadband_c < 0 or not temp_min_c <= setpoint_c - deadband_c / 2 <= setpoint_c + deadband_c / 2 <= temp_max_c:
            raise FreezerError(f"thermostat {setpoint_c} +/- {deadband_c / 2} C must lie within the band")
        if substep_s <= 0:
            raise FreezerError(f"substep_s must be positive, not {substep_s}")
        self.truth = truth
        self.model = model if model is not None else truth
        self.power_kw = power_kw
        self.temp_c = temp_c
        self.temp_min_c = temp_min_c
        self.temp_max_c = temp_max_c
        self.setpoint_c = setpoint_c
        self.deadband_c = deadband_c
        self.compressor_on = compressor_on
        self.substep_s = substep_s
        self.kind = kind
        self.history: list[FreezerStep] = []

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        kind: Kind = "freezer",
        power_kw: tuple[float, float] = (0.08, 0.15),
        model_error: float = 0.0,
    ) -> Freezer:
        """An appliance of `kind` with parameters drawn uniformly from its ranges, from `rng`.

        The model's ua, C and COP are the truth's times independent factors ~ N(1, model_error),
        clipped to [0.5, 1.5]; the temperature starts at the thermostat's setpoint.
        """
        if kind not in _KINDS:
            raise FreezerError(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}")
        spec = _KINDS[kind]
        truth = ColdBox(
            float(rng.uniform(*spec["ua"])), float(rng.uniform(*spec["c"])), float(rng.uniform(*spec["cop"]))
        )
        power = float(rng.uniform(*power_kw))
        factors = np.clip(rng.normal(1.0, model_error, size=3), 0.5, 1.5) if model_error > 0 else np.ones(3)
        model = ColdBox(truth.ua_kw_per_k * factors[0], truth.c_kwh_per_k * factors[1], truth.cop * factors[2])
        (lo, hi), (setpoint, deadband) = spec["band"], spec["thermostat"]
        return cls(
            truth=truth,
            model=model,
            power_kw=power,
            temp_c=setpoint,
            temp_min_c=lo,
            temp_max_c=hi,
            setpoint_c=setpoint,
            deadband_c=deadband,
            kind=kind,
        )

    def state(self, now: datetime, ambient_forecast_c: Sequence[float]) -> FreezerState:
        """What the FOA sees at `now`: temperature, band, thermostat and the model."""
        return FreezerState(
            temp_c=self.temp_c,
            temp_min_c=self.temp_min_c,
            temp_max_c=self.temp_max_c,
            setpoint_c=self.setpoint_c,
            deadband_c=self.deadband_c,
            compressor_on=self.compressor_on,
            power_kw=self.power_kw,
            ua_kw_per_k=self.model.ua_kw_per_k,
            c_kwh_per_k=self.model.c_kwh_per_k,
            cop=self.model.cop,
            ambient_forecast_c=tuple(float(t) for t in ambient_forecast_c),
            substep_s=self.substep_s,
        )

    def step(self, now: datetime, setpoint_kwh: float | None, slice_s: int, ambient_c: float) -> float:
        """Advance over [now, now + slice_s) at ambient `ambient_c`: the kWh really drawn."""
        if slice_s <= 0:
            raise FreezerError(f"slice_s must be positive, not {slice_s}")
        box = self.truth
        start = self.temp_c
        # The thermostat and node are the FOA's rule (one source), stepped with the truth's parameters.
        temp, on, drawn = run_compressor(
            start,
            self.compressor_on,
            budget_kwh=None if setpoint_kwh is None else max(setpoint_kwh, 0.0),
            duration_s=slice_s,
            ambient_c=ambient_c,
            setpoint_c=self.setpoint_c,
            deadband_c=self.deadband_c,
            power_kw=self.power_kw,
            ua_kw_per_k=box.ua_kw_per_k,
            c_kwh_per_k=box.c_kwh_per_k,
            cop=box.cop,
            substep_s=self.substep_s,
        )
        self.temp_c, self.compressor_on = temp, on
        self.history.append(FreezerStep(now, start, temp, ambient_c, drawn, setpoint_kwh is not None))
        return drawn

    def temperatures_c(self) -> np.ndarray:
        """The temperature at the start of the first step and at the end of every step."""
        if not self.history:
            return np.array([self.temp_c])
        return np.array([self.history[0].temp_start_c] + [h.temp_end_c for h in self.history])

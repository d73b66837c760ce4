"""Industrial process physics: a factory's planned consumption, adaptation and backlog (the truth).

The FOA never sees this class: the world reads `state(...)` (an `atp.foa.generators.industrial.
IndustrialState`), passes the FOA's setpoints to `step(...)` and meters what `step` returns.

- The plan is hourly: a base load around the clock plus two shifts (06-14 and 14-22 local
  time) on weekdays, with seeded hour-to-hour variation (`IndustrialProcess.draw`).
- Controlled, the process consumes the setpoint clipped to
  `[max(0, plan - down_kw * dt_h), plan + up_kw * dt_h]` (its adaptation capacity); None =
  uncontrolled = the plan.
- The backlog (planned minus consumed kWh, positive = production owed) must stay within
  `max_backlog_kwh` and return within `tolerance_kwh` at most `makeup_s` seconds after the
  hour of adaptation; the process records every step and `limit_violations()` lists the
  breaches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.foa.generators.industrial import IndustrialState

__all__ = ["IndustrialError", "IndustrialProcess", "IndustrialStep"]

_HOUR_S = 3600
_TOL_KWH = 1e-6


class IndustrialError(ValueError):
    """A process is configured or driven impossibly; the message names the field."""


@dataclass(frozen=True)
class IndustrialStep:
    """One step: start, planned and consumed kWh, backlog after, controlled or not."""

    time: datetime
    plan_kwh: float
    energy_kwh: float
    backlog_kwh: float
    controlled: bool


class IndustrialProcess:
    """A factory with an hourly consumption plan and a limited adaptation capacity (module docstring)."""

    def __init__(
        self,
        *,
        plan_start: datetime,
        plan_kw_by_hour: tuple[float, ...],
        up_kw: float,
        down_kw: float,
        max_backlog_kwh: float,
        tolerance_kwh: float,
        makeup_s: int,
        backlog_kwh: float = 0.0,
    ) -> None:
        if plan_start.tzinfo is None or plan_start.timestamp() % _HOUR_S:
            raise IndustrialError("plan_start must be a timezone-aware full hour")
        if not plan_kw_by_hour or min(plan_kw_by_hour) < 0:
            raise IndustrialError("plan_kw_by_hour needs at least one hour, all >= 0 kW")
        for name, value in (("up_kw", up_kw), ("down_kw", down_kw), ("max_backlog_kwh", max_backlog_kwh)):
            if not (math.isfinite(value) and value >= 0):
                raise IndustrialError(f"{name} must be a number >= 0, not {value}")
        if tolerance_kwh < 0 or makeup_s < 0:
            raise IndustrialError("tolerance_kwh and makeup_s must not be negative")
        self.plan_start = plan_start
        self.plan_kw_by_hour = tuple(float(p) for p in plan_kw_by_hour)
        self.up_kw = up_kw
        self.down_kw = down_kw
        self.max_backlog_kwh = max_backlog_kwh
        self.tolerance_kwh = tolerance_kwh
        self.makeup_s = makeup_s
        self.backlog_kwh = backlog_kwh
        self.history: list[IndustrialStep] = []

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        first_day: datetime,
        days: int = 2,
        base_kw: tuple[float, float] = (200.0, 800.0),
        shift_kw: tuple[float, float] = (500.0, 2000.0),
        adapt_share: tuple[float, float] = (0.1, 0.3),
        makeup_h: tuple[int, int] = (1, 3),
    ) -> IndustrialProcess:
        """A factory drawn from `rng` (fixed order), its plan from `first_day`'s midnight (UTC).

        Base load ~ U(base_kw), shift load ~ U(shift_kw) on weekdays 06-22, each hour times
        a factor ~ U(0.9, 1.1); adaptation up and down ~ U(adapt_share) of the shift load, held
        for at most one hour (max backlog = down capacity x 1 h), tolerance 2 % of that, make-up
        within U(makeup_h) hours.
        """
        base = float(rng.uniform(*base_kw))
        shift = float(rng.uniform(*shift_kw))
        share = float(rng.uniform(*adapt_share))
        makeup = int(rng.integers(makeup_h[0], makeup_h[1] + 1))
        start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
        plan = []
        for h in range(24 * max(days, 1)):
            t = start + timedelta(hours=h)
            working = t.weekday() < 5 and 6 <= t.hour < 22
            plan.append((base + (shift if working else 0.0)) * float(rng.uniform(0.9, 1.1)))
        adapt = share * shift
        return cls(
            plan_start=start,
            plan_kw_by_hour=tuple(plan),
            up_kw=adapt,
            down_kw=adapt,
            max_backlog_kwh=adapt,
            tolerance_kwh=0.02 * adapt,
            makeup_s=makeup * _HOUR_S,
        )

    def plan_kwh(self, start: datetime, duration_s: float) -> float:
        """The planned kWh over [start, start + duration_s) (the last hour's power repeats)."""
        t = (start - self.plan_start).total_seconds()
        end = t + duration_s
        total = 0.0
        plan = self.plan_kw_by_hour
        while t < end - 1e-9:
            hour = math.floor(t / _HOUR_S)
            seg_end = min(end, (hour + 1) * _HOUR_S)
            total += plan[min(max(hour, 0), len(plan) - 1)] * (seg_end - t) / 3600.0
            t = seg_end
        return total

    def state(self, now: datetime) -> IndustrialState:
        """What the FOA sees at `now`: the plan, the adaptation limits and the backlog."""
        return IndustrialState(
            plan_start=self.plan_start,
            baseline_kw_by_hour=self.plan_kw_by_hour,
            up_kw=self.up_kw,
            down_kw=self.down_kw,
            max_backlog_kwh=self.max_backlog_kwh,
            tolerance_kwh=self.tolerance_kwh,
            makeup_s=self.makeup_s,
            backlog_kwh=self.backlog_kwh,
        )

    def step(self, now: datetime, setpoint_kwh: float | None, slice_s: int) -> float:
        """Advance over [now, now + slice_s): the kWh really consumed."""
        if slice_s <= 0:
            raise IndustrialError(f"slice_s must be positive, not {slice_s}")
        plan = self.plan_kwh(now, slice_s)
        if setpoint_kwh is None:
            energy = plan
        else:
            dt_h = slice_s / 3600.0
            energy = min(max(setpoint_kwh, plan - self.down_kw * dt_h, 0.0), plan + self.up_kw * dt_h)
        self.backlog_kwh += plan - energy
        self.history.append(IndustrialStep(now, plan, energy, self.backlog_kwh, setpoint_kwh is not None))
        return energy

    def limit_violations(self, slice_s: int) -> list[str]:
        """Breaches so far: a backlog beyond `max_backlog_kwh`, or beyond the tolerance for longer
        than `makeup_s` (steps of `slice_s` seconds)."""
        problems: list[str] = []
        over_since: datetime | None = None
        for h in self.history:
            if abs(h.backlog_kwh) > self.max_backlog_kwh + _TOL_KWH:
                problems.append(f"{h.time.isoformat()}: backlog {h.backlog_kwh:.3f} kWh beyond the maximum")
            if abs(h.backlog_kwh) > self.tolerance_kwh + _TOL_KWH:
                over_since = over_since or h.time
                if (h.time + timedelta(seconds=slice_s) - over_since).total_seconds() > self.makeup_s + _HOUR_S:
                    problems.append(f"{h.time.isoformat()}: backlog not made up within {self.makeup_s} s")
            else:
                over_since = None
        return problems

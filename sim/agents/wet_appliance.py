"""Wet appliances (dishwasher, washing machine): fixed programmes started by the user (the truth).

A `WetAppliance` serves the user's `StartRequest`s in order: the user loads it, presses start
at `pressed_at`, wants the load done by `ready_by` and prefers one programme (any of `allowed`
will do). The appliance acts at step boundaries:

- Uncontrolled (setpoint None): a waiting appliance starts its preferred programme at the
  first step that begins after the press (at once when the press falls in a step, within one
  step: its smart start aligns the programme to the metering grid, which is what lets the FOA
  offer the start).
- Controlled: a setpoint of (about) 0 holds a waiting appliance; a positive setpoint starts
  `programme` (the `step` keyword), or, without it, the allowed programme whose first-step
  energy is nearest the setpoint (ties: the preferred one).
- A programme once started runs to its end: setpoints that would change it are ignored and the
  step records the deviation in `history`.

Programmes (`DISHWASHER_PROGRAMMES`, `WASHING_MACHINE_PROGRAMMES`) are kWh per 15 min step,
representative rather than measured: heating phases draw about 2 kW (0.3-0.5 kWh per quarter
hour), pumping, rinsing and spinning 0.1-0.4 kW. Totals follow the orders of magnitude of the
EU energy labels (Regulations (EU) 2019/2017 and 2019/2014: a dishwasher's eco programme
about 0.75-0.95 kWh per cycle, a washing machine's eco 40-60 programme about 0.5-0.9 kWh) and
the Smart-A project's appliance profiles (Stamminger et al., 2008: a 60 C cotton wash about
1.0-1.2 kWh, an intensive dishwasher cycle about 1.1-1.4 kWh). Real eco programmes run longer
(3-4 h); the shorter durations keep the offers small.

Requests are drawn by `WetAppliance.draw`: a dishwasher runs on a day with probability 0.8,
started after dinner ~ N(20:30, 1 h) local time and wanted ready by ~ N(07:00, 30 min) the next
morning; a washing machine runs with probability 0.5, started ~ N(09:00, 1.5 h) and wanted
ready 4-10 h later. The preferred programme is drawn from per-kind weights; every other
programme is allowed with probability 0.7.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.foa.config_appliances import PROGRAMME_CATALOGUE
from atp.foa.states_appliances import ApplianceStatus, Programme, WetApplianceState

__all__ = [
    "DISHWASHER_PROGRAMMES",
    "WASHING_MACHINE_PROGRAMMES",
    "ApplianceRun",
    "StartRequest",
    "WetAppliance",
    "WetApplianceError",
    "WetApplianceStep",
]

_DAY = timedelta(days=1)
_TOL_KWH = 1e-6

# The representative programmes (one source: the FOA's configuration catalogue, atp.foa).
DISHWASHER_PROGRAMMES: tuple[Programme, ...] = PROGRAMME_CATALOGUE["dishwasher"]
WASHING_MACHINE_PROGRAMMES: tuple[Programme, ...] = PROGRAMME_CATALOGUE["washing_machine"]
_CATALOGUE: dict[str, tuple[Programme, ...]] = {
    "dishwasher": DISHWASHER_PROGRAMMES,
    "washing_machine": WASHING_MACHINE_PROGRAMMES,
}
_PREFERENCE_WEIGHTS: dict[str, tuple[float, ...]] = {"dishwasher": (0.5, 0.3, 0.2), "washing_machine": (0.3, 0.5, 0.2)}
_RUN_PROBABILITY: dict[str, float] = {"dishwasher": 0.8, "washing_machine": 0.5}


class WetApplianceError(ValueError):
    """A wet appliance is configured or driven impossibly; the message names the field."""


@dataclass(frozen=True)
class StartRequest:
    """The user loads the appliance, presses start at `pressed_at` and wants it done by `ready_by`."""

    pressed_at: datetime
    ready_by: datetime
    preferred: str
    allowed: tuple[str, ...]


@dataclass(frozen=True)
class ApplianceRun:
    """One programme run: which request, which programme, from `start` to `end`."""

    request: StartRequest
    programme: str
    start: datetime
    end: datetime
    controlled: bool


@dataclass(frozen=True)
class WetApplianceStep:
    """One step: start, kWh drawn, the setpoint (None: uncontrolled), status and any deviation."""

    time: datetime
    energy_kwh: float
    setpoint_kwh: float | None
    status: ApplianceStatus
    programme: str | None
    deviation: str | None


class WetAppliance:
    """A dishwasher or washing machine serving its user's start requests (module docstring).

    `runs` lists the programmes run so far; `history` lists every step.
    """

    def __init__(self, *, kind: str, programmes: Sequence[Programme], requests: Sequence[StartRequest]) -> None:
        names = [p.name for p in programmes]
        if not names or len(names) != len(set(names)):
            raise WetApplianceError(f"programmes must be a non-empty list with unique names, not {names}")
        ordered = sorted(requests, key=lambda r: r.pressed_at)
        for r in ordered:
            if r.ready_by <= r.pressed_at:
                raise WetApplianceError(f"request pressed {r.pressed_at.isoformat()}: ready_by must be later")
            if r.preferred not in r.allowed or not set(r.allowed) <= set(names):
                raise WetApplianceError(
                    f"request pressed {r.pressed_at.isoformat()}: preferred {r.preferred!r} must be allowed and "
                    f"the allowed programmes {r.allowed} must be among {names}"
                )
        self.kind = kind
        self.programmes: dict[str, Programme] = {p.name: p for p in programmes}
        self.requests: tuple[StartRequest, ...] = tuple(ordered)
        self._pressed = [r.pressed_at for r in ordered]
        self._next = 0  # index of the first request not yet started
        self._run: tuple[StartRequest, Programme, datetime, bool] | None = None
        self.runs: list[ApplianceRun] = []
        self.history: list[WetApplianceStep] = []

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        kind: str,
        first_day: datetime,
        days: int,
        utc_offset_s: int = 0,
        run_probability: float | None = None,
    ) -> WetAppliance:
        """An appliance of `kind` ("dishwasher" or "washing_machine") with requests drawn from `rng`.

        One draw per local day from `first_day`, in a fixed order (module docstring); times
        rounded to seconds.
        """
        if kind not in _CATALOGUE:
            raise WetApplianceError(f"kind must be one of {', '.join(sorted(_CATALOGUE))}, not {kind!r}")
        if days < 0:
            raise WetApplianceError(f"days must not be negative, not {days}")
        programmes = _CATALOGUE[kind]
        names = [p.name for p in programmes]
        weights = np.asarray(_PREFERENCE_WEIGHTS[kind])
        p_run = _RUN_PROBABILITY[kind] if run_probability is None else run_probability
        offset = timedelta(seconds=utc_offset_s)
        local = first_day.astimezone(UTC) + offset
        midnight = datetime(local.year, local.month, local.day, tzinfo=UTC) - offset
        requests = []
        for d in range(days):
            day = midnight + d * _DAY
            runs = bool(rng.random() < p_run)
            if kind == "dishwasher":
                pressed_h = float(np.clip(rng.normal(20.5, 1.0), 18.0, 23.5))
                ready_h = 24.0 + float(np.clip(rng.normal(7.0, 0.5), 5.5, 9.0))
            else:
                pressed_h = float(np.clip(rng.normal(9.0, 1.5), 6.0, 14.0))
                ready_h = pressed_h + float(rng.uniform(4.0, 10.0))
            preferred = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            others = rng.random(len(names)) < 0.7
            if not runs:
                continue
            allowed = tuple(n for n, keep in zip(names, others, strict=True) if keep or n == preferred)
            pressed = day + timedelta(seconds=round(pressed_h * 3600))
            ready = day + timedelta(seconds=round(ready_h * 3600))
            requests.append(StartRequest(pressed, ready, preferred, allowed))
        return cls(kind=kind, programmes=programmes, requests=requests)

    # -- sensors ---------------------------------------------------------------------------------
    def _waiting(self, now: datetime) -> StartRequest | None:
        """The request pressed at or before `now` that has not started (None while running)."""
        if self._run is not None or self._next >= len(self.requests):
            return None
        request = self.requests[self._next]
        return request if request.pressed_at <= now else None

    def state(self, now: datetime) -> WetApplianceState:
        """What the FOA sees at `now`: status, the programmes, the user's request or the run."""
        programmes = tuple(self.programmes.values())
        if self._run is not None:
            _, programme, start, _ = self._run
            return WetApplianceState(
                kind=self.kind,
                status=ApplianceStatus.RUNNING,
                programmes=programmes,
                running=programme.name,
                started_at=start,
            )
        request = self._waiting(now)
        if request is None:
            return WetApplianceState(kind=self.kind, status=ApplianceStatus.IDLE, programmes=programmes)
        return WetApplianceState(
            kind=self.kind,
            status=ApplianceStatus.WAITING,
            programmes=programmes,
            allowed=request.allowed,
            preferred=request.preferred,
            pressed_at=request.pressed_at,
            ready_by=request.ready_by,
        )

    def pressed(self, now: datetime, slice_s: int = 900) -> StartRequest | None:
        """The request whose start was pressed within the step that begins at `now` ([now, now + slice_s))."""
        i = bisect.bisect_left(self._pressed, now)
        if i < len(self.requests) and self.requests[i].pressed_at < now + timedelta(seconds=slice_s):
            return self.requests[i]
        return None

    # -- physics -----------------------------------------------------------------------------------
    def _choose(self, request: StartRequest, setpoint_kwh: float, slice_s: int) -> Programme:
        def distance(name: str) -> tuple[float, bool]:
            first = self.programmes[name].energy_between_kwh(0.0, slice_s)
            return abs(first - setpoint_kwh), name != request.preferred

        return self.programmes[min(request.allowed, key=distance)]

    def step(self, now: datetime, setpoint_kwh: float | None, slice_s: int, *, programme: str | None = None) -> float:
        """Advance over [now, now + slice_s): the kWh really drawn.

        `programme` names the programme a positive setpoint starts (it must be allowed by the
        waiting request); it is ignored otherwise.
        """
        end = now + timedelta(seconds=slice_s)
        deviation = None
        request = self._waiting(now)
        if request is not None:
            starts = now > request.pressed_at if setpoint_kwh is None else setpoint_kwh > _TOL_KWH
            if starts:
                if setpoint_kwh is not None and programme is not None:
                    if programme not in request.allowed:
                        raise WetApplianceError(
                            f"programme {programme!r} is not allowed by the user: {', '.join(request.allowed)}"
                        )
                    chosen = self.programmes[programme]
                elif setpoint_kwh is None:
                    chosen = self.programmes[request.preferred]
                else:
                    chosen = self._choose(request, setpoint_kwh, slice_s)
                self._run = (request, chosen, now, setpoint_kwh is not None)
                self._next += 1
        drawn = 0.0
        name = None
        if self._run is not None:
            request, chosen, start, controlled = self._run
            name = chosen.name
            elapsed_s = (now - start).total_seconds()
            drawn = chosen.energy_between_kwh(elapsed_s, elapsed_s + slice_s)
            if setpoint_kwh is not None and abs(setpoint_kwh - drawn) > _TOL_KWH:
                deviation = (
                    f"programme {name} in progress: drew {drawn:.4f} kWh, not the setpoint {setpoint_kwh:.4f} kWh"
                )
            finish = start + timedelta(seconds=chosen.duration_s)
            if finish <= end:
                self.runs.append(ApplianceRun(request, name, start, finish, controlled))
                self._run = None
        status = ApplianceStatus.RUNNING if name is not None else ApplianceStatus.IDLE
        if name is None and self._waiting(now) is not None:
            status = ApplianceStatus.WAITING
        self.history.append(WetApplianceStep(now, drawn, setpoint_kwh, status, name, deviation))
        return drawn

    def deviations(self) -> list[WetApplianceStep]:
        """The steps whose setpoint the appliance ignored because a programme was running."""
        return [h for h in self.history if h.deviation is not None]

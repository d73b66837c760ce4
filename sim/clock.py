"""Simulated time: a SimPy environment counting seconds from a UTC start, and the step phases.

SimPy owns time. One simulated step of `slice_s` seconds runs its work in fixed phases, a few
seconds apart inside the step so that their order never depends on event insertion order:

    TRIGGER (+0 s)  devices report, FOAs generate and submit offers
    PLAN    (+1 s)  the FMAN plans and assigns schedules
    MARKET  (+2 s)  buyers post requests, the FMAR clears its session
    EXECUTE (+3 s)  EMSs set the devices, physics advance, meters report
    SETTLE  (+4 s)  offers start executing and settle
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import simpy

__all__ = ["Phase", "SimClock"]


class Phase(enum.IntEnum):
    """Offsets (seconds) of the phases inside a step."""

    TRIGGER = 0
    PLAN = 1
    MARKET = 2
    EXECUTE = 3
    SETTLE = 4


class SimClock:
    """Maps SimPy time (seconds since `start`) to UTC datetimes on the `slice_s` grid."""

    def __init__(self, env: simpy.Environment, *, start: datetime, slice_s: int, n_steps: int) -> None:
        self.env = env
        self.start = start
        self.slice_s = slice_s
        self.n_steps = n_steps

    def now(self) -> datetime:
        """The current simulated time (UTC)."""
        return self.start + timedelta(seconds=float(self.env.now))

    def step_start(self, k: int) -> datetime:
        """Start of step k."""
        return self.start + timedelta(seconds=k * self.slice_s)

    def step_index(self) -> int:
        """The step the current time falls in."""
        return int(self.env.now // self.slice_s)

    def every_step(self, phase: Phase, action, *, every_steps: int = 1, first: int = 0):
        """A SimPy process calling `action(k)` at `phase` of every `every_steps`-th step from step `first`."""

        def process():
            yield self.env.timeout(first * self.slice_s + int(phase))
            for k in range(first, self.n_steps, every_steps):
                action(k)
                yield self.env.timeout(self.slice_s * every_steps)

        return self.env.process(process())

"""Feasibility of a schedule against its Flex-Offer: the five rules of spec/flexoffer.md.

1. `start` is on the `slice_s` grid and inside the (resolved) start window;
2. `profile` indexes a profile and `len(energy)` equals its step count;
3. every `energy[i]` lies within its slice's [lower, upper];
4. `sum(energy)` lies within `total_energy`, `A @ energy <= b`, every dependency bound holds;
5. `assigned_at` <= `assignment_before`.

All comparisons allow `TOLERANCE_KWH` (1e-6 kWh). Each violation is a Problem whose `rule`
is "1" ... "5" and whose path points into the schedule.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from atp.errors import Problem
from atp.flexoffer.model import DefaultSchedule, FlexOffer, Profile, Schedule

__all__ = ["TOLERANCE_KWH", "check_profile_energy", "check_schedule", "check_schedules", "is_feasible", "on_grid"]

TOLERANCE_KWH = 1e-6


def on_grid(t: datetime, slice_s: int) -> bool:
    """True when `t` is a whole number of `slice_s` steps after the Unix epoch."""
    return t.timestamp() % slice_s == 0


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def check_profile_energy(
    profile: Profile, energy: np.ndarray, *, path: str = "energy", tol: float = TOLERANCE_KWH
) -> list[Problem]:
    """Rules 3 and 4 for an energy vector of the profile's length."""
    problems: list[Problem] = []
    lower, upper = profile.lower_kwh(), profile.upper_kwh()
    for i in np.flatnonzero((energy < lower - tol) | (energy > upper + tol)):
        problems.append(
            Problem(
                f"{path}[{i}]",
                f"{_fmt(energy[i])} kWh is outside the slice bounds [{_fmt(lower[i])}, {_fmt(upper[i])}] kWh",
                "3",
            )
        )
    if profile.total_energy is not None:
        lo, hi = profile.total_energy
        total = float(energy.sum())
        if total < lo - tol or total > hi + tol:
            problems.append(
                Problem(
                    path,
                    f"total {_fmt(total)} kWh is outside total_energy [{_fmt(lo)}, {_fmt(hi)}] kWh",
                    "4",
                )
            )
    if profile.polytope is not None:
        a = np.asarray(profile.polytope.A, dtype=float)
        b = np.asarray(profile.polytope.b, dtype=float)
        lhs = a @ energy
        for j in np.flatnonzero(lhs > b + tol):
            problems.append(
                Problem(
                    path,
                    f"polytope row {j}: A[{j}] @ energy = {_fmt(lhs[j])} exceeds b[{j}] = {_fmt(b[j])}",
                    "4",
                )
            )
    if profile.dependency is not None:
        accumulated = np.concatenate(([0.0], np.cumsum(energy)[:-1]))
        for i, points in enumerate(profile.dependency):
            if i >= len(energy):
                break
            d = accumulated[i]
            ds = [p[0] for p in points]
            if d < ds[0] - tol or d > ds[-1] + tol:
                problems.append(
                    Problem(
                        f"{path}[{i}]",
                        f"energy accumulated before this step, {_fmt(d)} kWh, is outside the "
                        f"dependency range [{_fmt(ds[0])}, {_fmt(ds[-1])}] kWh",
                        "4",
                    )
                )
                continue
            lo_i = float(np.interp(d, ds, [p[1] for p in points]))
            hi_i = float(np.interp(d, ds, [p[2] for p in points]))
            if energy[i] < lo_i - tol or energy[i] > hi_i + tol:
                problems.append(
                    Problem(
                        f"{path}[{i}]",
                        f"{_fmt(energy[i])} kWh is outside the dependency bounds "
                        f"[{_fmt(lo_i)}, {_fmt(hi_i)}] kWh at accumulated {_fmt(d)} kWh",
                        "4",
                    )
                )
    return problems


def check_schedule(
    offer: FlexOffer,
    schedule: Schedule | DefaultSchedule,
    *,
    now: datetime | None = None,
    tol: float = TOLERANCE_KWH,
) -> list[Problem]:
    """Every rule the schedule breaks, as Problems (empty list = feasible).

    Implicit time flexibility is resolved against `now`; when `now` is not given it is the
    schedule's `assigned_at`, else the offer's `created_at`; with none of them the implicit
    bound is not checked. A DefaultSchedule has no `assigned_at`, so rule 5 does not apply.
    """
    problems: list[Problem] = []
    assigned_at = getattr(schedule, "assigned_at", None)
    if now is None:
        now = assigned_at if assigned_at is not None else offer.created_at
    # Rule 1: start on the grid and in the window.
    if not on_grid(schedule.start, offer.slice_s):
        problems.append(Problem("start", f"is not on the {offer.slice_s} s grid", "1"))
    window = offer.window(now)
    if window.earliest is not None and schedule.start < window.earliest:
        problems.append(Problem("start", "is before the earliest start (start_after)", "1"))
    if window.latest is not None and schedule.start > window.latest:
        problems.append(Problem("start", "is after the latest start (start_before)", "1"))
    # Rule 5: assigned in time.
    if assigned_at is not None and offer.assignment_before is not None and assigned_at > offer.assignment_before:
        problems.append(Problem("assigned_at", "is after the offer's assignment_before", "5"))
    # Rule 2: the profile exists and the length matches.
    if not 0 <= schedule.profile < len(offer.profiles):
        problems.append(
            Problem("profile", f"{schedule.profile} is not a profile index (0..{len(offer.profiles) - 1})", "2")
        )
        return problems
    profile = offer.profiles[schedule.profile]
    if len(schedule.energy) != profile.n_steps:
        problems.append(
            Problem(
                "energy",
                f"has {len(schedule.energy)} steps but profile {schedule.profile} has {profile.n_steps}",
                "2",
            )
        )
        return problems
    # Rules 3 and 4.
    energy = np.asarray(schedule.energy, dtype=float)
    problems.extend(check_profile_energy(profile, energy, tol=tol))
    return problems


def is_feasible(offer: FlexOffer, schedule: Schedule | DefaultSchedule, **kwargs: object) -> bool:
    """True when `check_schedule` finds nothing."""
    return not check_schedule(offer, schedule, **kwargs)  # type: ignore[arg-type]


def check_schedules(
    offers: dict[str, FlexOffer], schedules: list[Schedule], *, tol: float = TOLERANCE_KWH
) -> list[list[Problem]]:
    """`check_schedule` for each schedule, looking its offer up by `flex_offer_id`."""
    out = []
    for s in schedules:
        offer = offers.get(s.flex_offer_id)
        if offer is None:
            out.append([Problem("flex_offer_id", f"no offer with id {s.flex_offer_id!r}", "2")])
        else:
            out.append(check_schedule(offer, s, tol=tol))
    return out

"""Validation of Flex-Offers: every problem at once, each with its JSON path and a sentence.

`validate_offer_data` takes parsed JSON (structural checks by `codec`, then semantic checks);
`validate_offer` takes an already built FlexOffer (semantic checks only). Neither raises for
a bad offer: both return the list of problems.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from atp.errors import Problem
from atp.flexoffer.codec import decode, format_time
from atp.flexoffer.feasibility import check_schedule, on_grid
from atp.flexoffer.model import FlexOffer, Mode

__all__ = ["Limits", "validate_offer", "validate_offer_data", "validate_offer_json"]

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Limits:
    """Configurable limits of validation.

    `max_profile_steps` and `max_window_steps` bound the work an offer can cause: they are
    checked on the declared numbers before any per-step array is built, so an offer of a few
    hundred bytes cannot make the receiver allocate gigabytes (a slice of 10^9 steps is refused
    in microseconds). The start window counts `start_before - start_after` (or
    `start_before_duration_s`) in `slice_s` steps.
    """

    max_profile_s: int = 7 * SECONDS_PER_DAY
    max_profiles: int = 64
    max_profile_steps: int = 10_000
    max_window_steps: int = 100_000


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _check_pair(pair: tuple[float, float], path: str, what: str, problems: list[Problem]) -> None:
    lo, hi = pair
    if lo > hi:
        problems.append(Problem(path, f"lower {_fmt(lo)} {what} is above upper {_fmt(hi)} {what}", "bounds"))


def _check_profiles(offer: FlexOffer, limits: Limits, problems: list[Problem]) -> bool:
    """Profile checks; returns True when the profiles are sound enough to check schedules."""
    sound = True
    if not offer.profiles:
        problems.append(Problem("profiles", "must hold at least one profile", "empty"))
        return False
    if len(offer.profiles) > limits.max_profiles:
        problems.append(
            Problem(
                "profiles", f"has {len(offer.profiles)} profiles, more than the limit {limits.max_profiles}", "limit"
            )
        )
    for k, profile in enumerate(offer.profiles):
        p = f"profiles[{k}]"
        profile_sound = True  # gates this profile's joint checks; `sound` gates the default schedule
        if not profile.slices:
            problems.append(Problem(f"{p}.slices", "must hold at least one slice", "empty"))
            sound = False
            continue
        for j, s in enumerate(profile.slices):
            if s.duration < 1:
                problems.append(
                    Problem(f"{p}.slices[{j}].duration", f"must be at least 1 step, not {s.duration}", "duration")
                )
                profile_sound = False
            _check_pair(s.energy, f"{p}.slices[{j}].energy", "kWh", problems)
        if not profile_sound:
            sound = False
            continue
        n = profile.n_steps
        if n > limits.max_profile_steps:  # checked before any array of n steps is built
            problems.append(
                Problem(
                    f"{p}.slices",
                    f"profile has {n} steps, more than the limit of {limits.max_profile_steps}",
                    "limit",
                )
            )
            sound = False
            continue
        if n * offer.slice_s > limits.max_profile_s:
            problems.append(
                Problem(
                    f"{p}.slices",
                    f"profile lasts {n * offer.slice_s} s, longer than the limit of {limits.max_profile_s} s",
                    "limit",
                )
            )
        if profile.total_energy is not None:
            _check_pair(profile.total_energy, f"{p}.total_energy", "kWh", problems)
            lo, hi = profile.total_energy
            if lo > profile.upper_kwh().sum() + 1e-9 or hi < profile.lower_kwh().sum() - 1e-9:
                problems.append(Problem(f"{p}.total_energy", "cannot be met within the slice bounds", "bounds"))
        if profile.polytope is not None:
            a, b = profile.polytope.A, profile.polytope.b
            if len(a) != len(b):
                problems.append(Problem(f"{p}.polytope", f"A has {len(a)} rows but b has {len(b)} entries", "shape"))
                sound = False
            for r, row in enumerate(a):
                if len(row) != n:
                    problems.append(
                        Problem(
                            f"{p}.polytope.A[{r}]", f"has {len(row)} columns but the profile has {n} steps", "shape"
                        )
                    )
                    sound = False
        if profile.dependency is not None:
            if len(profile.dependency) != n:
                problems.append(
                    Problem(
                        f"{p}.dependency",
                        f"has {len(profile.dependency)} entries but the profile has {n} steps",
                        "shape",
                    )
                )
                sound = False
            for i, points in enumerate(profile.dependency):
                if not points:
                    problems.append(Problem(f"{p}.dependency[{i}]", "must hold at least one point", "empty"))
                    sound = False
                    continue
                ds = [pt[0] for pt in points]
                if any(b < a for a, b in itertools.pairwise(ds)):
                    problems.append(Problem(f"{p}.dependency[{i}]", "points are not sorted by d", "order"))
                    sound = False
                for q, pt in enumerate(points):
                    if pt[1] > pt[2]:
                        problems.append(
                            Problem(
                                f"{p}.dependency[{i}][{q}]",
                                f"lower {_fmt(pt[1])} kWh is above upper {_fmt(pt[2])} kWh",
                                "bounds",
                            )
                        )
    return sound


def _check_window_size(offer: FlexOffer, limits: Limits, problems: list[Problem]) -> None:
    """The start window and the conditional spans hold at most `max_window_steps` steps."""
    slice_s = offer.slice_s if 0 < offer.slice_s <= SECONDS_PER_DAY else SECONDS_PER_DAY  # a bad one: the largest
    most_s = limits.max_window_steps * slice_s
    duration = offer.start_before_duration_s
    if duration is not None and duration > most_s:
        problems.append(
            Problem(
                "start_before_duration_s",
                f"{duration} s is more than the limit of {limits.max_window_steps} steps of {slice_s} s",
                "limit",
            )
        )
    if offer.start_after is not None and offer.start_before is not None:
        window_s = (offer.start_before - offer.start_after).total_seconds()
        if window_s > most_s:
            problems.append(
                Problem(
                    "start_before",
                    f"the start window lasts {window_s:.0f} s, more than the limit of "
                    f"{limits.max_window_steps} steps of {slice_s} s",
                    "limit",
                )
            )
    if offer.conditional is not None:
        for name in ("prior_s", "after_s"):
            if getattr(offer.conditional, name) > most_s:
                problems.append(
                    Problem(f"conditional.{name}", f"must not exceed {most_s} s (the window limit)", "conditional")
                )


def validate_offer(offer: FlexOffer, *, limits: Limits = Limits(), now: datetime | None = None) -> list[Problem]:
    """Every semantic problem of a structurally sound offer (empty list = valid)."""
    problems: list[Problem] = []
    slice_s = offer.slice_s
    grid_ok = slice_s > 0 and SECONDS_PER_DAY % slice_s == 0
    if not grid_ok:
        problems.append(Problem("slice_s", f"(={slice_s}) must divide 86400 (e.g. 900 or 3600)", "grid"))
    for name in ("start_after", "start_before"):
        t = getattr(offer, name)
        if t is not None and grid_ok and not on_grid(t, slice_s):
            problems.append(Problem(name, f"{format_time(t)} is not on the {slice_s} s grid", "grid"))
    if offer.start_before is not None and offer.start_before_duration_s is not None:
        problems.append(
            Problem("start_before", "give either start_before or start_before_duration_s, not both", "window")
        )
    if offer.start_before is None and offer.start_before_duration_s is None:
        problems.append(Problem("start_before", "one of start_before or start_before_duration_s is required", "window"))
    if offer.start_before_duration_s is not None:
        dur = offer.start_before_duration_s
        if dur < 0:
            problems.append(Problem("start_before_duration_s", f"must not be negative, not {dur}", "window"))
        elif grid_ok and dur % slice_s:
            problems.append(
                Problem("start_before_duration_s", f"{dur} s is not a whole number of {slice_s} s steps", "grid")
            )
    before = len(problems)
    _check_window_size(offer, limits, problems)
    window_ok = len(problems) == before  # else resolving the window could reach beyond the calendar
    if window_ok:
        window = offer.window(now)
        if window.earliest is not None and window.latest is not None and window.latest < window.earliest:
            problems.append(Problem("start_before", "is before start_after", "window"))
    if (
        offer.assignment_before is not None
        and offer.start_before is not None
        and offer.assignment_before > offer.start_before
    ):
        problems.append(Problem("assignment_before", "is after start_before", "window"))
    if offer.mode is Mode.DIRECT and (
        offer.price is None or (offer.price.per_kwh_deviation is None and offer.price.per_kwh is None)
    ):
        problems.append(Problem("price", "is required for a direct offer", "price"))
    if offer.conditional is not None:
        c = offer.conditional
        for name in ("prior_s", "after_s"):
            if getattr(c, name) < 0:
                problems.append(Problem(f"conditional.{name}", "must not be negative", "conditional"))
        for name in ("prior_portion", "after_portion"):
            if not 0.0 <= getattr(c, name) <= 1.0:
                problems.append(Problem(f"conditional.{name}", "must lie within [0, 1]", "conditional"))
    sound = _check_profiles(offer, limits, problems)
    if offer.default_schedule is not None and sound and grid_ok and window_ok:
        for problem in check_schedule(offer, offer.default_schedule, now=now):
            problems.append(
                Problem(
                    f"default_schedule.{problem.path}", f"infeasible default schedule: {problem.message}", "default"
                )
            )
    return problems


def validate_offer_data(
    data: Any, *, limits: Limits = Limits(), now: datetime | None = None
) -> tuple[FlexOffer | None, list[Problem]]:
    """Structural then semantic validation of parsed JSON; the offer is None when invalid."""
    offer, problems = decode(FlexOffer, data)
    if offer is None:
        return None, problems
    problems = validate_offer(offer, limits=limits, now=now)
    return (offer if not problems else None), problems


def validate_offer_json(
    text: str | bytes, *, limits: Limits = Limits(), now: datetime | None = None
) -> tuple[FlexOffer | None, list[Problem]]:
    """`validate_offer_data` on JSON text; malformed JSON is one problem, not an exception."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [Problem("", f"malformed JSON: {exc}", "json")]
    return validate_offer_data(data, limits=limits, now=now)

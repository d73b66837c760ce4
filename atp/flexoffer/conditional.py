"""Two-mode conditional operation (D2.1 7.1) expanded into XOR profiles, as a pure function.

An offer with `conditional = {prior_s, prior_portion, after_s, after_portion}` describes a load
that, if the intervention is activated, runs at the lower bounds of its profile and returns
`prior_portion` of the curtailed energy in the `prior_s` seconds before the intervention
(pre-load) and `after_portion` of it in the `after_s` seconds after (rebound). The curtailed
energy C of a profile is `sum(default energy) - sum(lower)` when the default schedule runs that
profile, otherwise `sum(upper) - sum(lower)`.

`expand_conditional` turns each profile p of the offer into two XOR profiles that both span
`k_prior + n + k_after` steps (`k = ceil(s / slice_s)`), so that a schedule's `start` always
marks the beginning of the pre-load phase:

- profile 2p ("normal"): zero-energy steps around p's own slices and constraints (polytope and
  dependency padded so that they mean the same on the middle steps);
- profile 2p+1 ("intervention"): every step fixed, the pre-load steps at
  `prior_portion * C / k_prior` each, p's steps at their lower bounds, the rebound steps at
  `after_portion * C / k_after` each.

The start window, the default schedule (which keeps the normal mode) and the assignment
deadline shift `k_prior` steps earlier. An implicit window (D2.1 implicit time flexibility) is
first resolved against `now` (default: the offer's `created_at`) and rounded onto the grid
(earliest start up, latest start down) so that it can shift; with
neither, the window and default start stay as given and `start` marks the pre-load phase.
The result has no `conditional` field; everything else is kept.
Expanding an offer without `conditional` returns it unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta

from atp.flexoffer.model import Conditional, DefaultSchedule, FlexOffer, Polytope, Profile, Slice

__all__ = ["expand_conditional"]


def _zero_slices(k: int) -> tuple[Slice, ...]:
    return (Slice(duration=k, energy=(0.0, 0.0)),) if k else ()


def _normal(profile: Profile, k_prior: int, k_after: int) -> Profile:
    polytope = None
    if profile.polytope is not None:
        a = tuple((0.0,) * k_prior + tuple(row) + (0.0,) * k_after for row in profile.polytope.A)
        polytope = Polytope(A=a, b=profile.polytope.b)
    dependency = None
    if profile.dependency is not None:
        lower, upper = profile.lower_kwh(), profile.upper_kwh()
        d_hi = float(max(upper.sum(), 0.0))
        d_lo = float(min(lower.sum(), 0.0))
        zero_step = ((d_lo, 0.0, 0.0), (d_hi, 0.0, 0.0)) if d_hi > d_lo else ((0.0, 0.0, 0.0),)
        prior = (((0.0, 0.0, 0.0),),) * k_prior
        after = (zero_step,) * k_after
        dependency = prior + tuple(profile.dependency) + after
    return Profile(
        slices=_zero_slices(k_prior) + profile.slices + _zero_slices(k_after),
        total_energy=profile.total_energy,
        polytope=polytope,
        dependency=dependency,
    )


def _intervention(profile: Profile, curtailed_kwh: float, c: Conditional, k_prior: int, k_after: int) -> Profile:
    slices: list[Slice] = []
    if k_prior:
        e = c.prior_portion * curtailed_kwh / k_prior
        slices.append(Slice(duration=k_prior, energy=(e, e)))
    slices.extend(Slice(duration=s.duration, energy=(s.energy[0], s.energy[0])) for s in profile.slices)
    if k_after:
        e = c.after_portion * curtailed_kwh / k_after
        slices.append(Slice(duration=k_after, energy=(e, e)))
    return Profile(slices=tuple(slices))


def expand_conditional(offer: FlexOffer, *, now: datetime | None = None) -> FlexOffer:
    """The offer with its two-mode conditional operation expanded into XOR profiles."""
    c = offer.conditional
    if c is None:
        return offer
    now = now if now is not None else offer.created_at
    if now is not None and (offer.start_after is None or offer.start_before is None):
        window = offer.window(now)
        # Resolved bounds go onto the grid: the earliest start up, the latest start down.
        step = offer.slice_s
        earliest = window.earliest
        latest = window.latest
        if earliest is not None and earliest.timestamp() % step:
            earliest += timedelta(seconds=step - earliest.timestamp() % step)
        if latest is not None and latest.timestamp() % step:
            latest -= timedelta(seconds=latest.timestamp() % step)
        offer = dataclasses.replace(offer, start_after=earliest, start_before=latest, start_before_duration_s=None)
    k_prior = math.ceil(c.prior_s / offer.slice_s)
    k_after = math.ceil(c.after_s / offer.slice_s)
    shift = timedelta(seconds=k_prior * offer.slice_s)
    if offer.start_after is None:
        shift = timedelta(0)
    default = offer.default_schedule
    profiles: list[Profile] = []
    for p, profile in enumerate(offer.profiles):
        lower = float(profile.lower_kwh().sum())
        if default is not None and default.profile == p:
            base = float(sum(default.energy))
        else:
            base = float(profile.upper_kwh().sum())
        curtailed = max(base - lower, 0.0)
        profiles.append(_normal(profile, k_prior, k_after))
        profiles.append(_intervention(profile, curtailed, c, k_prior, k_after))
    new_default = None
    if default is not None:
        new_default = DefaultSchedule(
            start=default.start - shift,
            profile=2 * default.profile,
            energy=(0.0,) * k_prior + tuple(default.energy) + (0.0,) * k_after,
        )
    return dataclasses.replace(
        offer,
        conditional=None,
        profiles=tuple(profiles),
        default_schedule=new_default,
        start_after=offer.start_after - shift if offer.start_after is not None else None,
        start_before=offer.start_before - shift if offer.start_before is not None else None,
        assignment_before=offer.assignment_before - shift if offer.assignment_before is not None else None,
    )

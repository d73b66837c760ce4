"""Inner box approximations of a profile: per-step bounds inside which every vector is feasible.

A box (lower[i] <= x[i] <= upper[i], nothing else) is what start-aligned aggregation and merit
order markets handle exactly; these functions shrink a profile's slice bounds until its joint
constraints (total energy, polytope, dependency) hold for *every* vector in the box, so any
schedule drawn from the box is feasible for the original profile (an inner approximation).

- `inner_box_around(profile, reference)`: a box containing `reference` (a feasible vector,
  usually the default schedule): used where deviations from the default are traded.
- `inner_box(profile, reference=None)`: the widest box found proportionally from the slice
  bounds; where joint constraints cut it, it falls back to a box around `reference`.

Total energy is handled exactly (proportional shrinking). A polytope shrinks the box by the
largest uniform factor for which every row holds at the box's worst corner. A dependency
constraint keeps only the reference (the box collapses to it) unless every step's bounds hold
over the whole range of accumulated energy the box allows, which is checked.
"""

from __future__ import annotations

import numpy as np

from atp.flexoffer.model import Profile

__all__ = ["inner_box", "inner_box_around"]

_EPS = 1e-9


class _Polytope:
    """A profile's polytope as arrays, split into positive and negative parts once."""

    def __init__(self, profile: Profile) -> None:
        self.present = profile.polytope is not None
        if self.present:
            a = np.asarray(profile.polytope.A, dtype=float)
            self.a_pos = np.clip(a, 0, None)
            self.a_neg = np.clip(a, None, 0)
            self.b = np.asarray(profile.polytope.b, dtype=float) + 1e-7

    def holds_on_box(self, lower: np.ndarray, upper: np.ndarray) -> bool:
        """True when A x <= b for every x in the box (checked at each row's worst corner)."""
        if not self.present:
            return True
        return bool(np.all(self.a_pos @ upper + self.a_neg @ lower <= self.b))


def _dependency_ok(profile: Profile, lower: np.ndarray, upper: np.ndarray) -> bool:
    if profile.dependency is None:
        return True
    d_lo = np.concatenate(([0.0], np.cumsum(lower)[:-1]))
    d_hi = np.concatenate(([0.0], np.cumsum(upper)[:-1]))
    for i, points in enumerate(profile.dependency):
        ds = np.array([p[0] for p in points])
        if d_lo[i] < ds[0] - 1e-7 or d_hi[i] > ds[-1] + 1e-7:
            return False
        # Bounds are piecewise linear in d: their extremes over [d_lo, d_hi] lie at the ends or
        # at breakpoints inside.
        inside = ds[(ds > d_lo[i]) & (ds < d_hi[i])]
        grid = np.concatenate(([d_lo[i], d_hi[i]], inside))
        lo_fn = np.interp(grid, ds, [p[1] for p in points])
        hi_fn = np.interp(grid, ds, [p[2] for p in points])
        if lower[i] < lo_fn.max() - 1e-7 or upper[i] > hi_fn.min() + 1e-7:
            return False
    return True


def _shrink_to_constraints(
    profile: Profile, reference: np.ndarray, lower: np.ndarray, upper: np.ndarray, polytope: _Polytope | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Shrink [lower, upper] towards `reference` until polytope and dependency hold."""
    polytope = polytope or _Polytope(profile)
    if polytope.holds_on_box(lower, upper) and _dependency_ok(profile, lower, upper):
        return lower, upper
    lo_f, hi_f = 0.0, 1.0  # fraction of the box kept; 0 = the reference alone
    for _ in range(40):
        mid = 0.5 * (lo_f + hi_f)
        lw = reference - mid * (reference - lower)
        up = reference + mid * (upper - reference)
        if polytope.holds_on_box(lw, up) and _dependency_ok(profile, lw, up):
            lo_f = mid
        else:
            hi_f = mid
    return reference - lo_f * (reference - lower), reference + lo_f * (upper - reference)


def inner_box_around(profile: Profile, reference: np.ndarray | tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-step (lower, upper) kWh containing the feasible `reference`, inside the profile."""
    ref = np.asarray(reference, dtype=float)
    lower = np.minimum(profile.lower_kwh(), ref)
    upper = np.maximum(profile.upper_kwh(), ref)
    if profile.total_energy is not None:
        lo_total, hi_total = profile.total_energy
        total = ref.sum()
        down = (ref - lower).sum()
        up = (upper - ref).sum()
        a = 1.0 if down <= _EPS else float(np.clip((total - lo_total) / down, 0.0, 1.0))
        b = 1.0 if up <= _EPS else float(np.clip((hi_total - total) / up, 0.0, 1.0))
        lower = ref - a * (ref - lower)
        upper = ref + b * (upper - ref)
    return _shrink_to_constraints(profile, ref, lower, upper)


def inner_box(
    profile: Profile, reference: np.ndarray | tuple[float, ...] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The widest proportional inner box of the profile, or None when none is found.

    When the proportional box breaks the polytope or dependency constraint, the box shrinks
    towards `reference` (a feasible vector, e.g. the default schedule: `inner_box_around`) or,
    without one, towards the box's middle if that is feasible.
    """
    lower, upper = profile.lower_kwh(), profile.upper_kwh()
    span = upper - lower
    if profile.total_energy is not None:
        lo_total, hi_total = profile.total_energy
        width = span.sum()
        if lo_total > upper.sum() + _EPS or hi_total < lower.sum() - _EPS:
            return None
        if width > _EPS:
            alpha = max(lo_total - lower.sum(), 0.0) / width
            beta = max(upper.sum() - hi_total, 0.0) / width
            lower, upper = lower + alpha * span, upper - beta * span
    polytope = _Polytope(profile)
    if polytope.holds_on_box(lower, upper) and _dependency_ok(profile, lower, upper):
        return lower, upper
    if reference is not None:
        return inner_box_around(profile, reference)
    middle = 0.5 * (lower + upper)
    if not (polytope.holds_on_box(middle, middle) and _dependency_ok(profile, middle, middle)):
        return None
    return _shrink_to_constraints(profile, middle, lower, upper, polytope)

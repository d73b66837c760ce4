"""A profile's joint constraints as linear rows `lo <= A @ x <= hi`, where that is exact.

`joint_rows(profile)` gives the rows of a profile's total-energy, polytope and dependency
constraints over its step vector x (per-step slice bounds are not rows: they stay bounds), or
None when the profile has a dependency constraint that is not convex.

- total energy `[lo, hi]`: one row of ones;
- polytope `A x <= b`: its rows, lower side -inf;
- dependency: at step i with accumulated energy d_i = x_0 + ... + x_(i-1) and points
  (d, lower, upper), the constraint is `d_i` within [d_first, d_last] and
  `lower(d_i) <= x_i <= upper(d_i)`, with lower and upper piecewise linear in d. When upper is
  concave (slopes not increasing) it is the minimum of its pieces' lines, so `x_i <= upper(d_i)`
  holds exactly when `x_i - slope * d_i <= intercept` holds for every piece; likewise a convex
  lower bound is the maximum of its lines. Such a dependency is a polytope, written as these
  rows. A non-convex one is not (its set of schedules is not convex) and gives None.

The rows describe exactly the same set of schedules as the constraints (together with the
slice bounds); tests/test_fman_keep_profile.py checks this against `check_schedule`.
"""

from __future__ import annotations

import numpy as np

from atp.flexoffer.model import Profile

__all__ = ["joint_rows"]

_SLOPE_TOL = 1e-9


def _lines(ds: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slopes, intercepts) of the pieces between consecutive distinct points."""
    keep = np.diff(ds) > 0
    slopes = np.diff(values)[keep] / np.diff(ds)[keep]
    intercepts = values[:-1][keep] - slopes * ds[:-1][keep]
    return slopes, intercepts


def _dependency_rows(profile: Profile, n: int) -> tuple[list[np.ndarray], list[float], list[float]] | None:
    rows: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []
    for i, points in enumerate(profile.dependency or ()):
        if i >= n:
            break
        pts = np.asarray(points, dtype=float)
        ds, lows, ups = pts[:, 0], pts[:, 1], pts[:, 2]
        prefix = np.zeros(n)
        prefix[:i] = 1.0  # d_i = prefix @ x
        rows.append(prefix)
        lo.append(float(ds[0]))
        hi.append(float(ds[-1]))
        step = np.zeros(n)
        step[i] = 1.0
        if len(ds) == 1 or np.all(np.diff(ds) <= 0):  # a single accumulated energy: constant bounds
            rows += [step]
            lo.append(float(lows.max()))
            hi.append(float(ups.min()))
            continue
        same = np.diff(ds) <= 0
        if np.any(same & ((np.diff(ups) != 0) | (np.diff(lows) != 0))):
            return None  # a jump in a bound at one accumulated energy: not convex
        up_slopes, up_icpt = _lines(ds, ups)
        lo_slopes, lo_icpt = _lines(ds, lows)
        if np.any(np.diff(up_slopes) > _SLOPE_TOL) or np.any(np.diff(lo_slopes) < -_SLOPE_TOL):
            return None  # upper not concave or lower not convex: not a polytope
        for slope, icpt in zip(up_slopes, up_icpt, strict=True):
            rows.append(step - slope * prefix)
            lo.append(-np.inf)
            hi.append(float(icpt))
        for slope, icpt in zip(lo_slopes, lo_icpt, strict=True):
            rows.append(step - slope * prefix)
            lo.append(float(icpt))
            hi.append(np.inf)
    return rows, lo, hi


def joint_rows(profile: Profile) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(A, lo, hi) of the profile's joint constraints, or None when its dependency is not convex.

    A has one column per step; a profile without joint constraints gives zero rows. Rows with
    no coefficient (e.g. the accumulated energy before step 0) are kept when they exclude 0, so
    that an infeasible profile stays infeasible.
    """
    n = profile.n_steps
    rows: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []
    if profile.total_energy is not None:
        rows.append(np.ones(n))
        lo.append(float(profile.total_energy[0]))
        hi.append(float(profile.total_energy[1]))
    if profile.polytope is not None:
        a = np.asarray(profile.polytope.A, dtype=float).reshape(-1, n)
        rows += list(a)
        lo += [-np.inf] * len(a)
        hi += [float(v) for v in profile.polytope.b]
    if profile.dependency is not None:
        dep = _dependency_rows(profile, n)
        if dep is None:
            return None
        rows += dep[0]
        lo += dep[1]
        hi += dep[2]
    a = np.vstack(rows) if rows else np.zeros((0, n))
    lo_a, hi_a = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    empty = ~np.any(a != 0.0, axis=1)
    drop = empty & (lo_a <= 0.0) & (hi_a >= 0.0)  # 0 <= 0 rows say nothing
    return a[~drop], lo_a[~drop], hi_a[~drop]

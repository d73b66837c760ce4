"""Vectorised validation and feasibility over an OfferBatch: bitmasks instead of Problem lists.

`check_schedules_batch(batch, schedules)` gives one uint32 per schedule with bit `RULE_k`
set when the schedule breaks rule k of spec/flexoffer.md; rule bit k is set exactly when
`check_schedule(offer, schedule)` reports a Problem with rule "k" (same 1e-6 kWh tolerance;
sums and polytope products are added in another order, so values within float rounding,
about 1e-13 kWh, of a tolerance bound may fall the other way).

`validate_batch(batch)` gives one uint32 per offer with a flag per problem kind that
`validate_offer(offer, now=...)` can report. Every semantic problem class of validate_offer
is checked ("grid", "window", "price", "conditional", "empty", "limit", "duration", "bounds",
"shape", "order", "default"; `FLAG_CLASS` maps each flag to its class); structural JSON
problems (types, missing fields, NaN) belong to the codec and are out of scope. The window is
the one resolved at build time, so compare with `validate_offer(offer, now=now)` where `now`
is the build-time `now`, or the offer's `created_at` when none was given. One difference:
validate_offer stops checking later profiles of an offer once a profile is unsound; the batch
checks every profile, so for unsound offers it may flag more (never fewer) classes.

Flags and rule bits share one bit space, so `explain` reads either kind of mask. All work is
numpy over flat arrays; Python loops never run over offers or schedules, only over cache-sized
chunks of a flat array and over the distinct schedule lengths (prefix sums for dependencies).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from atp.flexoffer.batch import (
    MAX_TIME_US,
    MIN_TIME_US,
    MODE_DIRECT,
    NO_DURATION_S,
    OfferBatch,
    ScheduleBatch,
    to_epoch_us,
)
from atp.flexoffer.feasibility import TOLERANCE_KWH
from atp.flexoffer.validation import Limits

__all__ = [
    "ASSIGNMENT_AFTER_START",
    "BAD_DURATION",
    "BAD_SLICE_S",
    "CONDITIONAL_RANGE",
    "DEFAULT_INFEASIBLE",
    "DEPENDENCY_BOUNDS",
    "DEPENDENCY_EMPTY",
    "DEPENDENCY_ORDER",
    "DEPENDENCY_SHAPE",
    "FLAG_CLASS",
    "NEGATIVE_DURATION",
    "NO_PROFILES",
    "NO_SLICES",
    "OFF_GRID_TIME",
    "POLYTOPE_SHAPE",
    "PRICE_MISSING",
    "PROFILE_TOO_LONG",
    "RULE_1",
    "RULE_2",
    "RULE_3",
    "RULE_4",
    "RULE_5",
    "RULE_BIT",
    "SLICE_BOUNDS",
    "TOO_MANY_PROFILES",
    "TOTAL_BOUNDS",
    "TOTAL_UNREACHABLE",
    "UNSOUND",
    "WINDOW_FIELDS",
    "WINDOW_REVERSED",
    "check_schedules_batch",
    "explain",
    "validate_batch",
]

# Schedule rule bits (check_schedules_batch).
RULE_1 = 1 << 0
RULE_2 = 1 << 1
RULE_3 = 1 << 2
RULE_4 = 1 << 3
RULE_5 = 1 << 4
RULE_BIT = {"1": RULE_1, "2": RULE_2, "3": RULE_3, "4": RULE_4, "5": RULE_5}

# Offer flags (validate_batch).
BAD_SLICE_S = 1 << 8
OFF_GRID_TIME = 1 << 9
WINDOW_FIELDS = 1 << 10
NEGATIVE_DURATION = 1 << 11
WINDOW_REVERSED = 1 << 12
ASSIGNMENT_AFTER_START = 1 << 13
PRICE_MISSING = 1 << 14
CONDITIONAL_RANGE = 1 << 15
NO_PROFILES = 1 << 16
TOO_MANY_PROFILES = 1 << 17
NO_SLICES = 1 << 18
BAD_DURATION = 1 << 19
SLICE_BOUNDS = 1 << 20
PROFILE_TOO_LONG = 1 << 21
TOTAL_BOUNDS = 1 << 22
TOTAL_UNREACHABLE = 1 << 23
POLYTOPE_SHAPE = 1 << 24
DEPENDENCY_SHAPE = 1 << 25
DEPENDENCY_EMPTY = 1 << 26
DEPENDENCY_ORDER = 1 << 27
DEPENDENCY_BOUNDS = 1 << 28
DEFAULT_INFEASIBLE = 1 << 29

# Flags that make an offer unsound: its schedules cannot be checked meaningfully.
UNSOUND = (
    NO_PROFILES | NO_SLICES | BAD_DURATION | POLYTOPE_SHAPE | DEPENDENCY_SHAPE | DEPENDENCY_EMPTY | DEPENDENCY_ORDER
)

# Each offer flag -> the `rule` code validate_offer gives the same problem.
FLAG_CLASS = {
    BAD_SLICE_S: "grid",
    OFF_GRID_TIME: "grid",
    WINDOW_FIELDS: "window",
    NEGATIVE_DURATION: "window",
    WINDOW_REVERSED: "window",
    ASSIGNMENT_AFTER_START: "window",
    PRICE_MISSING: "price",
    CONDITIONAL_RANGE: "conditional",
    NO_PROFILES: "empty",
    TOO_MANY_PROFILES: "limit",
    NO_SLICES: "empty",
    BAD_DURATION: "duration",
    SLICE_BOUNDS: "bounds",
    PROFILE_TOO_LONG: "limit",
    TOTAL_BOUNDS: "bounds",
    TOTAL_UNREACHABLE: "bounds",
    POLYTOPE_SHAPE: "shape",
    DEPENDENCY_SHAPE: "shape",
    DEPENDENCY_EMPTY: "empty",
    DEPENDENCY_ORDER: "order",
    DEPENDENCY_BOUNDS: "bounds",
    DEFAULT_INFEASIBLE: "default",
}

_SENTENCES = {
    RULE_1: "rule 1: start is off the slice_s grid or outside the start window",
    RULE_2: "rule 2: profile is not a profile index, or the energy length differs from the profile's steps",
    RULE_3: "rule 3: an energy value is outside its slice bounds",
    RULE_4: "rule 4: total energy, a polytope row or a dependency bound is violated",
    RULE_5: "rule 5: assigned_at is after assignment_before",
    BAD_SLICE_S: "slice_s must divide 86400 (e.g. 900 or 3600)",
    OFF_GRID_TIME: "start_after, start_before or start_before_duration_s is off the slice_s grid",
    WINDOW_FIELDS: "give exactly one of start_before and start_before_duration_s",
    NEGATIVE_DURATION: "start_before_duration_s is negative",
    WINDOW_REVERSED: "start_before is before start_after",
    ASSIGNMENT_AFTER_START: "assignment_before is after start_before",
    PRICE_MISSING: "a direct offer needs a price",
    CONDITIONAL_RANGE: "conditional durations must not be negative and portions must lie within [0, 1]",
    NO_PROFILES: "the offer has no profiles",
    TOO_MANY_PROFILES: "the offer has more profiles than the limit",
    NO_SLICES: "a profile has no slices",
    BAD_DURATION: "a slice duration is below 1 step",
    SLICE_BOUNDS: "a slice's lower energy is above its upper energy",
    PROFILE_TOO_LONG: "a profile lasts longer than the limit",
    TOTAL_BOUNDS: "a total_energy lower is above its upper",
    TOTAL_UNREACHABLE: "a total_energy cannot be met within the slice bounds",
    POLYTOPE_SHAPE: "a polytope's A and b do not match each other or the profile's steps",
    DEPENDENCY_SHAPE: "a dependency does not have one entry per step",
    DEPENDENCY_EMPTY: "a dependency entry has no points",
    DEPENDENCY_ORDER: "dependency points are not sorted by d",
    DEPENDENCY_BOUNDS: "a dependency point's lower is above its upper",
    DEFAULT_INFEASIBLE: "the default schedule is infeasible",
}

_SECONDS_PER_DAY = 86_400
_US_PER_S = 1_000_000
# Implicit durations are clipped to about 31 700 years so that now + duration stays in int64.
_MAX_DURATION_S = 10**12
# Elements per chunk of the aligned step comparison (temporaries of 512 KiB stay in cache).
_CHUNK = 65_536
# validate_offer's slack for an unreachable total energy (kWh).
_TOTAL_SLACK_KWH = 1e-9


def explain(mask: int) -> list[str]:
    """One sentence per bit set in `mask` (a validate_batch flag mask or a schedule rule mask)."""
    mask = int(mask)
    out = [sentence for bit, sentence in _SENTENCES.items() if mask & bit]
    unknown = mask & ~sum(_SENTENCES)
    if unknown:
        out.append(f"unknown bits 0x{unknown:x}")
    return out


# ---------------------------------------------------------------------------- ragged helpers


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, rank) of every item when owner i has counts[i] items, items in owner order."""
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(len(owner), dtype=np.int64) - first[owner]


def _ragged_index(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The ranges first[i] .. first[i] + counts[i] - 1, concatenated (a gather index)."""
    index = np.repeat(first - (np.cumsum(counts) - counts), counts)
    index += np.arange(len(index), dtype=np.int64)
    return index


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    """Start of each non-empty segment of a flat array holding segments of these lengths."""
    starts = np.cumsum(counts) - counts
    return starts[counts > 0]


def _any_per_owner(owner: np.ndarray, hit: np.ndarray, n: int) -> np.ndarray:
    """Boolean per owner: at least one of its items hit."""
    out = np.zeros(n, dtype=bool)
    out[owner[hit]] = True
    return out


# -------------------------------------------------------------------------- schedule checks


def check_schedules_batch(
    batch: OfferBatch,
    schedules: ScheduleBatch,
    *,
    now: datetime | None = None,
    tol: float = TOLERANCE_KWH,
) -> np.ndarray:
    """uint32 rule mask per schedule: bit `RULE_k` set when the schedule breaks rule k.

    Implicit start bounds are resolved as `check_schedule` does: against `now` when given,
    else the schedule's `assigned_at`, else the offer's build-time `now` (its `created_at`
    by default). Rules 3 and 4 are checked only when rule 2 holds. Energies in kWh, `tol`
    in kWh. Results for offers that `validate_batch` marks `UNSOUND` are not meaningful.
    """
    n = schedules.n_schedules
    mask = np.zeros(n, dtype=np.uint32)
    if n == 0:
        return mask
    o = schedules.offer_index
    mask[_rule_1(batch, schedules, now)] |= RULE_1
    assigned = schedules.assigned_at_us
    mask[(assigned != MIN_TIME_US) & (assigned > batch.assignment_before_us[o])] |= RULE_5

    # Rule 2: the profile exists and the lengths match.
    first_profile = batch.profile_offset[o]
    n_profiles = batch.profile_offset[o + 1] - first_profile
    k = schedules.profile
    bad_profile = (k < 0) | (k >= n_profiles)
    if bad_profile.all():
        mask |= RULE_2
        return mask
    p = np.where(bad_profile, 0, first_profile + k)
    steps = schedules.n_steps
    ok = ~bad_profile & (steps == batch.step_offset[p + 1] - batch.step_offset[p])
    mask[~ok] |= RULE_2
    if ok.any():
        mask[_rule_3(batch, schedules, p, ok, tol)] |= RULE_3
        mask[_rule_4(batch, schedules, p, ok, tol)] |= RULE_4
    return mask


def _rule_1(batch: OfferBatch, schedules: ScheduleBatch, now: datetime | None) -> np.ndarray:
    """Start off the grid, before the earliest or after the latest start."""
    o = schedules.offer_index
    start = schedules.start_us
    slice_s = batch.slice_s[o]
    positive = slice_s > 0
    bad = ~positive | (start % (np.where(positive, slice_s, 1) * _US_PER_S) != 0)
    after_given = batch.start_after_given[o]
    before_given = batch.start_before_given[o]
    if after_given.all() and before_given.all():
        return bad | (start < batch.start_after_us[o]) | (start > batch.start_before_us[o])
    if now is not None:
        sched_now = np.full(len(o), to_epoch_us(now), dtype=np.int64)
    else:
        assigned = schedules.assigned_at_us
        sched_now = np.where(assigned != MIN_TIME_US, assigned, batch.now_us[o])
    known = sched_now != MIN_TIME_US
    earliest = np.where(after_given, batch.start_after_us[o], sched_now)
    duration = batch.start_before_duration_s[o]
    implicit = ~before_given & (duration != NO_DURATION_S) & known
    duration_us = np.clip(duration, -_MAX_DURATION_S, _MAX_DURATION_S) * _US_PER_S
    implicit_latest = np.where(known, sched_now, 0) + duration_us
    latest = np.where(before_given, batch.start_before_us[o], np.where(implicit, implicit_latest, MAX_TIME_US))
    return bad | (start < earliest) | (start > latest)


def _rule_3(batch: OfferBatch, schedules: ScheduleBatch, p: np.ndarray, ok: np.ndarray, tol: float) -> np.ndarray:
    """Energy outside its slice bounds, via min/max per (schedule, slice) segment.

    The segments tile the flat energy array: a schedule that passes rule 2 contributes one
    segment per slice of its profile, any other schedule one segment covering its energy
    (ignored), so `reduceat` sees consecutive segments and never a stray step. `fmax`/`fmin`
    skip NaN as the per-step comparisons of `check_schedule` do. When schedule i runs
    profile i for every i (one schedule per single-profile offer, in order), the energies line
    up with the per-step bounds and a plain chunked comparison is used instead.
    """
    energy = schedules.energy_kwh
    n = len(ok)
    if len(energy) == 0 or len(batch.slice_duration) == 0:
        return np.zeros(n, dtype=bool)
    steps = schedules.n_steps
    all_ok = bool(ok.all())
    if all_ok and len(p) == len(batch.profile_offer) and bool(np.all(np.diff(p) > 0)):
        # Schedule i runs profile i, so the energies line up with the per-step bounds.
        hit_steps = _steps_outside(energy, batch.lower_kwh, batch.upper_kwh, tol)
        owner = np.searchsorted(schedules.energy_offset, hit_steps, side="right") - 1
        return _any_per_owner(owner, np.ones(len(owner), dtype=bool), n)
    first_slice = batch.slice_offset[p]
    n_slices = batch.slice_offset[p + 1] - first_slice
    if all_ok:
        counts = n_slices
    else:
        counts = np.where(ok, n_slices, steps > 0)
        first_slice = np.where(ok, first_slice, 0)
    owner = np.repeat(np.arange(n, dtype=np.int64), counts)
    sl = _ragged_index(first_slice, counts)
    local_start = batch.slice_start_step[sl]
    if all_ok:
        nonempty = None if batch.slice_duration.min() > 0 else batch.slice_duration[sl] > 0
    else:
        owner_ok = ok[owner]
        local_start[~owner_ok] = 0
        nonempty = np.where(owner_ok, batch.slice_duration[sl], steps[owner]) > 0
    start = np.repeat(schedules.energy_offset[:-1], counts)
    start += local_start
    if nonempty is not None and not nonempty.all():
        owner, sl, start = owner[nonempty], sl[nonempty], start[nonempty]
    high = np.fmax.reduceat(energy, start)
    hit = high > batch.slice_upper_kwh[sl] + tol
    low = np.fmin.reduceat(energy, start)
    hit |= low < batch.slice_lower_kwh[sl] - tol
    if not all_ok:
        hit &= ok[owner]
    return _any_per_owner(owner, hit, n)


def _steps_outside(energy: np.ndarray, lower: np.ndarray, upper: np.ndarray, tol: float) -> np.ndarray:
    """Indices i where energy[i] < lower[i] - tol or energy[i] > upper[i] + tol (aligned arrays).

    Runs over cache-sized chunks so that the temporaries stay in cache.
    """
    n = len(energy)
    size = max(1, min(n, _CHUNK))
    bound = np.empty(size)
    above = np.empty(size, dtype=bool)
    below = np.empty(size, dtype=bool)
    found = [np.zeros(0, dtype=np.int64)]
    for begin in range(0, n, size):
        end = min(begin + size, n)
        k = end - begin
        np.add(upper[begin:end], tol, out=bound[:k])
        np.greater(energy[begin:end], bound[:k], out=above[:k])
        np.subtract(lower[begin:end], tol, out=bound[:k])
        np.less(energy[begin:end], bound[:k], out=below[:k])
        above[:k] |= below[:k]
        if above[:k].any():
            found.append(np.flatnonzero(above[:k]) + begin)
    return np.concatenate(found)


def _rule_4(batch: OfferBatch, schedules: ScheduleBatch, p: np.ndarray, ok: np.ndarray, tol: float) -> np.ndarray:
    """Total energy, polytope rows and dependency bounds of the schedules that pass rule 2."""
    n = len(ok)
    bad = np.zeros(n, dtype=bool)
    lo, hi = batch.total_lower_kwh[p], batch.total_upper_kwh[p]
    has_total = ok & ((lo > -np.inf) | (hi < np.inf))
    if has_total.any():
        steps = schedules.n_steps
        total = np.zeros(n)
        if len(schedules.energy_kwh):
            total[steps > 0] = np.add.reduceat(schedules.energy_kwh, _segment_starts(steps))
        bad |= has_total & ((total < lo - tol) | (total > hi + tol))
    rows = np.flatnonzero(ok & batch.has_polytope[p])
    if len(rows):
        bad[_polytope_hits(batch, schedules, rows, p[rows], tol)] = True
    rows = np.flatnonzero(ok & batch.has_dependency[p])
    if len(rows):
        bad[_dependency_hits(batch, schedules, rows, p[rows], tol)] = True
    return bad


def _polytope_hits(
    batch: OfferBatch, schedules: ScheduleBatch, sched: np.ndarray, prof: np.ndarray, tol: float
) -> np.ndarray:
    """Schedules (from `sched`, with profiles `prof`) with a row where A[r] @ energy > b[r] + tol.

    One flat multiply of coefficients by energies, summed per (schedule, row) with `reduceat`.
    """
    first_row = batch.polytope_row_offset[prof]
    n_rows = batch.polytope_row_offset[prof + 1] - first_row
    row = _ragged_index(first_row, n_rows)
    pair_sched = np.repeat(sched, n_rows)
    coef_first = batch.polytope_coef_offset[row]
    n_cols = np.minimum(batch.polytope_coef_offset[row + 1] - coef_first, schedules.n_steps[pair_sched])
    n_products = int(n_cols.sum())
    # Every row once and in order: the coefficients are used as stored, without a gather.
    in_order = n_products == len(batch.polytope_coef) and len(row) == len(batch.polytope_b)
    in_order = in_order and bool(np.all(np.diff(prof) > 0))
    energy_first = schedules.energy_offset[pair_sched]
    lhs = np.zeros(len(row))
    pairs_per_chunk = max(1, _CHUNK * len(row) // max(n_products, 1))
    for begin in range(0, len(row), pairs_per_chunk):
        end = begin + pairs_per_chunk
        cols = n_cols[begin:end]
        if in_order:
            first = int(coef_first[begin])
            coef = batch.polytope_coef[first : first + int(cols.sum())]
        else:
            coef = batch.polytope_coef[_ragged_index(coef_first[begin:end], cols)]
        if len(coef):
            products = coef * schedules.energy_kwh[_ragged_index(energy_first[begin:end], cols)]
            lhs[begin:end][cols > 0] = np.add.reduceat(products, _segment_starts(cols))
    return pair_sched[lhs > batch.polytope_b[row] + tol]


def _dependency_hits(
    batch: OfferBatch, schedules: ScheduleBatch, sched: np.ndarray, prof: np.ndarray, tol: float
) -> np.ndarray:
    """Schedules (from `sched`, with profiles `prof`) breaking a dependency bound or range.

    Entry i of a profile bounds step i of the schedule as a piecewise-linear function of the
    energy accumulated before step i (entries beyond the schedule's length are ignored, as
    in `check_schedule`). The accumulated energy is an exact per-schedule prefix sum.
    """
    first_entry = batch.dependency_entry_offset[prof]
    n_entries = np.minimum(batch.dependency_entry_offset[prof + 1] - first_entry, schedules.n_steps[sched])
    entry = _ragged_index(first_entry, n_entries)
    pair_sched = np.repeat(sched, n_entries)
    x_index = _ragged_index(schedules.energy_offset[sched], n_entries)
    before = _energy_before(schedules, sched)[x_index]
    energy = schedules.energy_kwh[x_index]
    hits = []
    for begin in range(0, len(entry), _CHUNK):  # cache-sized chunks: many temporaries per pair
        end = begin + _CHUNK
        lower, upper, outside = _interpolate(batch, entry[begin:end], before[begin:end], tol)
        hit = outside | (energy[begin:end] < lower - tol) | (energy[begin:end] > upper + tol)
        hits.append(pair_sched[begin:end][hit])
    return np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)


def _energy_before(schedules: ScheduleBatch, sched: np.ndarray) -> np.ndarray:
    """Flat array: at each step of the schedules `sched`, the energy of the steps before it.

    Computed with one `cumsum` per distinct schedule length over a (schedules x steps) block,
    which adds in the same order as `np.cumsum` on one schedule (no cross-schedule rounding).
    """
    energy = schedules.energy_kwh
    before = np.zeros_like(energy)
    lengths = schedules.n_steps[sched]
    order = np.argsort(lengths, kind="stable")
    sched, lengths = sched[order], lengths[order]
    bounds = np.flatnonzero(np.diff(lengths)) + 1
    for group in np.split(np.arange(len(sched)), bounds):
        length = int(lengths[group[0]])
        if length < 2:
            continue
        index = schedules.energy_offset[sched[group], None] + np.arange(length)
        before[index[:, 1:]] = np.cumsum(energy[index[:, :-1]], axis=1)
    return before


def _interpolate(
    batch: OfferBatch, entry: np.ndarray, d: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper bounds of each entry's points at `d` (as `np.interp`), and d out of range.

    The segment of d is found by counting the points with `d_point <= d` in each entry
    (flat compare plus `add.reduceat`), so no per-entry search is needed. An entry without
    points counts as out of range.
    """
    first = batch.dependency_point_offset[entry]
    count = batch.dependency_point_offset[entry + 1] - first
    n = len(entry)
    lower = np.zeros(n)
    upper = np.zeros(n)
    outside = np.ones(n, dtype=bool)
    has = count > 0
    if not has.any():
        return lower, upper, outside
    if not has.all():
        lo, hi, out = _interpolate(batch, entry[has], d[has], tol)
        lower[has], upper[has], outside[has] = lo, hi, out
        return lower, upper, outside
    xp = batch.dependency_d_kwh
    below = xp[_ragged_index(first, count)] <= np.repeat(d, count)
    position = np.add.reduceat(below, np.cumsum(count) - count, dtype=np.int64)
    last = first + count - 1
    outside = (d < xp[first] - tol) | (d > xp[last] + tol)
    j = first + np.clip(position - 1, 0, count - 1)
    j_next = np.minimum(j + 1, last)
    x_j = xp[j]
    interior = (position > 0) & (position < count) & (x_j != d)
    offset = d - x_j
    span = xp[j_next] - x_j
    with np.errstate(divide="ignore", invalid="ignore"):
        for values, out in ((batch.dependency_lower_kwh, lower), (batch.dependency_upper_kwh, upper)):
            v_j = values[j]
            slope = (values[j_next] - v_j) / span
            out[:] = np.where(interior, slope * offset + v_j, v_j)
    return lower, upper, outside


# --------------------------------------------------------------------------- offer validation


def validate_batch(batch: OfferBatch, *, limits: Limits = Limits()) -> np.ndarray:
    """uint32 flag mask per offer (0 = valid); `explain(mask[i])` says what is wrong with offer i.

    Checks what `validate_offer(offer, limits=limits, now=...)` checks on a built offer, with
    the window resolved against the build-time `now` (see the module docstring).
    """
    n = batch.n_offers
    mask = np.zeros(n, dtype=np.uint32)
    if n == 0:
        return mask
    grid_ok = _window_flags(batch, mask)
    _price_and_conditional_flags(batch, mask)
    n_profiles = batch.n_profiles
    mask[n_profiles == 0] |= NO_PROFILES
    mask[n_profiles > limits.max_profiles] |= TOO_MANY_PROFILES
    if len(batch.profile_offer):
        _profile_flags(batch, mask, limits)
    sound = (mask & UNSOUND) == 0
    default = batch.default
    if default.n_schedules:
        rules = check_schedules_batch(batch, default)
        owner = default.offer_index
        hit = (rules != 0) & sound[owner] & grid_ok[owner]
        mask[owner[hit]] |= DEFAULT_INFEASIBLE
    return mask


def _window_flags(batch: OfferBatch, mask: np.ndarray) -> np.ndarray:
    """Grid and window flags; returns where slice_s divides a day (the grid is usable)."""
    slice_s = batch.slice_s
    positive = slice_s > 0
    safe_slice_s = np.where(positive, slice_s, 1)
    grid_ok = positive & (_SECONDS_PER_DAY % safe_slice_s == 0)
    mask[~grid_ok] |= BAD_SLICE_S
    slice_us = safe_slice_s * _US_PER_S
    after_given, before_given = batch.start_after_given, batch.start_before_given
    duration = batch.start_before_duration_s
    has_duration = duration != NO_DURATION_S
    off_grid = (
        (after_given & (batch.start_after_us % slice_us != 0))
        | (before_given & (batch.start_before_us % slice_us != 0))
        | (has_duration & (duration >= 0) & (duration % safe_slice_s != 0))
    )
    mask[grid_ok & off_grid] |= OFF_GRID_TIME
    mask[before_given == has_duration] |= WINDOW_FIELDS
    mask[has_duration & (duration < 0)] |= NEGATIVE_DURATION
    earliest, latest = batch.start_after_us, batch.start_before_us
    mask[(earliest != MIN_TIME_US) & (latest != MAX_TIME_US) & (latest < earliest)] |= WINDOW_REVERSED
    assignment = batch.assignment_before_us
    mask[before_given & (assignment != MAX_TIME_US) & (assignment > latest)] |= ASSIGNMENT_AFTER_START
    return grid_ok


def _price_and_conditional_flags(batch: OfferBatch, mask: np.ndarray) -> None:
    mask[(batch.mode == MODE_DIRECT) & ~batch.has_price] |= PRICE_MISSING

    def in_unit(x: np.ndarray) -> np.ndarray:
        return (x >= 0.0) & (x <= 1.0)

    bad = (
        (batch.conditional_prior_s < 0)
        | (batch.conditional_after_s < 0)
        | ~in_unit(batch.conditional_prior_portion)
        | ~in_unit(batch.conditional_after_portion)
    )
    mask[batch.has_conditional & bad] |= CONDITIONAL_RANGE


def _profile_flags(batch: OfferBatch, mask: np.ndarray, limits: Limits) -> None:
    """Per-profile flags, OR-ed into their offers.

    As in validate_offer, the length, total-energy, polytope and dependency checks of a
    profile run only when its slices are sound (at least one slice, all durations >= 1).
    """
    n_prof = len(batch.profile_offer)
    flags = np.zeros(n_prof, dtype=np.uint32)
    n_slices = batch.n_slices
    flags[n_slices == 0] |= NO_SLICES
    slice_owner = np.repeat(np.arange(n_prof), n_slices)
    bad_duration = _any_per_owner(slice_owner, batch.slice_duration < 1, n_prof)
    flags[bad_duration] |= BAD_DURATION
    flags[_any_per_owner(slice_owner, batch.slice_lower_kwh > batch.slice_upper_kwh, n_prof)] |= SLICE_BOUNDS
    gated = (n_slices > 0) & ~bad_duration
    n_steps = batch.n_steps
    flags[gated & (n_steps * batch.slice_s[batch.profile_offer] > limits.max_profile_s)] |= PROFILE_TOO_LONG

    lo, hi = batch.total_lower_kwh, batch.total_upper_kwh
    flags[gated & (lo > hi)] |= TOTAL_BOUNDS
    lower_sum = np.zeros(n_prof)
    upper_sum = np.zeros(n_prof)
    if len(batch.lower_kwh):
        lower_sum[n_steps > 0] = np.add.reduceat(batch.lower_kwh, _segment_starts(n_steps))
        upper_sum[n_steps > 0] = np.add.reduceat(batch.upper_kwh, _segment_starts(n_steps))
    unreachable = (lo > upper_sum + _TOTAL_SLACK_KWH) | (hi < lower_sum - _TOTAL_SLACK_KWH)
    flags[gated & unreachable] |= TOTAL_UNREACHABLE

    poly = gated & batch.has_polytope
    n_rows = np.diff(batch.polytope_row_offset)
    row_owner = np.repeat(np.arange(n_prof), n_rows)
    wrong_cols = np.diff(batch.polytope_coef_offset) != n_steps[row_owner]
    shape = (n_rows != batch.polytope_b_count) | _any_per_owner(row_owner, wrong_cols, n_prof)
    flags[poly & shape] |= POLYTOPE_SHAPE

    dep = gated & batch.has_dependency
    n_entries = np.diff(batch.dependency_entry_offset)
    flags[dep & (n_entries != n_steps)] |= DEPENDENCY_SHAPE
    entry_owner = np.repeat(np.arange(n_prof), n_entries)
    n_points = np.diff(batch.dependency_point_offset)
    flags[dep & _any_per_owner(entry_owner, n_points == 0, n_prof)] |= DEPENDENCY_EMPTY
    point_entry = np.repeat(np.arange(len(n_points)), n_points)
    same_entry = point_entry[1:] == point_entry[:-1]
    unsorted = same_entry & (batch.dependency_d_kwh[1:] < batch.dependency_d_kwh[:-1])
    flags[dep & _any_per_owner(entry_owner[point_entry[1:]], unsorted, n_prof)] |= DEPENDENCY_ORDER
    reversed_point = batch.dependency_lower_kwh > batch.dependency_upper_kwh
    flags[dep & _any_per_owner(entry_owner[point_entry], reversed_point, n_prof)] |= DEPENDENCY_BOUNDS

    flagged = np.flatnonzero(flags)
    np.bitwise_or.at(mask, batch.profile_offer[flagged], flags[flagged])

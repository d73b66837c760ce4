"""Batch form of Flex-Offers and schedules: many at once as flat numpy arrays (structure of arrays).

`OfferBatch.from_offers(offers)` lays N offers out as arrays with one row per offer, per
profile, per slice, per `slice_s` step, per polytope row and per dependency entry and point;
`ScheduleBatch.from_schedules(schedules, batch)` does the same for schedules. Ragged data
uses a CSR layout: the rows of parent `i` are `child[offset[i]:offset[i + 1]]`, so every
`*_offset` array has one entry more than its parent has rows and starts at 0.

Units: times are int64 microseconds since the Unix epoch (`*_us`; datetimes resolve to 1 µs
and clock-made `assigned_at` values carry microseconds, so whole seconds would change rule 5),
durations are seconds (`*_s`) or `slice_s` steps, energies are kWh per `slice_s` step.
Absent values use sentinels: `MIN_TIME_US` for an absent time and an unbounded earliest
start, `MAX_TIME_US` for an unbounded latest start and an absent `assignment_before`,
`NO_DURATION_S` for an absent `start_before_duration_s`, ±inf for an absent total energy,
NaN for a polytope row without a `b` entry.

Building never rejects an offer for its content: an offer the scalar validation calls
unsound (no profiles, empty slices, durations < 1, polytope or dependency shapes that do not
match the profile, unsorted dependency points) is laid out as given, so that
`batch_checks.validate_batch` can find every problem on the arrays. Zero and negative slice
durations count as 0 steps. The checks live in `batch_checks`; this module holds the data.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.errors import ValidationError
from atp.flexoffer.model import DefaultSchedule, DependencyPoint, FlexOffer, Mode, Profile, Schedule

__all__ = [
    "MAX_TIME_US",
    "MIN_TIME_US",
    "MODE_DELEGATED",
    "MODE_DIRECT",
    "NO_DURATION_S",
    "OfferBatch",
    "ScheduleBatch",
    "from_epoch_us",
    "to_epoch_us",
]

MIN_TIME_US = int(np.iinfo(np.int64).min)
MAX_TIME_US = int(np.iinfo(np.int64).max)
NO_DURATION_S = int(np.iinfo(np.int64).min)
MODE_DELEGATED = 0
MODE_DIRECT = 1

_MODE_CODES = {Mode.DELEGATED: MODE_DELEGATED, Mode.DIRECT: MODE_DIRECT}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_epoch_us(t: datetime | None, *, absent: int = MIN_TIME_US) -> int:
    """Microseconds from the Unix epoch to the aware datetime `t` (`absent` when `t` is None)."""
    return absent if t is None else (t - _EPOCH) // _ONE_US


def from_epoch_us(us: int) -> datetime:
    """The aware UTC datetime `us` microseconds after the Unix epoch."""
    return _EPOCH + timedelta(microseconds=int(us))


def _offsets(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """CSR offsets (length len(counts) + 1, starting at 0) of ragged rows with these counts."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _ints(values: Sequence[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64).reshape(-1)


def _floats(values: Sequence[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(-1)


def _bools(values: Sequence[bool]) -> np.ndarray:
    return np.array(values, dtype=bool).reshape(-1)


def _read_only(obj: object) -> None:
    for value in vars(obj).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False


@dataclass(frozen=True, eq=False)
class ScheduleBatch:
    """Many schedules as arrays: schedule `i` runs profile `profile[i]` of offer `offer_index[i]`.

    Attributes (one row per schedule unless said otherwise):
        offer_index: int64 row of the schedule's offer in its OfferBatch.
        profile: int64 profile index *within* the offer, as given (may be out of range).
        start_us: int64 start time, µs since the epoch.
        assigned_at_us: int64 assignment time, µs since the epoch; `MIN_TIME_US` when absent
            (always absent for a DefaultSchedule).
        energy_offset: int64 CSR offsets into `energy_kwh` (n_schedules + 1 entries).
        energy_kwh: float64 energy per `slice_s` step of all schedules, one after the other.
    """

    offer_index: np.ndarray
    profile: np.ndarray
    start_us: np.ndarray
    assigned_at_us: np.ndarray
    energy_offset: np.ndarray
    energy_kwh: np.ndarray

    def __post_init__(self) -> None:
        _read_only(self)

    @property
    def n_schedules(self) -> int:
        """Number of schedules."""
        return len(self.offer_index)

    @property
    def n_steps(self) -> np.ndarray:
        """Steps (length of the energy vector) of each schedule."""
        return np.diff(self.energy_offset)

    def __len__(self) -> int:
        return self.n_schedules

    @classmethod
    def from_schedules(
        cls,
        schedules: Sequence[Schedule | DefaultSchedule],
        batch: OfferBatch,
        *,
        offer_index: Sequence[int] | np.ndarray | None = None,
    ) -> ScheduleBatch:
        """Lay the schedules out as arrays against the offers of `batch`.

        Schedule `i` belongs to offer `i` of the batch, or to offer `offer_index[i]` when
        `offer_index` is given (several schedules may then share an offer). Raises
        ValidationError when the counts do not match or an index is not an offer row.
        """
        n = len(schedules)
        if offer_index is None:
            if n != batch.n_offers:
                raise ValidationError(
                    f"{n} schedules for {batch.n_offers} offers: give one schedule per offer, "
                    "or pass offer_index to say which offer each schedule belongs to"
                )
            index = np.arange(n, dtype=np.int64)
        else:
            index = np.array(offer_index, dtype=np.int64).reshape(-1)
            if len(index) != n:
                raise ValidationError(f"offer_index has {len(index)} entries for {n} schedules")
            bad = np.flatnonzero((index < 0) | (index >= batch.n_offers))
            if len(bad):
                raise ValidationError(
                    f"offer_index[{bad[0]}] = {index[bad[0]]} is not an offer row (0..{batch.n_offers - 1})"
                )
        return _build_schedules(schedules, index)


def _build_schedules(schedules: Sequence[Schedule | DefaultSchedule], offer_index: np.ndarray) -> ScheduleBatch:
    lengths = [len(s.energy) for s in schedules]
    energy = np.fromiter(
        itertools.chain.from_iterable(s.energy for s in schedules), dtype=np.float64, count=sum(lengths)
    )
    return ScheduleBatch(
        offer_index=offer_index,
        profile=_ints([s.profile for s in schedules]),
        start_us=_ints([(s.start - _EPOCH) // _ONE_US for s in schedules]),
        assigned_at_us=_ints([to_epoch_us(getattr(s, "assigned_at", None)) for s in schedules]),
        energy_offset=_offsets(lengths),
        energy_kwh=energy,
    )


@dataclass(frozen=True, eq=False)
class OfferBatch:
    """Many Flex-Offers as arrays (CSR layout); build with `OfferBatch.from_offers`.

    Per offer (n_offers rows):
        slice_s: int64 step length in seconds.
        mode: int8 `MODE_DELEGATED` or `MODE_DIRECT`.
        has_price: bool, a price with `per_kwh_deviation` or `per_kwh` is given.
        created_at_us, now_us: int64 creation time and the time implicit bounds were resolved
            against (the `now` given at build time, else `created_at`); `MIN_TIME_US` if absent.
        start_after_us, start_before_us: int64 resolved start window, both inclusive;
            `MIN_TIME_US` / `MAX_TIME_US` when unbounded (an implicit bound without a `now`).
        start_after_given, start_before_given: bool, the bound is explicit in the offer.
        start_before_duration_s: int64 implicit latest start after `now`; `NO_DURATION_S` if absent.
        assignment_before_us: int64; `MAX_TIME_US` when absent.
        has_conditional: bool; conditional_prior_s, conditional_after_s (int64 s),
            conditional_prior_portion, conditional_after_portion (float64, 0 when absent).
        profile_offset: int64 CSR offsets into the per-profile arrays (n_offers + 1).
    Per profile (all offers' profiles in order):
        profile_offer: int64 offer row of the profile.
        slice_offset: CSR offsets into the per-slice arrays.
        step_offset: CSR offsets into the per-step arrays (`lower_kwh`, `upper_kwh`).
        total_lower_kwh, total_upper_kwh: float64 `total_energy`; -inf / +inf when absent.
        has_polytope, has_dependency: bool.
        polytope_row_offset: CSR offsets into the per-row arrays (len(A) rows per profile).
        polytope_b_count: int64 len(b), to tell a shape mismatch.
        dependency_entry_offset: CSR offsets into the per-entry arrays (one entry per step).
    Per slice:
        slice_duration: int64 duration in steps as given; slice_lower_kwh, slice_upper_kwh.
        slice_start_step: int64 index of the slice's first step within its profile.
    Per step: lower_kwh, upper_kwh (float64 kWh).
    Per polytope row: polytope_b (float64; NaN when b has no entry for the row),
        polytope_coef_offset (CSR offsets into polytope_coef, one coefficient per column given).
    Per dependency entry: dependency_point_offset (CSR offsets into the per-point arrays).
    Per dependency point: dependency_d_kwh, dependency_lower_kwh, dependency_upper_kwh.
    default: ScheduleBatch of the offers' default schedules (`offer_index` says whose).
    """

    slice_s: np.ndarray
    mode: np.ndarray
    has_price: np.ndarray
    created_at_us: np.ndarray
    now_us: np.ndarray
    start_after_us: np.ndarray
    start_before_us: np.ndarray
    start_after_given: np.ndarray
    start_before_given: np.ndarray
    start_before_duration_s: np.ndarray
    assignment_before_us: np.ndarray
    has_conditional: np.ndarray
    conditional_prior_s: np.ndarray
    conditional_prior_portion: np.ndarray
    conditional_after_s: np.ndarray
    conditional_after_portion: np.ndarray
    profile_offset: np.ndarray
    profile_offer: np.ndarray
    slice_offset: np.ndarray
    step_offset: np.ndarray
    total_lower_kwh: np.ndarray
    total_upper_kwh: np.ndarray
    has_polytope: np.ndarray
    has_dependency: np.ndarray
    polytope_row_offset: np.ndarray
    polytope_b_count: np.ndarray
    dependency_entry_offset: np.ndarray
    slice_duration: np.ndarray
    slice_lower_kwh: np.ndarray
    slice_upper_kwh: np.ndarray
    slice_start_step: np.ndarray
    lower_kwh: np.ndarray
    upper_kwh: np.ndarray
    polytope_b: np.ndarray
    polytope_coef_offset: np.ndarray
    polytope_coef: np.ndarray
    dependency_point_offset: np.ndarray
    dependency_d_kwh: np.ndarray
    dependency_lower_kwh: np.ndarray
    dependency_upper_kwh: np.ndarray
    default: ScheduleBatch

    def __post_init__(self) -> None:
        _read_only(self)

    @property
    def n_offers(self) -> int:
        """Number of offers."""
        return len(self.slice_s)

    def __len__(self) -> int:
        return self.n_offers

    @property
    def n_profiles(self) -> np.ndarray:
        """Profiles of each offer."""
        return np.diff(self.profile_offset)

    @property
    def n_slices(self) -> np.ndarray:
        """Slices of each profile."""
        return np.diff(self.slice_offset)

    @property
    def n_steps(self) -> np.ndarray:
        """`slice_s` steps of each profile (slices with duration < 1 count 0 steps)."""
        return np.diff(self.step_offset)

    @classmethod
    def from_offers(cls, offers: Sequence[FlexOffer], *, now: datetime | None = None) -> OfferBatch:
        """Lay the offers out as arrays, resolving implicit start bounds against `now`.

        Without `now`, each offer's implicit bounds are resolved against its own
        `created_at` (left unbounded when that is absent too), as `check_schedule` does.
        """
        offer_cols = _OfferColumns()
        prof = _ProfileColumns()
        defaults: list[DefaultSchedule] = []
        default_index: list[int] = []
        for i, offer in enumerate(offers):
            offer_cols.add(offer, now if now is not None else offer.created_at)
            for profile in offer.profiles:
                prof.add(i, profile)
            if offer.default_schedule is not None:
                defaults.append(offer.default_schedule)
                default_index.append(i)
        return _assemble(offer_cols, prof, _build_schedules(defaults, _ints(default_index)))


@dataclass
class _OfferColumns:
    """The per-offer columns of an OfferBatch as Python lists, one append per offer."""

    slice_s: list[int] = field(default_factory=list)
    mode: list[int] = field(default_factory=list)
    has_price: list[bool] = field(default_factory=list)
    created_at_us: list[int] = field(default_factory=list)
    now_us: list[int] = field(default_factory=list)
    start_after_us: list[int] = field(default_factory=list)
    start_before_us: list[int] = field(default_factory=list)
    start_after_given: list[bool] = field(default_factory=list)
    start_before_given: list[bool] = field(default_factory=list)
    start_before_duration_s: list[int] = field(default_factory=list)
    assignment_before_us: list[int] = field(default_factory=list)
    has_conditional: list[bool] = field(default_factory=list)
    conditional_prior_s: list[int] = field(default_factory=list)
    conditional_prior_portion: list[float] = field(default_factory=list)
    conditional_after_s: list[int] = field(default_factory=list)
    conditional_after_portion: list[float] = field(default_factory=list)
    n_profiles: list[int] = field(default_factory=list)

    def add(self, offer: FlexOffer, now: datetime | None) -> None:
        window = offer.window(now)
        price = offer.price
        cond = offer.conditional
        duration = offer.start_before_duration_s
        self.slice_s.append(offer.slice_s)
        self.mode.append(_MODE_CODES[offer.mode])
        self.has_price.append(price is not None and (price.per_kwh_deviation is not None or price.per_kwh is not None))
        self.created_at_us.append(to_epoch_us(offer.created_at))
        self.now_us.append(to_epoch_us(now))
        self.start_after_us.append(to_epoch_us(window.earliest))
        self.start_before_us.append(to_epoch_us(window.latest, absent=MAX_TIME_US))
        self.start_after_given.append(offer.start_after is not None)
        self.start_before_given.append(offer.start_before is not None)
        self.start_before_duration_s.append(NO_DURATION_S if duration is None else duration)
        self.assignment_before_us.append(to_epoch_us(offer.assignment_before, absent=MAX_TIME_US))
        self.has_conditional.append(cond is not None)
        self.conditional_prior_s.append(0 if cond is None else cond.prior_s)
        self.conditional_prior_portion.append(0.0 if cond is None else cond.prior_portion)
        self.conditional_after_s.append(0 if cond is None else cond.after_s)
        self.conditional_after_portion.append(0.0 if cond is None else cond.after_portion)
        self.n_profiles.append(len(offer.profiles))


@dataclass
class _ProfileColumns:
    """The per-profile, per-slice, per-row and per-entry columns as Python lists."""

    offer: list[int] = field(default_factory=list)
    n_slices: list[int] = field(default_factory=list)
    total_lower_kwh: list[float] = field(default_factory=list)
    total_upper_kwh: list[float] = field(default_factory=list)
    has_polytope: list[bool] = field(default_factory=list)
    n_rows: list[int] = field(default_factory=list)
    b_count: list[int] = field(default_factory=list)
    has_dependency: list[bool] = field(default_factory=list)
    n_entries: list[int] = field(default_factory=list)
    slice_duration: list[int] = field(default_factory=list)
    slice_lower_kwh: list[float] = field(default_factory=list)
    slice_upper_kwh: list[float] = field(default_factory=list)
    row_b: list[float] = field(default_factory=list)
    row_n_cols: list[int] = field(default_factory=list)
    rows: list[Sequence[float]] = field(default_factory=list)
    entry_n_points: list[int] = field(default_factory=list)
    entries: list[Sequence[DependencyPoint]] = field(default_factory=list)

    def add(self, offer_row: int, profile: Profile) -> None:
        self.offer.append(offer_row)
        self.n_slices.append(len(profile.slices))
        for s in profile.slices:
            self.slice_duration.append(s.duration)
            self.slice_lower_kwh.append(s.energy[0])
            self.slice_upper_kwh.append(s.energy[1])
        total = profile.total_energy
        self.total_lower_kwh.append(-np.inf if total is None else total[0])
        self.total_upper_kwh.append(np.inf if total is None else total[1])
        poly = profile.polytope
        self.has_polytope.append(poly is not None)
        self.n_rows.append(0 if poly is None else len(poly.A))
        self.b_count.append(0 if poly is None else len(poly.b))
        if poly is not None:
            for r, row in enumerate(poly.A):
                self.row_b.append(poly.b[r] if r < len(poly.b) else np.nan)
                self.row_n_cols.append(len(row))
                self.rows.append(row)
        dep = profile.dependency
        self.has_dependency.append(dep is not None)
        self.n_entries.append(0 if dep is None else len(dep))
        if dep is not None:
            for points in dep:
                self.entry_n_points.append(len(points))
                self.entries.append(points)


def _assemble(o: _OfferColumns, p: _ProfileColumns, default: ScheduleBatch) -> OfferBatch:
    """Turn the collected lists into the arrays of an OfferBatch."""
    durations = _ints(p.slice_duration)
    steps = np.maximum(durations, 0)
    lower = _floats(p.slice_lower_kwh)
    upper = _floats(p.slice_upper_kwh)
    slice_offset = _offsets(p.n_slices)
    slice_step_offset = _offsets(steps)
    step_offset = slice_step_offset[slice_offset]
    slice_profile = np.repeat(np.arange(len(p.offer), dtype=np.int64), np.diff(slice_offset))
    coef = np.fromiter(itertools.chain.from_iterable(p.rows), dtype=np.float64, count=sum(p.row_n_cols))
    n_points = sum(p.entry_n_points)
    flat = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(p.entries)), dtype=np.float64)
    if len(flat) != 3 * n_points:
        raise ValidationError("every dependency point must be [d, lower, upper]")
    points = flat.reshape(n_points, 3)
    return OfferBatch(
        slice_s=_ints(o.slice_s),
        mode=np.array(o.mode, dtype=np.int8),
        has_price=_bools(o.has_price),
        created_at_us=_ints(o.created_at_us),
        now_us=_ints(o.now_us),
        start_after_us=_ints(o.start_after_us),
        start_before_us=_ints(o.start_before_us),
        start_after_given=_bools(o.start_after_given),
        start_before_given=_bools(o.start_before_given),
        start_before_duration_s=_ints(o.start_before_duration_s),
        assignment_before_us=_ints(o.assignment_before_us),
        has_conditional=_bools(o.has_conditional),
        conditional_prior_s=_ints(o.conditional_prior_s),
        conditional_prior_portion=_floats(o.conditional_prior_portion),
        conditional_after_s=_ints(o.conditional_after_s),
        conditional_after_portion=_floats(o.conditional_after_portion),
        profile_offset=_offsets(o.n_profiles),
        profile_offer=_ints(p.offer),
        slice_offset=slice_offset,
        step_offset=step_offset,
        total_lower_kwh=_floats(p.total_lower_kwh),
        total_upper_kwh=_floats(p.total_upper_kwh),
        has_polytope=_bools(p.has_polytope),
        has_dependency=_bools(p.has_dependency),
        polytope_row_offset=_offsets(p.n_rows),
        polytope_b_count=_ints(p.b_count),
        dependency_entry_offset=_offsets(p.n_entries),
        slice_duration=durations,
        slice_lower_kwh=lower,
        slice_upper_kwh=upper,
        slice_start_step=slice_step_offset[:-1] - step_offset[slice_profile],
        lower_kwh=np.repeat(lower, steps),
        upper_kwh=np.repeat(upper, steps),
        polytope_b=_floats(p.row_b),
        polytope_coef_offset=_offsets(p.row_n_cols),
        polytope_coef=coef,
        dependency_point_offset=_offsets(p.entry_n_points),
        dependency_d_kwh=np.ascontiguousarray(points[:, 0]),
        dependency_lower_kwh=np.ascontiguousarray(points[:, 1]),
        dependency_upper_kwh=np.ascontiguousarray(points[:, 2]),
        default=default,
    )

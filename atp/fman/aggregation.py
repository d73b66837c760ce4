"""Start-aligned aggregation of Flex-Offers into boxes, and its exact disaggregation.

Start-aligned aggregation (Siksnys et al.): offers whose earliest starts lie close together are
aligned at their earliest starts and summed step by step; the aggregate may start anywhere in
the time flexibility that every member still has (the smallest member flexibility).

Members are first reduced to boxes, exactly as follows:

1. a `conditional` offer is expanded into XOR profiles (`expand_conditional`, against `now`);
   the FMAN keeps the *expanded* offer (with the submitted `assignment_before`), and member
   schedules refer to its profiles; an offer whose `assignment_before` has passed is left out;
2. the profile the default schedule runs is chosen (profile 0 without a default);
3. the box is `inner_box(profile)`: per-step bounds inside which every vector is feasible for
   the profile's total-energy, polytope and dependency constraints. A box cannot hold joint
   constraints: an EV that must charge 20 kWh over 8 steps of up to 11 kWh keeps no range at
   all in a box, a heat pump whose temperature band couples its steps almost none. So a member
   whose box would keep less than `min_box_share` of its energy flexibility (default 90 %)
   keeps its profile instead (`MemberBox.keeps_profile`): it forms an aggregate of its own
   whose profile carries its joint constraints as they were (and as `JointRows` for the
   planner), so nothing of it is lost; its dependency must be convex (it then is a polytope,
   `atp.flexoffer.rows`). An offer with neither is not aggregated (`Unaggregated`, with the
   reason).

The start window is resolved against `now` (implicit time flexibility) and put on the grid:
the earliest start is the first grid time at or after both `start_after` and `now`, the latest
the last grid time at or before `start_before`.

The Minkowski sum of boxes is the box of the sums, so the aggregate is exact for the boxes and
every feasible aggregate schedule disaggregates into feasible member schedules (the sum of
boxes with joint constraints would not be: hence members that keep them stay alone): at aggregate
step k with energy x_k, every member covering k takes the same fraction
f_k = (x_k - sum lower_k) / (sum upper_k - sum lower_k) of its own range (0 when the range is
empty); every member starts the aggregate's shift after its own earliest start.

Members are grouped by `slice_s`, `mode`, `location.congestion_point`, price band (direct
offers only: `price_band`, the member's ask `price.per_kwh_deviation` in bands of
`price_band_eur_per_kwh`; a direct aggregate asks the highest ask of its members, so members
of one aggregate ask alike) and whether they keep their profile (those form one aggregate
each, in a group of their own); within a group they
are taken in order of earliest start and a new aggregate begins when a member's earliest start
lies more than `start_tolerance_s` after the aggregate's first, when a member would lose more
than `max_time_flex_loss_s` of time flexibility, when its duration differs from the
aggregate's first member's by more than `max_duration_diff_steps`, or when the aggregate is
full (`max_group_size` members, or the members' summed size - largest absolute energy per
step, summed over steps - would pass `max_group_energy_kwh`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.errors import ValidationError
from atp.flexoffer import (
    TOLERANCE_KWH,
    DefaultSchedule,
    FlexOffer,
    Location,
    Mode,
    Price,
    Profile,
    Schedule,
    Slice,
    expand_conditional,
)
from atp.flexoffer.approx import inner_box
from atp.flexoffer.rows import joint_rows
from atp.fman.errors import DisaggregationError

__all__ = [
    "Aggregate",
    "AggregationParams",
    "AggregationResult",
    "JointRows",
    "MemberBox",
    "Unaggregated",
    "aggregate_start_aligned",
    "build_aggregate",
    "ceil_to_grid",
    "disaggregate",
    "disaggregate_around_default",
    "floor_to_grid",
    "group_key",
    "member_box",
    "member_key",
    "member_order",
    "member_size_kwh",
    "price_band",
    "split_members",
    "starts_new_group",
]

_BOX_TOL_KWH = 1e-9
DEFAULT_PRICE_BAND_EUR_PER_KWH = 0.05
NO_PRICE_BAND = -1  # the band of delegated offers and of direct offers without an ask


@dataclass(frozen=True)
class AggregationParams:
    """Thresholds of start-aligned aggregation.

    - `start_tolerance_s`: members' earliest starts differ by at most this (seconds);
    - `max_time_flex_loss_s`: no member loses more time flexibility than this (None: no limit);
    - `max_group_size`: at most this many members per aggregate;
    - `max_duration_diff_steps`: members' profile lengths differ from the first member's by at
      most this many steps (None: no limit);
    - `max_group_energy_kwh`: the members' summed size (largest absolute energy per step, summed
      over steps) stays at or below this (None: no limit; a single larger member still forms
      its own aggregate);
    - `min_box_share`: a member with joint constraints whose inner box keeps less than this
      share of its energy flexibility (sum of its slice ranges) is not boxed: it keeps its
      profile, constraints and all, and forms an aggregate of its own, so nothing of it is
      lost (None: every member is boxed, pure box aggregation);
    - `price_band_eur_per_kwh`: direct members are grouped by their ask
      (`price.per_kwh_deviation`) in bands of this width, [0, w), [w, 2w), ...: a direct
      aggregate asks the highest ask of its members (it is bid at that price and each member
      is paid its own), so members of one aggregate ask within one band (None: one band for
      all direct offers). Delegated members are not banded.
    """

    start_tolerance_s: int = 3600
    max_time_flex_loss_s: int | None = 3600
    max_group_size: int = 100
    max_duration_diff_steps: int | None = None
    max_group_energy_kwh: float | None = None
    min_box_share: float | None = 0.9
    price_band_eur_per_kwh: float | None = DEFAULT_PRICE_BAND_EUR_PER_KWH

    def __post_init__(self) -> None:
        if self.start_tolerance_s < 0:
            raise ValidationError(f"start_tolerance_s(={self.start_tolerance_s}) must not be negative (e.g. 3600)")
        if self.max_time_flex_loss_s is not None and self.max_time_flex_loss_s < 0:
            raise ValidationError(
                f"max_time_flex_loss_s(={self.max_time_flex_loss_s}) must not be negative (or None for no limit)"
            )
        if self.max_group_size < 1:
            raise ValidationError(f"max_group_size(={self.max_group_size}) must be at least 1 (e.g. 100)")
        if self.max_duration_diff_steps is not None and self.max_duration_diff_steps < 0:
            raise ValidationError(
                f"max_duration_diff_steps(={self.max_duration_diff_steps}) must not be negative (or None for no limit)"
            )
        if self.min_box_share is not None and not 0.0 <= self.min_box_share <= 1.0:
            raise ValidationError(
                f"min_box_share(={self.min_box_share}) must lie in [0, 1] (or None to box every member)"
            )
        if self.max_group_energy_kwh is not None and not self.max_group_energy_kwh > 0:
            raise ValidationError(
                f"max_group_energy_kwh(={self.max_group_energy_kwh}) must be positive (or None for no limit)"
            )
        band = self.price_band_eur_per_kwh
        if band is not None and not (math.isfinite(band) and band > 0):
            raise ValidationError(
                f"price_band_eur_per_kwh(={band}) must be a positive width in EUR/kWh (e.g. 0.05; None for one band)"
            )


@dataclass(frozen=True, eq=False)
class JointRows:
    """Linear rows `lo <= a @ x <= hi` over a profile vector x (its steps from its own start).

    `a` has one row per constraint and one column per profile step; `lo` may hold -inf and
    `hi` +inf (one-sided rows). An aggregate that keeps a member's joint constraints (total
    energy, polytope, convex dependency) carries them as rows; the planner adds them at the
    chosen start.
    """

    a: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.a.shape[0])

    def violations(self, x: np.ndarray, tol: float = TOLERANCE_KWH) -> np.ndarray:
        """Indices of the rows that `x` breaks by more than `tol`."""
        ax = self.a @ np.asarray(x, dtype=float)
        return np.flatnonzero((ax < self.lo - tol) | (ax > self.hi + tol))


@dataclass(frozen=True, eq=False)
class MemberBox:
    """One member of an aggregate, reduced to a box.

    `offer` is the member as the FMAN keeps it (conditional offers expanded); `profile` indexes
    its profiles; `offset_steps` is where its first step sits in the aggregate profile;
    `earliest` and `flexibility_steps` are its resolved, on-grid start window. A member that
    `keeps_profile` is not reduced: its bounds are its profile's slice bounds, its joint
    constraints stay (`AggregationParams.min_box_share`) and it is the only member of its
    aggregate. `price_band` is the band of a direct member's ask (`price_band`; NO_PRICE_BAND
    for delegated members).
    """

    offer: FlexOffer
    profile: int
    offset_steps: int
    earliest: datetime
    flexibility_steps: int
    lower_kwh: np.ndarray
    upper_kwh: np.ndarray
    keeps_profile: bool = False
    price_band: int = NO_PRICE_BAND

    @property
    def offer_id(self) -> str:
        """The member's offer id."""
        return self.offer.id or ""

    @property
    def n_steps(self) -> int:
        """Number of steps of the member's chosen profile."""
        return len(self.lower_kwh)

    @property
    def energy_flexibility_kwh(self) -> float:
        """sum(upper - lower) of the box."""
        return float((self.upper_kwh - self.lower_kwh).sum())


@dataclass(frozen=True, eq=False)
class Aggregate:
    """An aggregated offer (issuer = the aggregator, `members` = member ids) with its members.

    `time_flex_loss_steps`: time flexibility lost, in steps, summed over members;
    `energy_flex_loss_kwh`: sum over members of the chosen profile's sum(upper - lower) minus
    the box's. `joint`: rows over the aggregate's profile vector besides its per-step bounds
    (None: the aggregate is a box); only the aggregate of a single member that keeps its
    profile has them.
    """

    offer: FlexOffer
    members: tuple[MemberBox, ...]
    time_flex_loss_steps: int
    energy_flex_loss_kwh: float
    lower_kwh: np.ndarray = field(repr=False)
    upper_kwh: np.ndarray = field(repr=False)
    joint: JointRows | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        """The aggregate's offer id."""
        return self.offer.id or ""

    @property
    def slice_s(self) -> int:
        """Step length of the aggregate (that of every member)."""
        return self.offer.slice_s

    @property
    def n_steps(self) -> int:
        """Number of steps of the aggregate profile."""
        return len(self.lower_kwh)

    @property
    def earliest(self) -> datetime:
        """Earliest start of the aggregate (its `start_after`: the members' earliest)."""
        return min(m.earliest for m in self.members)

    @property
    def flexibility_steps(self) -> int:
        """Number of allowed shifts minus one: the aggregate's time flexibility in steps."""
        return min(m.flexibility_steps for m in self.members)


@dataclass(frozen=True)
class Unaggregated:
    """An offer that could not be aggregated, and why."""

    offer_id: str | None
    reason: str


@dataclass(frozen=True)
class AggregationResult:
    """The aggregates (iterating the result iterates them) and the offers left out.

    Every input offer is in exactly one aggregate or in `unaggregated`.
    """

    aggregates: tuple[Aggregate, ...]
    unaggregated: tuple[Unaggregated, ...]

    def __iter__(self) -> Iterator[Aggregate]:
        return iter(self.aggregates)

    def __len__(self) -> int:
        return len(self.aggregates)

    def __getitem__(self, index: int) -> Aggregate:
        return self.aggregates[index]

    @property
    def time_flex_loss_steps(self) -> int:
        """Time flexibility lost, in steps, summed over all aggregates."""
        return sum(a.time_flex_loss_steps for a in self.aggregates)

    @property
    def energy_flex_loss_kwh(self) -> float:
        """Energy flexibility lost, in kWh, summed over all aggregates."""
        return float(sum(a.energy_flex_loss_kwh for a in self.aggregates))


# -- grid ------------------------------------------------------------------------------------
def ceil_to_grid(t: datetime, slice_s: int) -> datetime:
    """The first time on the `slice_s` grid at or after `t` (UTC)."""
    return datetime.fromtimestamp(math.ceil(t.timestamp() / slice_s) * slice_s, UTC)


def floor_to_grid(t: datetime, slice_s: int) -> datetime:
    """The last time on the `slice_s` grid at or before `t` (UTC)."""
    return datetime.fromtimestamp(math.floor(t.timestamp() / slice_s) * slice_s, UTC)


def _steps(a: datetime, b: datetime, slice_s: int) -> int:
    """Whole steps from a to b (both on the grid)."""
    return round((b - a).total_seconds() / slice_s)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.flags.writeable = False
    return a


# -- members ---------------------------------------------------------------------------------
def _keeps_profile(profile: Profile, box: tuple[np.ndarray, np.ndarray] | None, min_box_share: float | None) -> bool:
    """Whether a member with this profile and inner box (None: none) keeps its profile."""
    if min_box_share is None or not (profile.total_energy or profile.polytope or profile.dependency):
        return False
    flexibility = float((profile.upper_kwh() - profile.lower_kwh()).sum())
    kept = 0.0 if box is None else float((box[1] - box[0]).sum())
    if kept >= min_box_share * flexibility - _BOX_TOL_KWH:
        return False
    return joint_rows(profile) is not None


def price_band(offer: FlexOffer, width_eur_per_kwh: float | None) -> int:
    """The price band of an offer: for a direct offer with an ask `price.per_kwh_deviation`,
    floor(ask / width) (0 when `width_eur_per_kwh` is None: one band); NO_PRICE_BAND for
    delegated offers and direct ones without an ask."""
    ask = offer.price.per_kwh_deviation if offer.price is not None else None
    if offer.mode is not Mode.DIRECT or ask is None:
        return NO_PRICE_BAND
    if width_eur_per_kwh is None:
        return 0
    # rounded first, so that an ask on a band's edge (0.15 / 0.05 = 2.9999999999999996) is in the upper band
    return math.floor(round(ask / width_eur_per_kwh, 9))


def member_box(
    offer: FlexOffer,
    now: datetime,
    *,
    min_box_share: float | None = None,
    price_band_eur_per_kwh: float | None = DEFAULT_PRICE_BAND_EUR_PER_KWH,
) -> MemberBox | str:
    """The offer reduced to a box (not yet placed in an aggregate), or why it cannot be.

    With `min_box_share` (see AggregationParams), a member whose inner box would keep less than
    that share of its energy flexibility keeps its profile instead (`keeps_profile`); a direct
    member's ask is banded by `price_band_eur_per_kwh` (`price_band`)."""
    if offer.id is None:
        return "the offer has no id"
    if offer.assignment_before is not None and offer.assignment_before < now:
        return f"its assignment deadline {offer.assignment_before.isoformat()} has passed"
    expanded = offer
    if offer.conditional is not None:
        # The FMAN keeps the expansion, with the deadline of the offer as submitted.
        expanded = dataclasses.replace(expand_conditional(offer, now=now), assignment_before=offer.assignment_before)
    slice_s = expanded.slice_s
    window = expanded.window(now)
    if window.earliest is None or window.latest is None:
        return "its start window cannot be resolved"
    earliest = max(ceil_to_grid(window.earliest, slice_s), ceil_to_grid(now, slice_s))
    latest = floor_to_grid(window.latest, slice_s)
    if latest < earliest:
        return f"its start window ends at {window.latest.isoformat()}, before the next possible start"
    default = expanded.default_schedule
    chosen = default.profile if default is not None and 0 <= default.profile < len(expanded.profiles) else 0
    reference = default.energy if default is not None and default.profile == chosen else None
    profile = expanded.profiles[chosen]
    box = inner_box(profile, reference)
    band = price_band(offer, price_band_eur_per_kwh)
    if _keeps_profile(profile, box, min_box_share):
        return MemberBox(
            offer=expanded,
            profile=chosen,
            offset_steps=0,
            earliest=earliest,
            flexibility_steps=_steps(earliest, latest, slice_s),
            lower_kwh=_frozen(profile.lower_kwh()),
            upper_kwh=_frozen(np.maximum(profile.upper_kwh(), profile.lower_kwh())),
            keeps_profile=True,
            price_band=band,
        )
    if box is None:
        return f"profile {chosen} has no inner box: its slice bounds cannot meet its joint constraints"
    lower, upper = box
    if np.any(lower > upper + _BOX_TOL_KWH):
        return f"profile {chosen} has an empty inner box"
    return MemberBox(
        offer=expanded,
        profile=chosen,
        offset_steps=0,
        earliest=earliest,
        flexibility_steps=_steps(earliest, latest, slice_s),
        lower_kwh=_frozen(lower),
        upper_kwh=_frozen(np.maximum(upper, lower)),
        price_band=band,
    )


def member_key(m: MemberBox) -> tuple[int, str, str, int, bool]:
    """The group a member is aggregated in: its offer's `group_key`, its price band (direct
    members; `price_band`) and whether it keeps its profile (such members are aggregated alone,
    apart from the boxes, so that they do not split the boxes' greedy groups)."""
    return (*group_key(m.offer), m.price_band, m.keeps_profile)


def group_key(offer: FlexOffer) -> tuple[int, str, str]:
    """(slice_s, mode, congestion point or "") of an offer: members of one aggregate share them."""
    cp = offer.location.congestion_point if offer.location is not None else None
    return (offer.slice_s, offer.mode.value, cp or "")


def split_members(boxes: list[MemberBox], params: AggregationParams) -> list[list[MemberBox]]:
    """Greedy grouping of one key's members, in order of earliest start."""
    groups: list[list[MemberBox]] = []
    current: list[MemberBox] = []
    energy_kwh = 0.0
    for m in sorted(boxes, key=member_order):
        if current and starts_new_group(current, energy_kwh, m, params):
            groups.append(current)
            current = []
            energy_kwh = 0.0
        current.append(m)
        energy_kwh += member_size_kwh(m)
    if current:
        groups.append(current)
    return groups


def member_order(m: MemberBox) -> tuple[datetime, int, str]:
    """The order in which members of one group key are taken: earliest start, flexibility, id."""
    return (m.earliest, m.flexibility_steps, m.offer_id)


def member_size_kwh(m: MemberBox) -> float:
    """A member's size for the group energy bound: its largest absolute energy per step, summed."""
    return float(np.maximum(np.abs(m.lower_kwh), np.abs(m.upper_kwh)).sum())


def starts_new_group(current: list[MemberBox], energy_kwh: float, m: MemberBox, params: AggregationParams) -> bool:
    """Whether member `m` must begin a new aggregate after the members `current` (whose summed
    upper energy is `energy_kwh`)."""
    first = current[0]
    if m.keeps_profile or first.keeps_profile:  # a member that keeps its profile is alone
        return True
    if (m.earliest - first.earliest).total_seconds() > params.start_tolerance_s:
        return True
    if len(current) >= params.max_group_size:
        return True
    if params.max_time_flex_loss_s is not None:
        flex = [c.flexibility_steps for c in current] + [m.flexibility_steps]
        if (max(flex) - min(flex)) * m.offer.slice_s > params.max_time_flex_loss_s:
            return True
    if params.max_duration_diff_steps is not None and abs(m.n_steps - first.n_steps) > params.max_duration_diff_steps:
        return True
    return params.max_group_energy_kwh is not None and energy_kwh + member_size_kwh(m) > params.max_group_energy_kwh


def _slices(lower: np.ndarray, upper: np.ndarray) -> tuple[Slice, ...]:
    """Runs of equal per-step bounds as slices."""
    slices: list[Slice] = []
    i = 0
    n = len(lower)
    while i < n:
        j = i + 1
        while j < n and lower[j] == lower[i] and upper[j] == upper[i]:
            j += 1
        slices.append(Slice(duration=j - i, energy=(float(lower[i]), float(upper[i]))))
        i = j
    return tuple(slices)


def _aggregate_default(
    members: Sequence[MemberBox], start_after: datetime, flex: int, n: int
) -> DefaultSchedule | None:
    """Sum of the member defaults when all sit at the same shift inside their boxes, else None."""
    shifts = set()
    energy = np.zeros(n)
    for m in members:
        d = m.offer.default_schedule
        if d is None or d.profile != m.profile or len(d.energy) != m.n_steps:
            return None
        e = np.asarray(d.energy, dtype=float)
        if np.any(e < m.lower_kwh - _BOX_TOL_KWH) or np.any(e > m.upper_kwh + _BOX_TOL_KWH):
            return None
        offset_s = (d.start - m.earliest).total_seconds()
        if offset_s % m.offer.slice_s:
            return None
        shifts.add(int(offset_s // m.offer.slice_s))
        energy[m.offset_steps : m.offset_steps + m.n_steps] += e
    if len(shifts) != 1:
        return None
    (shift,) = shifts
    if not 0 <= shift <= flex:
        return None
    start = start_after + timedelta(seconds=shift * members[0].offer.slice_s)
    return DefaultSchedule(start=start, profile=0, energy=tuple(float(v) for v in energy))


def build_aggregate(
    members: list[MemberBox], *, issuer: str, agg_id: str, now: datetime, delays: list[int] | None = None
) -> Aggregate:
    """The aggregate of boxes aligned at their earliest starts, each delayed by `delays[i]` steps
    (balance alignment; None = no delays, start alignment). Time flexibility lost is counted
    against each member's own undelayed flexibility."""
    first = members[0].offer
    slice_s = first.slice_s
    delays = delays if delays is not None else [0] * len(members)
    shifted = [
        (m, m.earliest + timedelta(seconds=d * slice_s), m.flexibility_steps - d)
        for m, d in zip(members, delays, strict=True)
    ]
    start_after = min(e for _, e, _ in shifted)
    flex = min(f for _, _, f in shifted)
    placed = [
        MemberBox(
            offer=m.offer,
            profile=m.profile,
            offset_steps=_steps(start_after, e, slice_s),
            earliest=e,
            flexibility_steps=f,
            lower_kwh=m.lower_kwh,
            upper_kwh=m.upper_kwh,
            keeps_profile=m.keeps_profile,
            price_band=m.price_band,
        )
        for m, e, f in shifted
    ]
    n = max(m.offset_steps + m.n_steps for m in placed)
    lower = np.zeros(n)
    upper = np.zeros(n)
    for m in placed:
        lower[m.offset_steps : m.offset_steps + m.n_steps] += m.lower_kwh
        upper[m.offset_steps : m.offset_steps + m.n_steps] += m.upper_kwh
    upper = np.maximum(upper, lower)
    time_loss = sum(m.flexibility_steps - flex for m in members)
    energy_loss = 0.0
    for m in placed:
        profile = m.offer.profiles[m.profile]
        energy_loss += float((profile.upper_kwh() - profile.lower_kwh()).sum()) - m.energy_flexibility_kwh
    devices = {m.offer.device for m in placed}
    cp = first.location.congestion_point if first.location is not None else None
    deadlines = [m.offer.assignment_before for m in placed if m.offer.assignment_before is not None]
    price = None
    if first.mode is Mode.DIRECT:
        asks = [
            m.offer.price.per_kwh_deviation
            for m in placed
            if m.offer.price is not None and m.offer.price.per_kwh_deviation is not None
        ]
        price = Price(per_kwh_deviation=max(asks) if asks else 0.0)  # the highest ask: every member's is met
    profile = Profile(slices=_slices(lower, upper))
    joint = None
    if any(m.keeps_profile for m in placed):
        if len(placed) != 1:
            raise ValueError("a member that keeps its profile must be the only member of its aggregate")
        own = placed[0].offer.profiles[placed[0].profile]
        profile = dataclasses.replace(own, slices=profile.slices)
        rows = joint_rows(own)
        if rows is None:
            raise ValueError(f"member {placed[0].offer_id!r}: its dependency constraint is not convex")
        joint = JointRows(_frozen(rows[0]), _frozen(rows[1]), _frozen(rows[2]))
    offer = FlexOffer(
        issuer=issuer,
        mode=first.mode,
        profiles=(profile,),
        id=agg_id,
        device=devices.pop() if len(devices) == 1 else "aggregate",
        location=Location(meter_id=f"{issuer}:aggregate", congestion_point=cp),
        created_at=now,
        assignment_before=min(deadlines) if deadlines else None,
        start_after=start_after,
        start_before=start_after + timedelta(seconds=flex * slice_s),
        slice_s=slice_s,
        default_schedule=_aggregate_default(placed, start_after, flex, n),
        price=price,
        members=tuple(m.offer_id for m in placed),
    )
    return Aggregate(
        offer=offer,
        members=tuple(placed),
        time_flex_loss_steps=int(time_loss),
        energy_flex_loss_kwh=float(energy_loss),
        lower_kwh=_frozen(lower),
        upper_kwh=_frozen(upper),
        joint=joint,
    )


def aggregate_start_aligned(
    offers: Sequence[FlexOffer],
    *,
    now: datetime,
    params: AggregationParams = AggregationParams(),
    issuer: str = "fman",
) -> AggregationResult:
    """Aggregate offers start-aligned into boxes; every offer ends up in exactly one aggregate
    or in `unaggregated` with the reason. Deterministic: same input, same output."""
    unaggregated: list[Unaggregated] = []
    groups: dict[tuple[int, str, str, int, bool], list[MemberBox]] = {}
    seen: set[str] = set()
    for offer in offers:
        if offer.id is not None and offer.id in seen:
            unaggregated.append(Unaggregated(offer.id, "another offer with the same id came first"))
            continue
        if offer.id is not None:
            seen.add(offer.id)
        box = member_box(
            offer, now, min_box_share=params.min_box_share, price_band_eur_per_kwh=params.price_band_eur_per_kwh
        )
        if isinstance(box, str):
            unaggregated.append(Unaggregated(offer.id, box))
        else:
            groups.setdefault(member_key(box), []).append(box)
    aggregates: list[Aggregate] = []
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    for key in sorted(groups):
        for members in split_members(groups[key], params):
            agg_id = f"{issuer}-agg-{stamp}-{len(aggregates) + 1:05d}"
            aggregates.append(build_aggregate(members, issuer=issuer, agg_id=agg_id, now=now))
    return AggregationResult(tuple(aggregates), tuple(unaggregated))


def _checked(aggregate: Aggregate, schedule: Schedule | DefaultSchedule, tol: float) -> tuple[int, np.ndarray]:
    """(shift in steps, energy vector) of a schedule feasible for the aggregate; DisaggregationError if not."""
    slice_s = aggregate.slice_s
    offset_s = (schedule.start - aggregate.earliest).total_seconds()
    if offset_s % slice_s:
        raise DisaggregationError(f"start {schedule.start.isoformat()} is not on the {slice_s} s grid")
    shift = int(offset_s // slice_s)
    if not 0 <= shift <= aggregate.flexibility_steps:
        raise DisaggregationError(
            f"start {schedule.start.isoformat()} is outside the aggregate's window "
            f"(shift {shift}, allowed 0..{aggregate.flexibility_steps})"
        )
    x = np.asarray(schedule.energy, dtype=float)
    if len(x) != aggregate.n_steps:
        raise DisaggregationError(f"schedule has {len(x)} steps, the aggregate {aggregate.n_steps}")
    lo, hi = aggregate.lower_kwh, aggregate.upper_kwh
    bad = np.flatnonzero((x < lo - tol) | (x > hi + tol))
    if bad.size:
        i = int(bad[0])
        raise DisaggregationError(
            f"energy[{i}] = {x[i]:.6g} kWh is outside the aggregate bounds [{lo[i]:.6g}, {hi[i]:.6g}] kWh"
        )
    if aggregate.joint is not None:
        broken = aggregate.joint.violations(x, tol)
        if broken.size:
            i = int(broken[0])
            value = float(aggregate.joint.a[i] @ x)
            raise DisaggregationError(
                f"joint row {i} of the aggregate: {value:.6g} kWh is outside "
                f"[{aggregate.joint.lo[i]:.6g}, {aggregate.joint.hi[i]:.6g}] kWh"
            )
    return shift, x


def _member_schedule(m: MemberBox, shift: int, energy: np.ndarray, assigned_at: datetime | None) -> Schedule:
    return Schedule(
        flex_offer_id=m.offer_id,
        start=m.earliest + timedelta(seconds=shift * m.offer.slice_s),
        profile=m.profile,
        energy=tuple(float(v) for v in energy),
        assigned_at=assigned_at,
    )


def disaggregate(
    aggregate: Aggregate,
    schedule: Schedule | DefaultSchedule,
    *,
    assigned_at: datetime | None = None,
    tol: float = TOLERANCE_KWH,
) -> list[Schedule]:
    """One schedule per member (in member order) for a feasible schedule of the aggregate.

    Member schedules refer to the member offers as the FMAN keeps them (conditional offers
    expanded), sum step by step to the aggregate's energy (up to floating error) and are each
    feasible for their member. Raises DisaggregationError when `schedule` is not feasible for
    the aggregate (start off the window or grid, wrong length, energy outside the box by more
    than `tol`).
    """
    shift, x = _checked(aggregate, schedule, tol)
    lo, hi = aggregate.lower_kwh, aggregate.upper_kwh
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(width > 1e-12, np.clip((x - lo) / width, 0.0, 1.0), 0.0)
    out = []
    for m in aggregate.members:
        f = fraction[m.offset_steps : m.offset_steps + m.n_steps]
        energy = m.lower_kwh + f * (m.upper_kwh - m.lower_kwh)
        out.append(_member_schedule(m, shift, energy, assigned_at))
    return out


def _default_energy(m: MemberBox) -> np.ndarray:
    d = m.offer.default_schedule
    if d is None:  # an aggregate with a default has members with defaults (`_aggregate_default`)
        raise DisaggregationError(f"member {m.offer_id} has no default schedule")
    return np.asarray(d.energy, dtype=float)


def disaggregate_around_default(
    aggregate: Aggregate,
    schedule: Schedule | DefaultSchedule,
    *,
    assigned_at: datetime | None = None,
    tol: float = TOLERANCE_KWH,
) -> list[Schedule]:
    """Member schedules that deviate from the members' own defaults the way the aggregate does.

    For an aggregate with a default schedule (its members' defaults run at one shift, each
    inside its box; `build_aggregate`), step k with energy x_k against the aggregate's default
    D_k: when x_k >= D_k every member covering k takes the same fraction
    g_k = (x_k - D_k) / sum(upper_k - default_k) of its room *above its own default*, else the
    same fraction of its room below it. So every member's deviation from its default has the
    sign of the aggregate's and the members' deviations add up to the aggregate's without
    netting: a direct member paid for its own deviation is never paid for energy the market did
    not buy (`disaggregate` takes the same fraction of every member's whole box instead, which
    can move members with their defaults at different fractions of their boxes in opposite
    directions). Member schedules are feasible and sum to the aggregate's energy, as with
    `disaggregate`, which this falls back to for an aggregate without a default.
    """
    default = aggregate.offer.default_schedule
    if default is None:
        return disaggregate(aggregate, schedule, assigned_at=assigned_at, tol=tol)
    shift, x = _checked(aggregate, schedule, tol)
    n = aggregate.n_steps
    own = {m.offer_id: _default_energy(m) for m in aggregate.members}
    base = np.zeros(n)
    room_up = np.zeros(n)
    room_down = np.zeros(n)
    for m in aggregate.members:
        span = slice(m.offset_steps, m.offset_steps + m.n_steps)
        e = own[m.offer_id]
        base[span] += e
        room_up[span] += m.upper_kwh - e
        room_down[span] += e - m.lower_kwh
    up = x >= base
    room = np.where(up, room_up, room_down)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(room > 1e-12, np.clip(np.abs(x - base) / room, 0.0, 1.0), 0.0)
    out = []
    for m in aggregate.members:
        span = slice(m.offset_steps, m.offset_steps + m.n_steps)
        e = own[m.offer_id]
        energy = np.where(up[span], e + g[span] * (m.upper_kwh - e), e - g[span] * (e - m.lower_kwh))
        out.append(_member_schedule(m, shift, energy, assigned_at))
    return out

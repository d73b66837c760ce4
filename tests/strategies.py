"""Hypothesis strategies: random valid Flex-Offers with known feasible points.

Every generated profile is built around two energy vectors x and y that satisfy all of its
constraints (slice bounds, total energy, polytope, dependency). All constraints are convex,
so every convex combination of x and y is feasible too; `feasible_schedule` draws one.
The default schedule runs x of some profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import strategies as st

from atp.flexoffer import (
    Conditional,
    DefaultSchedule,
    FlexOffer,
    Location,
    Mode,
    Polytope,
    Price,
    Profile,
    Schedule,
    Slice,
)

EPOCH_2026 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    """A generated offer with, per profile, two feasible energy vectors."""

    offer: FlexOffer
    points: tuple[tuple[np.ndarray, np.ndarray], ...]


def _energy() -> st.SearchStrategy[float]:
    return st.floats(min_value=-5.0, max_value=5.0, allow_nan=False).map(lambda v: round(v, 3))


@st.composite
def profiles(
    draw: st.DrawFn,
    *,
    max_slices: int = 6,
    polytope: bool | None = None,
    dependency: bool | None = None,
    total: bool | None = None,
) -> tuple[Profile, np.ndarray, np.ndarray]:
    """A profile and two feasible vectors x, y."""
    n_slices = draw(st.integers(1, max_slices))
    durations = [draw(st.integers(1, 4)) for _ in range(n_slices)]
    n = sum(durations)
    xs = np.array([draw(_energy()) for _ in range(n)])
    ys = np.array([draw(_energy()) for _ in range(n)])
    slices = []
    i = 0
    for d in durations:
        seg = np.concatenate((xs[i : i + d], ys[i : i + d]))
        pad_lo = draw(st.sampled_from([0.0, 0.0, 0.5, 1.0]))
        pad_hi = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
        slices.append(Slice(duration=d, energy=(float(seg.min() - pad_lo), float(seg.max() + pad_hi))))
        i += d
    total_energy = None
    if total if total is not None else draw(st.booleans()):
        lo = float(min(xs.sum(), ys.sum()) - draw(st.sampled_from([0.0, 0.25, 1.0])))
        hi = float(max(xs.sum(), ys.sum()) + draw(st.sampled_from([0.0, 0.25, 1.0])))
        total_energy = (lo, hi)
    poly = None
    if polytope if polytope is not None else draw(st.booleans()):
        m = draw(st.integers(1, 3))
        a = np.array([[float(draw(st.integers(-2, 2))) for _ in range(n)] for _ in range(m)])
        b = np.maximum(a @ xs, a @ ys) + draw(st.sampled_from([0.0, 0.1, 1.0]))
        poly = Polytope(A=tuple(tuple(r) for r in a.tolist()), b=tuple(b.tolist()))
    dep = None
    if dependency if dependency is not None else draw(st.booleans()):
        dx = np.concatenate(([0.0], np.cumsum(xs)[:-1]))
        dy = np.concatenate(([0.0], np.cumsum(ys)[:-1]))
        steps = []
        for k in range(n):
            d_lo, d_hi = min(dx[k], dy[k]) - 1.0, max(dx[k], dy[k]) + 1.0
            lo, hi = min(xs[k], ys[k]), max(xs[k], ys[k])
            widen = draw(st.sampled_from([0.0, 0.5]))
            steps.append(((float(d_lo), float(lo - widen), float(hi)), (float(d_hi), float(lo), float(hi + widen))))
        dep = tuple(steps)
    return Profile(slices=tuple(slices), total_energy=total_energy, polytope=poly, dependency=dep), xs, ys


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    max_profiles: int = 3,
    polytope: bool | None = None,
    dependency: bool | None = None,
    total: bool | None = None,
    implicit: bool | None = None,
    conditional: bool = False,
) -> Case:
    """A valid offer with known feasible vectors per profile."""
    slice_s = draw(st.sampled_from([900, 900, 1800, 3600]))
    n_profiles = draw(st.integers(1, max_profiles))
    drawn = [draw(profiles(polytope=polytope, dependency=dependency, total=total)) for _ in range(n_profiles)]
    start_after = EPOCH_2026 + timedelta(seconds=slice_s * draw(st.integers(0, 30_000)))
    flex_steps = draw(st.integers(0, 96))
    use_implicit = implicit if implicit is not None else draw(st.booleans())
    mode = draw(st.sampled_from(list(Mode)))
    price = None
    if mode is Mode.DIRECT or draw(st.booleans()):
        price = Price(per_kwh_deviation=draw(st.floats(0.0, 1.0).map(lambda v: round(v, 4))))
    created_at = start_after - timedelta(seconds=slice_s * draw(st.integers(0, 8)))
    default_profile = draw(st.integers(0, n_profiles - 1))
    offset = draw(st.integers(0, flex_steps))
    default = DefaultSchedule(
        start=start_after + timedelta(seconds=slice_s * offset),
        profile=default_profile,
        energy=tuple(float(v) for v in drawn[default_profile][1]),
    )
    cond = None
    if conditional:
        cond = Conditional(
            prior_s=slice_s * draw(st.integers(0, 3)),
            prior_portion=draw(st.sampled_from([0.0, 0.25, 0.5])),
            after_s=slice_s * draw(st.integers(0, 4)),
            after_portion=draw(st.sampled_from([0.5, 0.75, 1.0])),
        )
    offer = FlexOffer(
        id=f"fo-{draw(st.integers(0, 10**6)):06d}",
        issuer=draw(st.sampled_from(["foss-p001", "esr-p042", "sww-p007"])),
        device=draw(st.sampled_from(["ev", "heat_pump", "battery", None])),
        mode=mode,
        location=Location(meter_id="M-1", bus=draw(st.integers(0, 50)), congestion_point="cp-1"),
        created_at=created_at,
        assignment_before=start_after + timedelta(seconds=slice_s * draw(st.integers(0, min(4, flex_steps))))
        if not use_implicit
        else None,
        start_after=None if use_implicit else start_after,
        start_before=None if use_implicit else start_after + timedelta(seconds=slice_s * flex_steps),
        start_before_duration_s=slice_s * flex_steps if use_implicit else None,
        slice_s=slice_s,
        profiles=tuple(p for p, _, _ in drawn),
        conditional=cond,
        default_schedule=default,
        price=price,
    )
    if use_implicit:
        # "now" for the implicit window is the offer's creation time.
        offer = _replace_created(offer, start_after)
    return Case(offer=offer, points=tuple((x, y) for _, x, y in drawn))


def _replace_created(offer: FlexOffer, created_at: datetime) -> FlexOffer:
    from dataclasses import replace

    return replace(offer, created_at=created_at)


@st.composite
def feasible_schedule(draw: st.DrawFn, case: Case) -> Schedule:
    """A random feasible schedule of the case's offer (convex combination of its points)."""
    offer = case.offer
    k = draw(st.integers(0, len(offer.profiles) - 1))
    lam = draw(st.floats(0.0, 1.0))
    x, y = case.points[k]
    energy = lam * x + (1.0 - lam) * y
    window = offer.window(offer.created_at)
    steps = int((window.latest - window.earliest).total_seconds() // offer.slice_s)
    start = window.earliest + timedelta(seconds=offer.slice_s * draw(st.integers(0, steps)))
    assigned_at = offer.assignment_before or offer.created_at
    return Schedule(
        flex_offer_id=offer.id or "fo",
        start=start,
        profile=k,
        energy=tuple(float(v) for v in energy),
        assigned_at=assigned_at,
        price_eur=0.0,
    )


def rebase(offer: FlexOffer, to: datetime) -> FlexOffer:
    """The offer moved in time so that its earliest start (or creation) is `to`."""
    delta = to - (offer.start_after or offer.created_at)

    def shift(t: datetime | None) -> datetime | None:
        return None if t is None else t + delta

    default = offer.default_schedule
    return dataclasses.replace(
        offer,
        created_at=shift(offer.created_at),
        assignment_before=shift(offer.assignment_before),
        start_after=shift(offer.start_after),
        start_before=shift(offer.start_before),
        default_schedule=None if default is None else dataclasses.replace(default, start=default.start + delta),
    )


def aggregate_energy(aggregate, rng: np.random.Generator) -> np.ndarray:
    """A random energy vector feasible for an `atp.fman.Aggregate`: inside its per-step bounds and,
    when it carries joint rows, a convex combination of two LP vertices that meet them (HiGHS via
    scipy, random objectives), so the rows hold too."""
    from scipy.optimize import linprog

    lower, upper = np.asarray(aggregate.lower_kwh), np.asarray(aggregate.upper_kwh)
    lam = rng.random(len(lower))
    lam[rng.random(len(lower)) < 0.2] = 0.0
    lam[rng.random(len(lower)) < 0.2] = 1.0
    if aggregate.joint is None:
        return lower + lam * (upper - lower)
    rows = aggregate.joint
    up, lo = np.isfinite(rows.hi), np.isfinite(rows.lo)
    a_ub = np.vstack((rows.a[up], -rows.a[lo]))
    b_ub = np.concatenate((rows.hi[up], -rows.lo[lo]))
    vertices = []
    for _ in range(2):
        res = linprog(rng.normal(size=len(lower)), A_ub=a_ub, b_ub=b_ub, bounds=list(zip(lower, upper, strict=True)))
        assert res.status == 0, res.message  # an aggregate's own rows are feasible (its default meets them)
        vertices.append(np.clip(res.x, lower, upper))
    w = rng.random()
    return w * vertices[0] + (1.0 - w) * vertices[1]


def random_planning_problem(
    seed: int,
    n_aggregates: int,
    n_steps: int,
    *,
    max_length: int = 8,
    shift_share: float = 0.8,
    lowest_kwh: float = -2.0,
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC),
):
    """A random FMAN `PlanningProblem` on a horizon of `n_steps` steps from `start`: box
    aggregates of 1 to `max_length` steps, a share `shift_share` of them with several starts,
    per-step ranges from `lowest_kwh` (negative: injection) up, some of them empty."""
    from atp.fman import PlanningProblem

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_length + 1, n_aggregates)
    shifts = np.array([rng.integers(1, n_steps - n + 2) if rng.random() < shift_share else 1 for n in lengths])
    first = np.array([rng.integers(0, n_steps - n - s + 2) for n, s in zip(lengths, shifts, strict=True)])
    total = int(lengths.sum())
    lower = np.round(rng.uniform(lowest_kwh, 2.0, total), 2)
    upper = lower + np.where(rng.random(total) < 0.3, 0.0, np.round(rng.uniform(0.0, 3.0, total), 2))
    return PlanningProblem(
        horizon_start=start,
        slice_s=900,
        n_steps=n_steps,
        prices_eur_per_kwh=np.round(rng.normal(0.2, 0.1, n_steps), 3),
        objective="least_cost",
        aggregate_ids=tuple(f"agg-{g}" for g in range(n_aggregates)),
        first_start_step=first.astype(np.int64),
        n_shifts=shifts.astype(np.int64),
        profile_offsets=np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        lower_kwh=lower,
        upper_kwh=upper,
    )

"""Benchmark: FMAN aggregation and disaggregation (batch vs per-offer path) and MILP planning.

Run from the repository root: `python -m benchmarks.fman [--sizes 10000,100000,1000000]
[--plan-sizes 1000,10000] [--seed 1]`.

Part 1, for every size n: n member boxes of 4-32 quarter-hour steps (1-3 slices of random
bounds, 20 % of them production), earliest starts spread over one day, time flexibility 0-16
steps, about 1 000 offers per congestion point. The batch path (`aggregate_batch`,
`disaggregate_batch` of `atp.fman.batch_aggregation`) runs on all n, best of `--repeat`. The
straightforward path is the object path of `atp.fman.aggregation` (grouping with `split_members`,
one `build_aggregate` per aggregate, one `disaggregate` per aggregate schedule), run on all
offers of the first congestion points, at most `--sample` offers, and extrapolated linearly
to n (congestion points are independent, so the sample has the same group structure). Box
reduction (`member_boxes`, `inner_box`) is done beforehand and timed by neither path. Both
paths must give the same aggregates (members, offsets, bounds bitwise) and the same member
schedules (bitwise) on the sample, or the benchmark stops. Aggregation parameters are the
defaults (`AggregationParams()`: 1 h start tolerance, 1 h flexibility loss, 100 members).

Part 2, for every planning size N: offers of the same kind that fit one 96-step day are
aggregated (`aggregate_start_aligned_batch`), the first N aggregates are planned against
seeded quarter-hour prices with the least-cost objective (`build_problem`, `solve_highs`:
HiGHS, one thread, the step model, warm start unless `--no-warm-start`), with problem, model
build and solve times, status and MIP gap; planned schedules are checked feasible and an
optimal cost equal to enumeration.

Times are CPU seconds of this process (`time.process_time`; numpy and HiGHS run on one
thread), which a busy machine inflates less than wall time; wall seconds are printed too.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import numpy as np

from atp.flexoffer import FlexOffer, Location, Mode, Profile, Schedule, Slice, check_schedule
from atp.fman import (
    AggregationParams,
    MemberBatch,
    PlanningProblem,
    PlanSolution,
    PriceSeries,
    aggregate_batch,
    aggregate_start_aligned_batch,
    build_problem,
    disaggregate,
    disaggregate_batch,
    extract_schedules,
    member_boxes,
    solve_highs,
)
from atp.fman.aggregation import Aggregate, MemberBox, build_aggregate, group_key, split_members
from atp.fman.planning import _solver_name

SLICE_S = 900
HORIZON_STEPS = 96
OFFERS_PER_CP = 1_000
NOW = datetime(2026, 3, 2, tzinfo=UTC)
AGG_TARGET_S = 2.0
SPEEDUP_TARGET = 50.0
PLAN_TARGET_S = 60.0
_R = TypeVar("_R")


# -- offers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Members:
    """Generated members as arrays, and how to turn any of them into a FlexOffer."""

    cp: np.ndarray
    earliest_step: np.ndarray
    flex_steps: np.ndarray
    slice_offset: np.ndarray  # CSR: slices of member i are slice_offset[i]:slice_offset[i + 1]
    slice_duration: np.ndarray
    slice_lower_kwh: np.ndarray
    slice_upper_kwh: np.ndarray

    @property
    def n(self) -> int:
        return len(self.cp)

    def batch(self) -> MemberBatch:
        """All members as a MemberBatch (rank = row = id order)."""
        n_steps = np.add.reduceat(self.slice_duration, self.slice_offset[:-1])
        return MemberBatch.from_arrays(
            key=self.cp,
            slice_s=np.full(self.n, SLICE_S),
            earliest_s=int(NOW.timestamp()) + SLICE_S * self.earliest_step,
            flexibility_steps=self.flex_steps,
            n_steps=n_steps,
            lower_kwh=np.repeat(self.slice_lower_kwh, self.slice_duration),
            upper_kwh=np.repeat(self.slice_upper_kwh, self.slice_duration),
        )

    def offer(self, i: int) -> FlexOffer:
        """Member i as a delegated FlexOffer whose inner box is exactly its slice bounds."""
        a, b = int(self.slice_offset[i]), int(self.slice_offset[i + 1])
        slices = tuple(
            Slice(int(d), (float(lo), float(hi)))
            for d, lo, hi in zip(
                self.slice_duration[a:b], self.slice_lower_kwh[a:b], self.slice_upper_kwh[a:b], strict=True
            )
        )
        start = NOW + timedelta(seconds=SLICE_S * int(self.earliest_step[i]))
        return FlexOffer(
            issuer=f"p{i:07d}",
            id=f"fo-{i:07d}",
            mode=Mode.DELEGATED,
            device="ev",
            profiles=(Profile(slices=slices),),
            location=Location(meter_id=f"M-{i}", congestion_point=f"cp-{int(self.cp[i]):05d}"),
            created_at=NOW - timedelta(hours=1),
            start_after=start,
            start_before=start + timedelta(seconds=SLICE_S * int(self.flex_steps[i])),
            slice_s=SLICE_S,
        )


def generate(n: int, rng: np.random.Generator, *, fit_horizon: bool = False) -> Members:
    """n members of 4-32 steps on ceil(n / 1000) congestion points, earliest starts over one day;
    with `fit_horizon`, every member can run inside the 96-step day."""
    n_cp = max(1, -(-n // OFFERS_PER_CP))
    cp = np.sort(rng.integers(0, n_cp, n))
    n_steps = rng.integers(4, 33, n)
    flex = rng.integers(0, 17, n)
    if fit_horizon:
        flex = np.minimum(flex, HORIZON_STEPS - n_steps)
        earliest = (rng.random(n) * (HORIZON_STEPS - n_steps - flex + 1)).astype(np.int64)
    else:
        earliest = rng.integers(0, HORIZON_STEPS, n)
    n_slices = np.minimum(rng.integers(1, 4, n), n_steps)
    # slice durations: split n_steps into n_slices positive parts
    slice_offset = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(n_slices, out=slice_offset[1:])
    total = int(slice_offset[-1])
    owner = np.repeat(np.arange(n), n_slices)
    weights = rng.random(total) + 0.2
    share = weights / np.add.reduceat(weights, slice_offset[:-1])[owner]
    base = np.floor(share * (n_steps[owner] - n_slices[owner])).astype(np.int64) + 1
    rest = n_steps - np.add.reduceat(base, slice_offset[:-1])
    base[slice_offset[:-1]] += rest  # the first slice takes what rounding left
    producer = rng.random(n) < 0.2
    lower = np.round(rng.uniform(0.0, 1.0, total), 3)
    upper = np.round(lower + rng.uniform(0.0, 3.0, total), 3)
    lower, upper = np.where(producer[owner], -upper, lower), np.where(producer[owner], -lower, upper)
    return Members(cp, earliest, flex, slice_offset, base, lower, upper)


# -- timing ----------------------------------------------------------------------------------
def _timed(fn: Callable[[], _R], repeat: int = 1) -> tuple[float, float, _R]:
    """Best CPU and wall seconds of `repeat` runs, and the last result."""
    cpu, wall, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - w0)
    return cpu, wall, result  # type: ignore[return-value]


def _object_aggregate(boxes: list[MemberBox], params: AggregationParams) -> list[Aggregate]:
    """The object path of `aggregate_start_aligned` after box reduction."""
    groups: dict[tuple[int, str, str], list[MemberBox]] = {}
    for b in boxes:
        groups.setdefault(group_key(b.offer), []).append(b)
    out = []
    for key in sorted(groups):
        for members in split_members(groups[key], params):
            out.append(build_aggregate(members, issuer="fman", agg_id=f"fman-agg-{len(out) + 1:07d}", now=NOW))
    return out


@dataclass(frozen=True)
class AggRow:
    n: int
    n_aggregates: int
    sample: int
    batch_agg_cpu_s: float
    batch_agg_wall_s: float
    batch_dis_cpu_s: float
    batch_dis_wall_s: float
    object_agg_s: float
    object_dis_s: float


def run_aggregation(n: int, sample: int, seed: int, repeat: int) -> AggRow:
    """Time both paths for n members; raise SystemExit if they disagree on the sample."""
    rng = np.random.default_rng([seed, n])
    members = generate(n, rng)
    batch = members.batch()
    params = AggregationParams()
    agg_cpu, agg_wall, aggs = _timed(lambda: aggregate_batch(batch, params), repeat)
    shift = rng.integers(0, aggs.flexibility_steps + 1)
    lam = rng.random(len(aggs.lower_kwh))
    x = aggs.lower_kwh + lam * (aggs.upper_kwh - aggs.lower_kwh)
    dis_cpu, dis_wall, out = _timed(lambda: disaggregate_batch(batch, aggs, shift, x), repeat)

    # the object path on the first congestion points
    m = n if n <= sample else int(np.searchsorted(members.cp, members.cp[sample - 1], side="left"))
    m = max(m, int(np.searchsorted(members.cp, members.cp[0], side="right")))
    boxes, left = member_boxes([members.offer(i) for i in range(m)], now=NOW)
    if left:
        raise SystemExit(f"size {n}: {len(left)} generated offers have no box ({left[0].reason})")
    obj_agg_cpu, _, objects = _timed(lambda: _object_aggregate(boxes, params))
    n_sample_aggs = len(objects)
    # the batch aggregates of the sample are the first ones (congestion points come in order)
    starts_s = aggs.start_s[:n_sample_aggs]
    schedules = []
    for g, agg in enumerate(objects):
        o, p = aggs.step_offset[g], aggs.step_offset[g + 1]
        rows = aggs.member_index[aggs.member_offset[g] : aggs.member_offset[g + 1]]
        same = (
            [f"fo-{int(r):07d}" for r in rows] == list(agg.offer.members)
            and np.array_equal(aggs.lower_kwh[o:p], agg.lower_kwh)
            and np.array_equal(aggs.upper_kwh[o:p], agg.upper_kwh)
            and int(starts_s[g]) == int(agg.earliest.timestamp())
            and int(aggs.flexibility_steps[g]) == agg.flexibility_steps
        )
        if not same:
            raise SystemExit(f"size {n}: aggregate {g} differs between the batch and the object path")
        start = agg.earliest + timedelta(seconds=SLICE_S * int(shift[g]))
        schedules.append(Schedule(agg.id, start, 0, tuple(x[o:p].tolist())))
    obj_dis_cpu, _, member_schedules = _timed(
        lambda: [disaggregate(a, s) for a, s in zip(objects, schedules, strict=True)]
    )
    for agg, got in zip(objects, member_schedules, strict=True):
        for mb, ms in zip(agg.members, got, strict=True):
            i = int(mb.offer_id.removeprefix("fo-"))
            if not np.array_equal(out.energy(i), np.asarray(ms.energy)) or int(out.start_s[i]) != int(
                ms.start.timestamp()
            ):
                raise SystemExit(f"size {n}: member {mb.offer_id} is disaggregated differently by the two paths")
    scale = n / m
    return AggRow(
        n=n,
        n_aggregates=aggs.n_aggregates,
        sample=m,
        batch_agg_cpu_s=agg_cpu,
        batch_agg_wall_s=agg_wall,
        batch_dis_cpu_s=dis_cpu,
        batch_dis_wall_s=dis_wall,
        object_agg_s=obj_agg_cpu * scale,
        object_dis_s=obj_dis_cpu * scale,
    )


# -- planning --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanRow:
    n_aggregates: int
    n_members: int
    n_binaries: int
    problem_s: float
    build_s: float
    solve_s: float
    status: str
    mip_gap: float | None
    cost_eur: float | None
    fallback: str | None

    @property
    def total_s(self) -> float:
        """Problem, model build and solve."""
        return self.problem_s + self.build_s + self.solve_s


def prices(rng: np.random.Generator) -> PriceSeries:
    """One day of quarter-hour prices: a morning and an evening peak, cheap nights, noise."""
    hours = np.arange(HORIZON_STEPS) / 4
    shape = 0.18 + 0.08 * np.exp(-((hours - 8) ** 2) / 4) + 0.12 * np.exp(-((hours - 19) ** 2) / 6)
    shape -= 0.06 * (hours < 5)
    return PriceSeries(NOW, SLICE_S, np.round(shape + rng.normal(0.0, 0.01, HORIZON_STEPS), 4))


def _check_plan(problem: PlanningProblem, solution: PlanSolution, aggregates: Sequence[Aggregate]) -> None:
    """Stop unless every planned schedule is feasible for its aggregate and, when HiGHS proved
    optimality, the cost equals the least cost found by enumerating each aggregate's shifts
    (exact for a linear step cost: the aggregates do not interact)."""
    for agg, schedule in extract_schedules(problem, solution, aggregates, now=NOW):
        problems = check_schedule(agg.offer, schedule, now=NOW)
        if problems:
            raise SystemExit(f"planned schedule of {agg.id} is infeasible: {problems[0].message}")
    c = problem.prices_eur_per_kwh
    best = 0.0
    for g in range(problem.n_aggregates):
        lo, hi = problem.bounds(g)
        t0, n = int(problem.first_start_step[g]), len(lo)
        windows = np.lib.stride_tricks.sliding_window_view(c[t0 : t0 + int(problem.n_shifts[g]) + n - 1], n)
        best += float(np.minimum(windows * lo, windows * hi).sum(axis=1).min())
    if solution.status == "Optimal" and abs(best - (solution.objective_eur or 0.0)) > 1e-6 * max(1.0, abs(best)):
        raise SystemExit(f"HiGHS cost {solution.objective_eur} differs from the enumerated optimum {best}")


def run_planning(n_aggs: int, seed: int, time_limit_s: float, warm_start: bool) -> PlanRow:
    """Aggregate enough generated offers for `n_aggs` aggregates and plan the first n_aggs."""
    rng = np.random.default_rng([seed, n_aggs, 7])
    members = generate(5 * n_aggs, rng, fit_horizon=True)
    offers = [members.offer(i) for i in range(members.n)]
    result = aggregate_start_aligned_batch(offers, now=NOW)
    if len(result) < n_aggs:
        raise SystemExit(f"only {len(result)} aggregates from {members.n} offers, {n_aggs} wanted")
    aggregates = result.aggregates[:n_aggs]
    series = prices(rng)
    problem_cpu, _, problem = _timed(lambda: build_problem(aggregates, series, now=NOW, horizon_steps=HORIZON_STEPS))
    if problem.left_out:
        raise SystemExit(f"{len(problem.left_out)} aggregates do not fit the horizon: {problem.left_out[0]}")
    solution = solve_highs(problem, time_limit_s=time_limit_s, warm_start=warm_start)
    if solution.ok:
        _check_plan(problem, solution, aggregates)
    return PlanRow(
        n_aggregates=n_aggs,
        n_members=sum(len(a.members) for a in aggregates),
        n_binaries=int(np.sum(problem.n_shifts[problem.n_shifts > 1])),
        problem_s=problem_cpu,
        build_s=solution.build_s,
        solve_s=solution.solve_s,
        status=solution.status,
        mip_gap=solution.mip_gap,
        cost_eur=solution.objective_eur,
        fallback=solution.fallback_reason,
    )


# -- output ----------------------------------------------------------------------------------
def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_aggregation(rows: list[AggRow], seed: int, repeat: int) -> None:
    print(f"FMAN start-aligned aggregation and disaggregation, seed {seed}, AggregationParams() defaults")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {_solver_name()}, {os.cpu_count()} cores "
        "(all timings on one thread)"
    )
    print(
        f"batch: all offers, best of {repeat}; per-offer (object path of aggregation.py): the offers of the first "
        "congestion points (column 'sample'), CPU time extrapolated linearly to n"
    )
    print()
    head = (
        f"{'offers':>10}{'aggregates':>12}{'sample':>9} | {'aggregate batch s':>18}{'per-offer s':>13}{'speed-up':>10}"
        f" | {'disaggregate batch s':>21}{'per-offer s':>13}{'speed-up':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        extrapolated = "*" if r.sample < r.n else " "
        print(
            f"{r.n:>10,}{r.n_aggregates:>12,}{r.sample:>9,} | "
            f"{r.batch_agg_cpu_s:>9.3f} ({r.batch_agg_wall_s:.3f})"
            f"{r.object_agg_s:>12.2f}{extrapolated}{r.object_agg_s / r.batch_agg_cpu_s:>9.0f}x | "
            f"{r.batch_dis_cpu_s:>12.3f} ({r.batch_dis_wall_s:.3f})"
            f"{r.object_dis_s:>12.2f}{extrapolated}{r.object_dis_s / r.batch_dis_cpu_s:>9.0f}x"
        )
    print("batch columns: CPU s (wall s); * = extrapolated from the sample")
    big = max(rows, key=lambda r: r.n)
    print()
    print(
        f"target: {big.n:,} offers aggregated in < {AGG_TARGET_S:.0f} s: {_met(big.batch_agg_cpu_s < AGG_TARGET_S)}"
        f" ({big.batch_agg_cpu_s:.2f} s); disaggregated in < {AGG_TARGET_S:.0f} s: "
        f"{_met(big.batch_dis_cpu_s < AGG_TARGET_S)} ({big.batch_dis_cpu_s:.2f} s)"
    )
    agg_x, dis_x = big.object_agg_s / big.batch_agg_cpu_s, big.object_dis_s / big.batch_dis_cpu_s
    print(
        f"target: at least {SPEEDUP_TARGET:.0f}x the per-offer path at {big.n:,}: aggregation "
        f"{_met(agg_x >= SPEEDUP_TARGET)} ({agg_x:.0f}x), disaggregation {_met(dis_x >= SPEEDUP_TARGET)} ({dis_x:.0f}x)"
    )


def print_planning(rows: list[PlanRow], time_limit_s: float, warm_start: bool) -> None:
    print()
    print(
        f"FMAN planning, least cost, {HORIZON_STEPS} quarter-hour steps, HiGHS one thread, "
        f"time limit {time_limit_s:.0f} s, mip_rel_gap 1e-6, step model, "
        f"{'warm start from the separable plan' if warm_start else 'no warm start'}"
    )
    head = (
        f"{'aggregates':>11}{'members':>9}{'binaries':>10}{'problem s':>11}{'build s':>9}{'solve s':>9}"
        f"{'total s':>9}  {'status':<12}{'MIP gap':>9}{'cost EUR':>12}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        gap = "-" if r.mip_gap is None else f"{r.mip_gap:.1e}"
        cost = "-" if r.cost_eur is None else f"{r.cost_eur:,.2f}"
        print(
            f"{r.n_aggregates:>11,}{r.n_members:>9,}{r.n_binaries:>10,}{r.problem_s:>11.2f}{r.build_s:>9.2f}"
            f"{r.solve_s:>9.2f}{r.total_s:>9.2f}  {r.status:<12}{gap:>9}{cost:>12}"
        )
        if r.fallback:
            print(f"  fallback: {r.fallback}")
    print("problem s: build_problem (CPU); build s: model matrices + passModel; solve s: HiGHS run (wall)")
    print("checked: every planned schedule is feasible for its aggregate; an Optimal cost equals the least cost")
    print("found by enumerating each aggregate's shifts (exact here: under a linear step cost they do not interact)")
    big = max(rows, key=lambda r: r.n_aggregates)
    ok = big.total_s < PLAN_TARGET_S and big.fallback is None
    print(
        f"target: {big.n_aggregates:,} aggregates x {HORIZON_STEPS} steps planned in < {PLAN_TARGET_S:.0f} s: "
        f"{_met(ok)} ({big.total_s:.1f} s, {big.status})"
    )


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive integers, e.g. 10000,100000")
    return sizes


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fman", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=[10_000, 100_000, 1_000_000], help="offers to aggregate")
    parser.add_argument("--plan-sizes", type=_sizes, default=[1_000, 10_000], help="aggregates to plan")
    parser.add_argument("--sample", type=int, default=20_000, help="offers timed on the per-offer path (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each batch timing (best is kept)")
    parser.add_argument("--time-limit", type=float, default=55.0, help="HiGHS time limit in s (default 55)")
    parser.add_argument("--no-warm-start", action="store_true", help="solve without solve_highs' warm start")
    parser.add_argument("--seed", type=int, default=1, help="seed of the numpy Generator (default 1)")
    args = parser.parse_args(argv)
    if args.sample < 1 or args.repeat < 1:
        parser.error("--sample and --repeat must be at least 1")
    rows = [run_aggregation(n, args.sample, args.seed, args.repeat) for n in args.sizes]
    print_aggregation(rows, args.seed, args.repeat)
    if args.plan_sizes:
        warm = not args.no_warm_start
        plans = [run_planning(n, args.seed, args.time_limit, warm) for n in args.plan_sizes]
        print_planning(plans, args.time_limit, warm)


if __name__ == "__main__":
    main()

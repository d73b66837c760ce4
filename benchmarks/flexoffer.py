"""Benchmark: per-object versus batch validation and schedule checks of Flex-Offers.

Run from the repository root: `python -m benchmarks.flexoffer [--n 100000] [--seed 1]`.

For each row kind, `--n` offers of 4 to 96 steps are generated with a seeded numpy Generator
(plain FlexOffer objects, one schedule per offer; about 10 % of the schedules are made
infeasible so that both paths find something). The per-object path (`validate_offer`,
`check_schedule`) runs on the first `--subset` offers and its rate is extrapolated; the batch
path (`validate_batch`, `check_schedules_batch`) runs on all offers, with building the batch
timed apart. Both paths must agree on the subset, or the benchmark stops.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from atp.flexoffer import (
    DefaultSchedule,
    FlexOffer,
    Location,
    Mode,
    Polytope,
    Price,
    Profile,
    Schedule,
    Slice,
    check_schedule,
    validate_offer,
)
from atp.flexoffer.batch import OfferBatch, ScheduleBatch
from atp.flexoffer.batch_checks import RULE_BIT, check_schedules_batch, validate_batch

SLICE_S = 900
EPOCH_2026 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = {
    "a": "(a) slices, window, total",
    "b": "(b) + polytope",
    "c": "(c) + dependency",
    "d": "(d) XOR, 2-3 profiles",
}


@dataclass(frozen=True)
class RowResult:
    """Timings of one row kind, rates in operations per second."""

    kind: str
    validate_object_per_s: float
    validate_batch_per_s: float
    check_object_per_s: float
    check_batch_per_s: float
    build_offers_s: float
    build_schedules_s: float
    n_steps: int
    n_invalid: int
    n_infeasible: int


def _profile(rng: np.random.Generator, *, polytope: bool, dependency: bool) -> tuple[Profile, np.ndarray]:
    """A random profile of 4-96 steps with total energy, and a feasible energy vector."""
    n = int(rng.integers(4, 97))
    n_slices = int(rng.integers(1, min(8, n) + 1))
    cuts = np.sort(rng.choice(np.arange(1, n), size=n_slices - 1, replace=False))
    durations = np.diff(np.concatenate(([0], cuts, [n])))
    lower = np.round(rng.uniform(-1.0, 2.0, n_slices), 3)
    upper = np.round(lower + rng.uniform(0.0, 3.0, n_slices), 3)
    slices = tuple(Slice(int(d), (float(lo), float(hi))) for d, lo, hi in zip(durations, lower, upper, strict=True))
    step_lower, step_upper = np.repeat(lower, durations), np.repeat(upper, durations)
    x = step_lower + rng.uniform(0.0, 1.0, n) * (step_upper - step_lower)
    total = float(x.sum())
    total_energy = (
        float(np.floor((total - rng.uniform(0.0, 2.0)) * 1e3) / 1e3),
        float(np.ceil((total + rng.uniform(0.0, 2.0)) * 1e3) / 1e3),
    )
    poly = None
    if polytope:
        a = rng.integers(-1, 2, size=(int(rng.integers(1, 4)), n)).astype(float)
        b = a @ x + rng.uniform(0.0, 1.0, len(a))
        poly = Polytope(tuple(map(tuple, a.tolist())), tuple(b.tolist()))
    dep = None
    if dependency:
        before = np.concatenate(([0.0], np.cumsum(x)[:-1]))
        d_lo, d_hi = (before - 5.0).tolist(), (before + 5.0).tolist()
        lo, hi = step_lower.tolist(), step_upper.tolist()
        dep = tuple(((d_lo[i], lo[i], hi[i]), (before[i], lo[i], hi[i]), (d_hi[i], lo[i], hi[i])) for i in range(n))
    return Profile(slices, total_energy, poly, dep), x


def generate(kind: str, n: int, rng: np.random.Generator) -> tuple[list[FlexOffer], list[Schedule]]:
    """`n` valid offers of the row kind and one schedule per offer (about 10 % infeasible)."""
    offers: list[FlexOffer] = []
    schedules: list[Schedule] = []
    step = timedelta(seconds=SLICE_S)
    for i in range(n):
        n_profiles = int(rng.integers(2, 4)) if kind == "d" else 1
        drawn = [_profile(rng, polytope=kind == "b", dependency=kind == "c") for _ in range(n_profiles)]
        start_after = EPOCH_2026 + step * int(rng.integers(0, 35_040))
        flex_steps = int(rng.integers(0, 97))
        default_k = int(rng.integers(0, n_profiles))
        offer = FlexOffer(
            id=f"fo-{i:06d}",
            issuer="foss-p001",
            device="ev",
            mode=Mode.DIRECT,
            location=Location(meter_id=f"M-{i}"),
            created_at=start_after - step * int(rng.integers(1, 9)),
            assignment_before=start_after,
            start_after=start_after,
            start_before=start_after + step * flex_steps,
            slice_s=SLICE_S,
            profiles=tuple(p for p, _ in drawn),
            default_schedule=DefaultSchedule(start_after, default_k, tuple(drawn[default_k][1].tolist())),
            price=Price(per_kwh_deviation=0.12),
        )
        k = int(rng.integers(0, n_profiles))
        energy = drawn[k][1].copy()
        start = start_after + step * int(rng.integers(0, flex_steps + 1))
        if rng.random() < 0.05:
            j = int(rng.integers(0, len(energy)))
            energy[j] = offer.profiles[k].upper_kwh()[j] + 1.0
        elif rng.random() < 0.05:
            start = offer.start_before + step
        schedules.append(Schedule(offer.id, start, k, tuple(energy.tolist()), assigned_at=start_after - step))
        offers.append(offer)
    return offers, schedules


def _best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run_row(kind: str, n: int, subset: int, seed: int, repeat: int) -> RowResult:
    """Generate the row's offers and time both paths; raise if they disagree on the subset."""
    offers, schedules = generate(kind, n, np.random.default_rng([seed, ord(kind)]))
    m = min(subset, n)
    t0 = time.perf_counter()
    problems = [validate_offer(o) for o in offers[:m]]
    validate_object_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rules = [check_schedule(o, s) for o, s in zip(offers[:m], schedules[:m], strict=True)]
    check_object_s = time.perf_counter() - t0

    build_offers_s, batch = _best_time(lambda: OfferBatch.from_offers(offers), 1)
    build_schedules_s, sched = _best_time(lambda: ScheduleBatch.from_schedules(schedules, batch), 1)
    validate_s, masks = _best_time(lambda: validate_batch(batch), repeat)
    check_s, results = _best_time(lambda: check_schedules_batch(batch, sched), repeat)

    for i in range(m):
        expected = sum({RULE_BIT[p.rule] for p in rules[i]})
        if int(results[i]) != expected or bool(masks[i]) != bool(problems[i]):
            raise SystemExit(f"row {kind}, offer {i}: batch and per-object results disagree")
    return RowResult(
        kind=kind,
        validate_object_per_s=m / validate_object_s,
        validate_batch_per_s=n / validate_s,
        check_object_per_s=m / check_object_s,
        check_batch_per_s=n / check_s,
        build_offers_s=build_offers_s,
        build_schedules_s=build_schedules_s,
        n_steps=len(sched.energy_kwh),
        n_invalid=int(np.count_nonzero(masks)),
        n_infeasible=int(np.count_nonzero(results)),
    )


def _rate(x: float) -> str:
    return f"{x:>12,.0f}"


def print_table(results: list[RowResult], *, n: int, subset: int, seed: int) -> None:
    """The comparison table and the build times."""
    print(f"Flex-Offer validation and schedule checks: {n:,} offers of 4-96 steps, seed {seed}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cores (numpy on one), "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}"
    )
    print(f"per-object rates: measured on the first {min(subset, n):,} offers and extrapolated;")
    print(f"batch rates: all {n:,} offers, best of the repeats, batch building not included (see below)")
    print()
    head = f"{'row':<26}{'validations / s':^40}  {'schedule checks / s':^40}"
    sub = f"{'':<26}{'per-object':>12}{'batch':>14}{'speed-up':>14}  {'per-object':>12}{'batch':>14}{'speed-up':>14}"
    print(head)
    print(sub)
    print("-" * len(sub))
    for r in results:
        print(
            f"{KINDS[r.kind]:<26}{_rate(r.validate_object_per_s)}{_rate(r.validate_batch_per_s):>14}"
            f"{r.validate_batch_per_s / r.validate_object_per_s:>13.0f}x  "
            f"{_rate(r.check_object_per_s)}{_rate(r.check_batch_per_s):>14}"
            f"{r.check_batch_per_s / r.check_object_per_s:>13.0f}x"
        )
    print()
    print(f"{'row':<26}{'steps':>12}{'build offers s':>16}{'build schedules s':>19}{'invalid':>9}{'infeasible':>12}")
    for r in results:
        print(
            f"{KINDS[r.kind]:<26}{r.n_steps:>12,}{r.build_offers_s:>16.2f}{r.build_schedules_s:>19.2f}"
            f"{r.n_invalid:>9,}{r.n_infeasible:>12,}"
        )


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flexoffer", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="offers per row (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the numpy Generator (default 1)")
    parser.add_argument("--subset", type=int, default=5_000, help="offers timed on the per-object path")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each batch timing (best is kept)")
    parser.add_argument("--rows", default="abcd", help="row kinds to run, e.g. 'ad' (default abcd)")
    args = parser.parse_args(argv)
    results = [run_row(kind, args.n, args.subset, args.seed, args.repeat) for kind in args.rows]
    print_table(results, n=args.n, subset=args.subset, seed=args.seed)


if __name__ == "__main__":
    main()

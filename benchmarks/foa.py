"""Benchmark: Flex-Offer generation per load type, and one round for a population of devices.

Run from the repository root: `python -m benchmarks.foa [--n 100000] [--seed 1]`.

Part 1: for every load type registered at run time (`atp.foa.load_types()`), offers generated
per second by its per-device generator on `--sample` random states from this file's state
factories (`ev`, `heat_pump`); a load type without a factory is skipped with a note.

Part 2: one round of offers for `--n` mixed devices (half EVs, half heat pumps, one shared
context): the vectorised path (`atp.foa.population`) on all devices, and the per-device path
on a sample with its rate extrapolated to `--n`, side by side. The two paths must agree on the
sample, or the benchmark stops. The target is under 10 s for 100 000 devices on one core; the batch
path is single-threaded, and both its wall and CPU time are printed (the verdict uses the CPU
time, which a busy machine does not inflate).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np

from atp.flexoffer import Location, Mode
from atp.foa import EVState, GenerationContext, GenerationError, ThermalState, generator_for, load_types
from atp.foa.population import generate_ev_offers_batch, generate_heat_pump_offers_batch

NOW = datetime(2026, 1, 5, 18, 7, tzinfo=UTC)
TARGET_S = 10.0
_R = TypeVar("_R")


def ev_states(rng: np.random.Generator, n: int, now: datetime) -> list[EVState]:
    """Plugged-in EVs with a random battery, charger, state of charge, target and departure."""
    capacity = rng.uniform(20.0, 90.0, n)
    soc = rng.uniform(0.05, 0.8, n)
    target = np.minimum(1.0, soc + rng.uniform(0.05, 0.6, n))
    power = rng.choice([3.7, 7.4, 11.0, 22.0], n)
    departure_s = rng.integers(2 * 3600, 16 * 3600, n)
    return [
        EVState(
            plugged_in=True,
            now_energy_kwh=float(soc[i] * capacity[i]),
            capacity_kwh=float(capacity[i]),
            target_energy_kwh=float(target[i] * capacity[i]),
            departure=now + timedelta(seconds=int(departure_s[i])),
            max_power_kw=float(power[i]),
        )
        for i in range(n)
    ]


def heat_pump_states(rng: np.random.Generator, n: int, now: datetime) -> list[ThermalState]:
    """Heat pumps in RC buildings with a random band, thermostat and 17-step outdoor forecast."""
    cmin = rng.uniform(19.0, 21.0, n)
    width = rng.uniform(1.0, 3.0, n)
    outdoor = rng.uniform(-5.0, 10.0, (n, 1)) + rng.normal(0.0, 1.0, (n, 17))
    return [
        ThermalState(
            indoor_temp_c=float(cmin[i] + rng.uniform(0.0, width[i])),
            comfort_min_c=float(cmin[i]),
            comfort_max_c=float(cmin[i] + width[i]),
            setpoint_c=float(cmin[i] + width[i] / 2),
            deadband_c=float(width[i] / 2),
            r_k_per_kw=float(rng.uniform(3.0, 8.0)),
            c_kwh_per_k=float(rng.uniform(8.0, 15.0)),
            cop=float(rng.uniform(2.5, 4.0)),
            max_power_kw=float(rng.uniform(2.0, 6.0)),
            heat_on=bool(rng.random() < 0.5),
            outdoor_temp_forecast_c=tuple(outdoor[i].tolist()),
        )
        for i in range(n)
    ]


StateFactory = Callable[[np.random.Generator, int, datetime], list[Any]]
FACTORIES: dict[str, StateFactory] = {"ev": ev_states, "heat_pump": heat_pump_states}

# The other load types take their states from the world's device physics (sim/agents/kinds.py),
# drawn with these parameters, at NOW (wet appliances: at the moment the user presses start).
_KIND_PARAMS: dict[str, dict[str, Any]] = {
    "battery": {"capacity_kwh": [5.0, 15.0]},
    "pv": {"kwp": [3.0, 30.0]},
    "water_heater": {},
    "freezer": {"fridge_share": 0.5, "ambient_c": 21.0},
    "industrial": {"base_kw": [10.0, 50.0], "shift_kw": [20.0, 100.0]},
    "wet_appliance": {"dishwasher_share": 0.5},
}


def _generate_or_none(generator: Any, state: Any, ctx: GenerationContext) -> Any:
    """The offer, or None where the generator cannot model the device (as the FOA core does)."""
    try:
        return generator.generate(state, ctx)
    except GenerationError:
        return None


def kind_states(load_type: str, rng: np.random.Generator, n: int, now: datetime) -> list[tuple[Any, datetime]]:
    """(state, time of the context) for `n` devices of a world device kind."""
    from sim.agents.kinds import BuildContext, StepEnv, get_kind

    kind = get_kind(load_type)
    params = kind.check(_KIND_PARAMS[load_type], f"bench.{load_type}")
    ctx = BuildContext(start=now, days=2, utc_offset_s=0, slice_s=900)
    out: list[tuple[Any, datetime]] = []
    attempts = 0
    while len(out) < n and attempts < 20 * n:
        attempts += 1
        device = kind.build(rng, params, ctx)
        env_now = now
        if load_type == "wet_appliance":
            if not device.requests:
                continue
            env_now = device.requests[0].pressed_at - timedelta(seconds=1)
        env = StepEnv(
            k=0,
            window_k=0,
            now=env_now,
            slice_s=900,
            outdoor_c=5.0,
            outdoor_forecast_c=np.full(96, 5.0),
            pv_kwh_per_kwp=0.15,
            pv_forecast_kwh_per_kwp=np.full(96, 0.15),
        )
        out.append((kind.state(device, env), kind.context_time(device, env)))
    return out


def _context() -> GenerationContext:
    return GenerationContext(now=NOW, issuer="bench", location=Location(meter_id="M-0"), mode=Mode.DELEGATED)


def _per_device(load_type: str, states: list[Any], ctx: GenerationContext) -> tuple[list[Any], float, float]:
    """(offers, wall seconds, CPU seconds) of the load type's generator on `states`, one by one."""
    generator = generator_for(load_type)
    wall, cpu = time.perf_counter(), time.process_time()
    offers = [generator.generate(s, ctx) for s in states]
    return offers, time.perf_counter() - wall, time.process_time() - cpu


def per_load_type(rng: np.random.Generator, sample: int) -> None:
    """Part 1: the per-device generators' rates, one row per registered load type."""
    ctx = _context()
    print(f"{'load type':<16}{'devices':>10}{'offers':>10}{'offers/s':>14}")
    for load_type in load_types():
        factory = FACTORIES.get(load_type)
        if factory is not None:
            states = factory(rng, sample, NOW)
            offers, seconds, _ = _per_device(load_type, states, ctx)
        elif load_type in _KIND_PARAMS:
            pairs = kind_states(load_type, rng, sample, NOW)
            generator = generator_for(load_type)
            contexts = [dataclasses.replace(ctx, now=t) for _, t in pairs]
            wall = time.perf_counter()
            offers = [_generate_or_none(generator, state, c) for (state, _), c in zip(pairs, contexts, strict=True)]
            seconds = time.perf_counter() - wall
        else:
            print(f"{load_type:<16}  skipped: no state factory in benchmarks/foa.py")
            continue
        made = sum(o is not None for o in offers)
        print(f"{load_type:<16}{len(offers):>10}{made:>10}{made / seconds:>14,.0f}")


def _same(a: Any, b: Any) -> bool:
    if (a is None) or (b is None):
        return a is b
    pa, pb = a.profiles[0], b.profiles[0]
    same = (a.start_after, a.start_before, pa.n_steps) == (b.start_after, b.start_before, pb.n_steps)
    same = same and np.allclose(a.default_schedule.energy, b.default_schedule.energy, rtol=1e-9, atol=1e-9)
    if pa.polytope is not None or pb.polytope is not None:
        same = same and np.allclose(pa.polytope.b, pb.polytope.b, rtol=1e-9, atol=1e-9)
    return bool(same)


def _timed(call: Callable[..., _R], *args: Any) -> tuple[_R, float, float]:
    """(result, wall seconds, CPU seconds of this process) of `call(*args)`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def population_round(rng: np.random.Generator, n: int, sample: int) -> float:
    """Part 2: one round for `n` mixed devices, batch path against the per-device path."""
    ctx = _context()
    n_ev, n_hp = n // 2, n - n // 2
    t0 = time.perf_counter()
    evs, hps = ev_states(rng, n_ev, NOW), heat_pump_states(rng, n_hp, NOW)
    build_s = time.perf_counter() - t0

    k_ev, k_hp = min(sample, n_ev), min(sample, n_hp)
    ev_single, ev_single_s, ev_single_cpu_s = _per_device("ev", evs[:k_ev], ctx)
    hp_single, hp_single_s, hp_single_cpu_s = _per_device("heat_pump", hps[:k_hp], ctx)

    (ev_offers, ev_s, ev_cpu_s) = _timed(generate_ev_offers_batch, evs, ctx)
    (hp_offers, hp_s, hp_cpu_s) = _timed(generate_heat_pump_offers_batch, hps, ctx)
    batch_s, batch_cpu_s = ev_s + hp_s, ev_cpu_s + hp_cpu_s

    pairs = list(zip(ev_offers[:k_ev], ev_single, strict=True)) + list(zip(hp_offers[:k_hp], hp_single, strict=True))
    if not all(_same(a, b) for a, b in pairs):
        sys.exit("the batch and per-device paths disagree on the sample: stopping")
    ev_x = ev_single_s / max(k_ev, 1) * n_ev
    hp_x = hp_single_s / max(k_hp, 1) * n_hp
    per_device_s = ev_x + hp_x
    per_device_cpu_s = ev_single_cpu_s / max(k_ev, 1) * n_ev + hp_single_cpu_s / max(k_hp, 1) * n_hp

    made = sum(o is not None for o in ev_offers) + sum(o is not None for o in hp_offers)
    print(f"\npopulation: {n_ev} EVs + {n_hp} heat pumps, one round ({made} offers); states built in {build_s:.2f} s")
    print(f"{'path':<46}{'ev s':>8}{'heat pump s':>13}{'total s':>9}{'CPU s':>8}{'devices/s':>11}")
    print(
        f"{'vectorised (atp.foa.population)':<46}{ev_s:>8.2f}{hp_s:>13.2f}{batch_s:>9.2f}"
        f"{batch_cpu_s:>8.2f}{n / batch_s:>11,.0f}"
    )
    label = f"per device ({k_ev}+{k_hp} sampled, extrapolated)"
    print(f"{label:<46}{ev_x:>8.2f}{hp_x:>13.2f}{per_device_s:>9.2f}{per_device_cpu_s:>8.2f}{n / per_device_s:>11,.0f}")
    verdict = "met" if batch_cpu_s < TARGET_S else "MISSED"
    print(
        f"target: {n} devices in under {TARGET_S:g} s on one core: {verdict} "
        f"({batch_cpu_s:.2f} s CPU, {batch_s:.2f} s wall; the two differ on a busy machine)"
    )
    return batch_cpu_s


def main(argv: list[str] | None = None) -> None:
    """Parse the options and print both tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.foa", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="devices in the population round (default 100000)")
    parser.add_argument("--sample", type=int, default=2000, help="devices per per-device measurement (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, {os.cpu_count()} CPUs")
    rng = np.random.default_rng(args.seed)
    per_load_type(rng, args.sample)
    population_round(rng, args.n, args.sample)


if __name__ == "__main__":
    main()

"""The DSO strategies in the world, over seeds: grid-aware planning relieves the grid, the
market-based strategies come close to the oracle's bound, and the ATP makes no overload of its own.

Short runs of the moderately congested ESR variant across the winter evening peak (six hours,
with six hours of warm-up and tail), every strategy and seed run once for all asserts
(module-scoped). The figures of full days on both ESR variants are in scenarios/esr/README.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.grid import branch_loadings
from sim.kpi import compute_kpis
from sim.world import World
from tests.test_grid import config_for

SHORT = (
    "sim.days=0.25",
    "sim.start=2026-01-12T15:00:00Z",
    "sim.warmup_s=21600",
    "sim.tail_s=21600",
    "output.report=false",
)
SEEDS = (42, 1, 2)
STRATEGIES = ("no_flex", "aggregator_only", "local_market", "dynamic_tariff")


@pytest.fixture(scope="module")
def moderate():
    """(world, kpis) per (seed, strategy) on esr_moderate."""
    out = {}
    for seed in SEEDS:
        for strategy in STRATEGIES:
            world = World(config_for("scenario=esr_moderate", *SHORT, f"sim.seed={seed}", f"dso.strategy={strategy}"))
            world.run()
            out[(seed, strategy)] = (world, compute_kpis(world))
    return out


def _overload_kwh(kpis) -> float:
    return kpis["grid"]["overload_energy_kwh"]


def _overloaded(world) -> np.ndarray:
    """Per counted step (the window and its tail), whether a line or the transformer is over its limit."""
    loading = np.nan_to_num(branch_loadings(world.flows.window(world.counted)))
    return (loading > world.grid_limits.max_loading_percent).any(axis=1)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_case_is_congested_and_the_oracle_can_remove_it(moderate, seed):
    _, kpis = moderate[(seed, "no_flex")]
    assert _overload_kwh(kpis) > 20.0
    assert kpis["grid"]["oracle"]["overload_energy_kwh"] < 0.05 * _overload_kwh(kpis)


@pytest.mark.parametrize("seed", SEEDS)
def test_grid_aware_planning_beats_the_aggregator_alone(moderate, seed):
    alone = _overload_kwh(moderate[(seed, "aggregator_only")][1])
    for strategy in ("local_market", "dynamic_tariff"):
        assert _overload_kwh(moderate[(seed, strategy)][1]) < alone, strategy


@pytest.mark.parametrize("seed", SEEDS)
def test_the_best_market_based_strategy_comes_close_to_the_oracle(moderate, seed):
    no_flex = moderate[(seed, "no_flex")][1]
    reference, bound = _overload_kwh(no_flex), no_flex["grid"]["oracle"]["overload_energy_kwh"]
    relief = {
        s: (reference - _overload_kwh(moderate[(seed, s)][1])) / (reference - bound)
        for s in ("local_market", "dynamic_tariff")
    }
    assert max(relief.values()) >= 0.8, relief


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("strategy", ["local_market", "dynamic_tariff"])
def test_the_atp_makes_no_overload_of_its_own(moderate, seed, strategy):
    """No counted step (window and tail) that is within its limits without flexibility goes over
    a limit with grid-aware planning: also not in the tail, when the FOAs have made their last
    offers and the devices return to their own control (staggered, `sim.agents.kinds.block_phase`)."""
    reference = _overloaded(moderate[(seed, "no_flex")][0])
    world, kpis = moderate[(seed, strategy)]
    new = _overloaded(world) & ~reference
    assert not new.any(), world.times[world.counted][new]
    assert world.dso.published and world.aggregator.grid_capacity  # the FMAN planned within them
    assert kpis["dso"]["energy_not_delivered_kwh"] >= 0

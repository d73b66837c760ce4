"""Many-to-many clearing speed: the direct highspy matrix against a plain Pyomo model.

    python -m benchmarks.fmar                         # 1 000, 10 000 and 50 000 bids over 96 steps
    python -m benchmarks.fmar --sizes 1000 10000 --baseline-max-bids 10000 --seed 3

Random markets (`random_market`): sell bids of 1-8 steps in 5 zones (a default zone and four
congestion points linked to it and in a ring, with fees and capacities): 60 % divisible boxes,
20 % time-flexible (3 start times, all or nothing once shifted), 10 % indivisible blocks,
10 % with a minimum activation; one buyer per 200 sellers asking for upward or downward
regulation over the whole day. For each size the fast path (`clear_many_to_many`: model
build = the vectorised matrix and `passModel`, solve = HiGHS, one MILP under pay-as-bid) and
the plain baseline (a Pyomo ConcreteModel built term by term, solved by HiGHS through
`appsi_highs`) clear the same problem; their welfares must agree within the MIP gap. Uniform
pricing (MILP, the LP with the options fixed, re-solves after removing paradoxical bids) is
timed as well. The baseline is skipped above `--baseline-max-bids` and given
`--baseline-time-limit` seconds for its solve; both are said in the table.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

import numpy as np

from atp.fmar import BuyBid, MarketProblem, SellBid, SellOption, TransportLink, clear_many_to_many
from atp.fmar.market_problem import EPS_KWH

ZONES = ("", "cp-1", "cp-2", "cp-3", "cp-4")


def random_market(n_bids: int, *, n_steps: int = 96, seed: int = 1) -> MarketProblem:
    """A reproducible random many-to-many market of `n_bids` sell bids (see module docstring)."""
    rng = np.random.default_rng(seed)
    sell = []
    kinds = rng.choice(4, size=n_bids, p=[0.6, 0.2, 0.1, 0.1])
    durations = rng.integers(1, 9, size=n_bids)
    firsts = rng.integers(0, n_steps - durations + 1)
    zones = rng.integers(0, len(ZONES), size=n_bids)
    prices = np.round(rng.uniform(0.02, 0.30, size=n_bids), 4)
    for k in range(n_bids):
        d, first, kind = int(durations[k]), int(firsts[k]), int(kinds[k])
        down = np.round(rng.uniform(0.0, 2.0, d), 3)
        up = np.round(rng.uniform(0.2, 3.0, d), 3)
        min_kwh = 0.0
        if kind == 1:  # time flexible: the default energy moves with the start
            ref = up.copy()
            options = []
            for shift in (0, -2, 2):
                s = first + shift
                if s < 0 or s + d > n_steps:
                    continue
                lo_s, hi_s = min(s, first), max(s, first) + d
                base = np.zeros(hi_s - lo_s)
                base[first - lo_s : first - lo_s + d] = ref
                e_lo, e_hi = np.zeros_like(base), np.zeros_like(base)
                e_lo[s - lo_s : s - lo_s + d] = 0.0
                e_hi[s - lo_s : s - lo_s + d] = ref + down
                options.append(SellOption(lo_s, tuple(e_lo - base), tuple(e_hi - base)))
        elif kind == 2:  # indivisible block of upward regulation
            options = [SellOption(first, tuple(-up), tuple(-up))]
        else:
            options = [SellOption(first, tuple(-up), tuple(down))]
            if kind == 3:
                min_kwh = round(0.3 * float(up.sum()), 3)
        sell.append(SellBid(f"s{k}", ZONES[zones[k]], float(prices[k]), tuple(options), min_kwh))
    n_buy = max(4, n_bids // 200)
    supply_per_step = n_bids * 4.5 * 1.6 / n_steps
    buy = []
    for b in range(n_buy):
        sign = -1.0 if b % 3 else 1.0
        volume = sign * np.round(rng.uniform(0.1, 0.6, n_steps) * supply_per_step / n_buy, 3)
        zone = ZONES[0] if b % 2 == 0 else ZONES[1 + b % 4]
        buy.append(BuyBid(f"b{b}", zone, float(np.round(rng.uniform(0.1, 0.4), 3)), 0, tuple(volume)))
    cap = supply_per_step / 8
    links = []
    for i, z in enumerate(ZONES[1:]):
        nxt = ZONES[1 + (i + 1) % 4]
        links += [
            TransportLink(z, "", 0.01, cap),
            TransportLink("", z, 0.01, cap),
            TransportLink(z, nxt, 0.02, cap / 2),
        ]
    return MarketProblem.from_bids(sell, buy, n_steps=n_steps, links=links)


def plain_pyomo(problem: MarketProblem, *, time_limit_s: float, mip_rel_gap: float) -> tuple[float, float, float]:
    """Build the same MILP as a Pyomo ConcreteModel, term by term, and solve it with HiGHS.

    Returns (build_s, solve_s, welfare_eur); welfare is NaN without a solution.
    """
    import pyomo.environ as pyo
    from pyomo.contrib.appsi.solvers import Highs

    t0 = time.perf_counter()
    p = problem
    n_t = p.n_steps
    binary = p.binary_bids()
    m = pyo.ConcreteModel()
    n_e, n_y, n_l = p.n_entries, len(p.buy_step), len(p.links)
    m.up = pyo.Var(range(n_e), within=pyo.NonNegativeReals)
    m.down = pyo.Var(range(n_e), within=pyo.NonNegativeReals)
    m.y = pyo.Var(range(n_y), within=pyo.NonNegativeReals)
    m.f = pyo.Var(range(n_l), range(n_t), range(2), within=pyo.NonNegativeReals)
    u_options = [o for k in range(p.n_sell) if binary[k] for o in range(p.opt_seg[k], p.opt_seg[k + 1])]
    m.u = pyo.Var(u_options, within=pyo.Binary)
    m.c = pyo.ConstraintList()
    owner_of_option = {}
    for k in range(p.n_sell):
        for o in range(p.opt_seg[k], p.opt_seg[k + 1]):
            owner_of_option[o] = k
    supply: dict[tuple[int, int, int], list] = defaultdict(list)
    objective = 0
    for o in range(p.n_options):
        k = owner_of_option[o]
        zone, price = int(p.sell_zone[k]), float(p.sell_price_eur_per_kwh[k])
        total = 0
        for j in range(p.ent_seg[o], p.ent_seg[o + 1]):
            lo, hi, t = float(p.ent_lower_kwh[j]), float(p.ent_upper_kwh[j]), int(p.ent_step[j])
            if binary[k]:
                m.c.add(m.up[j] <= max(-lo, 0.0) * m.u[o])
                m.c.add(m.up[j] >= max(-hi, 0.0) * m.u[o])
                m.c.add(m.down[j] <= max(hi, 0.0) * m.u[o])
                m.c.add(m.down[j] >= max(lo, 0.0) * m.u[o])
            else:
                m.up[j].setub(max(-lo, 0.0))
                m.down[j].setub(max(hi, 0.0))
            supply[zone, t, 0].append(m.up[j])
            supply[zone, t, 1].append(m.down[j])
            objective += price * (m.up[j] + m.down[j])
            total += m.up[j] + m.down[j]
        if binary[k] and p.sell_min_kwh[k] > EPS_KWH:
            m.c.add(total >= float(p.sell_min_kwh[k]) * m.u[o])
    for k in range(p.n_sell):
        if binary[k] and p.opt_seg[k + 1] - p.opt_seg[k] > 1:
            m.c.add(sum(m.u[o] for o in range(p.opt_seg[k], p.opt_seg[k + 1])) <= 1)
    demand: dict[tuple[int, int, int], list] = defaultdict(list)
    for b in range(p.n_buy):
        for i in range(p.buy_seg[b], p.buy_seg[b + 1]):
            v = float(p.buy_volume_kwh[i])
            m.y[i].setub(abs(v))
            demand[int(p.buy_zone[b]), int(p.buy_step[i]), 0 if v < 0 else 1].append(m.y[i])
            objective -= float(p.buy_limit_eur_per_kwh[b]) * m.y[i]
    inflow: dict[tuple[int, int, int], list] = defaultdict(list)
    outflow: dict[tuple[int, int, int], list] = defaultdict(list)
    for li in range(n_l):
        fee, cap = float(p.link_fee_eur_per_kwh[li]), float(p.link_capacity_kwh[li])
        for t in range(n_t):
            for q in range(2):
                inflow[int(p.link_to[li]), t, q].append(m.f[li, t, q])
                outflow[int(p.link_from[li]), t, q].append(m.f[li, t, q])
                objective += fee * m.f[li, t, q]
            if math.isfinite(cap):
                m.c.add(m.f[li, t, 0] + m.f[li, t, 1] <= cap)
    for key in set(supply) | set(demand) | set(inflow) | set(outflow):
        m.c.add(sum(supply[key]) - sum(demand[key]) + sum(inflow[key]) - sum(outflow[key]) == 0)
    m.obj = pyo.Objective(expr=objective, sense=pyo.minimize)
    build_s = time.perf_counter() - t0
    solver = Highs()  # the solver behind SolverFactory("appsi_highs"), with its own result object
    solver.config.time_limit = time_limit_s
    solver.config.mip_gap = mip_rel_gap
    solver.config.load_solution = False
    solver.highs_options = {"threads": 1, "random_seed": 0}
    t1 = time.perf_counter()
    result = solver.solve(m)
    solve_s = time.perf_counter() - t1
    best = result.best_feasible_objective
    return build_s, solve_s, (-float(best) if best is not None else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000], help="numbers of sell bids")
    parser.add_argument("--steps", type=int, default=96, help="market steps (default 96)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mip-gap", type=float, default=1e-4, help="relative MIP gap of both paths")
    parser.add_argument("--time-limit", type=float, default=300.0, help="solver time limit of the fast path, s")
    parser.add_argument("--baseline-max-bids", type=int, default=50_000, help="skip the Pyomo baseline above this")
    parser.add_argument("--baseline-time-limit", type=float, default=600.0, help="solve time limit of the baseline")
    args = parser.parse_args()

    head = (
        f"{'bids':>7} {'in LP':>7} {'cols':>8} {'binaries':>8} "
        f"{'pack s':>7} {'build s':>8} {'solve s':>8} {'total s':>8} "
        f"{'welfare EUR':>12} | {'uniform s':>9} {'rounds':>6} {'removed':>7} | "
        f"{'pyomo build s':>13} {'pyomo solve s':>13} {'pyomo total s':>13} {'welfare EUR':>12} {'speedup':>7}"
    )
    print(f"many-to-many clearing, {args.steps} steps, seed {args.seed}, MIP gap {args.mip_gap:g}, 1 thread")
    print(head)
    print("-" * len(head))
    for n in args.sizes:
        t0 = time.perf_counter()
        problem = random_market(n, n_steps=args.steps, seed=args.seed)
        pack_s = time.perf_counter() - t0
        fast = clear_many_to_many(problem, pricing="pay_as_bid", time_limit_s=args.time_limit, mip_rel_gap=args.mip_gap)
        uniform = clear_many_to_many(problem, pricing="uniform", time_limit_s=args.time_limit, mip_rel_gap=args.mip_gap)
        n_bin = int(sum(np.diff(problem.opt_seg)[problem.binary_bids()]))
        n_cols = 2 * problem.n_entries + len(problem.buy_step) + len(problem.links) * args.steps * 2 + n_bin
        total = fast.build_s + fast.solve_s
        line = (
            f"{n:>7} {fast.bids_in_lp:>7} {n_cols:>8} {n_bin:>8} "
            f"{pack_s:>7.2f} {fast.build_s:>8.2f} {fast.solve_s:>8.2f} {total:>8.2f} "
            f"{fast.welfare_eur:>12.2f} | {uniform.build_s + uniform.solve_s:>9.2f} {uniform.rounds:>6} "
            f"{len(uniform.removed):>7} | "
        )
        if n <= args.baseline_max_bids:
            b_build, b_solve, b_welfare = plain_pyomo(
                problem, time_limit_s=args.baseline_time_limit, mip_rel_gap=args.mip_gap
            )
            capped = "*" if b_solve >= args.baseline_time_limit else " "
            line += (
                f"{b_build:>13.2f} {b_solve:>12.2f}{capped} {b_build + b_solve:>13.2f} {b_welfare:>12.2f} "
                f"{(b_build + b_solve) / total:>6.1f}x"
            )
        else:
            line += f"{'skipped (--baseline-max-bids)':>55}"
        print(line, flush=True)
    print("in LP = sell bids the fast path's LP held (the others priced out); cols, binaries: the whole MILP")
    print("build = matrix + passModel (fast) or ConcreteModel (Pyomo); solve = HiGHS (Pyomo: incl. translation);")
    print("uniform = MILP, pricing LP with options fixed and re-solves without paradoxical bids; * = time limit hit")


if __name__ == "__main__":
    main()

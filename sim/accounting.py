"""Energy accounting of a run: the flexible devices against their uncontrolled twins.

Every figure here covers the steps the KPIs count (`World.counted`: the reporting window and
the tail after it, see docs/outputs.md "Periods"), so a service that starts in the window is
counted to its end, for the devices and for their twins alike. Definitions (energy in kWh,
money in EUR at the day-ahead price of each step):

- `uncontrolled_kwh`: what the twin of each device drew (the same device, same weather, same
  users, without the ATP). `baseline_in_force_kwh`: the default schedule in force per device
  and step (the newest offer's declared baseline; the metered energy where no offer covers the
  step). `metered_kwh`: what the device really drew.
- savings `total_eur` = sum over steps of price x (uncontrolled - metered);
  `volume_kwh` = uncontrolled - metered energy (energy not drawn, + = less consumed);
  `volume_eur` = volume_kwh x the uncontrolled energy's mean price (what that energy would have
  cost); `shift_eur` = total - volume (the value of drawing the same energy at other times).
  Site figures are the sums over device types, so shift + volume = total per type and in all.
- terminal state: stored energy of the devices minus that of their twins at the end of the run
  (`DeviceKind.stored_kwh`): battery charge and plugged-in EVs in electric kWh, thermal stores
  as heat (kWh), industrial backlogs negative. A negative value means the run left its devices
  with less stored than the twins: part of the volume is then a debt, not a saving.
- comfort: per type the count of limit violations and their size (`DeviceKind.comfort_gap`:
  kWh short at EV departure, degree-hours outside the band), for the devices and their twins.
- aggregation: the flexibility the member offers of the aggregates the FMAN planned or bid
  had on their own against what they kept inside their aggregates (`atp.fman.member_losses`:
  each member offer once, in the last aggregate that held it). Energy flexibility in kWh (sum
  of per-step ranges), time flexibility in steps (allowed start shifts), area in kWh x steps
  (Valsomatzis et al. 2015; atp/fman/flexloss.py). Members that keep their profile (joint
  constraints a box would cut, `fman.aggregation.min_box_share`) are counted apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.world import World

__all__ = ["aggregation_section", "comfort_section", "energy_section", "savings_section", "terminal_state_section"]


def _r(x: float, digits: int = 6) -> float:
    return float(round(float(x), digits))


def _share(value: float, reference: float) -> float | None:
    """(value - reference) / reference, None when the reference is 0."""
    return _r(value / reference - 1.0) if abs(reference) > 1e-9 else None


def energy_section(world: World) -> dict[str, Any]:
    """Site energies and, per device type, metered vs baseline in force vs uncontrolled twin."""
    c = world.counted
    metered = world.metered_kwh[c]
    uncontrolled = world.counterfactual_kwh[c]
    in_force = world.baseline_kwh[c]
    nonflex = world.nonflex_kwh[c].sum(axis=1)
    pv = world.pv_kwh[c].sum(axis=1)
    by_device = {}
    for d, device in enumerate(world.device_types):
        m, u, b = metered[:, :, d].sum(), uncontrolled[:, :, d].sum(), in_force[:, :, d].sum()
        by_device[device] = {
            "metered_kwh": _r(m),
            "uncontrolled_kwh": _r(u),
            "baseline_in_force_kwh": _r(b),
            "metered_vs_uncontrolled_share": _share(m, u),
            "baseline_vs_uncontrolled_share": _share(b, u),
        }
    m_all, u_all = metered.sum(), uncontrolled.sum()
    per_step_m, per_step_u = metered.sum(axis=(1, 2)), uncontrolled.sum(axis=(1, 2))
    return {
        "counted_steps": len(per_step_m),
        "nonflexible_kwh": _r(nonflex.sum()),
        "pv_kwh": _r(pv.sum()),
        "flexible_metered_kwh": _r(m_all),
        "flexible_uncontrolled_kwh": _r(u_all),
        "flexible_baseline_in_force_kwh": _r(in_force.sum()),
        "flexible_scheduled_kwh": _r(world.scheduled_kwh[c].sum()),
        "flexible_metered_vs_uncontrolled_share": _share(m_all, u_all),
        # the energy moved between steps: half the sum of |metered - uncontrolled| per step
        "flexible_energy_shifted_kwh": _r(np.abs(per_step_m - per_step_u).sum() / 2),
        "site_net_kwh": _r((nonflex - pv + per_step_m).sum()),
        "site_net_uncontrolled_kwh": _r((nonflex - pv + per_step_u).sum()),
        "by_device": by_device,
    }


def savings_section(world: World) -> dict[str, Any]:
    """Savings of the flexible devices against their twins, split into shift and volume."""
    c = world.counted
    prices = world.prices.to_numpy(dtype=float)[: world.n_steps][c]
    by_device = {}
    totals = {"total_eur": 0.0, "shift_eur": 0.0, "volume_eur": 0.0, "volume_kwh": 0.0}
    for d, device in enumerate(world.device_types):
        m = world.metered_kwh[c][:, :, d].sum(axis=1)
        u = world.counterfactual_kwh[c][:, :, d].sum(axis=1)
        total = float(prices @ (u - m))
        volume_kwh = float(u.sum() - m.sum())
        mean_price = float(prices @ u / u.sum()) if abs(u.sum()) > 1e-9 else float(prices.mean())
        volume = volume_kwh * mean_price
        row = {"total_eur": total, "shift_eur": total - volume, "volume_eur": volume, "volume_kwh": volume_kwh}
        by_device[device] = {key: _r(v) for key, v in row.items()}
        for key, v in row.items():
            totals[key] += v
    return {
        **{key: _r(v) for key, v in totals.items()},
        "uncontrolled_cost_eur": _r(float(prices @ world.counterfactual_kwh[c].sum(axis=(1, 2)))),
        "metered_cost_eur": _r(float(prices @ world.metered_kwh[c].sum(axis=(1, 2)))),
        "by_device": by_device,
        "note": "a valuation against the uncontrolled twins at the day-ahead price, not cash (see money)",
    }


def terminal_state_section(world: World) -> dict[str, float]:
    """Per device type: stored kWh of the devices minus their twins' at the end of the run."""
    end = world.clock.step_start(world.n_steps)
    out = dict.fromkeys(world.device_types, 0.0)
    for p in world.prosumers:
        for load_type, device in p.devices.items():
            kind = p.kinds[load_type]
            out[load_type] += kind.stored_kwh(device, end) - kind.stored_kwh(p.shadow[load_type], end)
    return {f"{device}_kwh": _r(v) for device, v in out.items()}


def comfort_section(world: World) -> dict[str, Any]:
    """Per device type over the counted steps: limit violations and their size, devices and twins."""
    start = world.clock.step_start(world.counted.start)
    end = world.clock.step_start(world.n_steps)
    by_device: dict[str, Any] = {}
    for device_type in world.device_types:
        owners = [p for p in world.prosumers if device_type in p.devices]
        if not owners:
            continue
        kind = owners[0].kinds[device_type]
        entry: dict[str, Any] = {
            "violations": sum(kind.limit_violations(p.devices[device_type], start=start, end=end) for p in owners),
            "uncontrolled_violations": sum(
                kind.limit_violations(p.shadow[device_type], start=start, end=end) for p in owners
            ),
        }
        if kind.comfort_unit is not None:
            gap = sum(
                kind.comfort_gap(p.devices[device_type], start=start, end=end, slice_s=world.slice_s) for p in owners
            )
            twin = sum(
                kind.comfort_gap(p.shadow[device_type], start=start, end=end, slice_s=world.slice_s) for p in owners
            )
            entry.update({"unit": kind.comfort_unit, "gap": _r(gap), "uncontrolled_gap": _r(twin)})
        by_device[device_type] = entry
    return by_device


def aggregation_section(world: World) -> dict[str, Any]:
    """Flexibility lost by aggregation, site-wide and per device type (module docstring)."""
    losses = world.aggregator.member_losses()

    def figures(rows: list) -> dict[str, Any]:
        offered = sum(r.original.energy_kwh for r in rows)
        lost = sum(r.loss.energy_kwh for r in rows)
        return {
            "members": len(rows),
            "members_keeping_profile": sum(1 for r in rows if r.keeps_profile),
            "energy_flexibility_offered_kwh": _r(offered),
            "energy_flexibility_lost_kwh": _r(lost),
            "energy_flexibility_lost_share": _r(lost / offered) if offered > 1e-9 else 0.0,
            "time_flexibility_offered_steps": sum(r.original.time_steps for r in rows),
            "time_flexibility_lost_steps": sum(r.loss.time_steps for r in rows),
            "area_flexibility_lost_kwh_steps": _r(sum(r.loss.area_kwh_steps for r in rows)),
        }

    devices = sorted({r.device for r in losses})
    return {
        "aggregates": len(world.aggregator.aggregate_offers()),
        **figures(losses),
        "by_device": {d: figures([r for r in losses if r.device == d]) for d in devices},
    }

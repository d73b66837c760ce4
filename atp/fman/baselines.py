"""Baselines and adaptation evaluation in the KIBERnet way (F2.FMAN3, D2.1 7.4).

A *characteristic baseline* is the consumption a prosumer would have had without activation,
estimated from past measurements of similar days (same weekday type, no activation):

- `"mean_of_similar_days"`: the per-step mean of the last `n_days` similar days;
- `"median_of_similar_days"`: the per-step median of the same days (robust to outliers);
- `"high_x_of_y"`: of the last `n_days` days, the `high_days` with the highest daily energy,
  averaged per step (the US-style "high X of Y" baseline).

Optionally a *day-of adjustment* scales the baseline by observed / baseline energy over
steps of the event day before the activation (`adjustment_steps`), capped to
1 +- `adjustment_cap_share`.

The adaptation is metered minus baseline per step (positive = more consumption than the
baseline). Main-meter evaluations are validated against sub-meter data of the flexible load
with `validate_against_submeter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atp.fman.errors import FmanError

__all__ = [
    "BASELINE_METHODS",
    "BaselineError",
    "SubmeterCheck",
    "adaptation_kwh",
    "characteristic_baseline",
    "validate_against_submeter",
]

BASELINE_METHODS = ("mean_of_similar_days", "median_of_similar_days", "high_x_of_y")


class BaselineError(FmanError):
    """Measurements or options a baseline or adaptation evaluation cannot use; says why."""


def _finite(name: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise BaselineError(f"{name} contains NaN or infinite values; fill or drop those steps first")


def characteristic_baseline(
    history_kwh: np.ndarray,
    *,
    method: str = "mean_of_similar_days",
    n_days: int = 10,
    high_days: int | None = None,
    day_of_kwh: np.ndarray | None = None,
    adjustment_steps: slice | None = None,
    adjustment_cap_share: float = 0.2,
) -> np.ndarray:
    """Characteristic consumption per step (kWh) from `history_kwh` of shape (days, steps_per_day).

    Rows are similar days, oldest first; the last `n_days` (or all, if fewer) are used.
    `high_days` is the X of "high X of Y" (default: half of the days used, at least one).
    With `day_of_kwh` (the event day's metered steps) and `adjustment_steps` (the steps before
    the activation, e.g. `slice(0, 16)`), the baseline is scaled by the capped day-of factor.
    """
    history = np.asarray(history_kwh, dtype=float)
    if history.ndim != 2 or history.shape[0] == 0 or history.shape[1] == 0:
        raise BaselineError(f"history_kwh must have shape (days >= 1, steps_per_day >= 1), got {history.shape}")
    _finite("history_kwh", history)
    if n_days < 1:
        raise BaselineError(f"n_days(={n_days}) must be >= 1")
    if method not in BASELINE_METHODS:
        raise BaselineError(f"method {method!r} is not known; use one of {list(BASELINE_METHODS)}")
    days = history[-n_days:]
    if method == "mean_of_similar_days":
        baseline = days.mean(axis=0)
    elif method == "median_of_similar_days":
        baseline = np.median(days, axis=0)
    else:
        x = max(1, days.shape[0] // 2) if high_days is None else high_days
        if not 1 <= x <= days.shape[0]:
            raise BaselineError(f"high_days(={x}) must lie in 1..{days.shape[0]} (the days used)")
        # Stable sort: among days of equal energy the most recent ones win.
        order = np.argsort(-days.sum(axis=1)[::-1], kind="stable")[:x]
        baseline = days[::-1][order].mean(axis=0)
    if day_of_kwh is None and adjustment_steps is None:
        return baseline
    if day_of_kwh is None or adjustment_steps is None:
        raise BaselineError("a day-of adjustment needs both day_of_kwh and adjustment_steps")
    day_of = np.asarray(day_of_kwh, dtype=float)
    if day_of.shape != baseline.shape:
        raise BaselineError(f"day_of_kwh must have shape {baseline.shape} (steps_per_day), got {day_of.shape}")
    if not 0 <= adjustment_cap_share <= 1:
        raise BaselineError(f"adjustment_cap_share(={adjustment_cap_share}) must lie in [0, 1] (e.g. 0.2)")
    observed = day_of[adjustment_steps]
    _finite("day_of_kwh[adjustment_steps]", observed)
    expected = float(baseline[adjustment_steps].sum())
    if observed.size == 0 or abs(expected) < 1e-12:
        return baseline
    factor = float(np.clip(observed.sum() / expected, 1 - adjustment_cap_share, 1 + adjustment_cap_share))
    return baseline * factor


def adaptation_kwh(baseline_kwh: np.ndarray, metered_kwh: np.ndarray) -> np.ndarray:
    """Per-step adaptation, metered minus baseline (kWh; positive = more consumption)."""
    baseline = np.asarray(baseline_kwh, dtype=float)
    metered = np.asarray(metered_kwh, dtype=float)
    if baseline.shape != metered.shape:
        raise BaselineError(f"baseline_kwh {baseline.shape} and metered_kwh {metered.shape} must have the same shape")
    _finite("baseline_kwh", baseline)
    _finite("metered_kwh", metered)
    return metered - baseline


@dataclass(frozen=True)
class SubmeterCheck:
    """Agreement of main-meter and sub-meter energies, per step and in total.

    A step agrees when |main - sub| <= tolerance_share * |sub| + tolerance_kwh; the total
    agrees when |sum main - sum sub| <= tolerance_share * sum |sub| + tolerance_kwh.
    """

    deviation_kwh: np.ndarray
    step_ok: np.ndarray
    total_deviation_kwh: float
    total_ok: bool
    worst_step: int
    worst_deviation_kwh: float
    passed: bool


def validate_against_submeter(
    main_meter_kwh: np.ndarray,
    submeter_kwh: np.ndarray,
    *,
    tolerance_share: float,
    tolerance_kwh: float = 1e-6,
) -> SubmeterCheck:
    """Check main-meter energies (or adaptations) against sub-meter data of the flexible load.

    Passes when every step and the total agree within the tolerance (see `SubmeterCheck`).
    The worst step is the one with the largest absolute deviation (first such step).
    """
    main = np.asarray(main_meter_kwh, dtype=float)
    sub = np.asarray(submeter_kwh, dtype=float)
    if main.ndim != 1 or main.shape != sub.shape or main.size == 0:
        raise BaselineError(
            f"main_meter_kwh {main.shape} and submeter_kwh {sub.shape} must be non-empty 1-d arrays of one length"
        )
    _finite("main_meter_kwh", main)
    _finite("submeter_kwh", sub)
    if not 0 <= tolerance_share <= 1:
        raise BaselineError(f"tolerance_share(={tolerance_share}) must lie in [0, 1] (e.g. 0.05 for 5 %)")
    if tolerance_kwh < 0:
        raise BaselineError(f"tolerance_kwh(={tolerance_kwh}) must be >= 0")
    deviation = main - sub
    step_ok = np.abs(deviation) <= tolerance_share * np.abs(sub) + tolerance_kwh
    total_deviation = float(deviation.sum())
    total_ok = abs(total_deviation) <= tolerance_share * float(np.abs(sub).sum()) + tolerance_kwh
    worst = int(np.argmax(np.abs(deviation)))
    return SubmeterCheck(
        deviation_kwh=deviation,
        step_ok=step_ok,
        total_deviation_kwh=total_deviation,
        total_ok=bool(total_ok),
        worst_step=worst,
        worst_deviation_kwh=float(deviation[worst]),
        passed=bool(step_ok.all() and total_ok),
    )

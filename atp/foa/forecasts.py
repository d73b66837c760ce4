"""What an FOA reads from the external-data interface (atp.data) to build its devices' states:
the outdoor temperature forecast of a heat pump's building, the production forecast of a PV
system, a meter's readings.

Each function takes any `DataSource` (files, HTTP or in-process), so the same FOA makes the
same offers whichever system holds the data.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from atp.data import DataSource
from atp.foa.generator import GenerationContext

__all__ = ["meter_readings_kwh", "outdoor_forecast_c", "pv_forecast_kwh"]


def outdoor_forecast_c(source: DataSource, ctx: GenerationContext, n_steps: int) -> tuple[float, ...]:
    """`ThermalState.outdoor_temp_forecast_c`: the step in progress (from now to the first grid
    boundary), then `n_steps` whole steps."""
    step_now = ctx.first_start - timedelta(seconds=ctx.slice_s)
    end = ctx.first_start + timedelta(seconds=ctx.slice_s * n_steps)
    return tuple(source.series("outdoor_temp_c", step_now, end, slice_s=ctx.slice_s).values.tolist())


def pv_forecast_kwh(source: DataSource, ctx: GenerationContext, kwp: float, n_steps: int) -> tuple[float, ...]:
    """`PvState.forecast_kwh`: the production potential (<= 0 kWh) of `kwp` over the `n_steps`
    whole steps from the first grid boundary after now."""
    end = ctx.first_start + timedelta(seconds=ctx.slice_s * n_steps)
    per_kwp = source.series("pv_kwh_per_kwp", ctx.first_start, end, slice_s=ctx.slice_s).values
    return tuple((-kwp * per_kwp).tolist())


def meter_readings_kwh(
    source: DataSource, meter_id: str, start: datetime, end: datetime, *, slice_s: int
) -> tuple[float, ...]:
    """A meter's net consumption per step over `[start, end)` (what the FOA posts as measurements)."""
    return tuple(source.series("meter_kwh", start, end, slice_s=slice_s, key=meter_id).values.tolist())

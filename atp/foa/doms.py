"""The DOMS FOA: a DSO's congestion forecast turned into direct flexibility requests (D2.1 3.1, 3.3.2).

The DSO's Distribution Observability and Management System (DOMS) forecasts the energy through a
grid asset (a transformer, a feeder) per step and knows the asset's limit. Its FOA converts
"the network information (imbalance, congestion, etc.) into the Flex-Offer containing the time
series of energies and prices" (D2.1 3.3.2) and submits it to the market (F2.FOA: "bids for
increase/decrease of energy at grid asset with associated delta energy and price at a
resolution ranging from 15 mins to 1 hour").

Model of a request (`DomsFoa.requests`):

- Resolution: the forecast (`GridForecast`, on its own `step_s` grid) is resampled to the
  request's `slice_s` (900 to 3600 s, a divisor of 86400 and a multiple of `step_s`) by summing
  both the forecast and the limit over each slice. The excess of a slice is
  `max(0, forecast_kwh - limit_kwh)`: energy over the traded slice, so a 15-minute peak that the
  rest of the hour compensates disappears at `slice_s` 3600 (request at 900 s to see it).
- Only slices that start at or after `now + gate_lead_s` are requested (the market needs time to
  clear); `assignment_before` is `start - gate_lead_s`.
- One request per run of consecutive slices with an excess (more than 1e-6 kWh); no request
  when nothing exceeds the limit.
- Each request is a `direct` FlexOffer with `device="doms"`, issued by the DSO, located at the
  forecast's grid location (its congestion point is required). Its energies are *delta*
  energies at the asset: negative = less consumption. Slice k is `[-excess_k, 0]`: any
  reduction up to the excess, never more (over-relief is not paid for).
- No time flexibility: `start_after == start_before` = the first congested slice.
- Total energy: `[-E, -min_share * E]` with `E` the run's summed excess: at most the whole
  excess, at least the share `min_share` of it (default 0: any relief helps).
- Default schedule: the DSO's preferred delta, the whole excess removed (`-excess_k` per step;
  feasible for every `min_share`).
- Price: `per_kwh_deviation` = the forecast's `price_eur_per_kwh`, what the DSO pays per kWh of
  delivered reduction.

`DomsFoa.submit` posts the requests to the market as buyer's requests (`buy_requests`: the
exchange interface's buy side, `ExchangeInterface.post_request`, `POST /request`): the DSO
buys the reduction, and the market never sells it. The Flex-Offer shape above describes the
request (D2.1); submitted as an offer it would be supply, so a market refuses it. A request
carries no minimum share (a market may fill any part of it), so `submit` refuses a
`min_share` above 0. Each post carries an idempotency key made of the issuer, congestion
point, start and a digest of the request's content: a repeated identical forecast stores
nothing new, a changed one is a new request (withdraw the old one with the client when it no
longer applies). A lost request or reply (`CommunicationError`) is retried `max_retries`
times with the same key.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from atp.flexoffer import DefaultSchedule, FlexOffer, Location, Mode, Price, Profile, Slice, dumps, format_time
from atp.foa.errors import CommunicationError, GenerationError
from atp.interface import ExchangeInterface, FlexRequest

__all__ = ["DOMS_DEVICE", "DomsFoa", "GridForecast"]

DOMS_DEVICE = "doms"
_TOL_KWH = 1e-6
_MIN_SLICE_S = 900
_MAX_SLICE_S = 3600


def _epoch_s(t: datetime) -> float:
    return t.timestamp()


@dataclass(frozen=True, kw_only=True)
class GridForecast:
    """The DOMS's forecast for one grid asset: energy through it and its limit, per `step_s` step.

    `forecast_kwh[i]` is the energy (positive = consumption) through the asset over
    `[start + i*step_s, start + (i+1)*step_s)`; `limit_kwh` is one limit for every step or one
    per step; `location.congestion_point` names the asset; `price_eur_per_kwh` is what the DSO
    pays per kWh of reduction.
    """

    start: datetime
    step_s: int
    forecast_kwh: tuple[float, ...]
    limit_kwh: tuple[float, ...] | float
    location: Location
    price_eur_per_kwh: float
    limits_kwh: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise GenerationError("GridForecast.start must be timezone-aware (e.g. UTC)")
        if self.step_s <= 0 or 86_400 % self.step_s:
            raise GenerationError(f"GridForecast.step_s(={self.step_s}) must divide 86400 (e.g. 900 or 3600)")
        if not self.forecast_kwh:
            raise GenerationError("GridForecast.forecast_kwh needs at least one step")
        for i, v in enumerate(self.forecast_kwh):
            if not math.isfinite(v):
                raise GenerationError(f"GridForecast.forecast_kwh[{i}] must be a finite number, not {v!r}")
        if isinstance(self.limit_kwh, int | float):
            limits = (float(self.limit_kwh),) * len(self.forecast_kwh)
        else:
            limits = tuple(float(v) for v in self.limit_kwh)
        if len(limits) != len(self.forecast_kwh):
            raise GenerationError(
                f"GridForecast.limit_kwh has {len(limits)} values for {len(self.forecast_kwh)} forecast steps: "
                "give one limit, or one per step"
            )
        for i, v in enumerate(limits):
            if not math.isfinite(v):
                raise GenerationError(f"GridForecast.limit_kwh[{i}] must be a finite number, not {v!r}")
        object.__setattr__(self, "limits_kwh", limits)
        if not self.location.congestion_point:
            raise GenerationError("GridForecast.location needs a congestion_point (the grid asset the DSO relieves)")
        if not math.isfinite(self.price_eur_per_kwh) or self.price_eur_per_kwh < 0:
            raise GenerationError(
                f"GridForecast.price_eur_per_kwh must be a finite, non-negative price, not {self.price_eur_per_kwh!r}"
            )

    def resampled_kwh(self, slice_s: int) -> tuple[np.ndarray, np.ndarray]:
        """(forecast, limit) summed per `slice_s` slice; `slice_s` must be a multiple of `step_s`."""
        if slice_s % self.step_s:
            raise GenerationError(
                f"slice_s(={slice_s}) must be a multiple of the forecast's step_s(={self.step_s}) (resampling sums)"
            )
        ratio = slice_s // self.step_s
        n = len(self.forecast_kwh)
        if n % ratio:
            raise GenerationError(
                f"the forecast's {n} steps of {self.step_s} s do not fill whole {slice_s} s slices "
                f"(a multiple of {ratio} steps is needed)"
            )
        if _epoch_s(self.start) % slice_s:
            raise GenerationError(f"GridForecast.start {format_time(self.start)} is not on the {slice_s} s grid")
        forecast = np.asarray(self.forecast_kwh, dtype=float).reshape(-1, ratio).sum(axis=1)
        limit = np.asarray(self.limits_kwh, dtype=float).reshape(-1, ratio).sum(axis=1)
        return forecast, limit


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[first, end) index pairs of the runs of True in `mask`."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _slices(excess_kwh: np.ndarray) -> tuple[Slice, ...]:
    """Slices `[-excess, 0]`, consecutive equal steps merged into one slice."""
    out: list[Slice] = []
    for value in excess_kwh.tolist():
        bounds = (-value, 0.0)
        if out and out[-1].energy == bounds:
            out[-1] = Slice(out[-1].duration + 1, bounds)
        else:
            out.append(Slice(1, bounds))
    return tuple(out)


class DomsFoa:
    """The FOA of a DSO: congestion forecasts in, buyer's reduction requests out (module docstring).

    `client` is the DSO's `ExchangeInterface` to the market (FMAR) it buys from;
    `issuer` the DSO's party name (the client's party). `sleep` is injectable so tests never sleep.
    """

    name = "doms-foa"
    version = "1"

    def __init__(
        self,
        client: ExchangeInterface,
        *,
        issuer: str,
        slice_s: int = 900,
        min_share: float = 0.0,
        gate_lead_s: int = 3600,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not _MIN_SLICE_S <= slice_s <= _MAX_SLICE_S or 86_400 % slice_s:
            raise GenerationError(
                f"slice_s(={slice_s}) must lie within [900, 3600] s (15 min to 1 h) and divide 86400 "
                "(e.g. 900, 1800 or 3600)"
            )
        if not 0.0 <= min_share <= 1.0:
            raise GenerationError(f"min_share must lie within [0, 1], not {min_share}")
        if gate_lead_s < 0:
            raise GenerationError(f"gate_lead_s must not be negative, not {gate_lead_s}")
        if max_retries < 0:
            raise GenerationError(f"max_retries must not be negative, not {max_retries}")
        self.client = client
        self.issuer = issuer
        self.slice_s = slice_s
        self.min_share = min_share
        self.gate_lead_s = gate_lead_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._sleep = sleep

    def excess_kwh(self, forecast: GridForecast) -> np.ndarray:
        """Per `slice_s` slice of the forecast: `max(0, forecast - limit)` after summing both."""
        energy, limit = forecast.resampled_kwh(self.slice_s)
        return np.maximum(energy - limit, 0.0)

    def requests(self, forecast: GridForecast, *, now: datetime) -> list[FlexOffer]:
        """The direct reduction requests for `forecast` as seen at `now` (none when nothing exceeds)."""
        if now.tzinfo is None:
            raise GenerationError("now must be timezone-aware (e.g. UTC)")
        excess = self.excess_kwh(forecast)
        step = timedelta(seconds=self.slice_s)
        earliest = now + timedelta(seconds=self.gate_lead_s)
        first = max(0, math.ceil((earliest - forecast.start).total_seconds() / self.slice_s))
        mask = excess > _TOL_KWH
        mask[:first] = False
        offers = []
        for a, b in _runs(mask):
            run = excess[a:b]
            total = float(run.sum())
            start = forecast.start + a * step
            offers.append(
                FlexOffer(
                    issuer=self.issuer,
                    mode=Mode.DIRECT,
                    profiles=(Profile(slices=_slices(run), total_energy=(-total, -self.min_share * total)),),
                    device=DOMS_DEVICE,
                    location=forecast.location,
                    created_at=now,
                    assignment_before=start - timedelta(seconds=self.gate_lead_s),
                    start_after=start,
                    start_before=start,
                    slice_s=self.slice_s,
                    default_schedule=DefaultSchedule(start=start, profile=0, energy=tuple(-v for v in run.tolist())),
                    price=Price(per_kwh_deviation=forecast.price_eur_per_kwh),
                )
            )
        return offers

    def buy_requests(self, forecast: GridForecast, *, now: datetime) -> list[FlexRequest]:
        """The requests of `requests` as the DSO posts them to a market: buyer's requests for the
        reduction (`-excess` kWh per step) at its congestion point, up to the forecast's price."""
        out = []
        for offer in self.requests(forecast, now=now):
            assert offer.default_schedule is not None and offer.price is not None and offer.location is not None
            out.append(
                FlexRequest(
                    buyer=self.issuer,
                    start=offer.default_schedule.start,
                    slice_s=offer.slice_s,
                    volume_kwh=offer.default_schedule.energy,
                    cutoff_eur_per_kwh=forecast.price_eur_per_kwh,
                    congestion_point=offer.location.congestion_point,
                )
            )
        return out

    def idempotency_key(self, request: FlexRequest) -> str:
        """The key of a request: issuer, congestion point, start and a digest of its content."""
        digest = hashlib.sha256(dumps(request).encode()).hexdigest()[:16]
        return f"{self.issuer}/{DOMS_DEVICE}/{request.congestion_point or ''}/{format_time(request.start)}/{digest}"

    def _post(self, request: FlexRequest, key: str) -> FlexRequest:
        attempt = 0
        while True:
            try:
                return self.client.post_request(request, idempotency_key=key)
            except CommunicationError:
                if attempt >= self.max_retries:
                    raise
                self._sleep(self.backoff_s * 2**attempt)
                attempt += 1

    def submit(self, forecast: GridForecast, *, now: datetime) -> list[FlexRequest]:
        """Post the requests for `forecast` to the market; returns its answers (ids, sessions)."""
        if self.min_share > 0:
            raise GenerationError(
                f"min_share(={self.min_share}) cannot be posted: a market may fill any part of a request; "
                "post with min_share=0"
            )
        return [self._post(request, self.idempotency_key(request)) for request in self.buy_requests(forecast, now=now)]

    def submit_many(self, forecasts: Sequence[GridForecast], *, now: datetime) -> list[FlexRequest]:
        """`submit` for several assets' forecasts; the answers in order."""
        return [answer for forecast in forecasts for answer in self.submit(forecast, now=now)]

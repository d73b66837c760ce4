"""GOFLEX field format: export of v1 offers and schedules, and what import and export share.

`offer_to_goflex` / `schedule_to_goflex` write the JSON of the GOFLEX/TotalFlex flexoffer
library (the reading side and the mapping are in `atp.flexoffer.goflex`, the rules in
docs/goflex-format.md). Shared by both directions: the library's intervals
(`toFlexOfferTime`), its time format, and the "even split" polytope that holds a GOFLEX slice
of several intervals at one rate.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from atp.errors import ValidationError
from atp.flexoffer.feasibility import TOLERANCE_KWH
from atp.flexoffer.model import (
    DEFAULT_SLICE_S,
    FlexOffer,
    Location,
    Mode,
    OfferState,
    Polytope,
    Price,
    Profile,
    Schedule,
    Slice,
)

__all__ = ["offer_to_goflex", "schedule_to_goflex"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# fmt: off
_STATE_TO_GOFLEX: dict[OfferState | None, str] = {
    None: "Offered", OfferState.ACCEPTED: "Accepted", OfferState.REJECTED: "Rejected",
    OfferState.ASSIGNED: "Assigned", OfferState.EXECUTING: "Executed", OfferState.SETTLED: "Executed",
    OfferState.WITHDRAWN: "Canceled",
}
# fmt: on


# ---------------------------------------------------------------------------------------------
# Intervals and times


def _interval(t: datetime, slice_s: int) -> int:
    """The library's `toFlexOfferTime`: whole intervals since the epoch, rounded down."""
    return (t - _EPOCH) // timedelta(seconds=slice_s)


def _format_goflex_time(t: datetime) -> str:
    """`yyyy-MM-dd'T'HH:mm:ss.SSSZ` in UTC, the library's date format."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{t.microsecond // 1000:03d}+0000"


# ---------------------------------------------------------------------------------------------
# The "even split" polytope: the steps of a GOFLEX slice run at one rate


def _even_split_polytope(slices: tuple[Slice, ...]) -> Polytope | None:
    """Rows `x_k - x_(k+1) <= 0` and `x_(k+1) - x_k <= 0` for neighbouring steps of each slice."""
    n = sum(s.duration for s in slices)
    rows: list[tuple[float, ...]] = []
    first = 0
    for s in slices:
        for k in range(first, first + s.duration - 1):
            up = [0.0] * n
            up[k], up[k + 1] = 1.0, -1.0
            down = [0.0] * n
            down[k], down[k + 1] = -1.0, 1.0
            rows.extend((tuple(up), tuple(down)))
        first += s.duration
    if not rows:
        return None
    return Polytope(A=tuple(rows), b=(0.0,) * len(rows))


def _has_even_split(profile: Profile) -> bool:
    return profile.polytope is not None and profile.polytope == _even_split_polytope(profile.slices)


def _goflex_durations(profile: Profile) -> list[int]:
    """The GOFLEX slice durations an exported profile uses: whole even-split slices, else single steps."""
    if _has_even_split(profile):
        return [s.duration for s in profile.slices]
    return [1] * profile.n_steps


# ---------------------------------------------------------------------------------------------
# Export


def _unsupported(offer: FlexOffer) -> list[str]:
    """One sentence per feature of `offer` that the GOFLEX format cannot hold."""
    out = []
    if len(offer.profiles) > 1:
        out.append(f"profiles: GOFLEX holds one profile, the offer has {len(offer.profiles)} alternatives (XOR)")
    for k, profile in enumerate(offer.profiles[:1]):
        if profile.polytope is not None and not _has_even_split(profile):
            out.append(f"profiles[{k}].polytope: GOFLEX has no linear constraints A x <= b")
        if profile.dependency is not None:
            out.append(f"profiles[{k}].dependency: GOFLEX has no dependency-based energy constraints")
    if offer.conditional is not None:
        out.append("conditional: GOFLEX has no two-mode conditional operation")
    if offer.start_after is None:
        out.append("start_after: implicit time flexibility (start from 'now') has no absolute startAfterTime")
    if offer.start_before_duration_s is not None:
        out.append("start_before_duration_s: implicit time flexibility has no absolute startBeforeTime")
    if offer.location is not None and (offer.location.bus is not None or offer.location.congestion_point is not None):
        out.append("location.bus/congestion_point: GOFLEX locationId holds only the meter id")
    if offer.price is not None and offer.price.per_kwh is not None:
        out.append("price.per_kwh: GOFLEX has no energy price, only deviation tariffs")
    if offer.mode is Mode.DELEGATED and offer.price is not None and offer.price.per_kwh_deviation is not None:
        out.append("price: a delegated offer cannot carry a price, since a tariff makes a GOFLEX offer direct")
    if offer.members is not None:
        out.append("members: GOFLEX JSON does not list the members of an aggregated offer")
    return out


def _drop_unsupported(offer: FlexOffer) -> FlexOffer:
    """The offer reduced to what GOFLEX holds (lossy export): see docs/goflex-format.md."""
    profile = offer.profiles[0]
    if profile.polytope is not None and not _has_even_split(profile):
        profile = replace(profile, polytope=None)
    profile = replace(profile, dependency=None)
    start_after, start_before = offer.start_after, offer.start_before
    if start_after is None or start_before is None:
        if offer.created_at is None:
            raise ValidationError(
                "cannot export to the GOFLEX format: implicit time flexibility needs created_at to be "
                "resolved into startAfterTime/startBeforeTime, even with lossy=True"
            )
        window = offer.window(offer.created_at)
        step = timedelta(seconds=offer.slice_s)
        if start_after is None:
            start_after = _EPOCH - ((_EPOCH - offer.created_at) // step) * step  # rounded up to the grid
        if start_before is None and window.latest is not None:
            start_before = _EPOCH + ((window.latest - _EPOCH) // step) * step  # rounded down to the grid
    price = offer.price
    if price is not None:
        keep = offer.mode is Mode.DIRECT and price.per_kwh_deviation is not None
        price = Price(per_kwh_deviation=price.per_kwh_deviation) if keep else None
    location = Location(meter_id=offer.location.meter_id) if offer.location is not None else None
    default = offer.default_schedule if offer.default_schedule and offer.default_schedule.profile == 0 else None
    schedule = offer.schedule if offer.schedule and offer.schedule.profile == 0 else None
    return replace(
        offer,
        profiles=(profile,),
        conditional=None,
        start_after=start_after,
        start_before=start_before,
        start_before_duration_s=None,
        location=location,
        price=price,
        members=None,
        default_schedule=default,
        schedule=schedule,
    )


def _put_time(out: dict[str, Any], stem: str, t: datetime | None, slice_s: int) -> None:
    if t is not None:
        out[f"{stem}Time"] = _format_goflex_time(t)
        out[f"{stem}Interval"] = _interval(t, slice_s)


def _schedule_dict(start: datetime, energy: tuple[float, ...], slice_s: int, durations: list[int]) -> dict[str, Any]:
    if sum(durations) != len(energy):
        raise ValidationError(
            f"cannot export the schedule: it has {len(energy)} steps but the profile has {sum(durations)}"
        )
    slices = []
    first = 0
    for k, d in enumerate(durations):
        part = energy[first : first + d]
        if max(part) - min(part) > TOLERANCE_KWH:
            raise ValidationError(
                f"cannot export the schedule: steps {first}..{first + d - 1} (GOFLEX slice {k}) differ, but a "
                "GOFLEX slice runs at one rate and holds one energyAmount"
            )
        slices.append({"duration": d, "energyAmount": float(sum(part))})
        first += d
    out: dict[str, Any] = {}
    _put_time(out, "start", start, slice_s)
    out["scheduleSlices"] = slices
    return out


def schedule_to_goflex(
    schedule: Schedule, *, slice_s: int = DEFAULT_SLICE_S, profile: Profile | None = None
) -> dict[str, Any]:
    """A v1 schedule as a GOFLEX `flexOfferSchedule` (startTime, startInterval, scheduleSlices).

    Without `profile` every `slice_s` step is one schedule slice of duration 1. With the
    offer's `profile` the schedule slices follow the slices that `offer_to_goflex` writes for
    it, one per GOFLEX profile slice, as the library expects. `assigned_at` and `price_eur`
    have no GOFLEX field and are not written.
    """
    durations = _goflex_durations(profile) if profile is not None else [1] * len(schedule.energy)
    return _schedule_dict(schedule.start, schedule.energy, slice_s, durations)


def offer_to_goflex(offer: FlexOffer, *, lossy: bool = False) -> dict[str, Any]:
    """The offer in the GOFLEX field format (a JSON-ready dict), times and their Interval twins.

    Raises ValidationError naming every feature GOFLEX cannot hold (several XOR profiles,
    polytope, dependency, conditional, implicit time flexibility, bus/congestion point, an
    energy price, a price on a delegated offer, members). With `lossy=True` only profile 0 is
    exported and those features are dropped instead; implicit time is resolved against
    `created_at`.
    """
    lost = _unsupported(offer)
    if lost and not lossy:
        raise ValidationError("cannot export to the GOFLEX format: " + "; ".join(lost) + " (lossy=True drops these)")
    if lost:
        offer = _drop_unsupported(offer)
    slice_s = offer.slice_s
    profile = offer.profiles[0]
    out: dict[str, Any] = {}
    if offer.id is not None:
        out["id"] = offer.id
    if offer.device is not None:
        out["label"] = offer.device
    out["state"] = _STATE_TO_GOFLEX[offer.state]
    out["offeredById"] = offer.issuer
    if offer.location is not None:
        out["locationId"] = offer.location.meter_id
    _put_time(out, "creation", offer.created_at, slice_s)
    _put_time(out, "acceptanceBefore", offer.assignment_before, slice_s)
    _put_time(out, "assignmentBefore", offer.assignment_before, slice_s)
    _put_time(out, "startAfter", offer.start_after, slice_s)
    _put_time(out, "startBefore", offer.start_before, slice_s)
    out["numSecondsPerInterval"] = slice_s
    tariff = None
    if offer.mode is Mode.DIRECT and offer.price is not None and offer.price.per_kwh_deviation is not None:
        p = offer.price.per_kwh_deviation
        tariff = {"minTariff": -p if p else 0.0, "maxTariff": p}
    durations = _goflex_durations(profile)
    lower, upper = profile.lower_kwh(), profile.upper_kwh()
    constraints = []
    first = 0
    for d in durations:
        slice_out: dict[str, Any] = {
            "minDuration": d,
            "maxDuration": d,
            "energyConstraintList": [
                {"lower": float(lower[first : first + d].sum()), "upper": float(upper[first : first + d].sum())}
            ],
        }
        if tariff is not None:
            slice_out["tariffConstraint"] = dict(tariff)
        constraints.append(slice_out)
        first += d
    out["flexOfferProfileConstraints"] = constraints
    if profile.total_energy is not None:
        out["totalEnergyConstraint"] = {"lower": profile.total_energy[0], "upper": profile.total_energy[1]}
    if offer.default_schedule is not None:
        out["defaultSchedule"] = _schedule_dict(
            offer.default_schedule.start, offer.default_schedule.energy, slice_s, durations
        )
    if offer.schedule is not None:
        out["flexOfferSchedule"] = _schedule_dict(offer.schedule.start, offer.schedule.energy, slice_s, durations)
    return out

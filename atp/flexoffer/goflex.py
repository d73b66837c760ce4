"""GOFLEX field format: import and export of the JSON of the GOFLEX/TotalFlex flexoffer library.

The GOFLEX FOA/FMAN (the Java `org.goflex.wp2.core.entities` classes of Aalborg University)
writes offers as `flexOfferProfileConstraints`, `defaultSchedule`, `...Time` strings such as
`2020-02-27T20:30:00.000+0000` and their `...Interval` twins (whole `numSecondsPerInterval`
steps since the Unix epoch, rounded down as the library's `toFlexOfferTime` does).

Semantics taken from the library, not from its field names (docs/goflex-format.md has the
full mapping table):

- A profile constraint (`FlexOfferSlice`) is one slice of `minDuration == maxDuration`
  intervals; `energyConstraintList[0]` bounds the energy of the *whole* slice, and the slice
  runs at an even rate: the library's aggregator divides the bounds by the duration, and a
  schedule slice's `energyAmount` is checked against the slice bounds as a whole. A GOFLEX
  slice of d > 1 intervals therefore becomes a v1 slice with per-step bounds `bound / d`
  plus polytope rows forcing its d steps to be equal (exact, not a relaxation); on export
  such an "even split" polytope is recognised and written back as one slice.
- `energyAmount` of a schedule slice is the energy of the whole slice, spread evenly over
  its `duration` intervals.
- Tariffs: the FMAN market bid writes `maxTariff` = price per kWh of upward deviation and
  `minTariff` = minus the price per kWh of downward deviation. v1 has one symmetric
  `per_kwh_deviation` = the largest of `maxTariff` and `-minTariff` over all slices.
- Positive energy = consumption in both formats; no sign is flipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from atp.errors import Problem
from atp.flexoffer.codec import format_time, parse_time
from atp.flexoffer.feasibility import check_schedule
from atp.flexoffer.goflex_export import _EPOCH, _even_split_polytope, _interval, offer_to_goflex, schedule_to_goflex
from atp.flexoffer.model import (
    DEFAULT_SLICE_S,
    DefaultSchedule,
    FlexOffer,
    Location,
    Mode,
    OfferState,
    Price,
    Profile,
    Schedule,
    Slice,
)
from atp.flexoffer.validation import validate_offer

__all__ = [
    "DERIVED_ID_PREFIX",
    "GoflexImport",
    "offer_from_goflex",
    "offer_to_goflex",
    "read_goflex_offer",
    "schedule_from_goflex",
    "schedule_to_goflex",
]

DERIVED_ID_PREFIX = "goflex-sha256-"  # ids given on import to assigned offers that have none

T = TypeVar("T")

_SECONDS_PER_DAY = 86_400

# fmt: off
_STATE_FROM_GOFLEX: dict[str, OfferState | None] = {
    "initial": None, "offered": None, "accepted": OfferState.ACCEPTED, "rejected": OfferState.REJECTED,
    "invalid": OfferState.REJECTED, "assigned": OfferState.ASSIGNED, "executed": OfferState.EXECUTING,
    "canceled": OfferState.WITHDRAWN, "cancelled": OfferState.WITHDRAWN,
}
# Every top-level field of the library's JSON and of the GOFLEX specifications that is read or checked.
_OFFER_KEYS = frozenset({
    "id", "label", "state", "stateReason", "offeredById", "locationId", "numSecondsPerInterval",
    "creationTime", "creationInterval", "acceptanceBeforeTime", "acceptanceBeforeInterval",
    "acceptBeforeTime", "acceptBeforeInterval", "assignmentBeforeTime", "assignmentBeforeInterval",
    "startAfterTime", "startAfterInterval", "startBeforeTime", "startBeforeInterval",
    "endAfterTime", "endAfterInterval", "endBeforeTime", "endBeforeInterval",
    "flexOfferProfileConstraints", "totalEnergyConstraint", "defaultSchedule", "flexOfferSchedule",
    "flexOfferTariffConstraint", "assignment", "flexOfferType", "correct",
})
# fmt: on
_SLICE_KEYS = frozenset({"minDuration", "maxDuration", "energyConstraintList", "tariffConstraint", "priceConstraint"})
_SCHEDULE_KEYS = frozenset(
    {"startTime", "startInterval", "scheduleSlices", "scheduleId", "updateId", "numSecondsPerInterval"}
)
_SCHEDULE_SLICE_KEYS = frozenset({"duration", "energyAmount", "tariff"})
_TARIFF_KEYS = {"tariffConstraint": ("minTariff", "maxTariff"), "priceConstraint": ("minPrice", "maxPrice")}


# ---------------------------------------------------------------------------------------------
# Reading untrusted JSON


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return repr(value)


class _Reader:
    """Collects every problem of a GOFLEX document, each with its JSON path."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str, rule: str) -> None:
        self.problems.append(Problem(path, message, rule))

    def missing(self, path: str) -> None:
        self.problem(path, "is required but missing", "missing")

    def obj(self, value: Any, path: str, known: frozenset[str]) -> dict[str, Any] | None:
        """The object's known, non-null fields; unknown fields are problems."""
        if not isinstance(value, dict):
            self.problem(path, f"must be an object, not {_describe(value)}", "type")
            return None
        for key in value:
            if key not in known:
                self.problem(_at(path, key), "is not a known field of the GOFLEX format", "unknown")
        return {k: v for k, v in value.items() if k in known and v is not None}

    def alias(self, obj: dict[str, Any], path: str, names: tuple[str, ...]) -> tuple[str, Any] | None:
        """The one present spelling of a field among `names` (a problem when several are)."""
        present = [n for n in names if n in obj]
        if len(present) > 1:
            self.problem(_at(path, present[1]), f"give either {present[0]} or {present[1]}, not both", "alias")
        return (present[0], obj[present[0]]) if present else None

    def number(self, value: Any, path: str) -> float | None:
        if isinstance(value, list):
            self.problem(
                path,
                "must be a number, not a list (per-interval lists of the later FlexOffer "
                "specification are not supported: give one slice per interval)",
                "type",
            )
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"must be a number, not {_describe(value)}", "type")
            return None
        if not math.isfinite(value):
            self.problem(path, f"must be a finite number, not {value}", "finite")
            return None
        return float(value)

    def integer(self, value: Any, path: str, *, minimum: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"must be an integer, not {_describe(value)}", "type")
            return None
        if minimum is not None and value < minimum:
            self.problem(path, f"must be at least {minimum}, not {value}", "range")
            return None
        return value

    def text(self, value: Any, path: str, *, allow_int: bool = False) -> str | None:
        if allow_int and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            self.problem(path, f"must be a string, not {_describe(value)}", "type")
            return None
        return value

    def time(self, value: Any, path: str) -> datetime | None:
        if not isinstance(value, str):
            self.problem(path, f"must be a time such as '2020-02-27T20:30:00.000+0000', not {_describe(value)}", "type")
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            detail = (
                str(exc) if "offset" in str(exc) else f"{value!r} is not a time such as 2020-02-27T20:30:00.000+0000"
            )
            self.problem(path, detail, "time")
            return None

    def when(
        self,
        obj: dict[str, Any],
        path: str,
        time_keys: tuple[str, ...],
        interval_keys: tuple[str, ...],
        slice_s: int | None,
        *,
        required: bool = False,
    ) -> datetime | None:
        """A time given as a string, as its `...Interval` twin, or both (then they must agree)."""
        t_item = self.alias(obj, path, time_keys)
        i_item = self.alias(obj, path, interval_keys)
        if t_item is None and i_item is None:
            if required:
                self.missing(_at(path, time_keys[0]))
            return None
        t = self.time(t_item[1], _at(path, t_item[0])) if t_item else None
        iv = self.integer(i_item[1], _at(path, i_item[0])) if i_item else None
        if iv is None or slice_s is None or i_item is None:
            return t
        i_path = _at(path, i_item[0])
        try:
            from_iv = _EPOCH + timedelta(seconds=iv * slice_s)
        except OverflowError:
            self.problem(i_path, f"{iv} intervals of {slice_s} s lie outside the calendar", "range")
            return None
        if t is not None and t_item is not None and _interval(t, slice_s) != iv:
            self.problem(
                i_path,
                f"{iv} (= {format_time(from_iv)}) disagrees with {t_item[0]} {format_time(t)} "
                f"(interval {_interval(t, slice_s)} of {slice_s} s)",
                "twin",
            )
            return None
        return t if t is not None else from_iv


@dataclass(frozen=True)
class _GoflexSlice:
    duration: int
    lower_kwh: float
    upper_kwh: float
    deviation_price: float | None


@dataclass(frozen=True)
class _GoflexSchedule:
    start: datetime
    energy: tuple[float, ...]
    step_slices: tuple[int, ...]  # for each step, the index of its scheduleSlices entry


def _read_slice_s(r: _Reader, obj: dict[str, Any], path: str) -> int | None:
    if "numSecondsPerInterval" not in obj:
        return DEFAULT_SLICE_S
    p = _at(path, "numSecondsPerInterval")
    slice_s = r.integer(obj["numSecondsPerInterval"], p, minimum=1)
    if slice_s is not None and _SECONDS_PER_DAY % slice_s:
        r.problem(p, f"(={slice_s}) must divide 86400 (e.g. 900 or 3600)", "grid")
        return None
    return slice_s


def _read_pair(
    r: _Reader, value: Any, path: str, names: tuple[tuple[str, ...], tuple[str, ...]]
) -> tuple[float, float] | None:
    """Two numbers of an object, each under one of its accepted spellings (e.g. lower or lowerBound)."""
    obj = r.obj(value, path, frozenset(names[0] + names[1]))
    if obj is None:
        return None
    got = []
    for spellings in names:
        item = r.alias(obj, path, spellings)
        if item is None:
            r.missing(_at(path, spellings[0]))
        got.append(r.number(item[1], _at(path, item[0])) if item else None)
    low, high = got
    return (low, high) if low is not None and high is not None else None


_BOUND_NAMES = (("lower", "lowerBound"), ("upper", "upperBound"))


def _read_tariff(r: _Reader, obj: dict[str, Any], path: str) -> float | None:
    """The v1 deviation price of a slice's tariffConstraint (or priceConstraint): max(maxTariff, -minTariff)."""
    item = r.alias(obj, path, tuple(_TARIFF_KEYS))
    if item is None:
        return None
    key, value = item
    low_name, high_name = _TARIFF_KEYS[key]
    pair = _read_pair(r, value, _at(path, key), ((low_name,), (high_name,)))
    if pair is None:
        return None
    low, high = pair
    if low > high:
        r.problem(_at(path, key), f"{low_name} {low:.6g} is above {high_name} {high:.6g}", "bounds")
        return None
    return max(high, -low)


def _read_slice(r: _Reader, value: Any, path: str) -> _GoflexSlice | None:
    obj = r.obj(value, path, _SLICE_KEYS)
    if obj is None:
        return None
    d_min = r.integer(obj.get("minDuration", 1), _at(path, "minDuration"), minimum=1)
    d_max = r.integer(obj.get("maxDuration", 1), _at(path, "maxDuration"), minimum=1)
    if d_min is not None and d_max is not None and d_min != d_max:
        r.problem(
            path,
            f"a slice of variable duration (minDuration {d_min}, maxDuration {d_max} intervals) cannot be "
            "represented in v1, whose slices have a fixed duration; fix the duration or split the offer",
            "duration",
        )
    bounds = None
    p = _at(path, "energyConstraintList")
    ecl = obj.get("energyConstraintList")
    if ecl is None:
        r.missing(p)
    elif not isinstance(ecl, list):
        r.problem(p, f"must be a list, not {_describe(ecl)}", "type")
    elif len(ecl) != 1:
        r.problem(
            p,
            f"must hold exactly one energy constraint, not {len(ecl)} (the GOFLEX library reads only the first; "
            "several constraints per slice have no v1 equivalent)",
            "shape",
        )
    else:
        bounds = _read_pair(r, ecl[0], f"{p}[0]", _BOUND_NAMES)
        if bounds is not None and bounds[0] > bounds[1]:
            r.problem(f"{p}[0]", f"lower {bounds[0]:.6g} kWh is above upper {bounds[1]:.6g} kWh", "bounds")
    price = _read_tariff(r, obj, path)
    if bounds is None or d_min is None or d_max is None or d_min != d_max:
        return None
    return _GoflexSlice(d_min, bounds[0], bounds[1], price)


def _read_schedule(r: _Reader, value: Any, path: str, slice_s: int | None) -> _GoflexSchedule | None:
    obj = r.obj(value, path, _SCHEDULE_KEYS)
    if obj is None:
        return None
    if "numSecondsPerInterval" in obj:
        own = _read_slice_s(r, obj, path)
        if own is not None and slice_s is not None and own != slice_s:
            r.problem(
                _at(path, "numSecondsPerInterval"), f"{own} s differs from the offer's interval of {slice_s} s", "grid"
            )
    for key in ("scheduleId", "updateId"):
        if key in obj:
            r.integer(obj[key], _at(path, key))
    start = r.when(obj, path, ("startTime",), ("startInterval",), slice_s, required=True)
    p = _at(path, "scheduleSlices")
    raw = obj.get("scheduleSlices")
    if raw is None:
        r.missing(p)
        return None
    if not isinstance(raw, list) or not raw:
        r.problem(p, f"must be a non-empty list, not {_describe(raw)}", "type")
        return None
    energy: list[float] = []
    step_slices: list[int] = []
    ok = True
    for k, item in enumerate(raw):
        sp = f"{p}[{k}]"
        fields = r.obj(item, sp, _SCHEDULE_SLICE_KEYS)
        if fields is None:
            ok = False
            continue
        duration = r.integer(fields.get("duration", 1), _at(sp, "duration"), minimum=1)
        if "tariff" in fields:
            r.number(fields["tariff"], _at(sp, "tariff"))
        if "energyAmount" not in fields:
            r.missing(_at(sp, "energyAmount"))
            ok = False
            continue
        amount = r.number(fields["energyAmount"], _at(sp, "energyAmount"))
        if duration is None or amount is None:
            ok = False
            continue
        energy.extend([amount / duration] * duration)
        step_slices.extend([k] * duration)
    if not ok or start is None:
        return None
    return _GoflexSchedule(start, tuple(energy), tuple(step_slices))


def _read_location(r: _Reader, value: Any, path: str) -> Location | None:
    if isinstance(value, dict) and not value:
        return None  # the library's default: an empty map of geo locations
    if isinstance(value, dict):
        r.problem(path, "must be a string (the meter id), not a map of geo locations", "type")
        return None
    meter_id = r.text(value, path)
    return Location(meter_id=meter_id) if meter_id else None


def _read_state(r: _Reader, value: Any, path: str) -> OfferState | None:
    text = r.text(value, path)
    if text is None:
        return None
    if text.lower() not in _STATE_FROM_GOFLEX:
        known = "Initial, Offered, Accepted, Rejected, Assigned, Executed, Invalid, Canceled"
        r.problem(path, f"{text!r} is not a GOFLEX state ({known})", "state")
        return None
    return _STATE_FROM_GOFLEX[text.lower()]


def _read_ignored(r: _Reader, obj: dict[str, Any], slice_s: int | None) -> None:
    """Check the fields that are accepted but have no v1 field (see docs/goflex-format.md)."""
    accept = (("acceptanceBeforeTime", "acceptBeforeTime"), ("acceptanceBeforeInterval", "acceptBeforeInterval"))
    r.when(obj, "", *accept, slice_s)
    for stem in ("endAfter", "endBefore"):
        r.when(obj, "", (f"{stem}Time",), (f"{stem}Interval",), None)
    for key in ("stateReason", "flexOfferType"):
        if key in obj:
            r.text(obj[key], key)
    if "correct" in obj and not isinstance(obj["correct"], bool):
        r.problem("correct", f"must be true or false, not {_describe(obj['correct'])}", "type")
    if obj.get("assignment", "obligatory") != "obligatory":
        r.problem("assignment", "only 'obligatory' is supported: v1 schedules are binding", "assignment")
    if "flexOfferTariffConstraint" in obj:
        r.problem("flexOfferTariffConstraint", "is not supported; give a tariffConstraint on each slice", "tariff")


# ---------------------------------------------------------------------------------------------
# Problem paths of the v1 checks, translated to GOFLEX paths

_TOP_PATHS = {
    "slice_s": "numSecondsPerInterval",
    "start_after": "startAfterTime",
    "start_before": "startBeforeTime",
    "assignment_before": "assignmentBeforeTime",
    "created_at": "creationTime",
    "price": "flexOfferProfileConstraints",
    "profiles": "flexOfferProfileConstraints",
}


def _schedule_path(rest: str, key: str, step_slices: tuple[int, ...]) -> str:
    if rest.startswith("start"):
        return f"{key}.startTime"
    m = re.fullmatch(r"energy\[(\d+)\]", rest)
    if m and int(m.group(1)) < len(step_slices):
        return f"{key}.scheduleSlices[{step_slices[int(m.group(1))]}].energyAmount"
    if rest.startswith("energy"):
        return f"{key}.scheduleSlices"
    return key


def _offer_path(path: str, default_steps: tuple[int, ...]) -> str:
    m = re.fullmatch(r"profiles\[0\]\.slices\[(\d+)\](.*)", path)
    if m:
        rest = {".energy": ".energyConstraintList[0]", ".duration": ".minDuration"}.get(m.group(2), m.group(2))
        return f"flexOfferProfileConstraints[{m.group(1)}]{rest}"
    if path.startswith("profiles[0].total_energy"):
        return "totalEnergyConstraint"
    if path.startswith("default_schedule"):
        return _schedule_path(path.removeprefix("default_schedule").lstrip("."), "defaultSchedule", default_steps)
    head = re.split(r"[.\[]", path, maxsplit=1)[0]
    return _TOP_PATHS.get(head, path)


# ---------------------------------------------------------------------------------------------
# Import


@dataclass(frozen=True)
class GoflexImport:
    """One GOFLEX offer read as v1: the offer (None when there is any problem), every problem,
    and notices: what the import decided that the document did not say (e.g. a derived id)."""

    offer: FlexOffer | None
    problems: list[Problem] = field(default_factory=list)
    notices: list[Problem] = field(default_factory=list)


def offer_from_goflex(data: Any, *, path: str = "") -> tuple[FlexOffer | None, list[Problem]]:
    """Read one offer in the GOFLEX field format (parsed JSON); never raises on bad input.

    Returns the v1 offer and every problem, each with its JSON path in the GOFLEX document
    (under `path`); the offer is None when there is any problem. After the structural
    checks the v1 semantic checks (`validate_offer`, and the feasibility of a
    `flexOfferSchedule`) run, with their paths translated to GOFLEX fields.
    `read_goflex_offer` also returns the notices.
    """
    read = read_goflex_offer(data, path=path)
    return read.offer, read.problems


def _derived_id(obj: dict[str, Any]) -> str:
    """A deterministic id for an offer without one: the SHA-256 of its non-null fields as canonical JSON."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return DERIVED_ID_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def read_goflex_offer(data: Any, *, path: str = "") -> GoflexImport:
    """`offer_from_goflex` with notices: the offer, its problems, and what the import decided.

    GOFLEX pilots wrote assigned offers (a `flexOfferSchedule`) whose `id` is null or absent;
    such an offer gets the id `goflex-sha256-<24 hex digits>` derived from its content, so the
    same document always gets the same id, and a notice on `id` says so. An offer without a
    schedule keeps no id (the receiver gives one on acceptance, as in v1).
    """
    r = _Reader()
    notices: list[Problem] = []
    obj = r.obj(data, path, _OFFER_KEYS)
    if obj is None:
        return GoflexImport(None, _prefixed(r.problems, path))
    slice_s = _read_slice_s(r, obj, "")
    offer_id = _optional(obj, "id", lambda v, p: r.text(v, p, allow_int=True))
    device = _optional(obj, "label", r.text)
    state = _optional(obj, "state", lambda v, p: _read_state(r, v, p))
    issuer = None
    if "offeredById" not in obj:
        r.missing("offeredById")
    else:
        issuer = r.text(obj["offeredById"], "offeredById", allow_int=True)
        if issuer == "":
            r.problem("offeredById", "must not be empty", "empty")
    location = _optional(obj, "locationId", lambda v, p: _read_location(r, v, p))
    created_at = r.when(obj, "", ("creationTime",), ("creationInterval",), slice_s, required=True)
    assignment_before = r.when(obj, "", ("assignmentBeforeTime",), ("assignmentBeforeInterval",), slice_s)
    start_after = r.when(obj, "", ("startAfterTime",), ("startAfterInterval",), slice_s)
    start_before = r.when(obj, "", ("startBeforeTime",), ("startBeforeInterval",), slice_s, required=True)
    _read_ignored(r, obj, slice_s)

    gslices: list[_GoflexSlice | None] = []
    raw = obj.get("flexOfferProfileConstraints")
    if raw is None:
        r.missing("flexOfferProfileConstraints")
    elif not isinstance(raw, list):
        r.problem("flexOfferProfileConstraints", f"must be a list, not {_describe(raw)}", "type")
    elif not raw:
        r.problem(
            "flexOfferProfileConstraints",
            "must hold at least one slice (an empty list withdraws flexibility; it is not an offer)",
            "empty",
        )
    else:
        gslices = [_read_slice(r, item, f"flexOfferProfileConstraints[{j}]") for j, item in enumerate(raw)]
    total = _optional(obj, "totalEnergyConstraint", lambda v, p: _read_pair(r, v, p, _BOUND_NAMES))
    default = _optional(obj, "defaultSchedule", lambda v, p: _read_schedule(r, v, p, slice_s))
    assigned = _optional(obj, "flexOfferSchedule", lambda v, p: _read_schedule(r, v, p, slice_s))
    if r.problems or issuer is None or slice_s is None or not gslices or any(g is None for g in gslices):
        return GoflexImport(None, _prefixed(r.problems, path))
    if assigned is not None and offer_id is None:
        offer_id = _derived_id(obj)
        given = "null" if "id" in data else "absent"
        notices.append(
            Problem("id", f"is {given} on an assigned offer; derived from its content: {offer_id!r}", "derived_id")
        )
    complete = [g for g in gslices if g is not None]
    slices = tuple(Slice(g.duration, (g.lower_kwh / g.duration, g.upper_kwh / g.duration)) for g in complete)
    profile = Profile(slices=slices, total_energy=total, polytope=_even_split_polytope(slices))
    prices = [g.deviation_price for g in complete if g.deviation_price is not None]
    offer = FlexOffer(
        issuer=issuer,
        mode=Mode.DIRECT if prices else Mode.DELEGATED,
        profiles=(profile,),
        id=offer_id,
        device=device,
        location=location,
        created_at=created_at,
        assignment_before=assignment_before,
        start_after=start_after,
        start_before=start_before,
        slice_s=slice_s,
        default_schedule=DefaultSchedule(default.start, 0, default.energy) if default else None,
        price=Price(per_kwh_deviation=max(prices)) if prices else None,
        state=state,
        schedule=Schedule(offer_id, assigned.start, 0, assigned.energy) if assigned is not None and offer_id else None,
    )
    problems = [
        Problem(_offer_path(p.path, default.step_slices if default else ()), p.message, p.rule)
        for p in validate_offer(offer)
    ]
    if offer.schedule is not None and assigned is not None and not problems:
        problems.extend(
            Problem(
                _schedule_path(p.path, "flexOfferSchedule", assigned.step_slices),
                f"infeasible schedule: {p.message}",
                p.rule,
            )
            for p in check_schedule(offer, offer.schedule)
        )
    return GoflexImport(offer if not problems else None, _prefixed(problems, path), _prefixed(notices, path))


def _optional(obj: dict[str, Any], key: str, read: Callable[[Any, str], T]) -> T | None:
    """`read(value, path)` of an optional top-level field, None when it is absent."""
    return read(obj[key], key) if key in obj else None


def _prefixed(problems: list[Problem], path: str) -> list[Problem]:
    if not path:
        return problems
    return [Problem(_at(path, p.path) if p.path else path, p.message, p.rule) for p in problems]


def schedule_from_goflex(
    data: Any, *, flex_offer_id: str, slice_s: int = DEFAULT_SLICE_S, path: str = ""
) -> tuple[Schedule | None, list[Problem]]:
    """Read a standalone `flexOfferSchedule` (parsed JSON) as the v1 schedule of profile 0.

    Each schedule slice's `energyAmount` is spread evenly over its `duration` intervals of
    `slice_s` seconds. GOFLEX has no assignment time, so `assigned_at` is None.
    """
    r = _Reader()
    read = _read_schedule(r, data, path, slice_s)
    if r.problems or read is None:
        return None, r.problems
    return Schedule(flex_offer_id=flex_offer_id, start=read.start, profile=0, energy=read.energy), []

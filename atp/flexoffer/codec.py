"""JSON reading and writing of the Flex-Offer model, driven by the dataclasses' type hints.

`decode(FlexOffer, data)` walks the type hints of the dataclass and collects every
structural problem (missing or unknown fields, wrong types, NaN/inf, bad times) with its
JSON path instead of stopping at the first; `encode(obj)` writes the wire format back
(None fields omitted, times as UTC `...Z`). The JSON Schema in `schema` is generated from the
same type hints, so reading, writing and the schema cannot disagree.

Whatever a client sends, decoding stays cheap and bounded: times lie in [`TIME_MIN`, `TIME_MAX`)
(far from the ends of Python's calendar, so no arithmetic on them overflows), integers within
+-`MAX_SAFE_INTEGER` (2^53, what every JSON parser keeps exactly), numbers within
+-`MAX_ABS_NUMBER`, and strings are valid Unicode (an unpaired surrogate such as `"\\ud800"`
cannot be stored, written back or logged). Each breach is one problem naming the field.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from atp.errors import InvalidOfferError, Problem
from atp.flexoffer.model import FlexOffer, Measurement, Schedule

__all__ = [
    "MAX_ABS_NUMBER",
    "MAX_SAFE_INTEGER",
    "TIME_MAX",
    "TIME_MIN",
    "decode",
    "dumps",
    "encode",
    "format_time",
    "offer_from_json",
    "offer_to_json",
    "parse_time",
    "parse_wire_time",
    "printable",
    "schedule_from_json",
    "schedule_to_json",
]

T = TypeVar("T")

TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
"""The earliest time on the wire (inclusive)."""
TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)
"""The end of the times on the wire (exclusive)."""
MAX_SAFE_INTEGER = 2**53
"""The largest integer magnitude on the wire."""
MAX_ABS_NUMBER = 1e12
"""The largest magnitude of a number on the wire (kWh, EUR, ...): sums of many stay finite."""


def format_time(t: datetime) -> str:
    """ISO 8601 in UTC with a `Z` suffix, seconds resolution (microseconds kept if present)."""
    t = t.astimezone(UTC)
    text = t.isoformat(timespec="microseconds" if t.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse ISO 8601 with an offset (or `Z`) into an aware UTC datetime; ValueError otherwise."""
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset (write e.g. {text}Z)")
    try:
        return t.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time {text!r} lies outside the calendar in UTC") from None


def parse_wire_time(text: str) -> datetime:
    """`parse_time` for a time a client sent: also ValueError outside [TIME_MIN, TIME_MAX)."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError(f"{_describe(text)} is not an ISO 8601 time (ASCII digits)")
    t = parse_time(text)
    if not TIME_MIN <= t < TIME_MAX:
        raise ValueError(f"time {text!r} lies outside {format_time(TIME_MIN)} .. {format_time(TIME_MAX)} (exclusive)")
    return t


def printable(text: str) -> str:
    """`text` with unpaired surrogates escaped (`\\ud800`), safe to write as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def _field_specs(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, required) for each field of a dataclass (looked up once per class); a field
    that may be None is not required (`encode` omits None, so absent reads back as None)."""
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        required = required and _optional_inner(hints[f.name]) is None
        out.append((f.name, hints[f.name], required))
    return tuple(out)


@cache
def _no_default(cls: type) -> frozenset[str]:
    """The fields of a dataclass without a default."""
    return frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is datetime:
        return "a time (ISO 8601 with offset)"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if dataclasses.is_dataclass(tp):
        return "an object"
    if origin is tuple:
        return "a list"
    return str(tp)


def _is_unicode(text: str) -> bool:
    """False for a string holding an unpaired surrogate (which UTF-8 cannot encode)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


@cache
def _optional_inner(tp: Any) -> Any | None:
    """For `X | None` return X; otherwise None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _decode(tp: Any, value: Any, path: str, problems: list[Problem]) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else _decode(inner, value, path, problems)

    def bad() -> Problem:  # built only for a value that is wrong
        return Problem(path, f"must be {_type_name(tp)}, not {_describe(value)}", "type")

    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(bad())
            return None
        if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
            problems.append(Problem(path, f"must lie within +-{MAX_ABS_NUMBER:g}, not {_describe(value)}", "range"))
            return None
        if not math.isfinite(value):
            problems.append(Problem(path, f"must be a finite number, not {value}", "finite"))
            return None
        if abs(value) > MAX_ABS_NUMBER:
            problems.append(Problem(path, f"must lie within +-{MAX_ABS_NUMBER:g}, not {value:g}", "range"))
            return None
        return float(value)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(bad())
            return None
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(bad())
            return None
        if abs(value) > MAX_SAFE_INTEGER:
            problems.append(Problem(path, f"must lie within +-2^53, not {_describe(value)}", "range"))
            return None
        return value
    if tp is str:
        if not isinstance(value, str):
            problems.append(bad())
            return None
        if not _is_unicode(value):
            problems.append(Problem(path, f"must be valid Unicode, not {_describe(value)}", "unicode"))
            return None
        return value
    if tp is datetime:
        if not isinstance(value, str):
            problems.append(bad())
            return None
        try:
            return parse_wire_time(value)
        except ValueError as exc:
            text = str(exc)
            msg = text if "offset" in text or "outside" in text else f"{_describe(value)} is not an ISO 8601 time"
            problems.append(Problem(path, msg, "time"))
            return None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except (ValueError, TypeError):
            problems.append(bad())
            return None
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, value, path, problems)
    if typing.get_origin(tp) is tuple:
        return _decode_tuple(tp, value, path, problems)
    raise TypeError(f"codec cannot decode type {tp!r}")  # a model defect, not a user error


def _decode_tuple(tp: Any, value: Any, path: str, problems: list[Problem]) -> Any:
    args = typing.get_args(tp)
    if not isinstance(value, list):
        problems.append(Problem(path, f"must be a list, not {_describe(value)}", "type"))
        return None
    before = len(problems)
    if len(args) == 2 and args[1] is Ellipsis:
        items = [_decode(args[0], v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    else:
        if len(value) != len(args):
            problems.append(Problem(path, f"must be a list of {len(args)} items, not {len(value)}", "type"))
            return None
        items = [_decode(a, v, f"{path}[{i}]", problems) for i, (a, v) in enumerate(zip(args, value, strict=True))]
    if len(problems) > before:  # an item may be None without a problem: `tuple[float | None, ...]`
        return None
    return tuple(items)


def _decode_dataclass(cls: type, value: Any, path: str, problems: list[Problem]) -> Any:
    if not isinstance(value, dict):
        where = path or "offer"
        problems.append(Problem(path, f"{where} must be an object, not {_describe(value)}", "type"))
        return None
    prefix = f"{path}." if path else ""
    specs = _field_specs(cls)
    known = {name for name, _, _ in specs}
    for key in value:
        if key not in known:
            problems.append(Problem(f"{prefix}{printable(str(key))[:80]}", "is not a known field", "unknown"))
    kwargs: dict[str, Any] = {}
    ok = True
    for name, tp, required in specs:
        raw = value.get(name)
        if raw is None:
            if required:
                problems.append(Problem(f"{prefix}{name}", "is required but missing", "missing"))
                ok = False
            elif name in _no_default(cls):  # may be None and has no default: absent is None
                kwargs[name] = None
            continue
        before = len(problems)
        decoded = _decode(tp, raw, f"{prefix}{name}", problems)
        if len(problems) > before:
            ok = False
        elif decoded is not None:
            kwargs[name] = decoded
    return cls(**kwargs) if ok else None


def decode(cls: type[T], data: Any, *, path: str = "") -> tuple[T | None, list[Problem]]:
    """Decode JSON data (already parsed) into `cls`, returning the object and every problem.

    The object is None when there is any structural problem.
    """
    problems: list[Problem] = []
    obj = _decode(cls, data, path, problems)
    return (obj if not problems else None), problems


_SCALARS = (str, int, float, bool, type(None))


@cache
def _encoded_fields(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass (None for any other type), looked up once per class."""
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return None


def encode(obj: Any) -> Any:
    """The JSON-ready form (dicts, lists, strings, numbers) of a model object."""
    tp = type(obj)
    if tp in _SCALARS:
        return obj
    if tp is tuple or tp is list:
        if all(type(v) is float for v in obj):  # energy per step: the bulk of every offer
            return list(obj)
        return [encode(v) for v in obj]
    names = _encoded_fields(tp)
    if names is not None:
        out = {}
        for name in names:
            v = getattr(obj, name)
            if v is not None:
                out[name] = encode(v)
        return out
    if isinstance(obj, datetime):
        return format_time(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [encode(v) for v in obj]
    return obj


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """JSON text of a model object (or a list of them)."""
    return json.dumps(encode(obj), indent=indent, allow_nan=False)


def _loads(cls: type[T], text: str | bytes, what: str) -> T:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOfferError([Problem("", f"malformed JSON: {exc}", "json")], what=what) from None
    obj, problems = decode(cls, data)
    if problems:
        raise InvalidOfferError(problems, what=what)
    return obj  # type: ignore[return-value]


def offer_from_json(text: str | bytes) -> FlexOffer:
    """Parse one offer; raises InvalidOfferError listing every structural problem."""
    return _loads(FlexOffer, text, "flex-offer")


def offer_to_json(offer: FlexOffer, *, indent: int | None = None) -> str:
    """The wire-format JSON text of an offer."""
    return dumps(offer, indent=indent)


def schedule_from_json(text: str | bytes) -> Schedule:
    """Parse one schedule; raises InvalidOfferError listing every structural problem."""
    return _loads(Schedule, text, "schedule")


def schedule_to_json(schedule: Schedule | Measurement) -> str:
    """The wire-format JSON text of a schedule or measurement."""
    return dumps(schedule)

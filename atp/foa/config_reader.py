"""Typed reading of one mapping of an FOA configuration file: every problem collected with its key.

`ConfigSection` wraps one mapping (the prosumer, a device, a wet appliance's programme) and its
key path (`devices[2]`). Its readers (`string`, `number`, `integer`, `boolean`, `choice`, `pair`,
`numbers`, `strings`, `sections`) return the file's value, the default when the key is absent
or null, or `MISSING` after recording a `Problem` (missing, type, range) under the full key:
`devices[2].capacity_kwh: -1 is out of range: it must be above 0`. `check_unknown` then reports
every key no reader asked for, listing the known ones. Device parsers registered with
`atp.foa.config_devices.register_device_config` read their fields through it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from atp.errors import Problem

__all__ = ["MISSING", "ConfigSection", "complete", "type_name"]

MISSING: Any = object()
"""The value of a field that had a problem (recorded in the section) or a missing required key."""


def type_name(value: Any) -> str:
    """How a problem message names the type of `value` ("a number", "a string", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def complete(*values: Any) -> bool:
    """True when no value is `MISSING` (every field was read without a problem)."""
    return all(v is not MISSING for v in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: int | float) -> float:
    """`value` as a float; a whole number too large for one becomes infinity (rejected as not finite)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


class ConfigSection:
    """Typed access to one mapping of the file; problems are collected, unknown keys reported."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: list[Problem]) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        """The full key of field `name` (`devices[2].capacity_kwh`)."""
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, message: str, rule: str) -> None:
        """Record a problem with field `name` (rule: missing, type, range, unknown, load_type)."""
        self.problems.append(Problem(self.key(name), message, rule))

    def get(self, name: str, default: Any = MISSING) -> tuple[Any, bool]:
        """(value, given): the file's value, or the default (given False); a missing required key fails."""
        self.used.add(name)
        value = self.data.get(name)
        if value is None:
            if default is MISSING:
                self.fail(name, "is missing (a required key)", "missing")
            return default, False
        return value, True

    def string(self, name: str, default: Any = MISSING) -> Any:
        """A non-empty string."""
        value, given = self.get(name, default)
        if not given:
            return value
        if not isinstance(value, str) or not value:
            self.fail(name, f"must be a non-empty string, not {type_name(value)} ({value!r})", "type")
            return MISSING
        return value

    def _range(self, name: str, value: float, low: float | None, high: float | None, low_open: bool) -> bool:
        if not math.isfinite(value):
            self.fail(name, f"must be a finite number, not {value!r}", "range")
            return False
        if low is not None and (value <= low if low_open else value < low):
            relation = "above" if low_open else "at least"
            self.fail(name, f"{value:g} is out of range: it must be {relation} {low:g}", "range")
            return False
        if high is not None and value > high:
            self.fail(name, f"{value:g} is out of range: it must be at most {high:g}", "range")
            return False
        return True

    def number(
        self,
        name: str,
        default: Any = MISSING,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
    ) -> Any:
        """A finite number within [low, high] (low excluded when `low_open`), as a float."""
        value, given = self.get(name, default)
        if not given:
            return value
        if not _is_number(value):
            self.fail(name, f"must be a number, not {type_name(value)} ({value!r})", "type")
            return MISSING
        value = _as_float(value)
        return value if self._range(name, value, low, high, low_open) else MISSING

    def integer(self, name: str, default: Any = MISSING, *, low: int | None = None, high: int | None = None) -> Any:
        """A whole number within [low, high]."""
        value, given = self.get(name, default)
        if not given:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be a whole number, not {type_name(value)} ({value!r})", "type")
            return MISSING
        if low is not None and value < low:
            self.fail(name, f"{value} is out of range: it must be at least {low}", "range")
            return MISSING
        if high is not None and value > high:
            self.fail(name, f"{value} is out of range: it must be at most {high}", "range")
            return MISSING
        return value

    def boolean(self, name: str, default: Any = MISSING) -> Any:
        """true or false."""
        value, given = self.get(name, default)
        if not given:
            return value
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, not {type_name(value)} ({value!r})", "type")
            return MISSING
        return value

    def choice(self, name: str, options: Sequence[str], default: Any = MISSING) -> Any:
        """One of `options` (strings)."""
        value, given = self.get(name, default)
        if not given:
            return value
        if not isinstance(value, str):
            self.fail(name, f"must be one of {', '.join(options)}, not {type_name(value)} ({value!r})", "type")
            return MISSING
        if value not in options:
            self.fail(name, f"{value!r} is not one of {', '.join(options)}", "range")
            return MISSING
        return value

    def pair(self, name: str, default: Any = MISSING) -> Any:
        """A [low, high] pair of numbers with low <= high, as a tuple of floats."""
        value, given = self.get(name, default)
        if not given:
            return value
        if not isinstance(value, list) or len(value) != 2 or not all(_is_number(v) for v in value):
            self.fail(name, f"must be a list [low, high] of two numbers, not {value!r}", "type")
            return MISSING
        low, high = _as_float(value[0]), _as_float(value[1])
        if not (math.isfinite(low) and math.isfinite(high)):
            self.fail(name, f"must hold finite numbers, not {value!r}", "range")
            return MISSING
        if low > high:
            self.fail(name, f"low {low:g} is above high {high:g}", "range")
            return MISSING
        return low, high

    def numbers(self, name: str, default: Any = MISSING, *, low: float | None = None, min_length: int = 1) -> Any:
        """A list of at least `min_length` finite numbers, each at least `low`, as a tuple of floats."""
        value, given = self.get(name, default)
        if not given:
            return value
        if not isinstance(value, list) or not all(_is_number(v) for v in value):
            self.fail(name, f"must be a list of numbers, not {type_name(value)} ({value!r})", "type")
            return MISSING
        if len(value) < min_length:
            self.fail(name, f"needs at least {min_length} value(s), not {len(value)}", "range")
            return MISSING
        out = tuple(_as_float(v) for v in value)
        for k, v in enumerate(out):
            if not self._range(f"{name}[{k}]", v, low, None, False):
                return MISSING
        return out

    def strings(self, name: str, default: Any = MISSING, *, min_length: int = 1) -> Any:
        """A list of at least `min_length` non-empty strings, as a tuple."""
        value, given = self.get(name, default)
        if not given:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(name, f"must be a list of non-empty strings, not {type_name(value)} ({value!r})", "type")
            return MISSING
        if len(value) < min_length:
            self.fail(name, f"needs at least {min_length} value(s), not {len(value)}", "range")
            return MISSING
        return tuple(value)

    def sections(self, name: str, default: Any = MISSING, *, min_length: int = 1) -> Any:
        """A list of mappings, each as a `ConfigSection` keyed `name[i]` (the caller checks unknown keys)."""
        value, given = self.get(name, default)
        if not given:
            return value
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(name, f"must be a list of mappings, not {type_name(value)} ({value!r})", "type")
            return MISSING
        if len(value) < min_length:
            self.fail(name, f"needs at least {min_length} entry(ies), not {len(value)}", "range")
            return MISSING
        return [ConfigSection(v, self.key(f"{name}[{i}]"), self.problems) for i, v in enumerate(value)]

    def check_unknown(self, extra_known: tuple[str, ...] = ()) -> None:
        """Record every key no reader asked for (and not in `extra_known`), listing the known ones."""
        known = sorted(self.used | set(extra_known))
        for name in self.data:
            if name not in self.used and name not in extra_known:
                self.fail(str(name), f"is an unknown field; known fields: {', '.join(known)}", "unknown")

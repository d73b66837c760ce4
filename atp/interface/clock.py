"""A receiver's clock: the wall clock, or an operator clock that only its operator moves.

`goflex-atp serve --clock operator --clock-start T` runs a receiver on an `OperatorClock`:
its time is T until the operator sets another (`PUT /operator/clock`, or the `now` of an
operator round, atp.services.operator), and it never goes back. A run that drives simulated
time against served receivers (`goflex-twin atp.deployment=services`) or a lab replaying a
recorded day uses it; everything the receiver stamps (offers, events, measurements, the life
cycle, the market's gates) then follows the operator's time instead of the wall's.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from atp.errors import InvalidOfferError, Problem
from atp.flexoffer.codec import parse_wire_time
from atp.interface.errors import ConflictError

__all__ = ["OperatorClock", "times_of"]


class OperatorClock:
    """A settable, monotonic clock (module docstring); calling it gives the current time."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("an operator clock starts at a time with a timezone")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> datetime:
        """Move the clock to `now` (UTC); ConflictError (409) when `now` is before its time."""
        now = now.astimezone(UTC)
        with self._lock:
            if now < self._now:
                raise ConflictError(
                    f"now {now.isoformat()} is before the receiver's time {self._now.isoformat()}: "
                    "an operator clock never goes back"
                )
            self._now = now
        return now


def times_of(data: Any, allowed: tuple[str, ...], *, required: tuple[str, ...] = ()) -> dict[str, datetime]:
    """The times of a small operator body (`{"now": "...Z"}`); InvalidOfferError (422) naming
    every unknown, missing or malformed field. An empty body is `{}`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidOfferError([Problem("", "the body must be a JSON object", "type")], what="operator request")
    problems = [Problem(k, f"is not one of {', '.join(allowed)}", "unknown") for k in data if k not in allowed]
    problems += [Problem(k, "is required", "required") for k in required if k not in data]
    out: dict[str, datetime] = {}
    for key in allowed:
        value = data.get(key)
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise ValueError
            out[key] = parse_wire_time(value)
        except ValueError:
            problems.append(Problem(key, f"{value!r} is not an ISO 8601 time with a timezone", "time"))
    if problems:
        raise InvalidOfferError(problems, what="operator request")
    return out

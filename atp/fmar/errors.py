"""Errors of the Flex-Offer Market (FMAR): requests, sessions and mechanisms.

AtpError (atp.errors)
+-- MarketError                 anything the market refuses
    +-- InvalidRequestError     a flexibility request is malformed (also a ValidationError)
    +-- InvalidSessionError     a session's times or grid are inconsistent (also a ValidationError)
    +-- SessionError            the calendar refuses an operation: unknown or duplicate session,
    |                           gate closed or not yet reached, session already cleared
    +-- UnknownMechanismError   no clearing mechanism registered under that name

Clearing itself never raises for market outcomes (no offers, no crossing bids, zero volume):
those are ordinary results with a `reason` (see `SessionResult`).
"""

from __future__ import annotations

from atp.errors import AtpError, Problem, ValidationError

__all__ = [
    "InvalidRequestError",
    "InvalidSessionError",
    "MarketError",
    "SessionError",
    "UnknownMechanismError",
]


class MarketError(AtpError):
    """Root of the errors the Flex-Offer Market raises on purpose."""


class _ProblemsError(MarketError, ValidationError):
    """An input with one or more problems, every one of them listed."""

    what = "input"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        lines = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(self.problems, message=f"invalid {self.what}: {lines}{more}")


class InvalidRequestError(_ProblemsError):
    """A flexibility request has problems; `problems` lists every one of them."""

    what = "request"


class InvalidSessionError(_ProblemsError):
    """A market session has problems; `problems` lists every one of them."""

    what = "session"


class SessionError(MarketError):
    """The session calendar refuses the operation; the message says why and what to do."""


class UnknownMechanismError(MarketError):
    """No clearing mechanism is registered under the requested name."""

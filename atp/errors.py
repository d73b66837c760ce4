"""The ATP error tree: every error the platform raises on purpose derives from AtpError.

    AtpError
    +-- ValidationError        an input (offer, schedule, config, file) is wrong
    |   +-- InvalidOfferError  one or more problems with a Flex-Offer, all listed
    |   +-- InputFileError     a file cannot be read or parsed as offers
    +-- ProtocolError          a message broke the exchange protocol (state, ownership)
    +-- SolverError            a solver failed
        +-- InfeasibleError    the problem has no solution

Every error carries a sentence a person understands; none needs a traceback to be read.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AtpError",
    "InfeasibleError",
    "InputFileError",
    "InvalidOfferError",
    "Problem",
    "ProtocolError",
    "SolverError",
    "ValidationError",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (JSON path) and what (a plain sentence).

    `rule` names the feasibility rule (1-5 of spec/flexoffer.md) for schedule problems,
    or a short code such as "type" or "bounds" for validation problems.
    """

    path: str
    message: str
    rule: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class AtpError(Exception):
    """Root of all errors the ATP raises on purpose.

    An error whose constructor takes more than its sentence passes the constructor's arguments
    on and its sentence as `message`: `args` stay the constructor's, so a copy made by
    `type(e)(*e.args)` (pickling to another process, SimPy re-raising a process's failure) is
    the same error saying the same sentence.
    """

    def __init__(self, *args: object, message: str | None = None) -> None:
        super().__init__(*args)
        self._message = message

    def __str__(self) -> str:
        return self._message if self._message is not None else super().__str__()


class ValidationError(AtpError):
    """An input is wrong; the message says which field and why."""


class InvalidOfferError(ValidationError):
    """A Flex-Offer (or schedule) has problems; `problems` lists every one of them."""

    def __init__(self, problems: list[Problem], what: str = "flex-offer") -> None:
        self.problems = list(problems)
        lines = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(self.problems, what, message=f"invalid {what}: {lines}{more}")


class InputFileError(ValidationError):
    """A file cannot be read as offers: missing, binary, empty, too large or malformed."""


class ProtocolError(AtpError):
    """A request broke the exchange protocol (wrong state, unknown id, not the owner)."""


class SolverError(AtpError):
    """An optimisation solver failed or returned no usable answer."""


class InfeasibleError(SolverError):
    """The optimisation problem has no feasible solution."""

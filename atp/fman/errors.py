"""Errors of the Flex-Offer Manager (FMAN).

AtpError (atp.errors)
+-- FmanError                  the FMAN cannot do what was asked
    +-- UnknownObjectiveError  a planning objective name that is not registered
    +-- PriceError             prices that cannot be put on the planning grid
    +-- DisaggregationError    a schedule that is not feasible for its aggregate
    +-- AssignmentError        the offer store refused a member schedule (a bug in the FMAN)

A solver that fails is not an error of the FMAN: planning falls back to default schedules and
says why (`PlanSolution.fallback_reason`).
"""

from __future__ import annotations

from atp.errors import AtpError

__all__ = ["AssignmentError", "DisaggregationError", "FmanError", "PriceError", "UnknownObjectiveError"]


class FmanError(AtpError):
    """Root of the errors the Flex-Offer Manager raises on purpose."""


class UnknownObjectiveError(FmanError):
    """A planning objective name that is not registered; the message lists the known ones."""


class PriceError(FmanError):
    """Prices that cannot be read or put on the planning grid; the message says why."""


class DisaggregationError(FmanError):
    """A schedule given to `disaggregate` is not feasible for its aggregate."""


class AssignmentError(FmanError):
    """The offer store refused a member schedule: disaggregation broke its guarantee (a bug)."""

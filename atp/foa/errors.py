"""Errors of the Flex-Offer Agent: communication, generation, device states and the EMS.

    AtpError (atp.errors)
    +-- FoaError                    anything the FOA raises on purpose
        +-- GenerationError         a generator cannot build an offer from its context
        |   +-- PricingError        a priority or base price is invalid (atp/foa/pricing.py)
        +-- ConfigError             a stand-alone FOA's configuration file is wrong (atp/foa/config.py)
        +-- StateError              a device state is impossible (also a ValueError)
        +-- UnknownLoadTypeError    no generator is registered for a load type (also a KeyError)
        +-- UnknownDeviceError      the agent has no generator for a device (also a KeyError)
        +-- EmsError                the energy management system refuses to act
            +-- ScheduleRefusedError    a schedule is not feasible for its offer

`CommunicationError` (a lost request or reply, which the FOA retries with backoff) belongs to
the exchange interface (`atp.interface.errors`); it is re-exported here for the FOA's callers.
"""

from __future__ import annotations

from collections.abc import Iterable

from atp.errors import AtpError, Problem
from atp.interface.errors import CommunicationError

__all__ = [
    "CommunicationError",
    "EmsError",
    "FoaError",
    "GenerationError",
    "ScheduleRefusedError",
    "StateError",
    "UnknownDeviceError",
    "UnknownLoadTypeError",
]


class FoaError(AtpError):
    """Root of the errors the Flex-Offer Agent raises on purpose."""


class GenerationError(FoaError):
    """A generator cannot build an offer: the context or the state does not fit its load type."""


class StateError(FoaError, ValueError):
    """A device state (sensor and user data) is physically impossible; the message says which field."""


class UnknownLoadTypeError(FoaError, KeyError):
    """No generator is registered for a load type; the message lists the known ones."""

    def __init__(self, load_type: str, known: Iterable[str]) -> None:
        self.load_type = load_type
        self.known = tuple(sorted(known))
        super().__init__(
            load_type,
            self.known,
            message=f"no flex-offer generator for load type {load_type!r}; known load types: "
            f"{', '.join(self.known) or '(none)'} (register one with @register_generator)",
        )


class UnknownDeviceError(FoaError, KeyError):
    """The agent has no generator for a device; the message lists the agent's devices."""

    def __init__(self, device: str, known: Iterable[str]) -> None:
        self.device = device
        self.known = tuple(sorted(known))
        super().__init__(
            device,
            self.known,
            message=f"the flex-offer agent has no device {device!r}; its devices: {', '.join(self.known) or '(none)'}",
        )


class EmsError(FoaError):
    """The energy management system refuses to act on a request."""


class ScheduleRefusedError(EmsError):
    """A schedule is not feasible for its offer and is not executed; `problems` lists why."""

    def __init__(self, offer_id: str | None, problems: Iterable[Problem]) -> None:
        self.offer_id = offer_id
        self.problems = list(problems)
        lines = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(
            offer_id,
            self.problems,
            message=f"schedule refused for offer {offer_id}: it is not feasible for the offer: {lines}{more}; "
            "the device keeps its default operation",
        )

"""Flex-Offer Generators (FOG): the plug-in base class, the generation context and the registry.

A generator turns one device's state (sensor and user data, `atp.foa.states`) into a Flex-Offer
with its predictive model of that load type (D2.1 7.3). Load types are plug-ins: one module
defines a `FlexOfferGenerator` subclass with a `load_type` name and decorates it with
`@register_generator`; `generator_for(load_type)` then builds one. The FOA core calls the
lifecycle hooks (documented no-ops here) as the offer moves through the exchange protocol,
and the built-in EMS asks the generator to keep the device's limits (`keep_limits`).

Modelling order (D2.1 7.1): a generator uses energy flexibility first, then time flexibility,
then total energy, then dependency or polytope constraints, then XOR profiles, stopping as soon
as the load's flexibility is captured; `captured_flexibility` says how much it captured.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from atp.flexoffer import DEFAULT_SLICE_S, DefaultSchedule, FlexOffer, Location, Mode, Price, Profile, Schedule
from atp.foa.errors import FoaError, GenerationError, UnknownLoadTypeError

__all__ = [
    "MAX_HORIZON_S",
    "FlexOfferGenerator",
    "GenerationContext",
    "generator_for",
    "load_types",
    "register_generator",
]

MAX_HORIZON_S = 86_400
_BUILTIN_PACKAGE = "atp.foa.generators"


@dataclass(frozen=True, kw_only=True)
class GenerationContext:
    """What a generator needs besides the device state: time, grid, issuer and trading mode.

    Offers cover `now` to `now + horizon_s` (at most 24 h). A `direct` offer carries
    `price_eur_per_kwh` as its deviation price; a `delegated` offer carries no price.
    """

    now: datetime
    slice_s: int = DEFAULT_SLICE_S
    issuer: str
    location: Location
    mode: Mode = Mode.DELEGATED
    price_eur_per_kwh: float | None = None
    horizon_s: int = MAX_HORIZON_S

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise GenerationError("GenerationContext.now must be timezone-aware (e.g. UTC)")
        if self.slice_s <= 0 or 86_400 % self.slice_s:
            raise GenerationError(f"slice_s(={self.slice_s}) must divide 86400 (e.g. 900 or 3600)")
        if not 0 < self.horizon_s <= MAX_HORIZON_S:
            raise GenerationError(f"horizon_s(={self.horizon_s}) must lie within (0, {MAX_HORIZON_S}] s (24 h)")
        if self.mode is Mode.DIRECT and self.price_eur_per_kwh is None:
            raise GenerationError("a direct offer needs price_eur_per_kwh (its deviation price)")
        if self.mode is Mode.DELEGATED and self.price_eur_per_kwh is not None:
            raise GenerationError("a delegated offer carries no price: set price_eur_per_kwh=None or mode=DIRECT")

    @property
    def first_start(self) -> datetime:
        """The earliest start of an offer: the first grid boundary strictly after `now`.

        The step in progress (`now` to `first_start`) runs uncontrolled; generators predict it.
        """
        epoch_s = self.now.timestamp()
        steps = int(epoch_s // self.slice_s) + 1
        return self.now + timedelta(seconds=steps * self.slice_s - epoch_s)

    @property
    def lead_s(self) -> float:
        """Seconds from `now` to `first_start` (in (0, slice_s])."""
        return (self.first_start - self.now).total_seconds()

    @property
    def horizon_end(self) -> datetime:
        """The end of the offer horizon, `now + horizon_s`."""
        return self.now + timedelta(seconds=self.horizon_s)

    def steps_until(self, t: datetime) -> int:
        """Whole `slice_s` steps from `first_start` up to `t` (0 when `t` is earlier)."""
        return max(0, int((t - self.first_start).total_seconds() // self.slice_s))

    def price(self) -> Price | None:
        """The offer's price: the deviation price of a direct offer, None for a delegated one."""
        if self.price_eur_per_kwh is None:
            return None
        return Price(per_kwh_deviation=self.price_eur_per_kwh)

    def block_offer(self, load_type: str, profile: Profile, default_kwh: Sequence[float]) -> FlexOffer:
        """An offer of one profile starting at `first_start` with no time flexibility, assigned
        before it starts, with `default_kwh` as its default schedule (the block offers of
        heat pumps, water heaters, batteries, PV and industrial processes)."""
        start = self.first_start
        return FlexOffer(
            issuer=self.issuer,
            mode=self.mode,
            profiles=(profile,),
            device=load_type,
            location=self.location,
            created_at=self.now,
            assignment_before=start,
            start_after=start,
            start_before=start,
            slice_s=self.slice_s,
            default_schedule=DefaultSchedule(start=start, profile=0, energy=tuple(float(x) for x in default_kwh)),
            price=self.price(),
        )


class FlexOfferGenerator(abc.ABC):
    """Base class of the load-type plug-ins (D2.1 7.3, Flex-Offer Generator).

    Subclasses set `load_type` (the registry name and the offers' `device` label) and
    `version` (provenance), implement `generate` and `captured_flexibility`, and override the
    hooks they need. A generator keeps no per-device state unless it documents it: the FOA
    core may call it for several devices of the same type.
    """

    load_type: ClassVar[str]
    version: ClassVar[str] = "1"

    @abc.abstractmethod
    def generate(self, state: Any, ctx: GenerationContext) -> FlexOffer | None:
        """An offer for the device's flexibility from `ctx.first_start`, or None when it has none.

        The offer must be valid (`validate_offer`) and its default schedule must be what the
        device does uncontrolled; it never raises for a device with nothing to offer.
        """

    @abc.abstractmethod
    def captured_flexibility(self, state: Any, offer: FlexOffer | None, ctx: GenerationContext) -> float:
        """How much of the device's true flexibility `offer` captures, in [0, 1].

        Each load type defines and documents its measure; 1.0 when the device has no
        flexibility to capture.
        """

    # -- EMS hook ------------------------------------------------------------------------------
    def keep_limits(self, state: Any, scheduled_kwh: float, *, now: datetime, slice_s: int) -> tuple[float, str | None]:
        """The kWh to execute over the step starting `now` so the user's limits hold (NF2.1).

        Returns `(executed_kwh, reason)`; `reason` is None when the schedule is kept. The
        default keeps the schedule: a load type without hard user limits overrides nothing.
        """
        return scheduled_kwh, None

    # -- lifecycle hooks, called by the FOA core (no-ops by default) -----------------------------
    def on_accepted(self, offer: FlexOffer) -> None:
        """The receiver accepted `offer` (first submission or a replacement). No-op by default."""
        return None

    def on_assigned(self, offer: FlexOffer, schedule: Schedule) -> None:
        """A (feasible) schedule was assigned to `offer`. No-op by default."""
        return None

    def on_rejected(self, offer: FlexOffer) -> None:
        """The receiver rejected `offer`; the device runs its default operation. No-op by default."""
        return None

    def on_withdrawn(self, offer: FlexOffer) -> None:
        """`offer` was withdrawn (replaced, or the device has no flexibility left). No-op by default."""
        return None

    def on_settled(self, offer: FlexOffer) -> None:
        """`offer` was executed and settled; the FOA forgets it. No-op by default."""
        return None


_REGISTRY: dict[str, type[FlexOfferGenerator]] = {}
_G = TypeVar("_G", bound=type[FlexOfferGenerator])


def register_generator(cls: _G) -> _G:
    """Class decorator: register a generator under its `load_type` (one name, one class)."""
    load_type = getattr(cls, "load_type", None)
    if not isinstance(load_type, str) or not load_type:
        raise FoaError(f"{cls.__name__} needs a class attribute load_type: a non-empty string such as 'ev'")
    known = _REGISTRY.get(load_type)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise FoaError(f"load type {load_type!r} is already registered by {known.__module__}.{known.__qualname__}")
    _REGISTRY[load_type] = cls
    return cls


def _load_builtins() -> None:
    importlib.import_module(_BUILTIN_PACKAGE)


def load_types() -> tuple[str, ...]:
    """The registered load types, sorted (the built-in ones included)."""
    _load_builtins()
    return tuple(sorted(_REGISTRY))


def generator_for(load_type: str, **options: Any) -> FlexOfferGenerator:
    """A new generator for `load_type`, built with `options`; UnknownLoadTypeError lists the known types."""
    _load_builtins()
    cls = _REGISTRY.get(load_type)
    if cls is None:
        raise UnknownLoadTypeError(load_type, _REGISTRY)
    return cls(**options)

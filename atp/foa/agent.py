"""The FOA core: a passive agent that submits its devices' offers and follows their life cycle.

`FlexOfferAgent` (D2.1 7.3, FOA Core) runs a device's generator when the device owner triggers
it, submits the offer through its `ExchangeInterface` (to an FMAN when delegated, to an FMAR
when direct), learns `assigned`, `rejected`, `withdrawn` and `settled` from the receiver's
events, and answers the EMS setpoint for each device from the schedule in force.

Replacement rule (`trigger`): a device has at most one open offer whose span overlaps the new
one. If such an older offer is still `accepted` and its operation has not started, the new
offer replaces it with PUT (same id); if the receiver refuses the PUT (ConflictError: it was
assigned meanwhile), or the older offer is known to be `assigned` and not started, it is
withdrawn and the new offer submitted. An older offer whose operation has started stays in
force and the new offer is not submitted. An older offer that ends before the new one starts
(the next heat-pump block) is left alone. When the generator has nothing to offer, the
device's not-started older offer is withdrawn.

Robustness (NF2.1): calls that fail with `CommunicationError` are retried `max_retries` times
with exponential backoff (`sleep` is injectable, so tests and the simulation never sleep);
every submission carries an idempotency key, so a retry after a lost reply stores nothing new.
A submission that still fails stays in `pending`; `sync()` (and the device's next `trigger`,
before it generates) submits it again with the same key; `sync()` also re-reads every tracked
offer with `get`. Offers the receiver accepted stay
in `offers` (with their last known state and schedule) until settled, rejected or withdrawn.
A duplicate `assigned` event is harmless; a second, different schedule for the same offer,
or an infeasible one, is a protocol violation: logged, recorded in `violations`, ignored.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from atp.errors import AtpError
from atp.flexoffer import (
    DefaultSchedule,
    FlexOffer,
    Location,
    Measurement,
    Mode,
    OfferState,
    Schedule,
    check_schedule,
    format_time,
)
from atp.foa.ems import BuiltInEMS, XemsAdapter, schedule_step
from atp.foa.errors import CommunicationError, GenerationError, UnknownDeviceError
from atp.foa.generator import MAX_HORIZON_S, FlexOfferGenerator, GenerationContext
from atp.interface import ConflictError, Event, ExchangeInterface, NotFoundError

__all__ = ["FlexOfferAgent", "PendingSubmission", "TrackedOffer"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_OPEN = frozenset({OfferState.ACCEPTED, OfferState.ASSIGNED, OfferState.EXECUTING})
_FINAL = frozenset({OfferState.SETTLED, OfferState.REJECTED, OfferState.WITHDRAWN})
_KEEP_CLOSED = 1000
_KEEP_EARLY = 1000


@dataclass
class TrackedOffer:
    """What the agent knows of one of its offers: the receiver's last view and its schedule."""

    device: str
    offer: FlexOffer
    schedule: Schedule | None = None
    idempotency_key: str | None = None

    @property
    def id(self) -> str:
        """The offer id the receiver gave."""
        return self.offer.id or ""

    @property
    def state(self) -> OfferState | None:
        """The last known state at the receiver."""
        return self.offer.state

    def schedule_in_force(self) -> Schedule | DefaultSchedule | None:
        """The assigned schedule, else the offer's default schedule."""
        return self.schedule if self.schedule is not None else self.offer.default_schedule

    def operation_start(self) -> datetime | None:
        """When the offer's operation starts (the receiver's rule for withdrawals)."""
        sched = self.schedule_in_force()
        return sched.start if sched is not None else self.offer.start_after

    def latest_end(self) -> datetime | None:
        """The latest time the offer's operation can end."""
        if self.schedule is not None:
            return self.schedule.end(self.offer.slice_s)
        window = self.offer.window(self.offer.created_at)
        latest = window.latest or window.earliest
        if latest is None:
            return None
        n = max(p.n_steps for p in self.offer.profiles)
        return latest + timedelta(seconds=n * self.offer.slice_s)


@dataclass(frozen=True)
class PendingSubmission:
    """An offer whose submission failed for lost communication; `sync()` submits it again."""

    device: str
    offer: FlexOffer
    idempotency_key: str


class FlexOfferAgent:
    """The FOA core for one issuer (a prosumer or a DSO) and its devices.

    `generators` maps each device name to its load type's generator. The agent subscribes to
    the client's events at construction; `close()` unsubscribes.
    """

    def __init__(
        self,
        client: ExchangeInterface,
        *,
        issuer: str,
        location: Location,
        mode: Mode,
        generators: Mapping[str, FlexOfferGenerator],
        ems: BuiltInEMS | None = None,
        xems: XemsAdapter | None = None,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, not {max_retries}")
        self.client = client
        self.issuer = issuer
        self.location = location
        self.mode = mode
        self.generators = dict(generators)
        self.ems = ems if ems is not None else BuiltInEMS(generators={g.load_type: g for g in self.generators.values()})
        self.xems = xems
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self.offers: dict[str, TrackedOffer] = {}
        self.closed: OrderedDict[str, TrackedOffer] = OrderedDict()
        self.pending: list[PendingSubmission] = []
        self.violations: list[str] = []
        self.generation_errors: list[str] = []  # devices the generator could not model (no offer made)
        self._unsent: list[Measurement] = []
        self._early: OrderedDict[str, list[Event]] = OrderedDict()
        self._last_seq = 0
        self._keys = itertools.count(1)
        self._unsubscribe = client.subscribe(self.handle_event)

    # -- plumbing ------------------------------------------------------------------------
    def close(self) -> None:
        """Stop receiving the client's events."""
        self._unsubscribe()

    def _retry(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """`call(*args, **kwargs)`, retried on CommunicationError with exponential backoff."""
        attempt = 0
        while True:
            try:
                return call(*args, **kwargs)
            except CommunicationError as exc:
                if attempt >= self.max_retries:
                    raise
                delay = min(self.backoff_s * 2**attempt, self.max_backoff_s)
                attempt += 1
                _log.warning("%s: %s; retry %d in %.3g s", self.issuer, exc, attempt, delay)
                self._sleep(delay)

    def _generator(self, device: str) -> FlexOfferGenerator:
        generator = self.generators.get(device)
        if generator is None:
            raise UnknownDeviceError(device, self.generators)
        return generator

    def context(
        self,
        now: datetime,
        *,
        slice_s: int = 900,
        price_eur_per_kwh: float | None = None,
        horizon_s: int = MAX_HORIZON_S,
    ) -> GenerationContext:
        """A generation context with this agent's issuer, location and mode."""
        return GenerationContext(
            now=now,
            slice_s=slice_s,
            issuer=self.issuer,
            location=self.location,
            mode=self.mode,
            price_eur_per_kwh=price_eur_per_kwh,
            horizon_s=horizon_s,
        )

    def _close(self, tracked: TrackedOffer) -> None:
        """Move a settled, rejected or withdrawn offer to `closed` (once) and call its hook."""
        if self.offers.pop(tracked.id, None) is None:
            return
        self.closed[tracked.id] = tracked
        while len(self.closed) > _KEEP_CLOSED:
            self.closed.popitem(last=False)
        generator = self.generators.get(tracked.device)
        if generator is None:
            return
        if tracked.state is OfferState.SETTLED:
            generator.on_settled(tracked.offer)
        elif tracked.state is OfferState.REJECTED:
            generator.on_rejected(tracked.offer)
        elif tracked.state is OfferState.WITHDRAWN:
            generator.on_withdrawn(tracked.offer)

    def _violation(self, message: str) -> None:
        _log.warning("protocol violation: %s", message)
        self.violations.append(message)

    def _current(self, device: str) -> TrackedOffer | None:
        """The device's newest open offer."""
        mine = [t for t in self.offers.values() if t.device == device and t.state in _OPEN]
        return mine[-1] if mine else None

    # -- events --------------------------------------------------------------------------
    def handle_event(self, event: Event) -> None:
        """Apply one receiver event (the client's subscription calls it; bindings may too)."""
        self._last_seq = max(self._last_seq, event.seq)
        offer_id = event.offer.id or ""
        tracked = self.offers.get(offer_id)
        if tracked is None:
            if offer_id not in self.closed:
                # An event that overtook the reply of its submission: applied when the reply arrives.
                self._early.setdefault(offer_id, []).append(event)
                while len(self._early) > _KEEP_EARLY:
                    self._early.popitem(last=False)
            return
        self._apply(tracked, event.offer)

    def _apply(self, tracked: TrackedOffer, view: FlexOffer) -> None:
        """Bring `tracked` up to the receiver's `view` (state, content and schedule)."""
        schedule = view.schedule
        tracked.offer = replace(view, schedule=None)
        if schedule is not None:
            self._apply_schedule(tracked, schedule)
        if tracked.state in _FINAL:
            self._close(tracked)

    def _apply_schedule(self, tracked: TrackedOffer, schedule: Schedule) -> None:
        if tracked.schedule == schedule:
            return
        if tracked.schedule is not None:
            self._violation(
                f"offer {tracked.id} was assigned a second, different schedule (start "
                f"{format_time(schedule.start)}); the first one (start {format_time(tracked.schedule.start)}) stays"
            )
            return
        problems = check_schedule(tracked.offer, schedule)
        if problems:
            self._violation(
                f"offer {tracked.id} was assigned an infeasible schedule ({'; '.join(map(str, problems[:3]))}); "
                "the default schedule stays in force"
            )
            return
        tracked.schedule = schedule
        self._generator(tracked.device).on_assigned(tracked.offer, schedule)
        if self.xems is not None:
            self.xems.send_schedule(tracked.device, tracked.offer, schedule)

    def _track(self, device: str, answer: FlexOffer, key: str | None) -> TrackedOffer:
        tracked = TrackedOffer(device, replace(answer, schedule=None), idempotency_key=key)
        self.offers[tracked.id] = tracked
        self._generator(device).on_accepted(tracked.offer)
        if self.xems is not None and tracked.offer.default_schedule is not None:
            self.xems.send_schedule(device, tracked.offer, tracked.offer.default_schedule)
        if answer.schedule is not None:
            self._apply_schedule(tracked, answer.schedule)
        for event in self._early.pop(tracked.id, []):
            if tracked.id in self.offers:
                self._apply(tracked, event.offer)
        return tracked

    # -- issuing ---------------------------------------------------------------------------
    def trigger(self, device: str, state: Any, ctx: GenerationContext) -> FlexOffer | None:
        """Generate the device's offer and submit it (module docstring: the replacement rule).

        Returns the receiver's answer (with id and state), or None when nothing was submitted.
        Raises CommunicationError when the receiver stays unreachable (the offer then waits
        in `pending` for `sync()`). A generator that cannot model the device now
        (GenerationError) makes no offer: the error is logged and kept in `generation_errors`.
        """
        generator = self._generator(device)
        self._flush_pending(device)
        try:
            offer = generator.generate(state, ctx)
        except GenerationError as exc:
            # NF2.1: a device the FOA cannot model now runs uncontrolled; the FOA keeps going.
            _log.warning("%s: no offer for %s at %s: %s", self.issuer, device, ctx.now.isoformat(), exc)
            self.generation_errors.append(f"{ctx.now.isoformat()} {device}: {exc}")
            return None
        current = self._current(device)
        if offer is None:
            if current is not None and self._not_started(current, ctx.now):
                try:
                    self._withdraw(current)
                except ConflictError:
                    _log.info("%s: offer %s started meanwhile; it stays in force", self.issuer, current.id)
            return None
        if current is not None and self._overlaps(current, offer):
            if not self._not_started(current, ctx.now):
                _log.info("%s: offer %s of %s is in operation; no new offer", self.issuer, current.id, device)
                return None
            if current.state is OfferState.ACCEPTED:
                try:
                    answer = self._retry(self.client.update, current.id, offer)
                except ConflictError:
                    _log.info("%s: update of %s refused; withdrawing it and submitting anew", self.issuer, current.id)
                else:
                    current.offer = replace(answer, schedule=None)
                    generator.on_accepted(current.offer)
                    if self.xems is not None and offer.default_schedule is not None:
                        self.xems.send_schedule(device, current.offer, offer.default_schedule)
                    return answer
            try:
                self._withdraw(current)
            except ConflictError:
                _log.info("%s: offer %s started meanwhile; new offer not submitted", self.issuer, current.id)
                return None
        return self._submit(device, offer, f"{self.issuer}/{device}/{format_time(ctx.now)}/{next(self._keys)}")

    def _not_started(self, tracked: TrackedOffer, now: datetime) -> bool:
        start = tracked.operation_start()
        return tracked.state in (OfferState.ACCEPTED, OfferState.ASSIGNED) and (start is None or start > now)

    @staticmethod
    def _overlaps(tracked: TrackedOffer, offer: FlexOffer) -> bool:
        end = tracked.latest_end()
        begin = offer.window(offer.created_at).earliest
        return end is None or begin is None or end > begin

    def _submit(self, device: str, offer: FlexOffer, key: str) -> FlexOffer:
        try:
            answer = self._retry(self.client.submit, offer, idempotency_key=key)
        except CommunicationError:
            self.pending.append(PendingSubmission(device, offer, key))
            raise
        self._track(device, answer, key)
        return answer

    def _flush_pending(self, device: str | None = None) -> None:
        """Submit the pending offers (of `device`, or all) again with their idempotency keys.

        A pending offer the receiver now refuses (e.g. its start has passed) is dropped and
        logged; CommunicationError propagates and keeps the rest pending.
        """
        for pending in [p for p in self.pending if device is None or p.device == device]:
            try:
                answer = self._retry(self.client.submit, pending.offer, idempotency_key=pending.idempotency_key)
            except CommunicationError:
                raise
            except AtpError as exc:
                self._violation(f"pending offer of {pending.device} refused on resubmission, dropped: {exc}")
                self.pending.remove(pending)
                continue
            self.pending.remove(pending)
            if answer.id not in self.offers:
                self._track(pending.device, answer, pending.idempotency_key)

    def _withdraw(self, tracked: TrackedOffer) -> None:
        try:
            view = self._retry(self.client.withdraw, tracked.id)
        except ConflictError:
            # After a lost reply the first attempt may already have withdrawn it.
            view = self._retry(self.client.get, tracked.id)
            if view.state is not OfferState.WITHDRAWN:
                self._apply(tracked, view)
                raise
        self._apply(tracked, view)

    def withdraw(self, offer_id: str) -> FlexOffer:
        """Withdraw one of the agent's offers (before its operation starts; ConflictError after)."""
        tracked = self.offers.get(offer_id)
        if tracked is None:
            raise NotFoundError(f"the agent tracks no open offer {offer_id!r}")
        self._withdraw(tracked)
        return tracked.offer

    def sync(self) -> None:
        """Recover after lost replies or events: resubmit pending offers, re-read tracked ones."""
        self._flush_pending()
        for offer_id, tracked in list(self.offers.items()):
            try:
                view = self._retry(self.client.get, offer_id)
            except NotFoundError:
                self._violation(f"offer {offer_id} is unknown to the receiver; forgetting it")
                self.offers.pop(offer_id, None)
                continue
            self._apply(tracked, view)
        self._flush_measurements()

    # -- execution -------------------------------------------------------------------------
    def in_force(self, device: str, now: datetime) -> tuple[TrackedOffer, Schedule | DefaultSchedule] | None:
        """The device's newest open offer covering `now`, with its schedule in force."""
        for tracked in reversed(list(self.offers.values())):
            if tracked.device != device or tracked.state not in _OPEN:
                continue
            schedule = tracked.schedule_in_force()
            if schedule is not None and schedule_step(tracked.offer, schedule, now) is not None:
                return tracked, schedule
        return None

    def setpoint(self, device: str, now: datetime, state: Any) -> float | None:
        """The EMS setpoint (kWh) for the step starting `now`; None: no offer covers it (uncontrolled)."""
        self._generator(device)
        found = self.in_force(device, now)
        if found is None:
            return None
        tracked, schedule = found
        return self.ems.setpoint(tracked.offer, schedule, state, now=now, device=device)

    def measure(self, device: str, now: datetime, energy_kwh: float) -> Measurement | None:
        """Post the metered kWh of the step starting `now` for the offer covering it (None: none does).

        A measurement that cannot be sent is kept and sent with the next one or by `sync()`.
        """
        found = self.in_force(device, now)
        if found is None:
            return None
        measurement = Measurement(found[0].id, self.location.meter_id, now, float(energy_kwh))
        self._unsent.append(measurement)
        self._flush_measurements()
        return measurement

    def _flush_measurements(self) -> None:
        if not self._unsent:
            return
        try:
            self._retry(self.client.post_measurements, list(self._unsent))
        except CommunicationError:
            _log.warning("%s: %d measurements kept for a later attempt", self.issuer, len(self._unsent))
            return
        self._unsent.clear()

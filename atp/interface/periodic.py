"""A round of work every few seconds of wall-clock time, on a background thread: what a served
receiver runs beside its HTTP binding (the FMAN's planning rounds, the market's gates and
clearings, the offer life cycle).

A subclass gives `work(now)`; `run_now()` runs one round under the store's lock, logs a failed
round and keeps it in `errors` (a service must not die of one bad round), and the loop goes on.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Generic, TypeVar

from atp.errors import ValidationError

__all__ = ["PeriodicTask"]

_log = logging.getLogger(__name__)
T = TypeVar("T")


class PeriodicTask(abc.ABC, Generic[T]):
    """`work(now)` every `every_s` seconds; `lock` guards the store (the HTTP app's
    `app.state.lock`), `clock` gives the time (wall-clock UTC by default)."""

    name = "periodic"

    def __init__(
        self,
        *,
        every_s: float,
        lock: AbstractContextManager[object] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not every_s > 0:
            raise ValidationError(f"every_s(={every_s}) must be a positive number of seconds (e.g. 60)")
        self.every_s = every_s
        self.lock: AbstractContextManager[object] = lock if lock is not None else nullcontext()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.results: list[T] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"atp-{self.name}", daemon=True)

    @abc.abstractmethod
    def work(self, now: datetime) -> T:
        """One round at `now` (called with the lock held)."""

    def run_now(self) -> T | None:
        """One round at the clock's time; None when it failed (the error is in `errors`)."""
        now = self.clock()
        try:
            with self.lock:
                result = self.work(now)
        except Exception as exc:  # a service logs a failed round and goes on
            message = f"{now.isoformat()}: {exc.__class__.__name__}: {exc}"
            self.errors.append(message)
            _log.error("%s round failed: %s", self.name, message)
            return None
        self.results.append(result)
        return result

    @property
    def rounds(self) -> int:
        """Rounds that succeeded."""
        return len(self.results)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_now()
            self._stop.wait(self.every_s)

    def start(self) -> PeriodicTask[T]:
        """Start the thread (its first round runs at once)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop and wait for its thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> PeriodicTask[T]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

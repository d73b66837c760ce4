"""An exchange client whose events are read when its owner asks, not streamed.

Over HTTP an issuer normally hears of its offers on a stream (`HttpClient.subscribe`, a reader
thread). Whoever drives time itself - a simulated run against served receivers, an FMAN on an
operator clock reading its market's awards - needs to know that every event up to now has
been handled before it goes on: `PolledClient.poll()` reads the party's new events
(`GET /flexoffer/stream?follow=false` after the last one seen) and hands them to its
subscribers in order, on the caller's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atp.interface.http_client import HttpClient
from atp.interface.store import Event

__all__ = ["PolledClient"]


class PolledClient:
    """An `HttpClient` whose events reach its subscribers when its owner asks (`poll`), in order,
    instead of on a reader thread (module docstring)."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client
        self.party = client.party
        self._callbacks: list[Callable[[Event], None]] = []
        self._seq = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Deliver the party's events from now on to `callback`, at each `poll`."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    def poll(self) -> int:
        """Fetch the party's new events and deliver them; returns how many."""
        if not self._callbacks:
            return 0
        events = self._client.events(after=self._seq)
        for event in events:
            self._seq = event.seq
            for callback in list(self._callbacks):
                callback(event)
        return len(events)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

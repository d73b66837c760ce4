"""Faults a box can suffer on its way to the receiver, injected where its requests leave: what
the box emulator uses to show what the MQTT binding does when the network misbehaves.

`FaultyTransport` is the MQTT binding's client transport (`atp.interface.mqtt.MqttTransport`)
with `Faults`: every n-th request dropped, sent twice, or garbled; every request delayed; a
request held back so that a later one overtakes it (reorder); and the box going offline for a
while and coming back (`go_offline`). What each leads to, by the binding's rules
(docs/spec/interface.md, MQTT binding):

- dropped: no reply within the timeout, the client sends the same request id again: one effect;
- duplicated: the receiver answers the copy from memory: one effect, the same answer;
- garbled: the receiver cannot read it and answers nothing; the client sends it again;
- delayed, reordered: each reply is matched to its request by id;
- offline: the box says so on its status topic, hears nothing, and its requests wait for its
  return and then go out (sent again where a reply was lost).

Every fault is counted in `injected` (kind -> count) for the box's report.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from atp.interface.mqtt import MqttSettings, MqttTransport, topic

__all__ = ["Faults", "FaultyTransport"]


@dataclass(frozen=True)
class Faults:
    """Which faults to inject (0 / False: none). `*_every` counts the box's requests from 1."""

    drop_every: int = 0
    duplicate_every: int = 0
    garble_every: int = 0
    delay_s: float = 0.0
    reorder_hold_s: float = 0.0  # a request waits this long, so that the next one overtakes it

    def __post_init__(self) -> None:
        for name in ("drop_every", "duplicate_every", "garble_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}(={getattr(self, name)}) must be >= 0 (0: never)")
        if self.delay_s < 0 or self.reorder_hold_s < 0:
            raise ValueError("delay_s and reorder_hold_s must be >= 0 seconds")


class FaultyTransport(MqttTransport):
    """An MQTT transport whose requests suffer `faults` (module docstring)."""

    def __init__(self, settings: MqttSettings, *, faults: Faults, **options: Any) -> None:
        self.faults = faults
        self.injected: Counter[str] = Counter()
        self._n = 0
        self._count_lock = threading.Lock()
        self._online = threading.Event()
        self._online.set()
        super().__init__(settings, **options)

    def publish_request(self, payload: str) -> None:
        """Publish `payload` through the faults (module docstring)."""
        with self._count_lock:
            self._n += 1
            n = self._n
        f = self.faults
        self._online.wait()
        if f.delay_s:
            self.injected["delay"] += 1
            time.sleep(f.delay_s)
        if f.drop_every and n % f.drop_every == 0:
            self.injected["drop"] += 1
            return
        if f.garble_every and n % f.garble_every == 0:
            self.injected["garble"] += 1
            payload = payload[: len(payload) // 2] + "\x00garbled"
        if f.reorder_hold_s:
            self.injected["reorder"] += 1
            threading.Timer(f.reorder_hold_s, super().publish_request, args=(payload,)).start()
            return
        super().publish_request(payload)
        if f.duplicate_every and n % f.duplicate_every == 0:
            self.injected["duplicate"] += 1
            super().publish_request(payload)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if self._online.is_set():  # offline, nothing reaches the box
            super()._on_message(client, userdata, message)

    def go_offline(self, seconds: float) -> None:
        """Lose the network for `seconds`: the box says so on its status topic, hears nothing and
        sends nothing (its requests wait); back online it says so and its requests go out again
        (the receiver answers those it ran already from memory)."""
        self.injected["offline"] += 1
        status = topic(self.receiver, self.party, "status")
        self._client.publish(status, '{"state": "offline"}', qos=1, retain=True).wait_for_publish(5)
        self._online.clear()
        time.sleep(seconds)
        self._online.set()
        self._client.publish(status, '{"state": "online"}', qos=1, retain=True)

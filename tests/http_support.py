"""Shared pieces of the HTTP binding tests: a server whose app is swapped per test, tokens, a clock."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from atp.flexoffer import FlexOffer, offer_from_json

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "flexoffers"
NOW = datetime(2026, 11, 25, 17, 40, tzinfo=UTC)
PARTIES = ("foss-p017", "foss-p018")
TOKENS = {f"token-of-{p}-0123456789": p for p in PARTIES}
TOKEN_OF = {p: t for t, p in TOKENS.items()}
OPERATOR_TOKEN = "operator-token-0123456789"


class Clock:
    """The store's clock, set by the test."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class SwitchApp:
    """An ASGI app that forwards to `app`, so one server per module serves a fresh app per test."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def ev_offer(issuer: str = "foss-p017") -> FlexOffer:
    """The EV example offer (8 steps of at most 2.75 kWh from 18:00, 20-22 kWh), without its id."""
    offer = offer_from_json((EXAMPLES / "ev_charge.json").read_text())
    return dataclasses.replace(offer, id=None, issuer=issuer)


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes (events cross a thread)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

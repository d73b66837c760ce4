"""Limits of a served receiver, and their checks: what bounds the work any one request can cause.

`ServiceLimits` names every limit of the HTTP binding (spec/interface.md, "Limits"); `create_app`
takes one. Each limit is checked on declared sizes before the work it bounds: the body's length
before it is read whole, the number of measurements before any is decoded, a page's size before
the store is asked, the step count of a time series before an array is built. The offer's own
limits (steps per profile, start window, profiles) are `atp.flexoffer.Limits`, the store's.

The checks raise the interface's errors (422 `InvalidOfferError` naming the field, 413
`PayloadTooLargeError`, 408 `RequestTimeoutError`), so the handlers stay thin. Cursors of the
paginated lists are opaque to clients: base64url of the id of the last item a page held.

`header_timeout_protocol(s)` is the uvicorn HTTP protocol with a header-read timeout: uvicorn
closes idle keep-alive connections (`timeout_keep_alive`) but waits forever for the rest of a
request line or header that a client started and never finished. Served receivers parse HTTP
with httptools (`http="httptools"`, the default: less of the server's time per request than
h11, benchmarks/README.md); `http="h11"` is the pure-Python parser.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import h11
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from atp.errors import InvalidOfferError, Problem
from atp.flexoffer import FlexOffer, Measurement, format_time, on_grid
from atp.interface.errors import InterfaceError

__all__ = [
    "HEADER_TIMEOUT_S",
    "IDLE_TIMEOUT_S",
    "PayloadTooLargeError",
    "RequestTimeoutError",
    "ServiceLimits",
    "check_measurements",
    "connection_options",
    "decode_cursor",
    "encode_cursor",
    "header_timeout_protocol",
    "invalid",
    "parse_json",
    "read_json_body",
]


HEADER_TIMEOUT_S = 10.0
"""Seconds a client has to send a whole request head (line and headers), from its first byte."""
IDLE_TIMEOUT_S = 5
"""Seconds an idle keep-alive connection stays open between requests."""


class PayloadTooLargeError(InterfaceError):
    """The request body is larger than the receiver accepts."""

    status = 413


class RequestTimeoutError(InterfaceError):
    """The client did not send the whole body in time."""

    status = 408


@dataclass(frozen=True)
class ServiceLimits:
    """The limits of one served receiver (spec/interface.md, "Limits"); all checked before the work.

    - `max_body_bytes`: a request body (413 beyond);
    - `body_timeout_s`: the time to receive a whole body once its headers are in (408 after);
    - `default_page_size`, `max_page_size`: items per page of every list (`?limit=`);
    - `max_timeseries_steps`: steps of one `GET /timeseries` answer;
    - `max_active_offers_per_party`: a party's offers not yet settled, rejected or withdrawn
      (409 beyond);
    - `max_measurements_per_request`: items of one `POST /flexoffer/measurement`;
    - `measurement_margin_s`: a measurement lies on its offer's grid, within its offer's
      operation period (the earliest start to the latest possible end) widened by this margin
      on both sides, so no measurement can stretch a bill or a KPI period.
    """

    max_body_bytes: int = 8 * 2**20
    body_timeout_s: float = 30.0
    default_page_size: int = 100
    max_page_size: int = 1000
    max_timeseries_steps: int = 100_000
    max_active_offers_per_party: int = 10_000
    max_measurements_per_request: int = 10_000
    measurement_margin_s: int = 86_400

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "default_page_size",
            "max_page_size",
            "max_timeseries_steps",
            "max_active_offers_per_party",
            "max_measurements_per_request",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}(={getattr(self, name)}) must be >= 1")
        if self.default_page_size > self.max_page_size:
            raise ValueError(
                f"default_page_size(={self.default_page_size}) must be <= max_page_size(={self.max_page_size})"
            )
        if not self.body_timeout_s > 0:
            raise ValueError(f"body_timeout_s(={self.body_timeout_s:g}) must be > 0")
        if self.measurement_margin_s < 0:
            raise ValueError(f"measurement_margin_s(={self.measurement_margin_s}) must be >= 0")

    def page_size(self, limit: int | None) -> int:
        """The size of a page asked with `?limit=` (the default when absent); 422 outside 1..max."""
        if limit is None:
            return self.default_page_size
        if not 1 <= limit <= self.max_page_size:
            raise invalid("limit", f"must lie in 1..{self.max_page_size}, not {limit}", "limit")
        return limit


def invalid(path: str, message: str, rule: str = "parameter") -> InvalidOfferError:
    """A 422 naming one field of the request."""
    return InvalidOfferError([Problem(path, message, rule)], what="request")


async def read_json_body(request: Request, limits: ServiceLimits) -> bytes:
    """The raw body, refused (413) beyond `max_body_bytes` before it is read whole, 408 when slow."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise PayloadTooLargeError(
            f"the body has {int(declared)} bytes, more than the limit of {limits.max_body_bytes}"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise PayloadTooLargeError(f"the body is larger than the limit of {limits.max_body_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeoutError(f"the body did not arrive within {limits.body_timeout_s:g} s") from None
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """Parsed JSON; 422 for no body, malformed JSON, nesting too deep or an integer too long to read."""
    if not raw:
        raise InvalidOfferError([Problem("", "the request has no JSON body", "json")], what="request body")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidOfferError([Problem("", f"malformed JSON: {exc}", "json")], what="request body") from None
    except RecursionError:
        message = "malformed JSON: nested deeper than the receiver reads (the wire format needs fewer than 10 levels)"
        raise InvalidOfferError([Problem("", message, "json")], what="request body") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise InvalidOfferError([Problem("", f"malformed JSON: {exc}", "json")], what="request body") from None


def encode_cursor(last_id: str) -> str:
    """The opaque cursor of the page after the item with id `last_id`."""
    return base64.urlsafe_b64encode(last_id.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The item id a cursor stands for; 422 naming `cursor` for one this receiver did not make."""
    if cursor is None:
        return None
    try:
        if not cursor.isascii():
            raise ValueError
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid(
            "cursor", "is not a cursor of this receiver (use the Link: rel=next of a page)", "cursor"
        ) from None


def _operation_period(offer: FlexOffer) -> tuple[datetime, datetime]:
    """The earliest start and the latest possible end of an accepted offer's operation."""
    step = timedelta(seconds=offer.slice_s)
    longest = max((p.n_steps for p in offer.profiles), default=0)
    created = offer.created_at
    runs = [r for r in (offer.default_schedule, offer.schedule) if r is not None]
    starts = [r.start for r in runs] + [t for t in (offer.start_after or created,) if t is not None]
    ends = [r.start + step * len(r.energy) for r in runs]
    first_latest = offer.start_before
    if first_latest is None and offer.start_before_duration_s is not None and (offer.start_after or created):
        first_latest = (offer.start_after or created) + timedelta(seconds=offer.start_before_duration_s)  # type: ignore[operator]
    if first_latest is not None:
        ends.append(first_latest + step * longest)
    earliest = min(starts) if starts else min(ends)
    return earliest, max(ends) if ends else earliest + step * longest


def check_measurements(
    items: Sequence[Measurement], offers: dict[str, FlexOffer], limits: ServiceLimits, prefix: str
) -> None:
    """422 listing every measurement off its offer's grid or outside its period and margin."""
    problems: list[Problem] = []
    periods = {offer_id: _operation_period(offer) for offer_id, offer in offers.items()}
    margin = timedelta(seconds=limits.measurement_margin_s)
    for i, m in enumerate(items):
        offer = offers[m.flex_offer_id]
        path = f"{prefix.format(i)}.time" if prefix else "time"
        first, last = periods[m.flex_offer_id]
        if not on_grid(m.time, offer.slice_s):
            problems.append(
                Problem(path, f"{format_time(m.time)} is not on the offer's {offer.slice_s} s grid", "grid")
            )
        elif not first - margin <= m.time < last + margin:
            problems.append(
                Problem(
                    path,
                    f"{format_time(m.time)} lies outside the offer's operation {format_time(first)} .. "
                    f"{format_time(last)} widened by {limits.measurement_margin_s} s",
                    "limit",
                )
            )
    if problems:
        raise InvalidOfferError(problems, what="measurement")


def header_timeout_protocol(header_timeout_s: float, http: str = "httptools") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (`http`: "httptools" or "h11") that closes a connection whose
    request head is not complete within `header_timeout_s` of its first byte (or of the
    connection, when nothing arrives)."""
    if not header_timeout_s > 0:
        raise ValueError(f"header_timeout_s(={header_timeout_s:g}) must be > 0")
    if http == "httptools":
        return _httptools_protocol(header_timeout_s)
    if http == "h11":
        return _h11_protocol(header_timeout_s)
    raise ValueError(f"http(={http!r}) must be 'httptools' or 'h11'")


class _HeadTimer:
    """The timer of a request head: armed when one may begin, cancelled once it is complete."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, expired: Any) -> None:
        self._loop, self._timeout_s, self._expired = loop, timeout_s, expired
        self._handle: asyncio.TimerHandle | None = None

    @property
    def armed(self) -> bool:
        return self._handle is not None

    def arm(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(self._timeout_s, self._fire)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._expired()


def _h11_protocol(header_timeout_s: float) -> type[H11Protocol]:
    class HeaderTimeoutProtocol(H11Protocol):
        _head: _HeadTimer

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head = _HeadTimer(self.loop, header_timeout_s, self._head_timeout)
            self._head.arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE and data:
                self._head.arm()  # a head begun: it must end in time, however slowly it trickles
            else:
                self._head.disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head.disarm()
            super().connection_lost(exc)

        def _head_timeout(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def _httptools_protocol(header_timeout_s: float) -> type[HttpToolsProtocol]:
    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _head: _HeadTimer
        _in_head = False  # between the first byte of a request and the end of its headers

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head = _HeadTimer(self.loop, header_timeout_s, self._head_timeout)
            self._head.arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if data and self._awaiting_head():
                self._head.arm()  # bytes of a new head (or blank lines before one): it must end in time

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._head.arm()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head.disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head.disarm()
            super().connection_lost(exc)

        def _awaiting_head(self) -> bool:
            return self._in_head or self.cycle is None or (self.cycle.response_complete and not self.pipeline)

        def _head_timeout(self) -> None:
            if self._awaiting_head() and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def connection_options(
    *, header_timeout_s: float = HEADER_TIMEOUT_S, idle_timeout_s: int = IDLE_TIMEOUT_S, http: str = "httptools"
) -> dict[str, Any]:
    """The `uvicorn.Config` options that time half-open and idle connections out (`http`: the
    parser, "httptools" or "h11")."""
    if idle_timeout_s < 1:
        raise ValueError(f"idle_timeout_s(={idle_timeout_s}) must be >= 1")
    return {"http": header_timeout_protocol(header_timeout_s, http), "timeout_keep_alive": idle_timeout_s}

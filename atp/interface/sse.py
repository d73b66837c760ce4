"""Server-Sent Events of the exchange interface: writing and reading the `text/event-stream` format.

One change of one offer is one SSE message (spec/interface.md, `GET /flexoffer/stream`):

    id: 17
    event: assigned
    time: 2026-11-25T17:45:00Z
    data: {"id": "fo-fman-000003", "issuer": "foss-p017", ..., "state": "assigned", "schedule": {...}}

`id` is the store's event sequence number (a client resumes with `Last-Event-ID`), `event` the
kind of change, `data` the offer JSON on one line. `time` (when the receiver recorded the change)
is an extra field; standard SSE clients such as a browser's EventSource ignore unknown fields.
A stream opens with a message that carries only an `id` (the position the stream starts after):
it dispatches no event, but a client that reconnects sends it back as `Last-Event-ID` and so
misses nothing even when it saw no event before the connection broke. Lines beginning with `:`
are keep-alive comments.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from atp.errors import InvalidOfferError, Problem
from atp.flexoffer import FlexOffer, decode, encode, format_time, parse_time
from atp.interface.store import Event

__all__ = [
    "KEEPALIVE",
    "SseMessage",
    "event_from_message",
    "format_event",
    "format_position",
    "parse_events",
    "parse_messages",
]

KEEPALIVE = ": keepalive\n\n"


def format_event(event: Event) -> str:
    """The SSE message of one store event."""
    data = json.dumps(encode(event.offer), allow_nan=False, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ntime: {format_time(event.time)}\ndata: {data}\n\n"


def format_position(seq: int) -> str:
    """A message carrying only an `id`: sets the client's resume point, dispatches nothing."""
    return f"id: {seq}\n\n"


@dataclass(frozen=True)
class SseMessage:
    """One parsed SSE message; `data` is None for a message that carried only an `id`."""

    id: str | None
    event: str
    data: str | None
    fields: dict[str, str]


def parse_messages(lines: Iterable[str]) -> Iterator[SseMessage]:
    """The messages of an event stream, given its lines (without line endings).

    Follows the WHATWG rules: `field: value` (one optional space after the colon), `data`
    lines joined by newlines, comments (`:`) skipped, a blank line ends a message.
    """
    last_id: str | None = None
    event = ""
    data: list[str] = []
    fields: dict[str, str] = {}
    seen_id = False
    for line in lines:
        if line == "":
            if data or seen_id:
                yield SseMessage(last_id, event or "message", "\n".join(data) if data else None, fields)
            event, data, fields, seen_id = "", [], {}, False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            if "\0" not in value:
                last_id = value
                seen_id = True
        else:
            fields[name] = value


def event_from_message(message: SseMessage) -> Event:
    """The store `Event` an SSE message of the exchange interface describes.

    Raises InvalidOfferError when the message is not one (a receiver that breaks the format).
    """
    problems: list[Problem] = []
    if message.data is None:
        raise InvalidOfferError([Problem("data", "the message carries no offer", "missing")], what="event")
    try:
        seq = int(message.id or "")
    except ValueError:
        problems.append(Problem("id", f"must be an event sequence number, not {message.id!r}", "type"))
    try:
        payload = json.loads(message.data)
    except json.JSONDecodeError as exc:
        raise InvalidOfferError([Problem("data", f"malformed JSON: {exc}", "json")], what="event") from None
    offer, offer_problems = decode(FlexOffer, payload, path="data")
    problems.extend(offer_problems)
    try:
        time = parse_time(message.fields.get("time", ""))
    except ValueError:
        problems.append(Problem("time", f"must be an ISO 8601 time, not {message.fields.get('time')!r}", "time"))
    if problems or offer is None:
        raise InvalidOfferError(problems, what="event")
    return Event(seq, message.event, offer.issuer, offer, time)


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """The store events of an event stream (position-only messages are skipped)."""
    for message in parse_messages(lines):
        if message.data is not None:
            yield event_from_message(message)

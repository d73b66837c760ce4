"""The event-stream format: what the server writes, the client reads back unchanged."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atp.errors import InvalidOfferError
from atp.flexoffer import OfferState
from atp.interface.sse import KEEPALIVE, format_event, format_position, parse_events, parse_messages
from atp.interface.store import Event
from tests.strategies import cases, feasible_schedule

KINDS = ["accepted", "updated", "assigned", "rejected", "executing", "settled", "withdrawn"]


@st.composite
def events(draw: st.DrawFn) -> Event:
    case = draw(cases())
    offer = dataclasses.replace(case.offer, state=draw(st.sampled_from(list(OfferState))))
    if draw(st.booleans()):
        offer = dataclasses.replace(offer, schedule=draw(feasible_schedule(case)))
    time = offer.created_at + timedelta(microseconds=draw(st.integers(0, 10**9)))
    return Event(draw(st.integers(1, 10**9)), draw(st.sampled_from(KINDS)), offer.issuer, offer, time)


@given(st.lists(events(), max_size=4), st.integers(0, 10**6))
def test_a_stream_of_events_reads_back_unchanged(written, position):
    text = format_position(position) + KEEPALIVE + "".join(format_event(e) + KEEPALIVE for e in written)
    assert list(parse_events(text.split("\n"))) == written
    messages = list(parse_messages(text.split("\n")))
    assert messages[0].id == str(position) and messages[0].data is None
    assert [m.id for m in messages[1:]] == [str(e.seq) for e in written]


def test_the_parser_follows_the_sse_rules():
    lines = ["retry: 10", ": a comment", "id: 5", "data: a", "data:b", "event: x", "", "data: c", "", "id", ""]
    messages = list(parse_messages(lines))
    expected = [("5", "x", "a\nb"), ("5", "message", "c"), ("", "message", None)]
    assert [(m.id, m.event, m.data) for m in messages] == expected
    assert messages[0].fields == {"retry": "10"}


def test_a_message_that_is_not_an_event_of_the_interface_is_refused():
    with pytest.raises(InvalidOfferError) as info:
        list(parse_events(["id: x", "time: later", 'data: {"issuer": 1}', ""]))
    assert {p.path for p in info.value.problems} >= {"id", "time", "data.issuer", "data.mode"}

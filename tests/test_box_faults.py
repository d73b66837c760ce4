"""Faults injected where a box's requests leave (hil/faults.py), through the machine's Mosquitto:
each leads to the behaviour the MQTT binding defines: a dropped or garbled request is sent again
and takes effect once, a duplicate is answered from memory, delayed and reordered requests get
their own replies, and a box that goes offline says so and its requests go out on its return."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from atp.interface.mqtt import MqttClient, MqttSettings, topic
from hil.faults import Faults, FaultyTransport
from tests.http_support import TOKEN_OF, ev_offer, wait_until
from tests.test_interface_mqtt import Listener

MQTT = MqttSettings.from_url("mqtt://127.0.0.1:1883")
P17 = "foss-p017"


def _box(name: str, faults: Faults, *, timeout_s: float = 1.0, attempts: int = 4) -> tuple[MqttClient, FaultyTransport]:
    transport = FaultyTransport(MQTT, faults=faults, receiver=name, party=P17, timeout_s=timeout_s, attempts=attempts)
    return MqttClient(MQTT, receiver=name, token=TOKEN_OF[P17], party=P17, transport=transport), transport


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        (Faults(drop_every=1), None),  # every attempt lost: the client gives up with a communication error
        (Faults(drop_every=2), "drop"),
        (Faults(garble_every=1, drop_every=0), None),
        (Faults(duplicate_every=1), "duplicate"),
        (Faults(delay_s=0.3), "delay"),
    ],
)
def test_each_fault_leads_to_its_defined_behaviour(gateway, faults: Faults, kind: str | None) -> None:
    name, store = gateway
    client, transport = _box(name, faults)
    try:
        if kind is None:  # nothing the receiver can read ever arrives: the box hears a communication error
            from atp.interface.errors import CommunicationError

            with pytest.raises(CommunicationError):
                client.submit(ev_offer(), idempotency_key="k")
            assert store.records() == []
            return
        first = client.submit(ev_offer(), idempotency_key="k")  # request 1
        second = client.submit(ev_offer(), idempotency_key="k2")  # request 2 (dropped when drop_every=2, then resent)
        assert first.id != second.id
        assert [r.offer.id for r in store.records()] == [first.id, second.id]  # each took effect once
        assert client.get(first.id) == first
        assert transport.injected[kind] >= 1
    finally:
        client.close()


def test_a_garbled_request_is_sent_again_and_takes_effect_once(gateway) -> None:
    name, store = gateway
    client, transport = _box(name, Faults(garble_every=2))
    try:
        client.submit(ev_offer(), idempotency_key="a")  # request 1 intact
        offer = client.submit(ev_offer(), idempotency_key="b")  # request 2 garbled, request 3 (the resend) intact
        assert transport.injected["garble"] == 1 and len(store.records()) == 2
        assert client.get(offer.id).id == offer.id
    finally:
        client.close()


def test_reordered_requests_each_get_their_own_reply(gateway) -> None:
    name, store = gateway
    client, transport = _box(name, Faults(reorder_hold_s=0.2), timeout_s=2.0)
    answers: dict[str, Any] = {}

    def submit(key: str) -> None:
        answers[key] = client.submit(ev_offer(), idempotency_key=key)

    threads = [threading.Thread(target=submit, args=(k,)) for k in ("x", "y", "z")]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert len({a.id for a in answers.values()}) == 3 and len(store.records()) == 3
        assert transport.injected["reorder"] >= 3
    finally:
        client.close()


def test_a_box_that_goes_offline_says_so_and_its_requests_go_out_on_return(gateway) -> None:
    name, store = gateway
    status = topic(name, P17, "status")
    listener = Listener(status)
    client, transport = _box(name, Faults(), timeout_s=0.5, attempts=10)
    try:
        assert wait_until(lambda: listener.on(status)[-1:] == [{"state": "online"}])
        away = threading.Thread(target=transport.go_offline, args=(1.5,))
        away.start()
        assert wait_until(lambda: listener.on(status)[-1:] == [{"state": "offline"}])
        offer = client.submit(ev_offer(), idempotency_key="while-away")  # waits for the return
        away.join()
        assert len(store.records()) == 1 and store.records()[0].offer.id == offer.id
        assert wait_until(lambda: listener.on(status)[-1:] == [{"state": "online"}])
        assert transport.injected["offline"] == 1
    finally:
        client.close()
        listener.client.publish(status, b"", qos=1, retain=True).wait_for_publish(5)
        listener.close()

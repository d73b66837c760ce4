"""The MQTT binding's own promises, through the machine's Mosquitto (127.0.0.1:1883): a served
receiver speaks MQTT beside HTTP (`serve --mqtt`), a redelivered request is answered again and
run once, a token on another party's topics is refused, a bad envelope is answered 422 naming
the field, and a box that dies is seen offline within its keep-alive (its last will)."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from atp.flexoffer import OfferState, encode
from atp.interface import OfferStore, create_app
from atp.interface.auth import TokenTable
from atp.interface.mqtt import MqttClient, MqttGateway, MqttSettings, topic
from tests.http_support import OPERATOR_TOKEN, TOKEN_OF, TOKENS, Clock, ev_offer, wait_until
from tests.test_services import ROOT, _serve, _stop

MQTT = MqttSettings.from_url("mqtt://127.0.0.1:1883")
P17, P18 = "foss-p017", "foss-p018"


def _payload(raw: bytes) -> Any:
    """A JSON payload parsed; anything else (an SSE message, a cleared retained topic) as text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


class Listener:
    """A plain paho client that records what arrives on the topics it subscribes to."""

    def __init__(self, *topics: str) -> None:
        self.messages: list[tuple[str, Any]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"listener-{secrets.token_hex(4)}")
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, _payload(m.payload)))
        ready = threading.Event()
        self.client.on_connect = lambda *_a: ready.set()
        self.client.connect_async(MQTT.host, MQTT.port)
        self.client.loop_start()
        assert ready.wait(10)
        for t in topics:
            self.client.subscribe(t, qos=1)

    def publish(self, where: str, payload: Any) -> None:
        self.client.publish(where, json.dumps(payload), qos=1).wait_for_publish(5)

    def on(self, where: str) -> list[Any]:
        return [payload for t, payload in self.messages if t == where]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture()
def gateway() -> Iterator[tuple[str, OfferStore]]:
    store = OfferStore("fman", clock=Clock())
    app = create_app(store, tokens=TOKENS, operator_tokens=[OPERATOR_TOKEN])
    receiver = f"fman-{secrets.token_hex(4)}"
    with MqttGateway(app, store, receiver=receiver, tokens=TokenTable.of(TOKENS, [OPERATOR_TOKEN]), settings=MQTT):
        yield receiver, store


def _envelope(request_id: str, token: str, **fields: Any) -> dict[str, Any]:
    return {"request_id": request_id, "method": "POST", "path": "/flexoffer", "token": token, **fields}


def test_a_redelivered_request_is_answered_again_and_run_once(gateway) -> None:
    receiver, store = gateway
    listener = Listener(topic(receiver, P17, "reply"), topic(receiver, P17, "events"))
    try:
        request = _envelope("r-1", TOKEN_OF[P17], body=json.dumps(encode(ev_offer())))
        listener.publish(topic(receiver, P17, "request"), request)
        assert wait_until(lambda: len(listener.on(topic(receiver, P17, "reply"))) == 1)
        listener.publish(topic(receiver, P17, "request"), request)  # what a QoS 1 redelivery looks like
        assert wait_until(lambda: len(listener.on(topic(receiver, P17, "reply"))) == 2)
        first, again = listener.on(topic(receiver, P17, "reply"))
        assert first == again and first["status"] == 201 and len(store.records()) == 1
        assert json.loads(first["body"])["state"] == "accepted"
    finally:
        listener.close()


def test_another_partys_token_and_a_bad_envelope_are_refused(gateway) -> None:
    receiver, store = gateway
    listener = Listener(topic(receiver, P18, "reply"))
    try:
        offer = json.dumps(encode(ev_offer(P18)))
        listener.publish(topic(receiver, P18, "request"), _envelope("r-2", TOKEN_OF[P17], body=offer))
        listener.publish(topic(receiver, P18, "request"), _envelope("r-3", "not-a-token-at-all", body=offer))
        listener.publish(topic(receiver, P18, "request"), {"request_id": "r-4", "method": "PATCH", "path": "x"})
        assert wait_until(lambda: len(listener.on(topic(receiver, P18, "reply"))) == 3)
        replies = {r["request_id"]: r for r in listener.on(topic(receiver, P18, "reply"))}
        assert replies["r-2"]["status"] == 403 and "publish to your own topics" in replies["r-2"]["body"]
        assert replies["r-3"]["status"] == 401
        assert replies["r-4"]["status"] == 422
        assert all(f in replies["r-4"]["body"] for f in ("method", "path", "token"))
        assert store.records() == []
    finally:
        listener.close()


def test_events_reach_the_party_on_its_topic_numbered_in_its_own_sequence(gateway) -> None:
    receiver, store = gateway
    client = MqttClient(MQTT, receiver=receiver, token=TOKEN_OF[P17], party=P17, timeout_s=5)
    seen: list[Any] = []
    stop = client.subscribe(seen.append)
    try:
        store.submit(P18, ev_offer(P18))  # another party's event: not on P17's topic
        offer = client.submit(ev_offer())
        assert wait_until(lambda: len(seen) == 1)
        assert seen[0].kind == "accepted" and seen[0].offer.id == offer.id and seen[0].seq == 1
        assert client.get(offer.id).state is OfferState.ACCEPTED
    finally:
        stop()
        client.close()


def test_a_box_that_dies_is_offline_within_its_keep_alive() -> None:
    receiver = f"fman-{secrets.token_hex(4)}"
    status = topic(receiver, P17, "status")
    box = (
        "import sys, time\n"
        "from atp.interface.mqtt import MqttSettings, MqttTransport\n"
        f"MqttTransport(MqttSettings(keepalive_s=1), receiver={receiver!r}, party={P17!r})\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", box], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    listener = Listener(status)
    try:
        assert proc.stdout.readline().strip() == "up"
        assert wait_until(lambda: {"state": "online"} in listener.on(status), timeout_s=10)
        proc.send_signal(signal.SIGKILL)  # no DISCONNECT: only the broker's keep-alive can tell
        assert wait_until(lambda: listener.on(status)[-1:] == [{"state": "offline"}], timeout_s=10)
        listener.client.publish(status, b"", qos=1, retain=True).wait_for_publish(5)  # clear the retained message
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        listener.close()


def test_a_served_receiver_speaks_mqtt_beside_http(tmp_path) -> None:
    name = f"fman-{secrets.token_hex(4)}"
    listener = Listener(topic(name, None, "status"))
    proc, url = _serve(tmp_path, "fman", "--name", name, "--mqtt", "mqtt://127.0.0.1:1883")
    try:
        assert wait_until(lambda: {"state": "online"} in listener.on(topic(name, None, "status")), timeout_s=10)
        token = "token-of-foss-p017-012345678"
        client = MqttClient(MQTT, receiver=name, token=token, party=P17, timeout_s=5)
        offer = client.submit(ev_offer())
        over_http = httpx.get(f"{url}/flexoffer/{offer.id}", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert over_http.json()["id"] == offer.id and over_http.json()["state"] == "accepted"
        client.close()
    finally:
        log = _stop(proc)
        listener.close()
    assert "MQTT binding through mqtt://127.0.0.1:1883" in log
    clear = Listener()
    clear.client.publish(topic(name, None, "status"), b"", qos=1, retain=True).wait_for_publish(5)
    clear.close()

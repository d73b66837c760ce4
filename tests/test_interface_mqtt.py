"""The MQTT binding's own promises, through the machine's Mosquitto (127.0.0.1:1883): a served
receiver speaks MQTT beside HTTP (`serve --mqtt`), a redelivered request is answered again and
run once, a token on another party's topics is refused, a bad envelope is answered 422 naming
the field, and a box that dies is seen offline within its keep-alive (its last will)."""

from __future__ import annotations

import getpass
import json
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml

from atp.flexoffer import OfferState, encode
from atp.flexoffer.goflex_export import offer_to_goflex
from atp.interface import OfferStore, create_app
from atp.interface.auth import TokenTable
from atp.interface.errors import CommunicationError
from atp.interface.mqtt import MqttClient, MqttGateway, MqttSettings, topic
from tests.http_support import OPERATOR_TOKEN, TOKEN_OF, TOKENS, Clock, ev_offer, wait_until
from tests.test_services import OPERATOR, ROOT, _serve, _stop

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


@pytest.fixture()
def secured_broker(tmp_path) -> Iterator[tuple[int, str]]:
    """A second Mosquitto with a user per party and the spec's ACL pattern (no anonymous users)."""
    receiver = "fman-acl"
    passwords = tmp_path / "passwd"
    for i, user in enumerate(("fman-gw", P17, P18)):
        flags = ["-b", "-c"] if i == 0 else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwords), user, f"pw-{user}"], check=True)
    (tmp_path / "acl").write_text(
        f"user fman-gw\ntopic readwrite atp/v1/{receiver}/#\n\npattern readwrite atp/v1/+/%u/#\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\nuser {getpass.getuser()}\n"
        f"password_file {passwords}\nacl_file {tmp_path / 'acl'}\n"
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    assert wait_until(up, timeout_s=10), broker.stderr.read() if broker.poll() is not None else "no broker"
    yield port, receiver
    broker.terminate()
    broker.wait(timeout=10)
    broker.stderr.close()


def test_the_brokers_acl_keeps_parties_apart(secured_broker) -> None:
    port, receiver = secured_broker
    settings = {p: MqttSettings(port=port, username=p, password=f"pw-{p}") for p in ("fman-gw", P17, P18)}
    store = OfferStore("fman", clock=Clock())
    app = create_app(store, tokens=TOKENS, operator_tokens=[OPERATOR_TOKEN])
    table = TokenTable.of(TOKENS, [OPERATOR_TOKEN])
    with MqttGateway(app, store, receiver=receiver, tokens=table, settings=settings["fman-gw"]):
        spy_seen: list[Any] = []
        spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy")
        spy.username_pw_set(P18, f"pw-{P18}")
        spy.on_message = lambda _c, _u, m: spy_seen.append(m.topic)
        spy.connect(MQTT.host, port)
        spy.loop_start()
        spy.subscribe(f"atp/v1/{receiver}/{P17}/#", qos=1)  # the broker refuses it (ACL)
        client = MqttClient(settings[P17], receiver=receiver, token=TOKEN_OF[P17], party=P17, timeout_s=5)
        offer = client.submit(ev_offer())
        assert client.get(offer.id).state is OfferState.ACCEPTED  # the party's own topics work
        # P18 writing on P17's request topic: dropped by the broker, nothing stored
        spy.publish(
            f"atp/v1/{receiver}/{P17}/request",
            json.dumps(_envelope("x", TOKEN_OF[P17], body=json.dumps(encode(ev_offer())))),
        ).wait_for_publish(5)
        client.close()
        spy.disconnect()
        spy.loop_stop()
    assert spy_seen == [] and len(store.records()) == 1
    with pytest.raises(CommunicationError, match=f"MQTT broker 127.0.0.1:{port}"):
        MqttClient(MqttSettings(port=port, username=P17, password="wrong"), receiver=receiver, token="t", party=P17)


@dataclass(frozen=True)
class EvLab:
    """A served FMAN on an operator clock, speaking MQTT, with cheap hours 4 h after `t0`; and
    the files of a delegated EV box for it (config, tokens, first readings)."""

    fman: subprocess.Popen
    url: str
    t0: datetime
    config: Path
    token: Path
    operator_token: Path
    ev: dict[str, Any]


def ev_lab(tmp_path: Path) -> EvLab:
    name = f"fman-{secrets.token_hex(4)}"
    t0 = datetime(2026, 11, 25, 16, tzinfo=UTC)
    rows = [f"{encode(t0 + timedelta(hours=h))},{0.05 if h in (4, 5) else 0.30}" for h in range(-4, 30)]
    (tmp_path / "prices.csv").write_text("time,eur_per_kwh\n" + "\n".join(rows) + "\n")
    clock = ("--clock", "operator", "--clock-start", encode(t0))
    fman, url = _serve(tmp_path, "fman", "--name", name, "--mqtt", "mqtt://127.0.0.1:1883", "--prices",
                       str(tmp_path / "prices.csv"), *clock)  # fmt: skip
    config = yaml.safe_load((ROOT / "examples" / "foa" / "prosumer.yaml").read_text())
    config["prosumer"].update(receiver=f"mqtt://127.0.0.1:1883/{name}", mode="delegated")
    for key in ("priority", "base_eur_per_kwh"):
        config["prosumer"].pop(key, None)
    config["devices"] = [d for d in config["devices"] if d["load_type"] == "ev"]
    (tmp_path / "box.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "box.token").write_text("token-of-foss-p017-012345678")
    (tmp_path / "operator.token").write_text(OPERATOR)
    departure = encode(t0 + timedelta(hours=8))
    ev = {"plugged_in": True, "now_energy_kwh": 20.0, "target_energy_kwh": 30.0, "departure": departure}
    return EvLab(fman, url, t0, tmp_path / "box.yaml", tmp_path / "box.token", tmp_path / "operator.token", ev)


def test_an_foa_process_runs_over_mqtt_against_a_served_fman(tmp_path) -> None:
    lab = ev_lab(tmp_path)
    fman, url, t0 = lab.fman, lab.url, lab.t0
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "readings.json").write_text(json.dumps({"ev-1": lab.ev}))
    command = [sys.executable, "-m", "atp.cli", "foa", "--config", str(lab.config), "--clock", "operator"]
    command += ["--token-file", str(lab.token), "--devices", str(devices)]
    command += ["--operator-token-file", str(lab.operator_token)]
    foa = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    try:
        line = foa.stdout.readline()
        assert "status on " in line, line + (foa.stderr.read() if foa.poll() is not None else "")
        foa_url = line.strip().rsplit("status on ", 1)[1].removesuffix("/status")
        tick = lambda now: httpx.post(f"{foa_url}/tick", json={"now": encode(now)}, headers=operator, timeout=30)  # noqa: E731
        assert tick(t0).status_code == 200
        [offer] = httpx.get(f"{url}/flexoffer", headers=operator, timeout=10).json()  # it came over MQTT
        assert offer["issuer"] == P17 and offer["mode"] == "delegated"
        assert httpx.post(f"{url}/fman/plan", headers=operator, timeout=60).json()["n_assigned"] == 1
        schedule = httpx.get(f"{url}/flexoffer/{offer['id']}", headers=operator, timeout=10).json()["schedule"]
        start = datetime.fromisoformat(schedule["start"].replace("Z", "+00:00"))
        assert start >= t0 + timedelta(hours=4)  # into the cheap hours
        httpx.put(f"{url}/operator/clock", json={"now": encode(start)}, headers=operator, timeout=10)
        answer = tick(start).json()  # the FOA read its schedule over MQTT and hands out its first step
        assert answer["setpoints"]["ev-1"] == pytest.approx(schedule["energy"][0])
    finally:
        foa.terminate()
        foa.communicate(timeout=20)
        log = _stop(fman)
    assert "Traceback" not in log, log


def test_a_box_that_speaks_the_goflex_format_is_read_and_answered_in_it(gateway) -> None:
    receiver, store = gateway
    listener = Listener(topic(receiver, P17, "reply"))
    try:
        document = offer_to_goflex(ev_offer(), lossy=True)
        ok = _envelope("g-1", TOKEN_OF[P17], body=json.dumps(document), format="goflex")
        bad = _envelope(
            "g-2", TOKEN_OF[P17], body=json.dumps({**document, "numSecondsPerInterval": "x"}), format="goflex"
        )
        listener.publish(topic(receiver, P17, "request"), ok)
        listener.publish(topic(receiver, P17, "request"), bad)
        assert wait_until(lambda: len(listener.on(topic(receiver, P17, "reply"))) == 2)
        replies = {r["request_id"]: r for r in listener.on(topic(receiver, P17, "reply"))}
        assert replies["g-1"]["status"] == 201
        answer = json.loads(replies["g-1"]["body"])
        assert answer["offeredById"] == P17 and answer["flexOfferProfileConstraints"]  # GOFLEX fields back
        [record] = store.records()
        assert record.offer.issuer == P17 and record.offer.slice_s == 900
        assert replies["g-2"]["status"] == 422
        assert [d["path"] for d in json.loads(replies["g-2"]["body"])["details"]] == ["numSecondsPerInterval"]
    finally:
        listener.close()

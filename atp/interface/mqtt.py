"""The MQTT binding of the exchange interface (spec/interface.md, MQTT binding).

Every operation of the HTTP binding travels as one MQTT message each way, through a broker
(Mosquitto here; MQTT 3.1.1 or 5):

    atp/v1/{receiver}/{party}/request   party -> receiver, QoS 1: {"request_id", "method", "path",
                                        "query", "headers", "token", "body", "format"}
    atp/v1/{receiver}/{party}/reply     receiver -> party, QoS 1: {"request_id", "status",
                                        "content_type", "body"}: what HTTP would have answered
    atp/v1/{receiver}/{party}/events    receiver -> party, QoS 1: one SSE message per event,
                                        numbered in the party's own sequence (as on the stream)
    atp/v1/{receiver}/{party}/status    the party's box, retained: {"state": "online"|"offline"},
                                        its last will "offline" (a dead box is seen within keep-alive)
    atp/v1/{receiver}/status            the receiver's own, retained, with its last will

`MqttGateway` runs beside a receiver (`goflex-atp serve --mqtt mqtt://HOST:PORT`): it answers
each request by running it through the receiver's own HTTP app in process (the same routes,
limits, checks and error bodies; the token is the request's bearer token, and a token whose
party is not the topic's is refused 403), and pushes every party's events to its events topic.
A request id answered before is answered again from memory without running it twice (a QoS 1
redelivery, or a client's retry after a lost reply). A box that speaks the GOFLEX field format
says `"format": "goflex"`: its offers are read from GOFLEX (problems named by GOFLEX field) and
the offers answered are written back in it.

`MqttClient` is the party's side: an `HttpClient` (the same `ExchangeInterface`, the same
decoding and errors) whose transport is MQTT (`MqttTransport`): a request is published, its
reply awaited by request id, published again with the same id when no reply came within the
timeout. `subscribe` takes the party's events topic. Client sockets get TCP_NODELAY (without it
small messages waited 40-50 ms for Nagle's algorithm here).

Keeping parties apart on the broker (one party must not read another's topics) is the broker's
ACL: Mosquitto `pattern readwrite atp/v1/+/%u/#` with per-party users, or client certificates
(`use_identity_as_username`); the gateway's user needs `atp/v1/{receiver}/#`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
from fastapi import FastAPI

from atp.flexoffer import FlexOffer
from atp.flexoffer.codec import decode, encode
from atp.flexoffer.goflex import offer_from_goflex
from atp.flexoffer.goflex_export import offer_to_goflex
from atp.interface.auth import TokenTable
from atp.interface.errors import CommunicationError, UnauthorizedError
from atp.interface.http_client import HttpClient
from atp.interface.sse import format_event, parse_events
from atp.interface.store import OPERATOR, Event, OfferStore

__all__ = ["MqttClient", "MqttGateway", "MqttSettings", "MqttTransport", "topic"]

_ROOT = "atp/v1"
_QOS = 1
_REPLIES_KEPT = 10_000  # answered request ids the gateway remembers (redeliveries answered again)


def topic(receiver: str, party: str | None, leaf: str) -> str:
    """`atp/v1/{receiver}/{party}/{leaf}` (the receiver's own topic when `party` is None)."""
    return f"{_ROOT}/{receiver}/{leaf}" if party is None else f"{_ROOT}/{receiver}/{party}/{leaf}"


@dataclass(frozen=True)
class MqttSettings:
    """Where the broker is and how to log in: `mqtt://HOST:PORT` (or `mqtts://` for TLS, with
    `ca_file` when the broker's certificate is not from a system CA), a username and password,
    or a client certificate (`cert_file`, `key_file`); `keepalive_s` bounds how long a dead
    peer goes unnoticed."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30

    @classmethod
    def for_receiver(cls, url: str, **options: Any) -> tuple[MqttSettings, str]:
        """The broker's settings and the receiver's name from `mqtt(s)://BROKER:PORT/RECEIVER`
        (an FOA's `prosumer.receiver`); ValueError naming the URL when the name is missing."""
        parts = urlsplit(url)
        name = parts.path.strip("/")
        if not name or "/" in name:
            raise ValueError(f"{url!r}: give the receiver's name, mqtt://BROKER:PORT/NAME")
        return cls.from_url(url[: len(url) - len(parts.path)], **options), name

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MqttSettings:
        """Settings from `mqtt://HOST:PORT` or `mqtts://HOST:PORT` (ValueError naming the URL)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{url!r} is not an mqtt://HOST:PORT or mqtts://HOST:PORT URL")
        tls = parts.scheme == "mqtts"
        return cls(host=parts.hostname, port=parts.port or (8883 if tls else 1883), tls=tls, **options)


def _connect(settings: MqttSettings, client_id: str, *, will: tuple[str, str] | None) -> mqtt.Client:
    """A paho client connected to the broker, its network loop on its own thread."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.cert_file is not None:
            context.load_cert_chain(settings.cert_file, settings.key_file)
        client.tls_set_context(context)
    if will is not None:
        client.will_set(will[0], will[1], qos=_QOS, retain=True)

    def nodelay(_client: Any, _userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = nodelay
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    client.on_connect_fail = lambda *_args: (refused.append("cannot connect"), connected.set())
    # connect from the network thread (loop_start first: paho leaks a socket pair otherwise)
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
    client.loop_start()
    where = f"MQTT broker {settings.host}:{settings.port}"
    if not connected.wait(timeout=10) or refused:
        client.disconnect()
        client.loop_stop()
        raise CommunicationError(f"{where}: {refused[0] if refused else 'no CONNACK within 10 s'}")
    return client


def _status(state: str) -> str:
    return json.dumps({"state": state})


class MqttGateway:
    """The receiver's side of the binding (module docstring): requests run through `app`,
    `store`'s events pushed to each party."""

    def __init__(
        self, app: FastAPI, store: OfferStore, *, receiver: str, tokens: TokenTable, settings: MqttSettings
    ) -> None:
        self.app = app
        self.store = store
        self.receiver = receiver
        self.tokens = tokens
        self.settings = settings
        self._answered: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mqtt-gateway", daemon=True)
        self._client: mqtt.Client | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._http: httpx.AsyncClient | None = None

    def start(self) -> MqttGateway:
        """Connect, subscribe to every party's requests, announce the receiver online."""
        self._thread.start()
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://receiver")
        own = topic(self.receiver, None, "status")
        client = _connect(self.settings, f"atp-{self.receiver}-{secrets.token_hex(4)}", will=(own, _status("offline")))
        client.on_message = self._on_message
        client.subscribe(topic(self.receiver, "+", "request"), qos=_QOS)
        client.publish(own, _status("online"), qos=_QOS, retain=True)
        self._client = client
        self._unsubscribe = self.store.subscribe_each_party(self._push)
        return self

    def stop(self) -> None:
        """Announce the receiver offline and disconnect."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._client is not None:
            self._client.publish(topic(self.receiver, None, "status"), _status("offline"), qos=_QOS, retain=True)
            self._client.disconnect()
            self._client.loop_stop()
        if self._http is not None:
            asyncio.run_coroutine_threadsafe(self._http.aclose(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> MqttGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _push(self, event: Event) -> None:
        if self._client is not None:
            self._client.publish(topic(self.receiver, event.party, "events"), format_event(event), qos=_QOS)

    def _reply(self, party: str, request_id: str, status: int, body: str, content_type: str) -> bytes:
        payload = {"request_id": request_id, "status": status, "content_type": content_type, "body": body}
        return json.dumps(payload, separators=(",", ":")).encode()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if len(parts) != 5 or parts[4] != "request":
            return
        party = parts[3]
        try:
            envelope = json.loads(message.payload)
        except (ValueError, UnicodeDecodeError):
            return  # no request id to answer to: a client that sends this is not one of ours
        if not isinstance(envelope, dict) or not isinstance(envelope.get("request_id"), str):
            return
        request_id = envelope["request_id"][:200]
        with self._lock:
            answered = self._answered.get((party, request_id))
        if answered is not None:  # a redelivery: the same answer, nothing run twice
            self._publish_reply(party, answered)
            return
        future = asyncio.run_coroutine_threadsafe(self._answer(party, request_id, envelope), self._loop)
        future.add_done_callback(lambda done: self._done(party, request_id, done))

    def _done(self, party: str, request_id: str, done: Any) -> None:
        try:
            payload = done.result()
        except Exception as exc:  # a request must be answered whatever broke
            payload = self._reply(party, request_id, 500, json.dumps({"error": repr(exc), "details": []}), "")
        with self._lock:
            self._answered[(party, request_id)] = payload
            while len(self._answered) > _REPLIES_KEPT:
                self._answered.popitem(last=False)
        self._publish_reply(party, payload)

    def _publish_reply(self, party: str, payload: bytes) -> None:
        if self._client is not None:
            self._client.publish(topic(self.receiver, party, "reply"), payload, qos=_QOS)

    async def _answer(self, party: str, request_id: str, envelope: dict[str, Any]) -> bytes:
        """Run one request through the receiver's app and give its answer."""
        problems = _envelope_problems(envelope)
        if problems:
            body = json.dumps({"error": "invalid MQTT request: " + "; ".join(problems), "details": []})
            return self._reply(party, request_id, 422, body, "application/json")
        token = envelope["token"]
        try:
            token_party = self.tokens.party_of(f"Bearer {token}")
        except UnauthorizedError as exc:
            body = json.dumps({"error": str(exc), "details": []})
            return self._reply(party, request_id, 401, body, "application/json")
        if token_party != party and not (token_party == OPERATOR and party == OPERATOR):
            body = json.dumps({"error": f"the token is not {party!r}'s: publish to your own topics", "details": []})
            return self._reply(party, request_id, 403, body, "application/json")
        headers = {str(k): str(v) for k, v in (envelope.get("headers") or {}).items()}
        headers["authorization"] = f"Bearer {token}"
        body = envelope.get("body")
        goflex = envelope.get("format") == "goflex" and _carries_offers(envelope["method"], envelope["path"])
        if goflex and isinstance(body, str):
            body, problems_422 = _from_goflex(body)
            if problems_422 is not None:
                return self._reply(party, request_id, 422, problems_422, "application/json")
        assert self._http is not None
        response = await self._http.request(
            envelope["method"],
            envelope["path"],
            params=envelope.get("query") or None,
            headers=headers,
            content=body.encode() if isinstance(body, str) else None,
        )
        content_type = response.headers.get("content-type", "")
        text = _to_goflex(response.text) if goflex and response.is_success else response.text
        return self._reply(party, request_id, response.status_code, text, content_type)


def _carries_offers(method: str, path: str) -> bool:
    """Whether the request's body or answer is a Flex-Offer (or a list of them)."""
    parts = path.strip("/").split("/")
    if parts[0] != "flexoffer" or (len(parts) > 1 and parts[1] in ("measurement", "stream")):
        return False
    return method in ("GET", "POST", "PUT", "DELETE") and len(parts) <= 3


def _from_goflex(body: str) -> tuple[str, str | None]:
    """A GOFLEX-format offer as the v1 body; or the 422 body naming each GOFLEX field at fault."""
    try:
        data = json.loads(body)
    except ValueError:
        return body, None  # the receiver answers malformed JSON itself
    offer, problems = offer_from_goflex(data)
    if offer is None:
        details = [{"path": p.path, "message": p.message, "rule": p.rule} for p in problems]
        return body, json.dumps({"error": "invalid flex-offer (GOFLEX format)", "details": details})
    return json.dumps(encode(offer)), None


def _to_goflex(text: str) -> str:
    """An answer's offers (one, or a page of them) in the GOFLEX format (what v1 has that GOFLEX
    cannot hold is left out: `offer_to_goflex(lossy=True)`)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text

    def one(item: Any) -> Any:
        offer, problems = decode(FlexOffer, item)
        return offer_to_goflex(offer, lossy=True) if offer is not None and not problems else item

    if isinstance(data, list):
        return json.dumps([one(item) for item in data])
    return json.dumps(one(data)) if isinstance(data, dict) else text


def _envelope_problems(envelope: dict[str, Any]) -> list[str]:
    problems = []
    if envelope.get("method") not in ("GET", "POST", "PUT", "DELETE"):
        problems.append("method: must be GET, POST, PUT or DELETE")
    path = envelope.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "//" in path:
        problems.append("path: must be an absolute path such as /flexoffer")
    if not isinstance(envelope.get("token"), str):
        problems.append("token: the party's bearer token is required")
    for key in ("query", "headers"):
        value = envelope.get(key)
        if value is not None and not isinstance(value, dict):
            problems.append(f"{key}: must be an object")
    if envelope.get("body") is not None and not isinstance(envelope.get("body"), str):
        problems.append("body: must be the request body as a string")
    if envelope.get("format", "v1") not in ("v1", "goflex"):
        problems.append("format: must be v1 (default) or goflex (offers in the GOFLEX field format)")
    return problems


class MqttTransport(httpx.BaseTransport):
    """An httpx transport that carries each request over MQTT to the receiver's gateway and
    returns its reply (module docstring); `party` publishes on its own topics."""

    def __init__(
        self, settings: MqttSettings, *, receiver: str, party: str, timeout_s: float = 10.0, attempts: int = 3
    ) -> None:
        self.receiver = receiver
        self.party = party
        self.timeout_s = timeout_s
        self.attempts = attempts
        self._waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._event_callbacks: list[Callable[[Event], None]] = []
        own = topic(receiver, party, "status")
        self._client = _connect(settings, f"{party}-{secrets.token_hex(4)}", will=(own, _status("offline")))
        self._client.on_message = self._on_message
        self._client.subscribe([(topic(receiver, party, "reply"), _QOS), (topic(receiver, party, "events"), _QOS)])
        self._client.publish(own, _status("online"), qos=_QOS, retain=True)

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/events"):
            for event in parse_events(message.payload.decode().splitlines()):
                for callback in list(self._event_callbacks):
                    callback(event)
            return
        try:
            reply = json.loads(message.payload)
        except (ValueError, UnicodeDecodeError):
            return
        with self._lock:
            waiting = self._waiting.get(str(reply.get("request_id")))
        if waiting is not None:
            waiting[1].append(reply)
            waiting[0].set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Publish the request, wait for its reply (published again, same id, after a timeout)."""
        request_id = secrets.token_hex(12)
        auth = request.headers.get("authorization", "")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("idempotency-key", "last-event-id")}
        body = request.read().decode() or None
        envelope = {
            "request_id": request_id,
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.url.params),
            "headers": headers,
            "token": auth.removeprefix("Bearer "),
            "body": body,
        }
        payload = json.dumps(envelope, separators=(",", ":"))
        done, replies = threading.Event(), []
        with self._lock:
            self._waiting[request_id] = (done, replies)
        try:
            for _ in range(self.attempts):
                self.publish_request(payload)
                if done.wait(self.timeout_s):
                    reply = replies[0]
                    return httpx.Response(
                        int(reply.get("status", 502)),
                        headers={"content-type": str(reply.get("content_type") or "application/json")},
                        content=str(reply.get("body") or "").encode(),
                        request=request,
                    )
        finally:
            with self._lock:
                self._waiting.pop(request_id, None)
        raise httpx.ReadTimeout(f"no MQTT reply to {request.method} {request.url.path} in {self.timeout_s:g} s")

    def publish_request(self, payload: str) -> None:
        """Publish one request envelope on the party's request topic (QoS 1); the one place a
        request leaves (a fault-injecting box emulator overrides it: hil/faults.py)."""
        self._client.publish(topic(self.receiver, self.party, "request"), payload, qos=_QOS)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Deliver the party's events from its events topic (on the MQTT thread)."""
        self._event_callbacks.append(callback)
        return lambda: self._event_callbacks.remove(callback)

    def close(self) -> None:
        """Announce the party offline and disconnect."""
        self._client.publish(topic(self.receiver, self.party, "status"), _status("offline"), qos=_QOS, retain=True)
        self._client.disconnect()
        self._client.loop_stop()


class MqttClient(HttpClient):
    """A party's `ExchangeInterface` over MQTT: the HTTP binding's client on an MQTT transport
    (module docstring); the same answers, errors and retries."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        receiver: str,
        token: str,
        party: str,
        timeout_s: float = 10.0,
        retries: int = 2,
        transport: MqttTransport | None = None,
    ) -> None:
        self.transport = transport or MqttTransport(
            settings, receiver=receiver, party=party, timeout_s=timeout_s, attempts=retries + 1
        )
        super().__init__(
            f"http://{receiver}", token, party=party, timeout_s=timeout_s * (retries + 1) + 1, retries=0,
            transport=self.transport,
        )  # fmt: skip

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Push the party's events to `callback` from its events topic."""
        return self.transport.subscribe(callback)

    def close(self) -> None:
        """Disconnect from the broker."""
        super().close()
        self.transport.close()

"""HTTP binding of the exchange interface, client side: `HttpClient`, an `ExchangeInterface` over httpx.

The client behaves as `InProcessClient` does: the same methods, the same answers, the same
errors, raised from the status codes of the receiver's answers (401 UnauthorizedError, 403
ForbiddenError, 404 NotFoundError, 409 ConflictError, 422 InvalidOfferError with every
problem and its JSON path; other refusals InterfaceError with the code in `status`).

Lost requests: a request that cannot be delivered, times out, or meets a 502/503/504 is
retried `retries` times with exponential backoff where that is safe: reads (GET), a submission
(POST /flexoffer and POST /request, which always carry an `Idempotency-Key`: the caller's, or
a fresh one per call, so the receiver stores it once however often it arrives) and
measurements (storing the same measurement twice stores it once). PUT and DELETE are retried only when the connection
could not be opened at all. When the retries are spent, the client raises
`atp.interface.errors.CommunicationError`, the one error a binding raises for lost communication
(the FOA retries on it); the original httpx error is its `__cause__`.

Lists (`active`, `between`, `requests`) follow the receiver's pages: each page's
`Link: <...>; rel="next"` header is fetched until a page comes without one.

Events: `events(after=n)` reads the stream's backlog (`GET /flexoffer/stream?follow=false`).
`subscribe(callback)` opens the stream on a reader thread and returns once the stream is in
place, so every event after the call reaches `callback`; a broken connection is reopened with
`Last-Event-ID` and loses nothing. The callback runs on the reader thread: a caller that is not
thread-safe must hand the events over to its own thread (e.g. through a queue).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from atp.errors import InvalidOfferError, Problem
from atp.flexoffer import FlexOffer, Measurement, decode, encode, format_time, parse_time
from atp.interface.capacity import PublishedCapacity
from atp.interface.errors import (
    CommunicationError,
    ConflictError,
    ForbiddenError,
    InterfaceError,
    NotFoundError,
    UnauthorizedError,
)
from atp.interface.requests import FlexRequest
from atp.interface.sse import event_from_message, parse_messages
from atp.interface.store import Event, TimeSeries

__all__ = ["HttpClient"]

_log = logging.getLogger(__name__)

_REFUSALS: dict[int, type[InterfaceError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
}
_TRANSIENT_STATUS = frozenset({502, 503, 504})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _communication_error(message: str) -> Exception:
    return CommunicationError(message)


def _refusal(response: httpx.Response) -> Exception:
    """The interface error a non-2xx answer stands for."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    message = str(body.get("error") or f"{response.status_code} {response.reason_phrase}")
    if response.status_code == 422:
        details = body.get("details") if isinstance(body.get("details"), list) else []
        problems = [
            Problem(str(d.get("path", "")), str(d.get("message", "")), str(d.get("rule", "")))
            for d in details
            if isinstance(d, dict)
        ] or [Problem("", message)]
        what = "flex-offer"
        if message.startswith("invalid ") and ":" in message:
            what = message[len("invalid ") : message.index(":")]
        return InvalidOfferError(problems, what=what)
    cls = _REFUSALS.get(response.status_code)
    if cls is not None:
        return cls(message)
    error = InterfaceError(message)
    error.status = response.status_code
    return error


def _malformed(what: str, problems: Sequence[Problem]) -> InterfaceError:
    error = InterfaceError(f"the receiver answered a malformed {what}: " + "; ".join(map(str, problems[:5])))
    error.status = 502
    return error


def _offer(data: Any) -> FlexOffer:
    offer, problems = decode(FlexOffer, data)
    if problems or offer is None:
        raise _malformed("offer", problems)
    return offer


def _request(data: Any) -> FlexRequest:
    request, problems = decode(FlexRequest, data)
    if problems or request is None:
        raise _malformed("request", problems)
    return request


def _capacity(data: Any) -> PublishedCapacity:
    capacity, problems = decode(PublishedCapacity, data)
    if problems or capacity is None:
        raise _malformed("capacity", problems)
    return capacity


def _shutdown(response: httpx.Response | None) -> None:
    """Wake a thread blocked reading `response` by shutting its socket down."""
    if response is None:
        return
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class HttpClient:
    """`ExchangeInterface` of the party holding `token`, against the receiver at `base_url`.

    `party` names that party (the receiver decides by the token; the name is for the caller).
    `verify` is True (system CAs), False, or an `ssl.SSLContext` (e.g. trusting a self-signed
    certificate). `transport` replaces httpx's (tests, proxies).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        party: str,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.1,
        stream_idle_s: float = 60.0,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries(={retries}) must be >= 0")
        if timeout_s <= 0 or stream_idle_s <= 0:
            raise ValueError("timeout_s and stream_idle_s must be > 0 seconds")
        self.party = party
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.stream_idle_s = stream_idle_s
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._verify = verify
        self._transport = transport
        self._http = self._new_http()

    def _new_http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers=self._headers,
            timeout=self.timeout_s,
            verify=self._verify,
            transport=self._transport,
        )

    # -- plumbing ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections (subscriptions close their own on unsubscribe)."""
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, *, safe: bool, **kwargs: Any) -> httpx.Response:
        """One request, retried where `safe`; a 2xx answer or the mapped error."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt < self.retries and (safe or isinstance(exc, _NOT_SENT)):
                    attempt = self._backoff(attempt, f"{method} {path}: {exc!r}")
                    continue
                raise _communication_error(f"{method} {self.base_url}{path}: {exc}") from exc
            if response.status_code in _TRANSIENT_STATUS:
                if safe and attempt < self.retries:
                    attempt = self._backoff(attempt, f"{method} {path}: {response.status_code}")
                    continue
                raise _communication_error(f"{method} {self.base_url}{path}: {response.status_code} from the receiver")
            if response.is_success:
                return response
            raise _refusal(response)

    def _backoff(self, attempt: int, why: str) -> int:
        delay = self.backoff_s * 2**attempt
        _log.warning("%s; retry %d of %d in %.3g s", why, attempt + 1, self.retries, delay)
        time.sleep(delay)
        return attempt + 1

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise _malformed("body", [Problem("", "is not JSON")]) from None

    # -- ExchangeInterface ---------------------------------------------------------------
    def submit(self, offer: FlexOffer, *, idempotency_key: str | None = None) -> FlexOffer:
        """POST /flexoffer (retried safely: always with an Idempotency-Key)."""
        key = idempotency_key if idempotency_key is not None else uuid.uuid4().hex
        response = self._send("POST", "/flexoffer", safe=True, json=encode(offer), headers={"Idempotency-Key": key})
        return _offer(self._json(response))

    def update(self, offer_id: str, offer: FlexOffer) -> FlexOffer:
        """PUT /flexoffer/{id}."""
        response = self._send("PUT", f"/flexoffer/{quote(offer_id, safe='')}", safe=False, json=encode(offer))
        return _offer(self._json(response))

    def withdraw(self, offer_id: str) -> FlexOffer:
        """DELETE /flexoffer/{id}."""
        return _offer(self._json(self._send("DELETE", f"/flexoffer/{quote(offer_id, safe='')}", safe=False)))

    def get(self, offer_id: str) -> FlexOffer:
        """GET /flexoffer/{id}."""
        return _offer(self._json(self._send("GET", f"/flexoffer/{quote(offer_id, safe='')}", safe=True)))

    def _pages(self, path: str, what: str) -> list[Any]:
        """Every item of a paginated list: the pages from `path` on, following rel="next"."""
        items: list[Any] = []
        url: str | None = path
        while url is not None:
            response = self._send("GET", url, safe=True)
            data = self._json(response)
            if not isinstance(data, list):
                raise _malformed(what, [Problem("", "is not a list")])
            items.extend(data)
            following = response.links.get("next", {}).get("url")
            if following is not None and not following.startswith("/"):  # the token goes to this receiver only
                raise _malformed(what, [Problem("Link", f"the next page {following!r} is not a path of this receiver")])
            url = following if following and following != url else None
        return items

    def active(self) -> list[FlexOffer]:
        """GET /flexoffer, every page."""
        return [_offer(item) for item in self._pages("/flexoffer", "offer list")]

    def between(self, start: datetime, end: datetime) -> list[FlexOffer]:
        """GET /flexoffer/{from}/{to}, every page."""
        path = f"/flexoffer/{quote(format_time(start))}/{quote(format_time(end))}"
        return [_offer(item) for item in self._pages(path, "offer list")]

    def post_measurements(self, measurements: Sequence[Measurement]) -> int:
        """POST /flexoffer/measurement (a list; retried safely: a measurement is stored once)."""
        if not measurements:
            return 0
        body = [encode(m) for m in measurements]
        data = self._json(self._send("POST", "/flexoffer/measurement", safe=True, json=body))
        stored = data.get("stored") if isinstance(data, dict) else None
        if not isinstance(stored, int):
            raise _malformed("measurement answer", [Problem("stored", "is not an integer")])
        return stored

    def timeseries(self, kind: str, start: datetime, end: datetime, *, slice_s: int) -> TimeSeries:
        """GET /timeseries/{kind}/{from}/{to}?slice_s=..."""
        path = f"/timeseries/{quote(kind, safe='')}/{quote(format_time(start))}/{quote(format_time(end))}"
        data = self._json(self._send("GET", path, safe=True, params={"slice_s": slice_s}))
        try:
            return TimeSeries(parse_time(data["start"]), int(data["slice_s"]), tuple(float(v) for v in data["values"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed("time series", [Problem("", str(exc))]) from None

    def events(self, *, after: int = 0) -> list[Event]:
        """The caller's events after sequence number `after` (the stream's backlog)."""
        attempt = 0
        while True:
            try:
                with self._http.stream(
                    "GET", "/flexoffer/stream", params={"follow": "false"}, headers={"Last-Event-ID": str(after)}
                ) as response:
                    if not response.is_success:
                        response.read()
                        if response.status_code not in _TRANSIENT_STATUS:
                            raise _refusal(response)
                        raise httpx.RemoteProtocolError(f"{response.status_code} from the receiver")
                    return [event_from_message(m) for m in parse_messages(response.iter_lines()) if m.data is not None]
            except httpx.TransportError as exc:
                if attempt < self.retries:
                    attempt = self._backoff(attempt, f"GET /flexoffer/stream: {exc!r}")
                    continue
                raise _communication_error(f"GET {self.base_url}/flexoffer/stream: {exc}") from exc

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Deliver the caller's events after this call to `callback` (on a reader thread).

        Raises CommunicationError when the stream cannot be opened (tried `retries` + 1 times).
        Returns the function that stops the subscription.
        """
        subscription = _Subscription(self, callback)
        return subscription.stop

    def post_request(self, request: FlexRequest, *, idempotency_key: str | None = None) -> FlexRequest:
        """POST /request (retried safely: always with an Idempotency-Key)."""
        key = idempotency_key if idempotency_key is not None else uuid.uuid4().hex
        response = self._send("POST", "/request", safe=True, json=encode(request), headers={"Idempotency-Key": key})
        return _request(self._json(response))

    def get_request(self, request_id: str) -> FlexRequest:
        """GET /request/{id}."""
        return _request(self._json(self._send("GET", f"/request/{quote(request_id, safe='')}", safe=True)))

    def requests(self) -> list[FlexRequest]:
        """GET /request, every page."""
        return [_request(item) for item in self._pages("/request", "request list")]

    def withdraw_request(self, request_id: str) -> FlexRequest:
        """DELETE /request/{id}."""
        return _request(self._json(self._send("DELETE", f"/request/{quote(request_id, safe='')}", safe=False)))

    def publish_capacity(self, capacity: PublishedCapacity) -> PublishedCapacity:
        """PUT /capacity/{name} (a PUT is idempotent: retried safely)."""
        path = f"/capacity/{quote(capacity.name, safe='')}"
        return _capacity(self._json(self._send("PUT", path, safe=True, json=encode(capacity))))

    def get_capacity(self, name: str) -> PublishedCapacity:
        """GET /capacity/{name}."""
        return _capacity(self._json(self._send("GET", f"/capacity/{quote(name, safe='')}", safe=True)))

    def capacities(self) -> list[PublishedCapacity]:
        """GET /capacity, every page."""
        return [_capacity(item) for item in self._pages("/capacity", "capacity list")]

    def withdraw_capacity(self, name: str) -> PublishedCapacity:
        """DELETE /capacity/{name}."""
        return _capacity(self._json(self._send("DELETE", f"/capacity/{quote(name, safe='')}", safe=False)))

    # -- beyond the protocol: contract, bill, KPIs ---------------------------------------
    def contract(self) -> dict[str, Any]:
        """GET /contract: the caller's flexibility contract."""
        return dict(self._json(self._send("GET", "/contract", safe=True)))

    def bill(self) -> dict[str, Any]:
        """GET /bill: the caller's bill."""
        return dict(self._json(self._send("GET", "/bill", safe=True)))

    def kpi(self, *, party: str | None = None) -> dict[str, Any]:
        """GET /kpi: KPIs over the caller's scope (an operator may name a `party`)."""
        params: Mapping[str, str] = {"party": party} if party is not None else {}
        return dict(self._json(self._send("GET", "/kpi", safe=True, params=params)))


class _Subscription:
    """One reader thread on `GET /flexoffer/stream`, reconnecting with Last-Event-ID."""

    def __init__(self, client: HttpClient, callback: Callable[[Event], None]) -> None:
        self._client = client
        self._callback = callback
        self._stopped = threading.Event()
        self._positioned = threading.Event()
        self._settled = threading.Event()  # positioned, or the first attempts all failed
        self._last_id: str | None = None
        self._response: httpx.Response | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"sse-{client.party}", daemon=True)
        self._thread.start()
        self._settled.wait(client.timeout_s * (client.retries + 1))
        if not self._positioned.is_set() or self._last_id is None:
            self.stop()
            if isinstance(self._failure, InterfaceError):  # a refusal (e.g. 401), not lost communication
                raise self._failure
            why = f": {self._failure}" if self._failure is not None else ""
            raise _communication_error(f"GET {client.base_url}/flexoffer/stream could not be opened{why}")

    def stop(self) -> None:
        """Stop delivering events and close the stream."""
        self._stopped.set()
        _shutdown(self._response)
        if threading.current_thread() is not self._thread:
            self._thread.join(self._client.timeout_s)

    @contextmanager
    def _stream(self, http: httpx.Client) -> Iterator[httpx.Response]:
        headers = {"Last-Event-ID": self._last_id} if self._last_id is not None else {}
        timeout = httpx.Timeout(self._client.timeout_s, read=self._client.stream_idle_s)
        with http.stream("GET", "/flexoffer/stream", headers=headers, timeout=timeout) as response:
            self._response = response
            try:
                yield response
            finally:
                self._response = None

    def _run(self) -> None:
        http = self._client._new_http()
        try:
            self._read(http)
        finally:
            if self._client._transport is None:  # a transport given to the client is the caller's to close
                http.close()

    def _read(self, http: httpx.Client) -> None:
        delay = self._client.backoff_s
        failures = 0
        while not self._stopped.is_set():
            try:
                with self._stream(http) as response:
                    if not response.is_success:
                        response.read()
                        raise _refusal(response)
                    for message in parse_messages(response.iter_lines()):
                        if self._stopped.is_set():
                            return
                        if message.id is not None:
                            self._last_id = message.id
                        self._positioned.set()
                        self._settled.set()
                        delay = self._client.backoff_s
                        if message.data is not None:
                            self._deliver(event_from_message(message))
            except Exception as exc:  # a broken stream: reconnect, never die
                self._failure = exc
                if not self._positioned.is_set():
                    failures += 1
                    if failures > self._client.retries or isinstance(exc, InterfaceError):
                        self._settled.set()
                        return
                if not self._stopped.is_set():
                    party = self._client.party
                    _log.warning("event stream of %s broke (%s); reconnecting in %.3g s", party, exc, delay)
            self._stopped.wait(delay)
            delay = min(delay * 2, 30.0)

    def _deliver(self, event: Event) -> None:
        try:
            self._callback(event)
        except Exception:
            _log.exception("event callback of %s failed on event %d", self._client.party, event.seq)

"""Serving the HTTP binding: uvicorn around an app, on the main thread (`serve`) or a background
thread (`ServerThread`: tests, hardware-in-the-loop labs, one-process demos).

What a receiver serves per role (an FMAN's or an FMAR's app, its store and its loops) is
composed above the ATP parts, in `atp.services.receivers` (`goflex-atp serve`). A served store
commits in groups: its writer thread commits the changes of all concurrent requests at once,
and `CommittedResponses` starts no response before what it may show is committed, so a 201
means stored.

TLS is on when a certificate and its key are given; both files are loaded before the server
starts, so a wrong file is one sentence, not a traceback from inside the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from atp.errors import ValidationError
from atp.interface.limits import HEADER_TIMEOUT_S, IDLE_TIMEOUT_S, connection_options
from atp.interface.store import OfferStore, StoreUnavailableError

__all__ = ["CommittedResponses", "ServeConfigError", "ServerThread", "check_tls", "serve"]


class ServeConfigError(ValidationError):
    """The serve command's options do not fit together (role, TLS files, contracts)."""


class CommittedResponses:
    """ASGI middleware: no response starts before every change of the store made until then is
    committed (with group commit a handler's change returns before its commit). A 201 thus
    means stored, and no answer shows what a crash could still take back. A failed commit
    answers 503 instead. Waiting costs no thread: the writer thread wakes the waiting responses
    on their event loops after each commit."""

    def __init__(self, app: Any, store: OfferStore) -> None:
        self.app = app
        self.store = store
        self._guard = threading.Lock()
        self._waiting: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        store.on_commit(self._committed)

    def _committed(self) -> None:
        failed = self.store.commit_failed
        ready, waiting = [], []
        with self._guard:
            for entry in self._waiting:
                (ready if failed or self.store.is_committed(entry[0]) else waiting).append(entry)
            self._waiting = waiting
        for _, loop, future in ready:
            with contextlib.suppress(RuntimeError):  # that loop has closed (its server stopped)
                loop.call_soon_threadsafe(_resolve, future)

    async def _wait(self, ticket: int) -> None:
        future = asyncio.get_running_loop().create_future()
        entry = (ticket, asyncio.get_running_loop(), future)
        with self._guard:
            self._waiting.append(entry)
        self._committed()  # the commit may have come before the entry
        await future
        self.store.sync(ticket)  # at once now; StoreUnavailableError after a failed commit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        store = self.store
        refused = False

        async def send_committed(message: Any) -> None:
            nonlocal refused
            if refused:
                return
            if message["type"] == "http.response.start":
                ticket = store.pending
                if not store.is_committed(ticket):
                    try:
                        await self._wait(ticket)
                    except StoreUnavailableError as exc:
                        refused = True
                        body = json.dumps({"error": str(exc), "details": []}).encode()
                        length = str(len(body)).encode()
                        headers = [(b"content-type", b"application/json"), (b"content-length", length)]
                        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
                        await send({"type": "http.response.body", "body": body})
                        return
            await send(message)

        await self.app(scope, receive, send_committed)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def check_tls(certfile: str | Path | None, keyfile: str | Path | None) -> bool:
    """True when TLS is asked for and both files load; ServeConfigError naming the file otherwise."""
    if certfile is None and keyfile is None:
        return False
    if certfile is None or keyfile is None:
        raise ServeConfigError("--certfile and --keyfile go together: give both to switch TLS on, or neither")
    for option, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        if not Path(path).is_file():
            raise ServeConfigError(f"{option} {path}: no such file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(certfile), str(keyfile))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise ServeConfigError(
            f"--certfile {certfile} / --keyfile {keyfile}: not a PEM certificate and its private key ({reason})"
        ) from None
    return True


def _config(
    app: Any,
    *,
    host: str,
    port: int,
    certfile: Any,
    keyfile: Any,
    log_level: str,
    access_log: bool,
    header_timeout_s: float,
    idle_timeout_s: int,
    http: str = "httptools",
    graceful_s: float = 2.0,
) -> uvicorn.Config:
    tls = check_tls(certfile, keyfile)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # header-read and idle timeouts (atp.interface.limits)
        **connection_options(header_timeout_s=header_timeout_s, idle_timeout_s=idle_timeout_s, http=http),
        ws="none",
        lifespan="off",
        log_level=log_level,
        access_log=access_log,
        ssl_certfile=str(certfile) if tls else None,
        ssl_keyfile=str(keyfile) if tls else None,
        timeout_graceful_shutdown=graceful_s,
    )


def serve(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    log_level: str = "info",
    access_log: bool = False,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    idle_timeout_s: int = IDLE_TIMEOUT_S,
    http: str = "httptools",
) -> None:
    """Serve `app` until interrupted (Ctrl-C or SIGTERM). `access_log`: one log line per request
    (off by default: it costs throughput); the timeouts and `http` (the parser, "httptools" or
    "h11"): `atp.interface.limits.connection_options`."""
    config = _config(
        app,
        host=host,
        port=port,
        certfile=certfile,
        keyfile=keyfile,
        log_level=log_level,
        access_log=access_log,
        header_timeout_s=header_timeout_s,
        idle_timeout_s=idle_timeout_s,
        http=http,
    )
    uvicorn.Server(config).run()


class ServerThread:
    """A uvicorn server on a background thread, on a free port unless one is given.

    Use as a context manager; `url` is its base URL (https when a certificate is given).
    Stopping waits up to `graceful_s` for open responses (event streams never end by themselves).
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        log_level: str = "warning",
        start_timeout_s: float = 10.0,
        graceful_s: float = 2.0,
        access_log: bool = False,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        idle_timeout_s: int = IDLE_TIMEOUT_S,
    ) -> None:
        self._config = _config(
            app,
            host=host,
            port=port,
            certfile=certfile,
            keyfile=keyfile,
            log_level=log_level,
            access_log=access_log,
            header_timeout_s=header_timeout_s,
            idle_timeout_s=idle_timeout_s,
            graceful_s=graceful_s,
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto=IPPROTO_TCP (not 0): asyncio switches Nagle off only on sockets that say they are TCP;
        # with Nagle on, every answer written in two parts waits ~40 ms for a delayed ACK.
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host = host
        self.port = self._socket.getsockname()[1]
        scheme = "https" if certfile is not None else "http"
        self.url = f"{scheme}://{host}:{self.port}"
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._start_timeout_s = start_timeout_s

    def start(self) -> ServerThread:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server on {self.url} did not start within {self._start_timeout_s} s")
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError(f"the server on {self.url} stopped while starting")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

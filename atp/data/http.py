"""The external-data interface over HTTP: `create_data_app(source)` serves any `DataSource`
(the twin's own data, a weather or metering system behind an adapter), `HttpDataSource` reads
one.

    GET /data/{quantity}/{from}/{to}?slice_s=900&key=M-017
        -> {"quantity", "key", "start", "slice_s", "values": [...]}
    GET /data/meter/{meter_id}/congestion_point
        -> {"meter_id", "congestion_point"}

`{from}` and `{to}` are ISO 8601 times with an offset. With `tokens` (token -> party), every
request carries `Authorization: Bearer <token>` (401 otherwise); without, the data is open
(a lab network). A request the source cannot answer is 422 with the source's sentence (an
unknown quantity, key or meter: 404); nothing answers 5xx.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from atp.data.errors import DataError
from atp.data.source import QUANTITIES, DataSeries, DataSource
from atp.flexoffer.codec import format_time, parse_wire_time
from atp.interface.auth import TokenTable
from atp.interface.errors import CommunicationError, InterfaceError

__all__ = ["HttpDataSource", "create_data_app"]

_NOT_FOUND = ("is not one of", "holds no", "knows no", "no file holds", "names no meter")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "details": []}, status_code=status)


def _status_of(exc: DataError) -> int:
    return 404 if any(text in str(exc) for text in _NOT_FOUND) else 422


def create_data_app(source: DataSource, *, tokens: Mapping[str, str] | None = None) -> FastAPI:
    """A FastAPI app serving `source`; `tokens` (token -> party) makes every route need a bearer token."""
    table = TokenTable.of(tokens) if tokens else None
    app = FastAPI(title="GOFLEX ATP external data", docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if table is not None:
            try:
                table.party_of(request.headers.get("authorization"))
            except InterfaceError as exc:
                answer = _error(exc.status, str(exc))
                answer.headers["WWW-Authenticate"] = "Bearer"
                return answer
        return await call_next(request)

    @app.get("/data/meter/{meter_id}/congestion_point", summary="The congestion point of a meter")
    async def congestion_point(meter_id: str) -> JSONResponse:
        try:
            point = await run_in_threadpool(source.congestion_point, meter_id)
        except DataError as exc:
            return _error(_status_of(exc), str(exc))
        return JSONResponse({"meter_id": meter_id, "congestion_point": point})

    @app.get("/data/{quantity}/{start}/{end}", summary="A quantity per step on the grid asked for")
    async def series(
        quantity: str,
        start: str,
        end: str,
        slice_s: int = Query(900, ge=1, le=86_400),
        key: str | None = Query(None, min_length=1, max_length=200),
    ) -> JSONResponse:
        if quantity not in QUANTITIES:
            return _error(404, f"quantity {quantity!r} is not one of {', '.join(QUANTITIES)}")
        try:
            t0, t1 = parse_wire_time(start), parse_wire_time(end)
        except ValueError as exc:
            return _error(422, f"from/to: {exc}")
        try:
            got = await run_in_threadpool(lambda: source.series(quantity, t0, t1, slice_s=slice_s, key=key))
        except DataError as exc:
            return _error(_status_of(exc), str(exc))
        return JSONResponse(
            {
                "quantity": got.quantity,
                "key": got.key,
                "start": format_time(got.start),
                "slice_s": got.slice_s,
                "values": got.values.tolist(),
            }
        )

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
        return _error(422, f"invalid parameter: {where}")

    return app


class HttpDataSource:
    """A `DataSource` read over HTTP from a `create_data_app` server (or any that speaks it).

    A refusal raises `DataError` with the server's sentence; a lost connection raises
    `CommunicationError` (the caller may retry)."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as exc:
            raise CommunicationError(f"{self._http.base_url}{path}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code != 200:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise DataError(f"{self._http.base_url}{path}: {response.status_code} {message}")
        return response.json()

    def series(
        self, quantity: str, start: datetime, end: datetime, *, slice_s: int, key: str | None = None
    ) -> DataSeries:
        """See `DataSource.series`."""
        path = f"/data/{quote(quantity, safe='')}/{quote(format_time(start))}/{quote(format_time(end))}"
        params: dict[str, Any] = {"slice_s": slice_s}
        if key is not None:
            params["key"] = key
        data = self._get(path, params)
        start_at = parse_wire_time(data["start"])
        return DataSeries(data["quantity"], start_at, int(data["slice_s"]), np.array(data["values"]), data["key"])

    def congestion_point(self, meter_id: str) -> str | None:
        """See `DataSource.congestion_point`."""
        data = self._get(f"/data/meter/{quote(meter_id, safe='')}/congestion_point")
        return data["congestion_point"]

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

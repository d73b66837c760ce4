"""The framework alone, for `benchmarks.services --servers floor`: what no served receiver can beat.

FastAPI with the two routes the benchmark sends and nothing behind them: the party from the
bearer token (`TokenTable`, as a receiver checks it), the body parsed as JSON, an id given, the
body sent back as JSON. No offer is decoded, checked or stored; nothing is committed.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from atp.interface.auth import TokenTable

__all__ = ["floor_app"]


def floor_app(tokens: TokenTable) -> FastAPI:
    """`POST /flexoffer` (201, the body with an id) and `GET /flexoffer/{id}` over a dict."""
    app = FastAPI()
    kept: dict[str, Any] = {}

    async def caller(request: Request) -> str:
        return tokens.party_of(request.headers.get("authorization"))

    @app.post("/flexoffer", status_code=201)
    async def submit(request: Request, party: str = Depends(caller)) -> JSONResponse:
        data = json.loads(await request.body())
        data["id"] = f"fo-floor-{secrets.token_hex(8)}"
        kept[data["id"]] = data
        return JSONResponse(data, status_code=201, headers={"Location": f"/flexoffer/{data['id']}"})

    @app.get("/flexoffer/{offer_id}")
    async def get(offer_id: str, party: str = Depends(caller)) -> JSONResponse:
        return JSONResponse(kept[offer_id])

    return app

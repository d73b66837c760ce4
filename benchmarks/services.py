"""Benchmark: a served receiver's durable offer store, on memory, SQLite and PostgreSQL.

Run from the repository root: `python -m benchmarks.services [--quick]`.

For every backend, store size (empty, and holding `--fill` offers) and server variant
(`--servers`, see `SERVERS`: as `goflex-atp serve` runs now, as it ran before, the framework
alone): a server process (`build_receiver` + `serve`, as `goflex-atp serve --log-level warning`
runs them, on a fresh database) and a separate load-generator process on loopback. The load generator keeps
`--connections` HTTP/1.1 keep-alive connections busy with `POST /flexoffer` (each connection
for its own party, so no party's quota is reached) for `--seconds`, then sends one-offer
`GET /flexoffer/{id}` on `--get-connections` connections for the same time. Printed per row:
sustained 201s per second, p50/p99 latency of the POSTs, the server's CPU milliseconds per POST
(user + system of the whole server process over the POST phase: the figure the shared machine
disturbs least), the cores the server and the load generator used in that phase, p99 of the
GETs, and for a durable store the seconds a restarted server takes to load what it holds. The
load average is printed at the start and at the end. Every 201 is committed
(SQLite: WAL with an fsync per commit; PostgreSQL: synchronous_commit as configured).

The stored offers are filled inside the server process through `OfferStore.submit`, 1 000 per
transaction, spread over 1 000 parties. Targets (issue 14): at least 2 000 durable offers per
second on SQLite with p99 under 50 ms at 100 000 stored offers; one-offer GET p99 under 5 ms.

`--quick`: 10 000 stored offers, 2-second phases (a smoke run, not the targets' figures).
PostgreSQL runs in a new schema of `--postgres` (dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import platform
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from atp.flexoffer import DefaultSchedule, FlexOffer, encode, offer_from_json

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flexoffers" / "ev_charge.json"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
FILL_PARTIES = 1_000
SERVERS = {"httptools": "httptools", "h11-pool": "h11", "floor": "httptools"}
"""The server variants (`--servers`): `httptools`, as `goflex-atp serve` runs; `h11-pool`, as it ran
before (h11 parser, every POST through the thread pool), the reference of the same run; `floor`,
the framework alone (`benchmarks/services_floor.py`: FastAPI, the bearer token, JSON in and out, no offer decoded,
checked or stored; one row, on the first backend's empty store): what no receiver can beat."""
TARGET_POST_PER_S = 2_000
TARGET_POST_P99_MS = 50.0
TARGET_GET_P99_MS = 5.0


def _offer(issuer: str, device: str, start: datetime) -> FlexOffer:
    """The EV example moved to open at `start`, for `issuer` and `device`."""
    offer = offer_from_json(EXAMPLE.read_text())
    assert offer.start_after is not None and offer.start_before is not None and offer.default_schedule is not None
    delta = start - offer.start_after
    return dataclasses.replace(
        offer,
        id=None,
        issuer=issuer,
        device=device,
        created_at=None,
        assignment_before=start - timedelta(minutes=15),
        start_after=start,
        start_before=offer.start_before + delta,
        default_schedule=DefaultSchedule(start, offer.default_schedule.profile, offer.default_schedule.energy),
    )


def _start() -> datetime:
    return (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def _token(party: str) -> str:
    return f"token-of-{party}-0123456789"


# -- the server process ---------------------------------------------------------------------------
def _serve_main(url: str, port: int, fill: int, connections: int, server: str) -> None:
    from atp.interface import http_server
    from atp.interface.auth import TokenTable
    from atp.interface.serve import serve
    from atp.services.receivers import build_receiver, open_receiver_store

    http = SERVERS[server]
    if server == "h11-pool":  # as before: every POST decoded and stored on the thread pool
        http_server.INLINE_BODY_BYTES = 0

    t0 = time.perf_counter()
    store = open_receiver_store(url, "fmar")
    loaded_s = time.perf_counter() - t0
    held = len(store.records())
    t0 = time.perf_counter()
    start = _start()
    for first in range(held, fill, 1_000):
        with store.transaction():
            for n in range(first, min(first + 1_000, fill)):
                party = f"fill-{n % FILL_PARTIES}"
                store.submit(party, _offer(party, f"ev-{n}", start))
    store.sync()
    gc.freeze()  # as open_receiver_store does with what a store loads at start
    filled_s = time.perf_counter() - t0
    parties = [f"bench-{i}" for i in range(connections)]
    tokens = TokenTable.of({_token(p): p for p in parties}, ())
    if server == "floor":
        from benchmarks.services_floor import floor_app

        app = floor_app(tokens)
    else:
        app = build_receiver("fmar", tokens=tokens, store=store)
    print(json.dumps({"loaded_s": loaded_s, "held": held, "filled_s": filled_s}), flush=True)
    try:
        serve(app, host="127.0.0.1", port=port, log_level="warning", http=http)
    finally:
        store.close()


# -- the load-generator process ------------------------------------------------------------------
async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _post_worker(port: int, party: str, stop_at: float, out: dict[str, list]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    template = json.dumps(encode(_offer(party, "DEVICE", _start())), separators=(",", ":"))
    head = f"POST /flexoffer HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {_token(party)}\r\n"
    n = 0
    while time.perf_counter() < stop_at:
        body = template.replace('"DEVICE"', f'"ev-{party}-{n}"').encode()
        request = f"{head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        t = time.perf_counter()
        status, answer = await _exchange(reader, writer, request)
        out["latency"].append(time.perf_counter() - t)
        if status != 201:
            out["refused"].append(f"{status} {answer[:200]!r}")
            break
        out["ids"].append((party, json.loads(answer)["id"]))
        n += 1
    writer.close()


async def _get_worker(port: int, ids: list[tuple[str, str]], stop_at: float, out: list[float], rng: random.Random):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.perf_counter() < stop_at:
        party, offer_id = rng.choice(ids)
        request = (
            f"GET /flexoffer/{quote(offer_id)} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {_token(party)}\r\n\r\n"
        )
        t = time.perf_counter()
        status, _ = await _exchange(reader, writer, request.encode())
        out.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"GET {offer_id}: {status}")
    writer.close()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(port: int, seconds: float, connections: int, get_connections: int, pid: int) -> dict[str, Any]:
    posts: dict[str, list] = {"latency": [], "ids": [], "refused": []}
    server_cpu, own_cpu = _cpu_s(pid), time.process_time()
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*(_post_worker(port, f"bench-{i}", stop_at, posts) for i in range(connections)))
    post_s = time.perf_counter() - t0
    server_cpu, own_cpu = _cpu_s(pid) - server_cpu, time.process_time() - own_cpu
    gets: list[float] = []
    if posts["ids"]:
        rng = random.Random(1)
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(_get_worker(port, posts["ids"], stop_at, gets, rng) for _ in range(get_connections)))
    return {
        "posted": len(posts["ids"]),
        "post_s": post_s,
        "post_ms": [1e3 * v for v in posts["latency"]],
        "get_ms": [1e3 * v for v in gets],
        "refused": posts["refused"][:3],
        "server_cpu_s": server_cpu,
        "load_cpu_s": own_cpu,
    }


def _load_main(port: int, seconds: float, connections: int, get_connections: int, pid: int) -> None:
    print(json.dumps(asyncio.run(_load(port, seconds, connections, get_connections, pid))), flush=True)


# -- the driver -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server stopped: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start")


def _server(url: str, fill: int, connections: int, server: str) -> tuple[subprocess.Popen, int, dict[str, Any]]:
    port = _free_port()
    command = [sys.executable, "-m", "benchmarks.services", "--serve", url, str(port), str(fill), str(connections)]
    command.append(server)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first:
        raise RuntimeError(f"the server stopped: {proc.stderr.read() if proc.stderr else ''}")
    _wait_listening(port, proc)
    return proc, port, json.loads(first)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _url(backend: str, folder: Path, postgres: str, schemas: list[str]) -> str:
    if backend == "memory":
        return "memory"
    if backend == "sqlite":
        return f"sqlite:///{folder / f'{secrets.token_hex(4)}.db'}"
    import psycopg

    schema = f"atp_bench_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    schemas.append(schema)
    return f"{postgres}?options={quote(f'-csearch_path={schema}')}"


def _drop(postgres: str, schemas: list[str]) -> None:
    if not schemas:
        return
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _row(
    server: str, backend: str, fill: int, args: argparse.Namespace, folder: Path, schemas: list[str]
) -> dict[str, Any]:
    url = _url(backend, folder, args.postgres, schemas)
    proc, port, started = _server(url, fill, args.connections, server)
    try:
        command = [sys.executable, "-m", "benchmarks.services", "--load", str(port), str(args.seconds)]
        command += [str(args.connections), str(args.get_connections), str(proc.pid)]
        load = json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    finally:
        _stop(proc)
    reload_s = None
    if backend != "memory" and server != "floor":  # a restarted server loads what the store holds
        proc, _, again = _server(url, 0, args.connections, server)
        _stop(proc)
        reload_s = again["loaded_s"]
    post_ms, get_ms = np.asarray(load["post_ms"]), np.asarray(load["get_ms"])
    return {
        "server": server,
        "backend": backend,
        "stored": fill,
        "server_ms_per_post": 1e3 * load["server_cpu_s"] / max(load["posted"], 1),
        "server_cores": load["server_cpu_s"] / load["post_s"],
        "load_cores": load["load_cpu_s"] / load["post_s"],
        "filled_s": started["filled_s"],
        "post_per_s": load["posted"] / load["post_s"],
        "post_p50_ms": float(np.percentile(post_ms, 50)) if post_ms.size else float("nan"),
        "post_p99_ms": float(np.percentile(post_ms, 99)) if post_ms.size else float("nan"),
        "get_p99_ms": float(np.percentile(get_ms, 99)) if get_ms.size else float("nan"),
        "gets": int(get_ms.size),
        "reload_s": reload_s,
        "refused": load["refused"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="10 000 stored offers, 2 s phases")
    parser.add_argument("--backends", default="memory,sqlite,postgresql")
    parser.add_argument("--fill", type=int, default=100_000, help="offers held in the second row of each backend")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the POST phase and of the GET phase")
    parser.add_argument("--connections", type=int, default=16, help="concurrent POST connections (one party each)")
    parser.add_argument("--get-connections", type=int, default=1, help="concurrent GET connections (default 1)")
    parser.add_argument("--postgres", default=POSTGRES, help=f"PostgreSQL database for the runs (default {POSTGRES})")
    parser.add_argument(
        "--servers",
        default="httptools,h11-pool,floor",
        help="server variants, each on every backend: httptools (as goflex-atp serve runs), "
        "h11-pool (as it ran before: h11, every POST on the thread pool), floor (FastAPI alone, one row)",
    )
    parser.add_argument(
        "--serve", nargs=5, metavar=("URL", "PORT", "FILL", "PARTIES", "SERVER"), help=argparse.SUPPRESS
    )
    parser.add_argument("--load", nargs=5, metavar=("PORT", "S", "C", "G", "PID"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve_main(args.serve[0], int(args.serve[1]), int(args.serve[2]), int(args.serve[3]), args.serve[4])
        return 0
    if args.load:
        _load_main(int(args.load[0]), float(args.load[1]), int(args.load[2]), int(args.load[3]), int(args.load[4]))
        return 0
    servers = args.servers.split(",")
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown:
        parser.error(f"--servers: {', '.join(unknown)} not among {', '.join(SERVERS)}")
    if args.quick:
        args.fill, args.seconds = min(args.fill, 10_000), min(args.seconds, 2.0)
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores; ", end="")
    print(f"{args.connections} POST connections, {args.get_connections} GET connections, {args.seconds:g} s phases")
    print(f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    header = (
        "server     backend      stored   POST/s  p50 ms  p99 ms | srv ms/POST srv cores gen cores "
        "| GET p99 ms   GETs | fill s  reload s"
    )
    print(header)
    rows = []
    schemas: list[str] = []
    with tempfile.TemporaryDirectory(prefix="atp-bench-") as folder:
        try:
            for backend in args.backends.split(","):
                for fill in (0, args.fill):
                    for server in servers:
                        if server == "floor" and (fill or any(r["server"] == "floor" for r in rows)):
                            continue  # the framework alone: one row, whatever the store
                        row = _row(server, backend, fill, args, Path(folder), schemas)
                        rows.append(row)
                        print(_line(row), flush=True)
                        for refusal in row["refused"]:
                            print(f"  refused: {refusal}")
        finally:
            _drop(args.postgres, schemas)
    print(f"# load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    at_fill = [r for r in rows if r["backend"] == "sqlite" and r["stored"] == args.fill and r["server"] == "httptools"]
    if at_fill and not args.quick:
        r = at_fill[0]
        ok_post = r["post_per_s"] >= TARGET_POST_PER_S and r["post_p99_ms"] < TARGET_POST_P99_MS
        print(
            f"target SQLite at {args.fill} offers ({r['server']}): >= {TARGET_POST_PER_S}/s with p99 < "
            f"{TARGET_POST_P99_MS:g} ms: {'met' if ok_post else 'not met'} "
            f"({r['post_per_s']:.0f}/s, p99 {r['post_p99_ms']:.1f} ms; {r['server_ms_per_post']:.2f} ms of server "
            f"CPU per POST: one core serves at most {1e3 / r['server_ms_per_post']:.0f}/s)"
        )
    gets = [r["get_p99_ms"] for r in rows if r["server"] == "httptools"]
    if gets:
        print(f"target one-offer GET p99 < {TARGET_GET_P99_MS:g} ms (httptools): worst {max(gets):.2f} ms")
    return 0


def _line(row: dict[str, Any]) -> str:
    reload = f"{row['reload_s']:8.2f}" if row["reload_s"] is not None else "       -"
    return (
        f"{row['server']:10} {row['backend']:10} {row['stored']:8d} {row['post_per_s']:8.0f} "
        f"{row['post_p50_ms']:7.2f} {row['post_p99_ms']:7.2f} | {row['server_ms_per_post']:11.2f} "
        f"{row['server_cores']:9.2f} {row['load_cores']:9.2f} | {row['get_p99_ms']:10.2f} {row['gets']:6d} | "
        f"{row['filled_s']:6.1f}  {reload}"
    )


if __name__ == "__main__":
    sys.exit(main())

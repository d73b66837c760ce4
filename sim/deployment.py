"""The world against real services (`atp.deployment=services`): the FMAN and the FMAR as separate
`goflex-atp serve` processes on loopback, each with its SQLite store in the run folder, reached
only over HTTP.

The world drives time: both receivers run on an operator clock (`serve --clock operator`), and
at every phase of a step the world sets their clocks to the simulated time, then does over HTTP
what the in-process run does by calls:

- prosumers' FOAs submit, update, withdraw and post measurements with their own tokens
  (`HttpClient`); their events are fetched after each phase (`GET /flexoffer/stream`,
  `follow=false`) and handed to the FOA in order, so the run stays deterministic;
- the aggregator's planning round is the FMAN's `POST /fman/plan`; the DSO publishes its grid
  capacities with `PUT /capacity/{name}` and reads both receivers' offers as an operator;
- the market operator puts its sessions on the FMAR's calendar (`POST /market/sessions`), the
  BRP and the DSO post their requests (`POST /request`), and the session is cleared at its
  gate (`POST /market/sessions/{name}/clear`); the DSO's congestion points are registered with
  the market's DOMS (`POST /doms/congestion_point?request=false`);
- an FMAN that bids (`fman.bidding`) bids into the served FMAR with its own token there, and
  reads the market's events (its awards) when the run asks (`POST /fman/market/sync`, after
  every phase, before the FOAs hear theirs);
- the offers' life cycle is each receiver's own (`POST /operator/advance`).

Not carried yet (refused by `sim.config`, naming the key): the DSO's dynamic tariff (no
interface message for a tariff yet) and mechanisms with options (`PUT /market/config` takes a
mechanism's name only).

After the run (`close`) the world reads what the FMAN's rounds did (`GET /fman/report`), stops
both processes and reads their stores back from the SQLite files: the run folder's outputs come
from what the services kept. `atp/` in the run folder holds the tokens, the price and series
files given to the FMAN, the two databases and each process's log.
"""

from __future__ import annotations

import atexit
import csv
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from atp.errors import AtpError
from atp.flexoffer import FlexOffer
from atp.flexoffer.codec import decode, encode
from atp.fman import BiddingParams, MemberLoss, PriceSeries
from atp.fman.rounds import FmanReport, PlanSummary, report_from_wire
from atp.fmar import CongestionPoint, Session, SessionResult
from atp.fmar.doms import CompletedBid
from atp.interface import HttpClient, OfferStore
from atp.interface.polled import PolledClient
from atp.interface.store import open_store

__all__ = [
    "PolledClient",
    "RemoteAggregator",
    "RemoteDoms",
    "RemoteMarket",
    "Services",
    "ServicesError",
    "start_services",
]

_STARTUP_S = 60.0


class ServicesError(AtpError):
    """A service of the run did not start or answered what the run cannot use; says which and why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Service:
    """One `goflex-atp serve` process of the run and its operator's connection."""

    def __init__(self, role: str, name: str, folder: Path, operator_token: str) -> None:
        self.role = role
        self.name = name
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = folder / f"{role}.sqlite"
        self.log = folder / f"{role}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {operator_token}"}, timeout=120)

    def start(self, args: Sequence[str], *, tokens: Path) -> None:
        command = [sys.executable, "-m", "atp.cli", "serve", "--role", self.role, "--port", str(self.port)]
        command += ["--tokens", str(tokens), "--store", f"sqlite:///{self.db}", "--log-level", "warning"]
        command += ["--name", self.name, "--clock", "operator", "--numbered-ids", *args]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        with self.log.open("wb") as log:
            # the command is this interpreter and this package's CLI, with the run's own files
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603

    def wait_up(self) -> None:
        deadline = time.monotonic() + _STARTUP_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServicesError(f"the {self.role} service exited at start: {self.log_tail()}")
            try:
                self.http.get("/openapi.json", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise ServicesError(f"the {self.role} service did not answer within {_STARTUP_S:g} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-2000:] or "(nothing logged)"
        except OSError:
            return "(no log)"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """An operator call; ServicesError naming the route and the service's answer when it fails."""
        try:
            response = self.http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise ServicesError(f"{self.role} {method} {path}: {exc!r}; {self.log_tail()}") from exc
        if not response.is_success:
            raise ServicesError(f"{self.role} {method} {path}: {response.status_code} {response.text[:1000]}")
        return response.json()

    def set_clock(self, now: datetime) -> None:
        self.call("PUT", "/operator/clock", {"now": encode(now)})

    def stop(self) -> None:
        self.http.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _write_series(path: Path, start: datetime, slice_s: int, columns: dict[str, np.ndarray]) -> None:
    """A CSV `time,<column>,...` on the run's grid; numbers written exactly (repr)."""
    n = min(len(v) for v in columns.values())
    times = pd.date_range(start, periods=n, freq=f"{slice_s}s", tz="UTC")
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["time", *columns])
        for k, t in enumerate(times):
            writer.writerow([t.strftime("%Y-%m-%dT%H:%M:%SZ"), *(repr(float(v[k])) for v in columns.values())])


class Services:
    """The run's two services (module docstring): tokens and ports chosen at construction, the
    processes started by `start` once the world knows its parties, prices and series."""

    def __init__(self, folder: Path, *, fman_name: str, fmar_name: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._operator_token = secrets.token_hex(16)
        self.fman = _Service("fman", fman_name, folder, self._operator_token)
        self.fmar = _Service("fmar", fmar_name, folder, self._operator_token)
        self._tokens: dict[str, str] = {}  # party -> token (at both receivers)
        self._grid_operators: list[str] = []
        self._polled: dict[tuple[str, str], list[PolledClient]] = {}  # (role, party) -> its clients
        self._feeds: dict[str, HttpClient] = {}  # role -> the operator's client, whose events say who to poll
        self._cursor = {"fman": 0, "fmar": 0}
        self._clock: datetime | None = None
        self._bidder: str | None = None  # the FMAN's party at the FMAR, when it bids there
        self.started = False

    def token(self, party: str) -> str:
        """The party's token (made on first use; parties must be known before `start`)."""
        if party not in self._tokens:
            if self.started:
                raise ServicesError(f"party {party!r} was not known when the services started")
            self._tokens[party] = secrets.token_hex(16)
        return self._tokens[party]

    def grid_operator(self, party: str) -> None:
        """`party` may publish grid capacities (the tokens file's grid_operators)."""
        self.token(party)
        self._grid_operators.append(party)

    def client(self, role: str, party: str, *, polled: bool = True) -> Any:
        """`party`'s exchange client at the FMAN or the FMAR (polled events, unless not)."""
        service = self.fman if role == "fman" else self.fmar
        client = HttpClient(service.url, self.token(party), party=party, retries=2, timeout_s=120)
        if not polled:
            return client
        polled_client = PolledClient(client)
        self._polled.setdefault((role, party), []).append(polled_client)
        return polled_client

    def fman_bids_as(self, party: str) -> None:
        """The served FMAN bids into the served FMAR as `party` (its token there written for it)."""
        self.token(party)
        self._bidder = party

    def operator_client(self, role: str) -> HttpClient:
        """An operator's exchange client at the FMAN or the FMAR (sees every party's offers)."""
        service = self.fman if role == "fman" else self.fmar
        return HttpClient(service.url, self._operator_token, party="operator", retries=2, timeout_s=120)

    def start(
        self,
        *,
        now: datetime,
        prices: pd.Series,
        series_kwh: dict[str, PriceSeries],
        fman_args: Sequence[str],
        fmar_args: Sequence[str],
    ) -> None:
        """Write the tokens, price and series files, start both processes on an operator clock
        from `now` and wait until they answer."""
        tokens = self.folder / "tokens.yaml"
        table = {
            "parties": {token: party for party, token in self._tokens.items()},
            "operators": [self._operator_token],
            "grid_operators": sorted(set(self._grid_operators)),
        }
        tokens.write_text(yaml.safe_dump(table, sort_keys=True), encoding="utf-8")
        tokens.chmod(0o600)
        start = prices.index[0].to_pydatetime()
        slice_s = int((prices.index[1] - prices.index[0]).total_seconds())
        _write_series(self.folder / "prices.csv", start, slice_s, {"eur_per_kwh": prices.to_numpy(dtype=float)})
        args = [*fman_args, "--prices", str(self.folder / "prices.csv")]
        if series_kwh:
            first = next(iter(series_kwh.values()))
            _write_series(
                self.folder / "series.csv",
                first.start,
                first.slice_s,
                {k: v.values_eur_per_kwh for k, v in series_kwh.items()},
            )
            args += ["--series", str(self.folder / "series.csv")]
        if self._bidder is not None:
            token_file = self.folder / "fman-at-fmar.token"
            token_file.write_text(self.token(self._bidder), encoding="utf-8")
            token_file.chmod(0o600)
            args += ["--market", self.fmar.url, "--market-party", self._bidder, "--market-token-file", str(token_file)]
        clock = ["--clock-start", encode(now)]
        self.fman.start([*args, *clock], tokens=tokens)
        self.fmar.start([*fmar_args, *clock], tokens=tokens)
        atexit.register(self._stop_processes)  # a run that never reaches close() leaves no process behind
        self.started = True
        self._clock = now
        try:
            for service in (self.fman, self.fmar):
                service.wait_up()
        except BaseException:
            for service in (self.fman, self.fmar):
                service.stop()
            raise

    def set_clock(self, now: datetime) -> None:
        """Both receivers' time is `now` (once per distinct time)."""
        if self.started and now != self._clock:
            self.fman.set_clock(now)
            self.fmar.set_clock(now)
            self._clock = now

    def deliver_events(self) -> None:
        """Hand every FOA its new events, in order: the operator's stream of each receiver says
        which parties have new events; each of them then reads its own stream. An FMAN that
        bids reads its market's events first (its awards assign members, whose FOAs hear it)."""
        if self._bidder is not None:
            self.fman.call("POST", "/fman/market/sync")
        for role in ("fman", "fmar"):
            feed = self._feeds.get(role)
            if feed is None:
                feed = self._feeds[role] = self.operator_client(role)
            events = feed.events(after=self._cursor[role])
            if not events:
                continue
            self._cursor[role] = events[-1].seq
            parties = dict.fromkeys(e.offer.issuer for e in events)  # in order of their first event
            for party in parties:
                for client in self._polled.get((role, party), ()):
                    client.poll()

    def advance(self, until: datetime) -> None:
        """Both receivers' life cycle at their time, settling what ends by `until`."""
        for service in (self.fman, self.fmar):
            service.call("POST", "/operator/advance", {"until": encode(until)})

    def _stop_processes(self) -> None:
        for service in (self.fman, self.fmar):
            service.stop()

    def close(self) -> tuple[OfferStore, OfferStore]:
        """Stop both processes; their stores (FMAN, FMAR) read back from the SQLite files."""
        for clients in self._polled.values():
            for client in clients:
                client.close()
        for feed in self._feeds.values():
            feed.close()
        self._stop_processes()
        atexit.unregister(self._stop_processes)
        fman, fmar = (open_store(f"sqlite:///{s.db}", s.name, opaque_ids=False) for s in (self.fman, self.fmar))
        return fman, fmar


class RemoteAggregator:
    """The aggregator's FMAN as a service: what the world and its KPIs use of `Aggregator`."""

    def __init__(self, services: Services, *, name: str, prices: pd.Series) -> None:
        self.name = name
        self.services = services
        self.prices = prices
        self.series_kwh: dict[str, PriceSeries] = {}
        self.grid_tariff: dict[str, PriceSeries] = {}
        self.plans: list[PlanSummary] = []
        self.store: OfferStore | None = None  # read back by `finish`
        self.report: FmanReport | None = None
        self._bidding: tuple[BiddingParams, float] | None = None

    def client(self, party: str) -> PolledClient:
        """A prosumer's exchange client at the FMAN (over HTTP)."""
        return self.services.client("fman", party)

    def plan(self, now: datetime) -> PlanSummary:
        """One planning round of the served FMAN at its time (the world set it to `now`)."""
        self.services.set_clock(now)
        data = self.services.fman.call("POST", "/fman/plan", {})
        summary, problems = decode(PlanSummary, data)
        if problems or summary is None:
            raise ServicesError(f"fman POST /fman/plan: an answer the run cannot read ({problems[:1]})")
        self.plans.append(summary)
        return summary

    def finish(self) -> None:
        """Read the FMAN's report of its rounds (before the service stops)."""
        self.report = report_from_wire(self.services.fman.call("GET", "/fman/report"))

    def _report(self) -> FmanReport:
        if self.report is None:
            raise ServicesError("the FMAN's report is read when the run ends (World.close)")
        return self.report

    def member_losses(self) -> list[MemberLoss]:
        """Each member offer once, with its flexibility in its last aggregate (the FMAN's own)."""
        return list(self._report().member_losses)

    def aggregate_offers(self) -> list[FlexOffer]:
        """Every aggregate the FMAN used, with the schedule its members were assigned from."""
        return [a.offer for a in self._report().aggregates]

    @property
    def bids_made(self) -> int:
        return self._report().bids_made if self.report is not None else 0

    @property
    def bids_awarded(self) -> int:
        return self._report().bids_awarded if self.report is not None else 0

    @property
    def postponed(self) -> int:
        return self._report().aggregates_postponed if self.report is not None else 0

    @property
    def bidding(self) -> BiddingParams | None:
        """How the served FMAN prices its bids (None: it does not bid)."""
        return self._bidding[0] if self._bidding is not None else None

    def trade_on(self, market: Any, *, params: BiddingParams, reference_eur_per_kwh: float) -> None:
        """The served FMAN bids into the served FMAR as this aggregator (`market` is the
        aggregator's client there; the FMAN reads the market's events when the run says)."""
        self._bidding = (params, reference_eur_per_kwh)
        self.services.fman_bids_as(market.party)

    def fman_args(self) -> list[str]:
        """The served FMAN's bidding options (none when it does not bid)."""
        if self._bidding is None:
            return []
        params, reference = self._bidding
        args = ["--bid-cost", repr(params.cost_eur_per_kwh), "--bid-margin", repr(params.margin_eur_per_kwh)]
        if params.max_volume_kwh is not None:
            args += ["--bid-max-volume", repr(params.max_volume_kwh)]
        return [*args, "--bid-reference", repr(float(reference))]


class RemoteMarket:
    """The FMAR as a service: what the market operator and the KPIs use of `FlexOfferMarket`."""

    def __init__(self, services: Services, *, name: str, mechanism: Any) -> None:
        self.name = name
        self.services = services
        self.mechanism = mechanism  # the configured one (what the served market was started with)
        self.results: list[SessionResult] = []
        self.store: OfferStore | None = None  # read back when the run ends

    def client(self, party: str) -> PolledClient:
        """A party's exchange client at the market (over HTTP)."""
        return self.services.client("fmar", party)

    def add_session(self, session: Session) -> Session:
        """Put a session on the served market's calendar."""
        self.services.fmar.call("POST", "/market/sessions", encode(session))
        return session

    def run_session(self, session: Session, *, now: datetime | None = None) -> list[SessionResult]:
        """Clear the session at its gate (`now` is the gate closure, as the world gives it)."""
        if now is not None and now != session.gate_closure:
            raise ServicesError(f"session {session.name}: a served market clears at its gate closure, not at {now}")
        data = self.services.fmar.call("POST", f"/market/sessions/{session.name}/clear")
        results = []
        for i, item in enumerate(data):
            result, problems = decode(SessionResult, item)
            if problems or result is None:
                raise ServicesError(f"fmar: result {i} of session {session.name} cannot be read ({problems[:1]})")
            results.append(result)
        self.results.extend(results)
        return results

    def reject_expired(self, now: datetime | None = None) -> list[str]:
        """The served market rejects the offers that can no longer win by `now`."""
        body = {"at": encode(now)} if now is not None else {}
        return list(self.services.fmar.call("POST", "/market/reject_expired", body)["rejected"])


class RemoteDoms:
    """The served market's DOMS interface (F2.FMAR7), as the world's DSO uses it."""

    def __init__(self, services: Services, dso: str) -> None:
        self.services = services
        self.dso = dso
        self._http: httpx.Client | None = None
        self._final: tuple[list[str], list[CompletedBid]] | None = None  # read by `finish`

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.services.fmar.url, timeout=120)
        return self._http

    def _call(self, method: str, path: str, body: Any = None, *, party: str | None = None) -> Any:
        auth = {"Authorization": f"Bearer {self.services.token(party or self.dso)}"}
        response = self._client().request(method, path, json=body, headers=auth)
        if not response.is_success:
            raise ServicesError(f"fmar {method} {path}: {response.status_code} {response.text[:1000]}")
        return response.json()

    def track(self, point: CongestionPoint) -> None:
        """Register a congestion point whose requests the DSO posts itself (as `point.dso`, the
        DSO's buyer at that point)."""
        self._call("POST", "/doms/congestion_point?request=false", encode(point), party=point.dso)

    @property
    def points(self) -> list[str]:
        """The registered congestion points, sorted."""
        if self._final is not None:
            return list(self._final[0])
        return list(self._call("GET", "/doms/points"))

    def completed_bids(self) -> list[CompletedBid]:
        """The completed bids of every point, in clearing order."""
        if self._final is not None:
            return list(self._final[1])
        out = []
        for item in self._call("GET", "/doms/bids"):
            bid, problems = decode(CompletedBid, item)
            if problems or bid is None:
                raise ServicesError(f"fmar GET /doms/bids: a bid the run cannot read ({problems[:1]})")
            out.append(bid)
        return out

    def finish(self) -> None:
        """Read the points and bids for good (before the service stops) and close the connection."""
        self._final = (self.points, self.completed_bids())
        if self._http is not None:
            self._http.close()


def start_services(world: Any, services: Services) -> None:
    """Start the world's served FMAN and FMAR once every party is known: the prosumers (their
    clients exist), the BRP, and the DSO as the buyer at each congestion point; the FMAN plans
    with the run's objective, horizon, aggregation and solver limit."""
    services.token(world.brp.name)
    for point in (*world.grid.feeders, world.grid.busbar_point):
        services.grid_operator(world.dso.buyer(point))  # registers its point with the DOMS, buys there
    fman = world.config.fman
    options = {
        "--issuer": world.aggregator.name,
        "--objective": fman.objective,
        "--horizon-steps": str(fman.horizon_steps),
        "--time-limit-s": repr(float(fman.time_limit_s)),
        "--plan-every": str(fman.planning_interval_s),
        "--start-tolerance-s": str(fman.start_tolerance_s),
        "--max-group-size": str(fman.max_group_size),
        "--min-box-share": "none" if fman.min_box_share is None else repr(float(fman.min_box_share)),
    }
    services.start(
        now=world.clock.now(),
        prices=world.prices,
        series_kwh=world.aggregator.series_kwh,
        fman_args=[*(item for pair in options.items() for item in pair), *world.aggregator.fman_args()],
        fmar_args=["--mechanism", world.config.market.mechanism],
    )

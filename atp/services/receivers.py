"""The receivers as services: what `goflex-atp serve --role fman|fmar` composes over one store.

An FMAN (`build_fman`): the exchange interface's HTTP app over the store, with the contracts,
bills and KPIs of `atp.services.providers` (the KPIs priced at the FMAN's price feed), DSOs'
grid capacities for its plan, and its loops: a planning round every `plan_every_s` seconds
(bidding first into the FMAR at `market_url` when it trades there), and the offer life cycle by
the clock.

Both take their operator's rounds (`atp.services.operator`: clock, life cycle, planning,
report). On an operator clock (`OperatorClock`, `serve --clock operator`) they start no loops:
the operator drives time and every round.

An FMAR (`build_fmar`): the same app over the market's store, with the market's own routes
(`atp.fmar.routes`: operator status, sessions, DOMS) and its loop (`atp.fmar.service`:
calendar, gates, clearing, rejections, life cycle); a restarted market places the requests its
store kept back into their sessions.

`Receiver.start()` starts the loops, `stop()` stops them; the caller serves `Receiver.app`
(`atp.interface.serve.serve` or `ServerThread`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from atp.fman import AggregationParams, BiddingParams, FlexOfferManager, PriceSeries
from atp.fman.rounds import PlanningRounds
from atp.fman.service import PlanningLoop
from atp.fmar import FlexOfferMarket, MarketCalendar
from atp.fmar.routes import install_market_routes
from atp.fmar.service import MarketLoop, MarketService
from atp.interface import Event, ExchangeInterface, HttpClient, TokenTable
from atp.interface.clock import OperatorClock
from atp.interface.http_server import create_app
from atp.interface.lifecycle import LifecycleLoop
from atp.interface.limits import ServiceLimits
from atp.interface.periodic import PeriodicTask
from atp.interface.persist import JournalError
from atp.interface.polled import PolledClient
from atp.interface.serve import CommittedResponses, ServeConfigError
from atp.interface.store import OfferStore, open_store
from atp.services.operator import install_operator_routes
from atp.services.providers import ContractBook, bill_provider, contract_provider, store_kpi_provider

__all__ = [
    "ROLES",
    "FmanOptions",
    "Receiver",
    "build_fman",
    "build_fmar",
    "build_receiver",
    "check_receiver",
    "default_store_url",
    "open_receiver_store",
]

ROLES = ("fman", "fmar")


def default_store_url(role: str) -> str:
    """Where `goflex-atp serve` keeps a receiver's store unless `--store` says otherwise."""
    return f"sqlite:///atp-{role}.db"


def open_receiver_store(
    url: str,
    role: str,
    *,
    clock: Callable[[], datetime] | None = None,
    numbered_ids: bool = False,
) -> OfferStore:
    """The store of a receiver of `role` on the backend `url` names (ServeConfigError naming
    the database and why, when it cannot be opened), on `clock` (the wall clock by default),
    with opaque ids unless `numbered_ids` (reproducible runs: `serve --numbered-ids`)."""
    options: dict[str, Any] = {"clock": clock} if clock is not None else {}
    try:
        store = open_store(url, role, group_commit=True, opaque_ids=not numbered_ids, **options)
    except JournalError as exc:
        raise ServeConfigError(f"--store: {exc}") from None
    # What the store loaded lives as long as the server: out of the collector's sight, a full
    # collection does not walk 100 000 offers (a pause of a few hundred ms per collection).
    gc.freeze()
    return store


def check_receiver(role: str, *, contracts: ContractBook | None) -> None:
    """ServeConfigError unless `role` is a receiver and the options fit it."""
    if role not in ROLES:
        raise ServeConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "fmar" and contracts is not None:
        raise ServeConfigError("--contracts: a market (fmar) holds no contracts; only an fman does")


def build_receiver(
    role: str,
    *,
    tokens: TokenTable,
    contracts: ContractBook | None = None,
    store: OfferStore | None = None,
    sse_keepalive_s: float = 15.0,
    limits: ServiceLimits | None = None,
) -> FastAPI:
    """The app of a receiver of `role` ("fman" or "fmar") over `store` (a new one when None),
    without its loops (the FMAN plans nothing, the market runs no gates until they are
    started: `build_fman`, `build_fmar`); for tests and labs that drive the receiver themselves."""
    check_receiver(role, contracts=contracts)
    store = store if store is not None else OfferStore(role, opaque_ids=True)
    if role == "fman":
        made = build_fman(store, tokens=tokens, contracts=contracts, limits=limits, sse_keepalive_s=sse_keepalive_s)
    else:
        made = build_fmar(
            store,
            tokens=tokens,
            calendar=MarketCalendar(ZoneInfo("UTC")),
            limits=limits,
            sse_keepalive_s=sse_keepalive_s,
        )
    return made.app


@dataclass
class Receiver:
    """A served receiver: its app, its store, its loops, and the FMAN or market it runs."""

    app: FastAPI
    store: OfferStore
    loops: list[PeriodicTask[Any]] = field(default_factory=list)
    fman: FlexOfferManager | None = None
    market: MarketService | None = None
    market_client: HttpClient | None = None
    rounds: PlanningRounds | None = None

    def start(self) -> Receiver:
        """Start the loops (their first rounds run at once)."""
        for loop in self.loops:
            loop.start()
        return self

    def stop(self) -> None:
        """Stop the loops and close the FMAN's market connection."""
        for loop in self.loops:
            loop.stop()
        if self.market_client is not None:
            self.market_client.close()


@dataclass(frozen=True)
class FmanOptions:
    """What an FMAN service does besides receiving offers: its price feed and planning rounds
    (objective, the series it needs besides prices, aggregation, horizon, solver time limit),
    the life cycle by the clock, and the FMAR it bids into (`market_url`, with the FMAN's token
    there and its party name at the market)."""

    prices: PriceSeries | None = None
    plan_every_s: float = 900.0
    horizon_steps: int = 96
    objective: str = "least_cost"
    series_kwh: dict[str, PriceSeries] = field(default_factory=dict)
    aggregation: AggregationParams = field(default_factory=AggregationParams)
    time_limit_s: float = 30.0
    issuer: str | None = None  # the FMAN's name as the issuer of its aggregates (default: the store's)
    lifecycle_every_s: float = 60.0
    market_url: str | None = None
    market_token: str | None = None
    market_party: str | None = None
    bidding: BiddingParams = field(default_factory=BiddingParams)
    reference_eur_per_kwh: float | None = None  # what a bid must beat (None: the price feed)


class _LockedEvents:
    """An exchange client whose event callbacks run holding `lock` (the FMAN's store lock): the
    market's `assigned` events change the FMAN's store from the client's reader thread."""

    def __init__(self, client: ExchangeInterface, lock: AbstractContextManager[object]) -> None:
        self._client = client
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        def locked(event: Event) -> None:
            with self._lock:
                callback(event)

        return self._client.subscribe(locked)


def build_fman(
    store: OfferStore,
    *,
    tokens: TokenTable,
    contracts: ContractBook | None = None,
    limits: ServiceLimits | None = None,
    options: FmanOptions = FmanOptions(),
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sse_keepalive_s: float = 15.0,
) -> Receiver:
    """An FMAN over `store` (module docstring)."""
    book = contracts if contracts is not None else ContractBook()
    app = create_app(
        store,
        tokens=tokens,
        kpi=store_kpi_provider(store, prices=options.prices),
        contract=contract_provider(book, receiver=store.name),
        bill=bill_provider(store, book),
        sse_keepalive_s=sse_keepalive_s,
        limits=limits,
    )
    app.add_middleware(CommittedResponses, store=store)
    lock = app.state.lock
    fman = FlexOfferManager(
        store,
        name=options.issuer or store.name,
        params=options.aggregation,
        objective=options.objective,
        horizon_steps=options.horizon_steps,
        time_limit_s=options.time_limit_s,
    )
    receiver = Receiver(app, store, fman=fman)
    rounds = None
    if options.prices is not None:
        rounds = PlanningRounds(fman, options.prices, series_kwh=options.series_kwh, interval_s=options.plan_every_s)
    receiver.rounds = rounds
    polled: PolledClient | None = None
    if options.market_url is not None:
        if rounds is None or not options.market_token or not options.market_party:
            raise ValueError("an FMAN bids into a market with its prices, its token there and its party name")
        client = HttpClient(options.market_url, options.market_token, party=options.market_party)
        receiver.market_client = client
        # on an operator clock the FMAN reads its market's events when the operator says
        # (POST /fman/market/sync, under the store lock); else on a stream, taking the lock
        market: Any = _LockedEvents(client, lock)
        if isinstance(clock, OperatorClock):
            market = polled = PolledClient(client)
        reference = options.reference_eur_per_kwh
        rounds.trade_on(
            market,
            reference_eur_per_kwh=reference if reference is not None else options.prices,  # type: ignore[arg-type]
            params=options.bidding,
        )
    install_operator_routes(
        app, store, tokens=tokens, clock=clock, rounds=rounds, market_events=polled.poll if polled else None
    )
    if isinstance(clock, OperatorClock):  # the operator runs the rounds (atp.services.operator)
        return receiver
    if rounds is not None:
        receiver.loops.append(PlanningLoop(rounds, every_s=options.plan_every_s, lock=lock, clock=clock))
    receiver.loops.append(LifecycleLoop(store, every_s=options.lifecycle_every_s, lock=lock, clock=clock))
    return receiver


def build_fmar(
    store: OfferStore,
    *,
    tokens: TokenTable,
    calendar: MarketCalendar,
    mechanism: str = "one_sided_pool",
    limits: ServiceLimits | None = None,
    tick_every_s: float = 5.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sse_keepalive_s: float = 15.0,
) -> Receiver:
    """An FMAR over `store` (module docstring): its requests placed back after a restart."""
    market = FlexOfferMarket(store.name, mechanism=mechanism, store=store)
    service = MarketService(market, calendar)
    service.restore(clock())
    app = create_app(
        store, tokens=tokens, kpi=store_kpi_provider(store), sse_keepalive_s=sse_keepalive_s, limits=limits
    )
    install_market_routes(app, service, tokens=tokens)
    install_operator_routes(app, store, tokens=tokens, clock=clock)
    app.add_middleware(CommittedResponses, store=store)
    receiver = Receiver(app, store, market=service)
    if not isinstance(clock, OperatorClock):  # else the operator drives the sessions (atp.fmar.routes)
        receiver.loops.append(MarketLoop(service, every_s=tick_every_s, lock=app.state.lock, clock=clock))
    return receiver

"""Durable backends of the offer store: a journal in SQLite or PostgreSQL that the store writes
through and reloads from when it starts.

The `OfferStore` keeps all protocol logic (states, ownership, validation, idempotency, events,
the `RequestBook`); a `Journal` only persists what the store hands it and gives it back. One
store operation is one `Batch` (its offer rows, events, idempotency answers, measurements,
requests) and one transaction: `commit` returns once the transaction is committed, and only
then does the store answer or tell its subscribers. Without a journal (the in-memory store of
the simulation and the tests) nothing of this runs.

    memory                      no journal: everything is lost with the process
    sqlite:///PATH              SQLite file PATH, relative (sqlite:////var/lib/atp.db: absolute); WAL,
                                an fsync per commit (`?synchronous=normal`: none, safe against a
                                killed process but not against a power cut)
    postgresql://USER@HOST/DB   PostgreSQL (libpq URL; `?options=-csearch_path%3DSCHEMA` picks a schema)

Group commit (`GroupCommitter`, what `goflex-atp serve` uses): the store hands each operation's
batch to a writer thread and goes on; the thread commits every batch waiting in one
transaction (one fsync for many offers) and only then lets the store stream their events;
the server starts no response before everything it may have seen is committed
(`atp.interface.serve`), so a 201 still means committed.

Rows hold the wire format (JSON of spec/flexoffer.md and spec/interface.md), so a database can
be read with any SQL client. One process writes one database: SQLite holds an exclusive lock
file beside the database, PostgreSQL a session advisory lock; a second server on the same
database stops at start with a sentence saying so. Both locks die with their process, so a
server killed with SIGKILL can be restarted at once.

The SQL layer is the standard library's `sqlite3` and psycopg 3: the store needs one table
per kind of row and upserts, both dialects take the same SQL (but for the parameter marker),
and a single writer needs no pool or ORM.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import threading
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from atp.errors import AtpError, ValidationError
from atp.flexoffer import FlexOffer, encode
from atp.interface.capacity import PublishedCapacity
from atp.interface.requests import FlexRequest

__all__ = [
    "SCHEMA_VERSION",
    "Batch",
    "GroupCommitter",
    "Journal",
    "JournalError",
    "JournalUrlError",
    "PostgresJournal",
    "SqliteJournal",
    "StoredRows",
    "open_journal",
    "read_capacity",
    "read_offer",
    "read_request",
    "redacted_url",
    "write_json",
]

_log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
"""The tables' layout; a database of another version is refused at start."""


class JournalError(AtpError):
    """The database could not be opened, read or written (the message names it and why)."""


class JournalUrlError(ValidationError):
    """A `--store` URL that names no backend (memory, sqlite:///PATH, postgresql://...)."""


# -- rows -----------------------------------------------------------------------------------
@dataclass
class Batch:
    """The rows of one store operation, committed together.

    offers: (n, id, owner, state, submitted_at, updated_at, reason, offer JSON), `n` the
    submission order; events: (seq, kind, party, time, offer JSON); keys: (kind, party, key,
    answer JSON), kind "offer" or "request"; measurements: (offer_id, time, kWh);
    requests: (n, id, owner, state, posted_at, updated_at, session, request JSON);
    capacities: (publisher, name, n, capacity JSON or None once withdrawn), `n` the
    publication order. Times are ISO 8601 text in UTC.
    """

    offers: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    keys: list[tuple[Any, ...]] = field(default_factory=list)
    measurements: list[tuple[Any, ...]] = field(default_factory=list)
    requests: list[tuple[Any, ...]] = field(default_factory=list)
    capacities: list[tuple[Any, ...]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.offers or self.events or self.keys or self.measurements or self.requests or self.capacities)


@dataclass
class StoredRows:
    """Everything a journal holds, as the store's `Batch` rows wrote it, in order (offers and
    requests by submission, events by sequence number)."""

    offers: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    keys: list[tuple[Any, ...]]
    measurements: list[tuple[Any, ...]]
    requests: list[tuple[Any, ...]]
    capacities: list[tuple[Any, ...]]


# -- JSON of the wire format, and a fast reader for rows the store wrote itself -------------------
def write_json(obj: Any) -> str:
    """Compact JSON of a model object in its wire format."""
    return json.dumps(encode(obj), separators=(",", ":"), ensure_ascii=False)


def _read_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@cache
def _reader(tp: Any) -> Callable[[Any], Any]:
    """A converter from the wire JSON of type `tp` to the object, without validation: the rows
    were validated when the store took them, and decoding them again with `decode` would cost
    ten times as much at every start."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        read = _reader(inner)
        return lambda v: None if v is None else read(v)
    if tp is float:
        return float
    if tp in (int, str):
        return lambda v: v
    if tp is datetime:
        return _read_time
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = [(f.name, _reader(hints[f.name])) for f in dataclasses.fields(tp)]
        cls: Any = tp

        def read_dataclass(v: dict[str, Any]) -> Any:
            return cls(**{name: read(v[name]) for name, read in fields if name in v})

        return read_dataclass
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _reader(args[0])
            if args[0] is float:
                return lambda v: tuple(map(float, v))
            return lambda v: tuple([item(x) for x in v])
        if args == (float, float):
            return lambda v: (float(v[0]), float(v[1]))
        readers = [_reader(a) for a in args]
        return lambda v: tuple([r(x) for r, x in zip(readers, v, strict=True)])
    raise TypeError(f"no row reader for type {tp!r}")  # a model defect, not a data error


def read_offer(text: str) -> FlexOffer:
    """The offer of a row's JSON (with its state and schedule, as the wire shows it)."""
    return _reader(FlexOffer)(json.loads(text))


def read_request(text: str) -> FlexRequest:
    """The request of a row's JSON (with its state, session and result)."""
    return _reader(FlexRequest)(json.loads(text))


def read_capacity(text: str) -> PublishedCapacity:
    """The grid capacity of a row's JSON (with its publisher and publication time)."""
    return _reader(PublishedCapacity)(json.loads(text))


# -- journals -------------------------------------------------------------------------------
_TABLES = (
    "CREATE TABLE IF NOT EXISTS atp_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS atp_offer (n BIGINT PRIMARY KEY, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,"
    " state TEXT NOT NULL, submitted_at TEXT NOT NULL, updated_at TEXT NOT NULL, reason TEXT, offer TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS atp_event (seq BIGINT PRIMARY KEY, kind TEXT NOT NULL, party TEXT NOT NULL,"
    " time TEXT NOT NULL, offer TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS atp_key (kind TEXT NOT NULL, party TEXT NOT NULL, key TEXT NOT NULL,"
    " answer TEXT NOT NULL, PRIMARY KEY (kind, party, key))",
    "CREATE TABLE IF NOT EXISTS atp_measurement (offer_id TEXT NOT NULL, time TEXT NOT NULL,"
    " energy_kwh DOUBLE PRECISION NOT NULL, PRIMARY KEY (offer_id, time))",
    "CREATE TABLE IF NOT EXISTS atp_request (n BIGINT PRIMARY KEY, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,"
    " state TEXT NOT NULL, posted_at TEXT NOT NULL, updated_at TEXT NOT NULL, session TEXT NOT NULL,"
    " request TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS atp_capacity (publisher TEXT NOT NULL, name TEXT NOT NULL, n BIGINT NOT NULL,"
    " capacity TEXT, PRIMARY KEY (publisher, name))",
)
_UPSERT_OFFER = (
    "INSERT INTO atp_offer (n, id, owner, state, submitted_at, updated_at, reason, offer)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at,"
    " reason = excluded.reason, offer = excluded.offer"
)
_INSERT_META = "INSERT INTO atp_meta (key, value) VALUES (?, ?)"
_INSERT_EVENT = "INSERT INTO atp_event (seq, kind, party, time, offer) VALUES (?, ?, ?, ?, ?)"
_INSERT_KEY = "INSERT INTO atp_key (kind, party, key, answer) VALUES (?, ?, ?, ?)"
_UPSERT_MEASUREMENT = (
    "INSERT INTO atp_measurement (offer_id, time, energy_kwh) VALUES (?, ?, ?)"
    " ON CONFLICT (offer_id, time) DO UPDATE SET energy_kwh = excluded.energy_kwh"
)
_UPSERT_REQUEST = (
    "INSERT INTO atp_request (n, id, owner, state, posted_at, updated_at, session, request)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at,"
    " session = excluded.session, request = excluded.request"
)
_UPSERT_CAPACITY = (
    "INSERT INTO atp_capacity (publisher, name, n, capacity) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (publisher, name) DO UPDATE SET n = excluded.n, capacity = excluded.capacity"
)
_SELECTS = (
    "SELECT n, id, owner, state, submitted_at, updated_at, reason, offer FROM atp_offer ORDER BY n",
    "SELECT seq, kind, party, time, offer FROM atp_event ORDER BY seq",
    "SELECT kind, party, key, answer FROM atp_key",
    "SELECT offer_id, time, energy_kwh FROM atp_measurement",
    "SELECT n, id, owner, state, posted_at, updated_at, session, request FROM atp_request ORDER BY n",
    "SELECT publisher, name, n, capacity FROM atp_capacity ORDER BY n",
)


class Journal(abc.ABC):
    """A database the store writes its rows to (`commit`) and reads them back from (`load`).

    Subclasses give the connection (`_transaction`) and the parameter marker; the SQL is shared.
    """

    url: str
    _marker = "?"

    def __init__(self) -> None:
        self._conn: Any = None
        self._sql = {q: q.replace("?", self._marker) for q in (_UPSERT_OFFER, _INSERT_EVENT, _INSERT_KEY)}
        self._sql.update(
            {q: q.replace("?", self._marker) for q in (_UPSERT_MEASUREMENT, _UPSERT_REQUEST, _UPSERT_CAPACITY)}
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Any]:
        """A cursor inside one transaction: committed when the block ends, rolled back when it raises."""

    def _setup(self, store: str) -> None:
        """Create the tables if missing; refuse a database of another store or schema version."""
        with self._transaction() as cur:
            for ddl in _TABLES:
                cur.execute(ddl)
            cur.execute("SELECT key, value FROM atp_meta")
            meta = dict(cur.fetchall())
            if not meta:
                insert = _INSERT_META.replace("?", self._marker)
                cur.execute(insert, ("store", store))
                cur.execute(insert, ("schema_version", SCHEMA_VERSION))
                return
        if meta.get("store") != store:
            raise JournalError(
                f"{self.url} holds the store {meta.get('store')!r}, not {store!r}: give another database"
            )
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise JournalError(
                f"{self.url} has schema version {meta.get('schema_version')!r}; this ATP reads version {SCHEMA_VERSION}"
            )

    def load(self) -> StoredRows:
        """Every row, in submission and sequence order."""
        with self._transaction() as cur:
            out = []
            for query in _SELECTS:
                cur.execute(query)
                out.append(list(cur.fetchall()))
        return StoredRows(*out)

    def commit(self, batch: Batch) -> None:
        """Write the batch in one transaction; returns once it is committed."""
        sql = self._sql
        try:
            with self._transaction() as cur:
                for query, rows in (
                    (_UPSERT_OFFER, batch.offers),
                    (_INSERT_EVENT, batch.events),
                    (_INSERT_KEY, batch.keys),
                    (_UPSERT_MEASUREMENT, batch.measurements),
                    (_UPSERT_REQUEST, batch.requests),
                    (_UPSERT_CAPACITY, batch.capacities),
                ):
                    if len(rows) == 1:
                        cur.execute(sql[query], rows[0])
                    elif rows:
                        cur.executemany(sql[query], rows)
        except JournalError:
            raise
        except Exception as exc:
            raise JournalError(
                f"{self.url}: the store's change was not written ({exc.__class__.__name__}: {exc})"
            ) from exc

    def close(self) -> None:
        """Close the connection (and release the one-writer lock)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SqliteJournal(Journal):
    """The store in one SQLite file (write-ahead log; fsync per commit unless synchronous=normal)."""

    def __init__(self, path: str | Path, *, store: str, synchronous: str = "full") -> None:
        super().__init__()
        if synchronous not in ("full", "normal"):
            raise JournalUrlError(f"synchronous={synchronous!r}: give full (the default) or normal")
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        try:
            self._lock = open(f"{self.path}.lock", "a+b")  # noqa: SIM115 (held for the journal's life)
        except OSError as exc:
            raise JournalError(f"{self.url}: cannot create {self.path}.lock ({exc.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise JournalError(f"{self.url} is in use by another process (one server per database)") from None
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._setup(store)
        except sqlite3.Error as exc:
            self.close()
            raise JournalError(f"{self.url}: not a usable SQLite database ({exc})") from None
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def close(self) -> None:
        super().close()
        self._lock.close()


class PostgresJournal(Journal):
    """The store in a PostgreSQL database (or the schema its URL's search_path names)."""

    _marker = "%s"

    def __init__(self, url: str, *, store: str) -> None:
        super().__init__()
        import psycopg

        self.url = url
        try:
            self._conn = psycopg.connect(url, autocommit=False, prepare_threshold=0)
        except psycopg.Error as exc:
            raise JournalError(f"{redacted_url(url)}: cannot connect ({str(exc).strip()})") from None
        # One writer per database (and schema): a session lock that dies with the connection.
        with self._conn.cursor() as cur:
            cur.execute("SELECT current_database(), current_schema()")
            database, schema = cur.fetchone()
            digest = hashlib.sha256(f"goflex-atp:{database}:{schema}".encode()).digest()
            cur.execute("SELECT pg_try_advisory_lock(%s)", (int.from_bytes(digest[:8], "big", signed=True),))
            (locked,) = cur.fetchone()
        self._conn.commit()
        if not locked:
            self.close()
            raise JournalError(
                f"{redacted_url(url)} (schema {schema}) is in use by another process (one server per database)"
            )
        try:
            self._setup(store)
        except psycopg.Error as exc:
            self.close()
            raise JournalError(f"{redacted_url(url)}: cannot set up the store's tables ({str(exc).strip()})") from None
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    def commit(self, batch: Batch) -> None:
        with self._conn.pipeline():
            super().commit(batch)


def redacted_url(url: str) -> str:
    """`url` with its password (if any) replaced by ***, fit for logs and start-up lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@")


def open_journal(url: str, *, store: str) -> Journal | None:
    """The journal a `--store` URL names (None for `memory`); JournalError if it cannot open."""
    if url in ("memory", "memory://"):
        return None
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path or parts.path == "/":
            raise JournalUrlError(f"--store {url}: write sqlite:///PATH (three slashes, then the file)")
        query = dict(parse_qsl(parts.query))
        unknown = set(query) - {"synchronous"}
        if unknown:
            raise JournalUrlError(f"--store {url}: unknown option(s) {', '.join(sorted(unknown))} (only synchronous)")
        return SqliteJournal(
            Path(os.path.expanduser(parts.path[1:])), store=store, synchronous=query.get("synchronous", "full")
        )
    if parts.scheme in ("postgresql", "postgres"):
        return PostgresJournal(url, store=store)
    raise JournalUrlError(
        f"--store {url}: not a store URL; give memory, sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"
    )


class GroupCommitter:
    """A writer thread that commits the batches handed to it, all that wait in one transaction.

    `enqueue` returns a ticket at once; `wait(ticket)` returns when that batch is committed
    (JournalError if the database refused it: from then on every batch is refused, and the
    server must be restarted, which reloads what was committed). `on_committed(payloads)` runs
    on the writer thread after each commit, with the payloads given to `enqueue`, in order.
    """

    def __init__(self, journal: Journal, *, on_committed: Callable[[list[Any]], None]) -> None:
        self.journal = journal
        self._on_committed = on_committed
        self._cond = threading.Condition()
        self._queue: list[tuple[Batch, Any]] = []
        self._enqueued = 0
        self._committed = 0
        self.failure: JournalError | None = None
        self._closed = False
        self.listeners: list[Callable[[], None]] = []
        """Called on the writer thread after each commit and after a failure (then `failure` is set)."""
        self._thread = threading.Thread(target=self._run, name=f"commit-{journal.url}", daemon=True)
        self._thread.start()

    @property
    def latest(self) -> int:
        """The ticket of the last batch handed over (0 before the first)."""
        return self._enqueued

    def committed(self, ticket: int) -> bool:
        """True once the batch of `ticket` (and every one before it) is committed."""
        return self._committed >= ticket

    def enqueue(self, batch: Batch, payload: Any) -> int:
        """Hand over a batch; returns its ticket. JournalError once a commit has failed."""
        with self._cond:
            if self.failure is not None:
                raise self.failure
            self._queue.append((batch, payload))
            self._enqueued += 1
            self._cond.notify_all()
            return self._enqueued

    def wait(self, ticket: int | None = None, *, timeout_s: float | None = None) -> None:
        """Block until the batch of `ticket` (default: the latest) is committed."""
        with self._cond:
            target = self._enqueued if ticket is None else ticket
            if not self._cond.wait_for(lambda: self._committed >= target or self.failure is not None, timeout_s):
                raise JournalError(f"{self.journal.url}: no commit within {timeout_s} s")
            if self._committed < target and self.failure is not None:
                raise self.failure

    def close(self) -> None:
        """Commit what waits, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                taken, self._queue = self._queue, []
                last = self._enqueued
            merged = Batch()
            for batch, _ in taken:
                merged.offers.extend(batch.offers)
                merged.events.extend(batch.events)
                merged.keys.extend(batch.keys)
                merged.measurements.extend(batch.measurements)
                merged.requests.extend(batch.requests)
            try:
                self.journal.commit(merged)
            except JournalError as exc:
                with self._cond:
                    self.failure = exc
                    self._cond.notify_all()
                self._tell_listeners()
                return
            try:
                self._on_committed([payload for _, payload in taken])
            except Exception:  # a subscriber's error must not stop the commits
                _log.exception("after a commit to %s", self.journal.url)
            with self._cond:
                self._committed = last
                self._cond.notify_all()
            self._tell_listeners()

    def _tell_listeners(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:
                _log.exception("a commit listener of %s failed", self.journal.url)

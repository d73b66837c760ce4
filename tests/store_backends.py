"""The offer store's three backends for tests: memory, SQLite in the test's folder, PostgreSQL.

`store_urls` (a fixture, parametrised by `backend`; import `backend_fixture` and
`store_urls_fixture` to use them) hands out store URLs: `memory`, a new
`sqlite:///...` file per name, or a new PostgreSQL schema per name in the database of
`ATP_TEST_POSTGRES` (default: the local server, database `test`). Every schema made is dropped
when the test ends. PostgreSQL is never skipped: a server that cannot be reached fails the test
(`.ci/run` starts the local one).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

POSTGRES_URL = os.environ.get("ATP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("memory", "sqlite", "postgresql")
DURABLE = ("sqlite", "postgresql")


class StoreUrls:
    """Store URLs of one backend; `url(name)` is the same database for the same name."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.backend = backend
        self._folder = folder
        self._urls: dict[str, str] = {}
        self._schemas: list[str] = []

    def url(self, name: str = "db") -> str:
        if name not in self._urls:
            self._urls[name] = self._new(name)
        return self._urls[name]

    def _new(self, name: str) -> str:
        if self.backend == "memory":
            return "memory"
        if self.backend == "sqlite":
            return f"sqlite:///{self._folder / f'{name}.db'}"  # an absolute path after the third slash
        schema = f"atp_test_{os.getpid()}_{secrets.token_hex(4)}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self._schemas.append(schema)
        return f"{POSTGRES_URL}?options={quote(f'-csearch_path={schema}')}"

    def drop(self) -> None:
        """Drop the PostgreSQL schemas made (their stores must be closed)."""
        if not self._schemas:
            return
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for schema in self._schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self._schemas.clear()


@pytest.fixture(params=BACKENDS, name="backend")
def backend_fixture(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(name="store_urls")
def store_urls_fixture(backend: str, tmp_path: Path) -> Iterator[StoreUrls]:
    urls = StoreUrls(backend, tmp_path)
    yield urls
    urls.drop()

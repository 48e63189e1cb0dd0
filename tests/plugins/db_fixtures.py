"""PostgreSQL for tests: one server per session, a fresh database per test that writes.

- ``pg_server`` (session): the server. With ``CLASH_TEST_DATABASE_URL`` set (a
  superuser URL), that server is used; otherwise an embedded PostgreSQL in a
  session temporary folder, stopped when the session ends.
- ``fresh_db_url``: a new empty database, dropped (``with (force)``) after the test.
- ``migrated_db_url``: a fresh database with ``supabase/migrations`` applied.

Roles are cluster-wide: migrations create them behind ``if not exists`` guards,
so many databases of one server can each be migrated.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from clash_pipeline.warehouse.embedded import EmbeddedPostgres
from clash_pipeline.warehouse.migrations import migrate

TEST_DATABASE_URL_ENV = "CLASH_TEST_DATABASE_URL"

# Durability is pointless for throwaway test data and costs time per database.
TEST_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


@dataclass
class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    url: str
    embedded: EmbeddedPostgres | None = None
    _created: set[str] = field(default_factory=set)

    def database_url(self, name: str) -> str:
        """The admin URL pointed at database ``name``."""
        parts = urlsplit(self.url)
        if parts.scheme in ("postgresql", "postgres") and "://" in self.url:
            return urlunsplit(parts._replace(path=f"/{name}"))
        return make_conninfo(self.url, dbname=name)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        self._created.add(name)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending its connections first."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
        self._created.discard(name)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    external = os.environ.get(TEST_DATABASE_URL_ENV, "").strip()
    if external:
        server = PgServer(url=external)
        yield server
        for name in list(server._created):
            server.drop_database(name)
        return
    embedded = EmbeddedPostgres(
        tmp_path_factory.mktemp("pg-session"), server_settings=TEST_SERVER_SETTINGS
    )
    url = embedded.start()
    # The state's database ("clash") is the admin database: tests get their own.
    try:
        yield PgServer(url=url, embedded=embedded)
    finally:
        embedded.stop()


def _database_name(request: pytest.FixtureRequest) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return f"t_{slug}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fresh_db_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _database_name(request)
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def migrated_db_url(fresh_db_url: str) -> str:
    migrate(fresh_db_url)
    return fresh_db_url

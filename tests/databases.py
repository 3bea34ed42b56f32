"""The test session's database engine: SQLite files (the default) or PostgreSQL, for the same tests.

`JITBOT_TEST_DB=postgres` (or `postgresql`) runs every test that opens a store or starts a bot on the
real PostgreSQL of `tests/postgres.py`; unset or `sqlite`, on SQLite files in the test's tmp_path.
`make test` runs the suite once each way.

- `databases` (per test): `databases.where("jitbot.db")` is where a store or a bot keeps its data: on
  SQLite that file in tmp_path, on PostgreSQL the URL of a database of its own for that name (the same
  name gives the same database, so a restarted bot finds its data), cloned from a migrated template
  (CREATE DATABASE … TEMPLATE: ~40 ms on a loaded 2-core machine, where an empty database and its
  migrations take ~95 ms; the migrations themselves are tested on empty databases in tests/storage),
  dropped after the test.
- `@pytest.mark.sqlite_only("why")`: a test that is about SQLite itself (its file, its lock file);
  skipped on PostgreSQL with that reason. Keep the list short: a test that a user of PostgreSQL could
  meet belongs on both engines.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

ENGINE_VARIABLE = "JITBOT_TEST_DB"
_ENGINE_NAMES = {"": "sqlite", "sqlite": "sqlite", "postgres": "postgresql", "postgresql": "postgresql"}
TEMPLATE = "jitbot_template"
# The text order of most production servers (initdb under en_US.UTF-8), not the C order of a bare test
# machine: ICU's en-US, which the distribution's PostgreSQL always has, whatever locales the OS carries.
# SQLite compares text byte by byte; code that relies on an order must say so (ORDER BY on ids, times).
TEMPLATE_LOCALE = "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"


def session_engine() -> str:
    """ "sqlite" or "postgresql", from JITBOT_TEST_DB; a usage error for anything else."""
    value = os.environ.get(ENGINE_VARIABLE, "").strip().lower()
    if value not in _ENGINE_NAMES:
        raise pytest.UsageError(f"{ENGINE_VARIABLE}={value!r}: use sqlite or postgres")
    return _ENGINE_NAMES[value]


ON_POSTGRES = session_engine() == "postgresql"


class DatabaseSource:
    """The session's engine: makes a database for a name in a directory, and drops it (see the module docstring)."""

    def __init__(self, server: PostgresServer | None = None, template: str = TEMPLATE) -> None:
        self.server = server
        self.template = template

    @property
    def engine(self) -> str:
        """ "postgresql" or "sqlite"."""
        return "sqlite" if self.server is None else "postgresql"

    def new(self, directory: Path, name: str = "jitbot.db") -> Path | str:
        """A fresh database: the SQLite file `name` in `directory`, or the URL of a new migrated PostgreSQL database."""
        if self.server is None:
            return directory / name
        return self.server.dsn(self.server.create_database(template=self.template))

    def drop(self, where: Path | str) -> None:
        """Drop a PostgreSQL database `new` made (a SQLite file goes with its directory)."""
        if self.server is not None and isinstance(where, str):
            self.server.drop_database(where.rsplit("/", 1)[-1])


class TestDatabases:
    """One test's databases: one per name, the same for the same name (see the module docstring)."""

    __test__ = False  # not a test class

    def __init__(self, source: DatabaseSource, directory: Path) -> None:
        self.source = source
        self.directory = directory
        self._made: dict[str, Path | str] = {}

    @property
    def engine(self) -> str:
        """ "postgresql" or "sqlite"."""
        return self.source.engine

    def where(self, name: str = "jitbot.db") -> Path | str:
        """The SQLite file `name` in the test's directory, or the URL of this test's PostgreSQL database `name`."""
        if name not in self._made:
            self._made[name] = self.source.new(self.directory, name)
        return self._made[name]

    def drop_all(self) -> None:
        """Drop every PostgreSQL database this test made."""
        for where in self._made.values():
            self.source.drop(where)
        self._made.clear()


@pytest.fixture(scope="session")
def database_source(request: pytest.FixtureRequest) -> DatabaseSource:
    """The session's engine; on PostgreSQL a template database is migrated once, and every database is its copy."""
    if not ON_POSTGRES:
        return DatabaseSource()
    import psycopg

    from storage.pg_migrations import apply_pg_migrations

    server: PostgresServer = request.getfixturevalue("postgres_server")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE}" TEMPLATE template0 {TEMPLATE_LOCALE}')
    with psycopg.connect(server.dsn(TEMPLATE), autocommit=True) as conn:
        apply_pg_migrations(conn)
    return DatabaseSource(server, TEMPLATE)


@pytest.fixture
def databases(database_source: DatabaseSource, tmp_path: Path) -> Iterator[TestDatabases]:
    """This test's databases on the session's engine (see the module docstring)."""
    made = TestDatabases(database_source, tmp_path)
    try:
        yield made
    finally:
        made.drop_all()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): about SQLite itself; skipped when JITBOT_TEST_DB=postgres")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, skip the tests marked sqlite_only, each with its own reason."""
    if not ON_POSTGRES:
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
            if not reason:
                raise pytest.UsageError(f"{item.nodeid}: sqlite_only needs a reason")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"database engine: {session_engine()} ({ENGINE_VARIABLE})"

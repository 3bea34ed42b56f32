"""The test PostgreSQL itself: a real server from the distribution's binaries, a fresh database per test."""

from __future__ import annotations

import psycopg

from tests.postgres import PostgresServer


def test_each_test_gets_its_own_empty_database_on_a_real_server(postgres_server: PostgresServer, postgres_dsn: str):
    with psycopg.connect(postgres_dsn) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        conn.execute("CREATE TABLE marker (id int)")
    assert version is not None and int(version[0]) >= 130000
    assert tables == (0,)
    assert postgres_dsn.startswith(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/t_")


def test_a_dropped_test_database_leaves_no_trace(postgres_server: PostgresServer):
    name = postgres_server.create_database()
    with psycopg.connect(postgres_server.dsn(name)) as conn:
        conn.execute("CREATE TABLE leftover (id int)")
    postgres_server.drop_database(name)
    with psycopg.connect(postgres_server.dsn()) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name]).fetchone()
    assert row == (0,)

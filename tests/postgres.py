"""A real PostgreSQL server for the tests, started from the distribution's binaries (no mocks, no Docker).

`postgres_server` (session): `initdb` + `pg_ctl start` in a temporary directory, on a free TCP port
bound to 127.0.0.1 and a unix socket in that directory, trust authentication, no fsync (a test
cluster need not survive a power cut), stopped and deleted at the end of the session.
`postgres_dsn` (per test): a fresh, empty database on that server, dropped after the test, so tests
never see each other's rows. PostgreSQL refuses to run as root, so as root every server command runs
as the `postgres` user through `runuser`. `.ci/run` installs the `postgresql` package when it is
missing; a developer machine without it skips these tests with the reason (in CI it fails).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
# A test cluster: durability off (fsync, full pages), enough connections for three bots with pools.
SERVER_SETTINGS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
    "-c shared_buffers=32MB -c log_min_messages=warning"
)


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: $JITBOT_PG_BIN, else the newest /usr/lib/postgresql/N/bin, else PATH."""
    configured = os.environ.get("JITBOT_PG_BIN")
    candidates = [configured] if configured else []
    candidates += sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for directory in candidates:
        if (Path(directory) / "initdb").is_file() and (Path(directory) / "pg_ctl").is_file():
            return Path(directory)
    return None


def free_port() -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """One running test cluster: its directory, port and the DSN of its `postgres` database."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """A `postgresql://` URL over TCP (what an operator writes in JITBOT_DB)."""
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    def _as_server_user(self, *argv: str) -> list[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            return ["runuser", "-u", SERVER_USER, "--", *command]
        return command

    def _run(self, *argv: str, timeout: float = 60) -> None:
        result = subprocess.run(self._as_server_user(*argv), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def start(self) -> PostgresServer:
        """initdb and start; raises RuntimeError with the server's log when either fails."""
        if os.geteuid() == 0:
            shutil.chown(self.root, user=SERVER_USER)
        self._run("initdb", "-D", str(self.data), "-U", SERVER_USER, "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {SERVER_SETTINGS}"
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log), "-o", options, "start")
        return self

    def stop(self) -> None:
        """Stop at once (fast shutdown: open test connections are closed) and delete the cluster."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, template: str = "template0") -> str:
        """A new database, a copy of `template` (empty by default); returns its name."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a test database, closing whatever connections a test left open on it."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _missing_reason() -> str | None:
    if postgres_bin_dir() is None:
        return "PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does it)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root needs runuser to start PostgreSQL as the postgres user"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (see the module docstring); skipped without the binaries."""
    reason = _missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs it: a PostgreSQL test must never pass there by skipping
        pytest.skip(reason)
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="jitbot-pg-"))
    server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port())
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """The `postgresql://` URL of a fresh empty database, dropped after the test."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        postgres_server.drop_database(name)

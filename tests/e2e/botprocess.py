"""`python bot.py …` as a real subprocess against the in-test Slack emulator, for tests where a process must die.

The emulator and the webhook receiver run in the test's event loop, so every subprocess is driven
with asyncio (a blocking `subprocess.run` would stop the emulator from answering the bot).

    bot = BotProcess(slack, config=path, db=tmp_path / "jitbot.db", logs=tmp_path / "logs")
    await bot.start()          # returns once the emulator sees the Socket Mode connection
    await bot.kill()           # SIGKILL, as a crash or an OOM kill would
    await bot.start()          # same database, same flows: a restart
    assert await bot.terminate() == 0
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.slack import SlackEmulator
from storage.db import is_postgres
from storage.pg_database import translate
from tests.conftest import PROXY_VARIABLES

REPO = Path(__file__).resolve().parents[2]
BOT = REPO / "bot.py"
# Variables of the developer's shell that would change what the bot does under test.
_SCRUBBED_PREFIXES = ("SLACK_", "JITBOT_")


def clean_env(**values: str | None) -> dict[str, str]:
    """This process's environment without proxies or SLACK_* / JITBOT_* variables, plus `values` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and not k.startswith(_SCRUBBED_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the files before a kill -9
    for name, value in values.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def bot_env(slack: SlackEmulator, *, config: Path, db: Path | str, **extra: str | None) -> dict[str, str]:
    """The environment of `bot.py run` against `slack`: its URL and tokens, the flows file and database, JSON logs."""
    values: dict[str, str | None] = {
        "SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "JITBOT_CONFIG": str(config),
        "JITBOT_DB": str(db),
        "JITBOT_LOG_FORMAT": "json",
    }
    return clean_env(**{**values, **extra})


@dataclass(frozen=True)
class CliResult:
    """A finished `bot.py` command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        """stdout parsed as JSON lines (the `audit` command's output)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __str__(self) -> str:
        return (
            f"bot.py {' '.join(self.args)} exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


async def run_cli(*args: str, env: dict[str, str], timeout: float = 30.0) -> CliResult:
    """Run `python bot.py ARGS` to completion without blocking the event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BOT),
        *args,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"bot.py {' '.join(args)} did not finish within {timeout}s") from None
    return CliResult(tuple(args), process.returncode, out.decode(), err.decode())


@dataclass
class BotProcess:
    """`python bot.py run` in a subprocess; each start writes run-N.stdout / run-N.stderr under `logs`."""

    slack: SlackEmulator
    config: Path
    db: Path | str  # a SQLite file or a postgresql:// URL (tests/databases.py)
    logs: Path
    extra_env: dict[str, str | None] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    runs: list[tuple[Path, Path]] = field(default_factory=list)
    started_at: datetime | None = None  # wall clock when the current run was spawned
    connected_at: datetime | None = None  # wall clock when the emulator saw its Socket Mode connection

    @property
    def env(self) -> dict[str, str]:
        """The environment every run gets."""
        return bot_env(self.slack, config=self.config, db=self.db, **self.extra_env)

    @property
    def running(self) -> bool:
        """Whether a started process has not exited yet."""
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout: float = 20.0) -> None:
        """Spawn the bot and wait until it holds a new Socket Mode connection (fail early if it exits)."""
        assert not self.running, "the bot is already running"
        self.logs.mkdir(parents=True, exist_ok=True)
        n = len(self.runs) + 1
        stdout, stderr = self.logs / f"run-{n}.stdout", self.logs / f"run-{n}.stderr"
        self.runs.append((stdout, stderr))
        connects_before = self.slack.connects
        with stdout.open("wb") as out, stderr.open("wb") as err:
            self.started_at = datetime.now(UTC)
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BOT),
                "run",
                cwd=REPO,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        connected = asyncio.ensure_future(
            self.slack.wait_for(
                lambda: self.slack.connects > connects_before and self.slack.connection_count >= 1,
                timeout,
                description="the bot subprocess's Socket Mode connection",
            )
        )
        exited = asyncio.ensure_future(self.process.wait())
        try:
            await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (connected, exited):
                if not task.done():
                    task.cancel()
        if exited.done() and not exited.cancelled():
            raise AssertionError(f"bot.py run exited {self.process.returncode} before connecting:\n{self.output()}")
        if connected.exception() is not None:
            await self.kill()
            raise AssertionError(f"bot.py run did not connect within {timeout}s:\n{self.output()}")
        self.connected_at = datetime.now(UTC)

    async def kill(self) -> None:
        """SIGKILL the bot and wait until it is gone: no shutdown code runs."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            await self.process.wait()

    async def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code (SIGKILL and fail after `timeout`)."""
        assert self.process is not None, "the bot was never started"
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"bot.py run ignored SIGTERM for {timeout}s:\n{self.output()}") from None

    def output(self) -> str:
        """Everything every run wrote, labelled by file (for assertion messages and secret scans)."""
        parts = []
        for path in (p for run in self.runs for p in run):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts)

    def log_records(self) -> list[dict[str, Any]]:
        """Every JSON log line of every run (stderr and stdout); non-JSON lines are skipped."""
        records = []
        for path in (p for run in self.runs for p in run):
            for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
        return records

    async def cli(self, *args: str) -> CliResult:
        """Run another bot.py command (audit, identities) against the same database and flows."""
        return await run_cli(*args, env=self.env)

    def row(self, request_id: str) -> dict[str, Any]:
        """The request's row, read straight from the database (works while the bot is dead)."""
        row = read_rows(self.db, "SELECT * FROM requests WHERE id = ?", [request_id])
        assert row, f"no request {request_id} in {self.db}"
        return row[0]


def read_rows(db_path: Path | str, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
    """Rows as dicts, read with a connection of the test's own from a SQLite file or a postgresql:// database
    (`?` placeholders on both)."""
    if is_postgres(db_path):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(str(db_path), row_factory=dict_row) as pg:
            return list(pg.execute(translate(sql), parameters or None).fetchall())
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, parameters or [])]


def db_time(text: str) -> datetime:
    """A stored or webhook ISO 8601 timestamp as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class ArrivalLog(list):
    """A list for WebhookReceiver.deliveries that notes when each delivery arrived and wakes waiters.

    The receiver records a delivery before answering it, so a test can act while a grant is in
    flight (the receiver still holding its answer), which `receiver.wait_for` (answered only) cannot.
    """

    def __init__(self) -> None:
        super().__init__()
        self.arrived_at: dict[int, datetime] = {}
        self._changed = asyncio.Event()

    def append(self, delivery: Any) -> None:
        """Record the delivery and its wall-clock arrival time."""
        self.arrived_at[id(delivery)] = datetime.now(UTC)
        super().append(delivery)
        self._changed.set()

    def when(self, delivery: Any) -> datetime:
        """When `delivery` arrived."""
        return self.arrived_at[id(delivery)]

    async def wait_arrived(self, count: int, action: str | None = None, *, timeout: float = 10.0) -> list[Any]:
        """Wait until `count` deliveries (of `action`) have arrived, answered or not; return them."""
        deadline = time.monotonic() + timeout

        def matching() -> list[Any]:
            return [d for d in self if action is None or d.action == action]

        while len(matching()) < count:
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{count} {action or ''} deliveries did not arrive within {timeout}s; "
                    f"have {[(d.action, d.status) for d in self]}"
                )
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return matching()

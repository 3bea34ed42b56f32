from __future__ import annotations

import asyncio
import sqlite3
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import StartupError, StrategyUnavailable, SubjectNotFound, TargetNotFound
from core.hooks import load_hooks
from core.models import Subject, Target
from core.strategy import GrantContext
from strategies.custom import CustomStrategy, CustomStrategyConfig
from tests.strategies.contract import Harness, run_contract, run_extend_contract

GRANTED = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)

# A "target system": a SQLite database of role memberships, which grant/revoke change for real.
SQLITE_HOOKS = """
    import sqlite3

    def _db(evt):
        return sqlite3.connect(evt.target.settings["database"])

    def grant(evt):
        with _db(evt) as db:
            db.execute("CREATE TABLE IF NOT EXISTS members (email TEXT, role TEXT, until TEXT, UNIQUE (email, role))")
            db.execute(
                "INSERT OR IGNORE INTO members VALUES (?, ?, ?)",
                (evt.user.email, evt.target.settings["role"], evt.expires_at.isoformat()),
            )
            row = db.execute("SELECT rowid FROM members WHERE email = ? AND role = ?",
                             (evt.user.email, evt.target.settings["role"])).fetchone()
        return {"member_id": row[0], "role": evt.target.settings["role"]}

    def revoke(evt):
        with _db(evt) as db:
            db.execute("CREATE TABLE IF NOT EXISTS members (email TEXT, role TEXT, until TEXT, UNIQUE (email, role))")
            db.execute(
                "DELETE FROM members WHERE rowid = ? AND role = ?", (int(evt.state["member_id"]), evt.state["role"])
            )
"""


def write(tmp_path: Path, source: str, name: str = "hooks.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def config() -> CustomStrategyConfig:
    return CustomStrategyConfig(
        type="custom", targets=[{"name": "reporting", "label": "Reporting", "settings": {"role": "reader"}}]
    )


def context(database: Path, **overrides) -> GrantContext:
    values = dict(
        request_id="req-9",
        flow="reporting_access",
        target=Target("reporting", "Reporting", {"database": str(database), "role": "reader"}),
        subject=Subject("U1", "ann@example.com", identity="ann@example.com"),
        fields={"reason": "quarterly numbers"},
        granted_at=GRANTED,
        expires_at=GRANTED + timedelta(hours=2),
    )
    values.update(overrides)
    return GrantContext(**values)


@pytest.fixture
async def build() -> AsyncIterator[Callable[..., Awaitable[CustomStrategy]]]:
    """Opens custom strategies on a hooks file; their hook processes are closed after the test."""
    opened: list[CustomStrategy] = []

    async def open_strategy(path: Path, **kwargs) -> CustomStrategy:
        hooks = load_hooks(path, timeout=kwargs.pop("timeout", 5))
        strategy = CustomStrategy(config(), integrations=kwargs.pop("integrations", {}), hooks=hooks)
        opened.append(strategy)
        await strategy.open()
        return strategy

    yield open_strategy
    for strategy in opened:
        await strategy.hooks.aclose()


def members(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as db:
        if not db.execute("SELECT name FROM sqlite_master WHERE name = 'members'").fetchone():
            return []
        return db.execute("SELECT email, role, until FROM members").fetchall()


async def test_contract_against_a_sqlite_target_system(build, tmp_path):
    database = tmp_path / "target.db"
    strategy = await build(write(tmp_path, SQLITE_HOOKS))
    ctx = context(database)

    async def is_held() -> bool:
        return ("ann@example.com", "reader", "2026-03-04T14:00:00+00:00") in members(database)

    await run_contract(Harness(strategy, ctx, is_held))


async def test_grant_state_values_become_strings_and_reach_revoke(build, tmp_path):
    database = tmp_path / "target.db"
    strategy = await build(write(tmp_path, SQLITE_HOOKS))
    result = await strategy.grant(context(database))
    assert result.state == {"member_id": "1", "role": "reader"}
    await strategy.revoke(context(database), result.state)
    assert members(database) == []


async def test_async_hooks_get_the_event_with_times_and_integrations(build, tmp_path):
    path = write(
        tmp_path,
        """
        SEEN = []

        async def grant(evt):
            SEEN.append(("grant", evt.flow, evt.target.settings["role"], evt.user.slack_id, evt.fields["reason"],
                         evt.expires_at, evt.granted_at, evt.integrations.directory.name))
            return None

        async def revoke(evt):
            SEEN.append(("revoke", dict(evt.state)))
    """,
    )

    class Directory:
        name = "directory-integration"

    strategy = await build(path, integrations={"directory": Directory()})
    result = await strategy.grant(context(tmp_path / "unused.db"))
    await strategy.revoke(context(tmp_path / "unused.db"), {"k": "v"})
    assert result.state == {}
    assert strategy.hooks.module.SEEN == [
        (
            "grant",
            "reporting_access",
            "reader",
            "U1",
            "quarterly numbers",
            GRANTED + timedelta(hours=2),
            GRANTED,
            "directory-integration",
        ),
        ("revoke", {"k": "v"}),
    ]


async def test_exception_is_retryable_and_names_file_and_function(build, tmp_path):
    path = write(
        tmp_path,
        """
        def grant(evt):
            raise ConnectionError("reporting db unreachable")

        def revoke(evt):
            pass
    """,
        name="reporting.py",
    )
    strategy = await build(path)
    with pytest.raises(StrategyUnavailable) as caught:
        await strategy.grant(context(tmp_path / "x.db"))
    message = str(caught.value)
    assert caught.value.retryable is True
    assert "reporting.py" in message and "grant" in message and "ConnectionError: reporting db unreachable" in message
    assert "reporting.py:3" in message
    assert "reporting.py" in caught.value.user_message


async def test_timeout_is_retryable(build, tmp_path):
    path = write(
        tmp_path,
        """
        import asyncio

        async def grant(evt):
            return {}

        async def revoke(evt):
            await asyncio.Event().wait()
    """,
    )
    strategy = await build(path, timeout=0.2)
    with pytest.raises(StrategyUnavailable, match="timed out after 0.2s") as caught:
        await strategy.revoke(context(tmp_path / "x.db"), {})
    assert caught.value.retryable is True


async def test_a_sync_grant_that_times_out_can_never_grant_afterwards(build, tmp_path):
    # The engine answers a timed-out grant with revoke; a grant still running after that would hand
    # out access nothing ever revokes. The marker file stands in for the target system.
    started, marker = tmp_path / "started", tmp_path / "granted-late"
    path = write(
        tmp_path,
        f"""
        import time
        from pathlib import Path

        def grant(evt):
            Path({str(started)!r}).touch()
            time.sleep(1.5)
            Path({str(marker)!r}).write_text(evt.user.email)
            return {{"member": evt.user.email}}

        def revoke(evt):
            pass
    """,
    )
    strategy = await build(path, timeout=0.5)
    await strategy.hooks.call("revoke", strategy.event(context(tmp_path / "x.db")), timeout=60)  # a warm process
    with pytest.raises(StrategyUnavailable, match="timed out after 0.5s") as caught:
        await strategy.grant(context(tmp_path / "x.db"))
    assert caught.value.retryable is True
    assert started.exists(), "the grant was running when its time ran out"
    await asyncio.sleep(3)  # twice as long as the grant would have slept
    assert not marker.exists(), "the timed-out grant went on and granted after jitbot gave up on it"


async def test_two_slow_sync_grants_run_side_by_side(build, tmp_path):
    # Each grant waits until the other has started: run one after the other, both would time out.
    path = write(
        tmp_path,
        f"""
        import time
        from pathlib import Path

        ROOM = Path({str(tmp_path)!r})

        def grant(evt):
            (ROOM / evt.request_id).touch()
            while len(list(ROOM.glob("req-*"))) < 2:
                time.sleep(0.01)
            return {{"request": evt.request_id}}

        def revoke(evt):
            pass
    """,
    )
    strategy = await build(path, timeout=20)
    first, second = await asyncio.gather(
        strategy.grant(context(tmp_path / "x.db", request_id="req-1")),
        strategy.grant(context(tmp_path / "x.db", request_id="req-2")),
    )
    assert (first.state, second.state) == ({"request": "req-1"}, {"request": "req-2"})


async def test_invalid_return_is_not_retryable(build, tmp_path):
    path = write(tmp_path, "def grant(evt):\n    return ['g-1']\n\ndef revoke(evt):\n    pass\n")
    with pytest.raises(StrategyUnavailable, match="must return a dict") as caught:
        await (await build(path)).grant(context(tmp_path / "x.db"))
    assert caught.value.retryable is False


@pytest.mark.parametrize("error", [SubjectNotFound, TargetNotFound])
async def test_strategy_errors_raised_by_the_hook_pass_through(build, tmp_path, error):
    path = write(
        tmp_path,
        f"""
        from core.errors import {error.__name__}

        def grant(evt):
            raise {error.__name__}("no reporting account for " + evt.user.email)

        def revoke(evt):
            pass
    """,
    )
    with pytest.raises(error, match="no reporting account for ann@example.com"):
        await (await build(path)).grant(context(tmp_path / "x.db"))


async def test_validate_and_grant_need_an_email_or_identity(build, tmp_path):
    strategy = await build(write(tmp_path, SQLITE_HOOKS))
    database = tmp_path / "target.db"
    assert await strategy.validate(context(database, subject=Subject("U1", None, identity="ann"))) == []
    nobody = context(database, subject=Subject("U1", None))
    [issue] = await strategy.validate(nobody)
    assert "no email" in issue.user_message
    with pytest.raises(SubjectNotFound):
        await strategy.grant(nobody)
    assert members(database) == []


async def test_missing_hooks_are_caught_before_anything_runs(tmp_path):
    path = write(tmp_path, "def grant(evt):\n    return {}\n")
    issues = CustomStrategy.check_hooks_file(path)
    assert [(i.line, i.message) for i in issues] == [(None, "revoke(evt) is required here but not defined")]

    hooks = load_hooks(path)
    assert CustomStrategy.hook_problems(hooks) == [
        f"{hooks.path}: revoke(evt) is required by the custom strategy but not defined"
    ]
    assert (
        CustomStrategy.hook_problems(None)
        and CustomStrategy.hook_problems(load_hooks(write(tmp_path, SQLITE_HOOKS, "ok.py"))) == []
    )
    with pytest.raises(StartupError, match="revoke"):
        await CustomStrategy(config(), integrations={}, hooks=hooks).open()
    with pytest.raises(StartupError, match="needs the flow's `hooks:` file"):
        await CustomStrategy(config(), integrations={}, hooks=None).open()


def test_config_takes_only_targets_with_free_settings():
    cfg = config()
    assert cfg.targets[0].settings == {"role": "reader"}
    with pytest.raises(ValueError):
        CustomStrategyConfig(type="custom", url="http://x", targets=[{"name": "t", "label": "T"}])


async def test_extend_keeps_the_custom_targets_member(build, tmp_path):
    database = tmp_path / "target.db"
    strategy = await build(write(tmp_path, SQLITE_HOOKS))
    ctx = context(database)

    async def is_held() -> bool:
        return any(row[:2] == ("ann@example.com", "reader") for row in members(database))

    await run_extend_contract(Harness(strategy, ctx, is_held))

"""Sync hooks run in hook processes that their time limit really stops (see core.hooks)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import HookError
from core.hook_events import Approve, HookEvent, HookUser
from core.hook_loading import HookProcessException, HookResultError, HookTimeout
from core.hooks import HookModule, load_hooks
from core.models import Subject, Target

REPO = Path(__file__).resolve().parents[2]
GRANTED = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes through /proc")


def write(tmp_path: Path, source: str, name: str = "hooks.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def make_event(**overrides) -> HookEvent:
    values = dict(
        request_id="req-1",
        flow="db_access",
        target=Target("prod_admin", "Prod Admin", {"database": "prod", "tags": ["a", "b"], "nested": {"k": "v"}}),
        user=Subject("U1", "ann@example.com", name="Ann", identity="ann"),
        fields={"reason": "incident 42"},
    )
    values.update(overrides)
    return HookEvent(**values)


def children() -> set[int]:
    """Pids whose parent is this test process, zombies included (an unreaped child is a leak too)."""
    me, found = str(os.getpid()), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me:
            found.add(int(entry.name))
    return found


def is_gone(pid: int) -> bool:
    """Whether `pid` no longer runs (a zombie waiting for someone else to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


async def warm_up(hooks: HookModule) -> None:
    """Start a hook process ahead, so a short time limit is spent in the hook, not in starting it."""
    assert await hooks.call("get_approval_channel", make_event(), timeout=60) is None


async def wait_until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll `condition` until true; fail after `within` seconds (a bound, not a speed requirement)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    while not condition():
        assert loop.time() < give_up, f"still not true after {within}s"
        await asyncio.sleep(0.02)


# ── the time limit really stops a hook ────────────────────────────────────────────────────────────


async def test_a_timed_out_sync_hook_never_takes_effect_afterwards(load, tmp_path):
    started, marker = tmp_path / "started", tmp_path / "too-late"
    path = write(
        tmp_path,
        f"""
        import time
        from pathlib import Path

        def get_approval_channel(evt):
            return None

        def after_grant(evt):
            Path({str(started)!r}).touch()
            time.sleep(1.5)
            Path({str(marker)!r}).write_text("ran on after the time-out")
    """,
    )
    hooks = load(path)
    await warm_up(hooks)
    with pytest.raises(HookTimeout, match="after_grant: timed out after 0.5s$"):
        await hooks.call("after_grant", make_event(), timeout=0.5)
    assert started.exists(), "the hook was running when its time ran out"
    await asyncio.sleep(3)  # twice as long as the hook would have slept
    assert not marker.exists()


async def test_a_sync_hook_that_blocks_forever_is_killed_and_leaves_no_process(load, tmp_path):
    path = write(
        tmp_path,
        """
        import threading

        def get_approval_channel(evt):
            return None

        def on_request(evt):
            threading.Event().wait()
    """,
    )
    hooks = load(path)
    baseline = children()
    await warm_up(hooks)
    (pid,) = hooks.process_ids
    assert children() == baseline | {pid}
    with pytest.raises(HookTimeout):
        await hooks.call("on_request", make_event(), timeout=0.5)
    assert children() == baseline and hooks.process_ids == frozenset() and is_gone(pid)


async def test_a_hook_that_ignores_sigterm_is_killed_anyway(load, tmp_path):
    started = tmp_path / "started"
    path = write(
        tmp_path,
        f"""
        import signal
        import time
        from pathlib import Path

        def get_approval_channel(evt):
            return None

        def on_request(evt):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            Path({str(started)!r}).touch()
            while True:
                time.sleep(0.01)
    """,
    )
    hooks = load(path)
    baseline = children()
    await warm_up(hooks)
    with pytest.raises(HookTimeout):
        await hooks.call("on_request", make_event(), timeout=0.5)
    assert started.exists() and children() == baseline


async def test_a_caller_that_gives_up_leaves_no_hook_process_behind(load, tmp_path):
    path = write(tmp_path, "import time\n\ndef get_approvers(evt):\n    time.sleep(60)\n")
    hooks = load(path)
    baseline = children()
    task = asyncio.create_task(hooks.call("get_approvers", make_event(), timeout=60))
    await wait_until(lambda: hooks.process_ids)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert children() == baseline


async def test_a_hook_process_that_dies_without_answering_is_a_hook_error_and_is_replaced(load, tmp_path):
    path = write(
        tmp_path,
        """
        import os
        import signal

        def after_revoke(evt):
            os._exit(3)

        def after_grant(evt):
            os.kill(os.getpid(), signal.SIGKILL)

        def get_approval_channel(evt):
            return "C0NEXT"
    """,
    )
    hooks = load(path)
    with pytest.raises(HookError, match="after_revoke: the hook process exited with code 3$"):
        await hooks.call("after_revoke", make_event())
    with pytest.raises(HookError, match="after_grant: the hook process was killed by SIGKILL$"):
        await hooks.call("after_grant", make_event())
    assert await hooks.call("get_approval_channel", make_event()) == "C0NEXT"


async def test_a_hook_process_that_cannot_start_is_a_hook_error(load, tmp_path, monkeypatch):
    hooks = load(write(tmp_path, "def on_request(evt):\n    return None\n"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(HookError, match="on_request: the hook process could not run it .FileNotFoundError"):
        await hooks.call("on_request", make_event())


async def test_sync_hooks_called_at_once_each_get_a_process(load, tmp_path):
    # Each call waits until the other has started: one after the other, both would time out.
    path = write(
        tmp_path,
        f"""
        import time
        from pathlib import Path

        ROOM = Path({str(tmp_path)!r})

        def get_approvers(evt):
            (ROOM / f"in-{{evt.request_id}}").touch()
            while len(list(ROOM.glob("in-*"))) < 2:
                time.sleep(0.01)
            return [evt.request_id]
    """,
    )
    hooks = load(path)
    calls = (hooks.call("get_approvers", make_event(request_id=f"U{n}"), timeout=20) for n in (1, 2))
    assert await asyncio.gather(*calls) == [["U1"], ["U2"]]


# ── what crosses the process boundary ─────────────────────────────────────────────────────────────


async def test_a_sync_hook_gets_the_whole_event_read_only(load, tmp_path):
    path = write(
        tmp_path,
        """
        def grant(evt):
            try:
                evt.fields["reason"] = "changed"
            except TypeError:
                pass
            else:
                raise AssertionError("fields are writable")
            return {
                "seen": repr((evt.request_id, evt.flow, evt.target.name, evt.target.label,
                              evt.target.settings["tags"], evt.target.settings["nested"]["k"],
                              evt.user, evt.actor.slack_id, evt.fields["reason"],
                              evt.granted_at.isoformat(), evt.expires_at.isoformat(), dict(evt.state))),
            }
    """,
    )
    evt = make_event(
        actor=HookUser("U2"), granted_at=GRANTED, expires_at=GRANTED + timedelta(hours=1), state={"member": "ann"}
    )
    state = await load(path).call("grant", evt)
    assert state == {
        "seen": repr(
            (
                "req-1",
                "db_access",
                "prod_admin",
                "Prod Admin",
                ("a", "b"),
                "v",
                HookUser("U1", "ann@example.com", "Ann", "ann"),
                "U2",
                "incident 42",
                "2026-03-04T12:00:00+00:00",
                "2026-03-04T13:00:00+00:00",
                {"member": "ann"},
            )
        )
    }


async def test_a_decision_recorded_in_the_hook_process_comes_back(load, tmp_path):
    path = write(tmp_path, "def on_request(evt):\n    evt.approve('on call')\n")
    evt = make_event()
    assert await load(path).call("on_request", evt) == Approve("on call")
    assert evt.decision == Approve("on call")


async def test_a_sync_hook_that_uses_an_integration_is_told_to_be_async(load, tmp_path):
    path = write(
        tmp_path,
        """
        def get_approvers(evt):
            return sorted(evt.integrations)

        def on_request(evt):
            if evt.integrations.pagerduty.is_on_call(evt.user):
                return evt.approve("on call")
    """,
    )
    hooks = load(path)
    evt = make_event(integrations={"pagerduty": object()})
    assert await hooks.call("get_approvers", evt) == ["pagerduty"]  # the names are there
    with pytest.raises(HookError) as caught:
        await hooks.call("on_request", evt)
    assert "integrations are async clients: make this hook `async def` to use them (at hooks.py:6)" in str(caught.value)


async def test_classes_and_exceptions_a_hooks_file_defines_come_back_as_themselves(load, tmp_path):
    path = write(
        tmp_path,
        """
        class MemberId:
            def __init__(self, value):
                self.value = value

            def __str__(self):
                return f"member-{self.value}"

        class AccessApiError(Exception):
            pass

        def grant(evt):
            return {"member": MemberId(7)}

        def revoke(evt):
            raise AccessApiError("role not found")
    """,
    )
    hooks = load(path)
    assert await hooks.call("grant", make_event()) == {"member": "member-7"}
    with pytest.raises(HookError, match=r"revoke: AccessApiError: role not found \(at hooks.py:16\)$") as caught:
        await hooks.call("revoke", make_event())
    assert type(caught.value.__cause__) is hooks.module.AccessApiError


async def test_an_exception_that_cannot_be_rebuilt_still_reports_type_text_and_line(load, tmp_path):
    path = write(
        tmp_path,
        """
        class ApiError(Exception):
            def __init__(self, message, *, status):
                super().__init__(f"{message} ({status})")

        def on_request(evt):
            raise ApiError("forbidden", status=403)
    """,
    )
    with pytest.raises(HookError, match=r"on_request: ApiError: forbidden \(403\) \(at hooks.py:7\)$") as caught:
        await load(path).call("on_request", make_event())
    cause = caught.value.__cause__
    assert isinstance(cause, HookProcessException) and cause.type_name == "ApiError"


async def test_a_result_that_cannot_leave_the_hook_process_is_a_result_error_unless_ignored(load, tmp_path):
    path = write(
        tmp_path,
        """
        def get_approvers(evt):
            return (user for user in ["U1"])

        def after_grant(evt):
            return (user for user in ["U1"])
    """,
    )
    hooks = load(path)
    with pytest.raises(HookResultError, match="not generator .which cannot be sent back from the hook process."):
        await hooks.call("get_approvers", make_event())
    assert await hooks.call("after_grant", make_event()) is None


async def test_prints_in_a_sync_hook_do_not_disturb_its_answer(load, tmp_path, capfd):
    path = write(
        tmp_path,
        """
        def get_approval_channel(evt):
            print("checking the channel for", evt.request_id)
            try:
                input()
            except EOFError:
                pass
            return "C0SEC"
    """,
    )
    assert await load(path).call("get_approval_channel", make_event()) == "C0SEC"
    assert "checking the channel for req-1" in capfd.readouterr().err


# ── the hooks file and its module state ───────────────────────────────────────────────────────────


async def test_module_state_lives_in_the_hook_process_and_starts_over_after_a_kill(load, tmp_path):
    path = write(
        tmp_path,
        """
        import time

        CALLS = []

        def get_approval_channel(evt):
            CALLS.append(evt.request_id)
            return f"C{len(CALLS)}"

        def on_request(evt):
            time.sleep(60)
    """,
    )
    hooks = load(path)
    assert [await hooks.call("get_approval_channel", make_event()) for _ in range(3)] == ["C1", "C2", "C3"]
    with pytest.raises(HookTimeout):
        await hooks.call("on_request", make_event(), timeout=0.2)  # kills the warm process
    assert await hooks.call("get_approval_channel", make_event()) == "C1"
    assert hooks.module.CALLS == []  # the bot's own copy of the module is never touched


async def test_the_file_as_loaded_runs_even_when_it_changes_on_disk(load, tmp_path):
    path = write(tmp_path, "def get_approval_channel(evt):\n    return 'C0LOADED'\n")
    hooks = load(path)
    path.write_text("def get_approval_channel(evt):\n    return 'C0EDITED'\n")
    assert await hooks.call("get_approval_channel", make_event()) == "C0LOADED"


async def test_a_file_that_fails_to_load_in_its_hook_process_is_a_hook_error(load, tmp_path):
    path = write(
        tmp_path,
        """
        import sys

        if "pytest" not in sys.modules:
            raise RuntimeError("only imports inside the test run")

        def on_request(evt):
            return None
    """,
    )
    with pytest.raises(HookError, match="could not load the hooks file: .*hooks.py:5: RuntimeError at import time"):
        await load(path).call("on_request", make_event())


# ── closing, and dying with the bot ───────────────────────────────────────────────────────────────


async def test_aclose_stops_every_hook_process_and_can_be_called_again(tmp_path):
    started = tmp_path / "started"
    path = write(
        tmp_path,
        f"""
        import time
        from pathlib import Path

        def get_approvers(evt):
            Path({str(started)!r}).touch()
            time.sleep(60)

        def get_approval_channel(evt):
            return "C1"
    """,
    )
    hooks = load_hooks(path)
    baseline = children()
    assert await hooks.call("get_approval_channel", make_event()) == "C1"
    warm = hooks.process_ids
    in_flight = asyncio.create_task(hooks.call("get_approvers", make_event(), timeout=60))
    await wait_until(started.exists)
    assert hooks.process_ids == warm  # the warm process took the call
    await hooks.aclose()
    with pytest.raises(HookError, match="the hooks file was closed"):
        await in_flight
    assert children() == baseline and hooks.process_ids == frozenset()
    await hooks.aclose()
    with pytest.raises(HookError, match="the hooks file was closed"):
        await hooks.call("get_approval_channel", make_event())


async def test_hook_processes_die_with_the_bot(tmp_path):
    hooks_file = write(tmp_path, "import threading\n\ndef on_request(evt):\n    threading.Event().wait()\n")
    write(
        tmp_path,
        f"""
        import asyncio
        import sys

        sys.path.insert(0, {str(REPO)!r})
        from core.hook_events import HookEvent, HookTarget
        from core.hooks import load_hooks

        async def main():
            hooks = load_hooks({str(hooks_file)!r})
            evt = HookEvent(request_id="r", flow="f", target=HookTarget("t", "T"), user="U1")
            call = asyncio.create_task(hooks.call("on_request", evt, timeout=600))
            while not hooks.process_ids:
                await asyncio.sleep(0.01)
            print(*hooks.process_ids, flush=True)
            await call

        asyncio.run(main())
    """,
        name="bot.py",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(tmp_path / "bot.py"), stdout=asyncio.subprocess.PIPE
    )
    try:
        worker = int((await asyncio.wait_for(process.stdout.readline(), 30)).decode())
        assert not is_gone(worker)
        process.send_signal(signal.SIGKILL)  # no clean-up code of the bot runs
        await process.wait()
        await wait_until(lambda: is_gone(worker))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

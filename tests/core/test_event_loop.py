"""The event loop jitbot's processes run on (core/event_loop.py)."""

from __future__ import annotations

import asyncio

import pytest

from core import event_loop


def test_a_command_runs_to_completion_on_uvloop_and_its_loop_is_closed_after() -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    async def work() -> str:
        seen.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return "done"

    assert event_loop.run(work()) == "done"
    assert type(seen[0]).__module__.startswith("uvloop")
    assert seen[0].is_closed()


def test_an_error_in_a_command_reaches_its_caller_unchanged() -> None:
    async def fails() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        event_loop.run(fails())


async def test_the_tests_run_on_the_loop_production_runs_on() -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")

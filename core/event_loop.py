"""The event loop the bot, the sandbox and the CLI run on: uvloop's.

Why not asyncio's own: a bot spends most of its CPU per approval on network I/O driven by the loop
(the Socket Mode WebSocket, Slack Web API calls, the strategy's HTTP call). uvloop runs the same
asyncio code on libuv with less CPU per call (bench/README.md has the figures). The code stays
plain asyncio; this module is the only one that names uvloop, and the tests run on the same loop.
Hook worker processes (core/hook_worker.py) keep asyncio's own loop: they run the operator's code,
which may expect it, and their speed is the hook's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind the bot runs on."""
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new such loop, then close it (as asyncio.run does)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)

"""The ack-first listener runner: Bolt gets its ack at once, the work finishes in the background.

One `Listeners` belongs to one running bot (the runtime owns it), so two bots in one process (the
end-to-end tests) never share, wait for or drain each other's work.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from core.secrets import SecretRegistry
from handlers.errors import handle_error

Listener = Callable[..., Awaitable[None]]
Ack = Callable[..., Awaitable[Any]]
"""The `ack` a wrapped listener receives: Bolt's ack, behind the wrapper `Listeners.reported` makes."""


async def _already_acked(*_args: Any, **_kwargs: Any) -> None:
    """The `ack` of a listener the wrapper acked for (`acks_at_once`): nothing left to send."""


class Listeners:
    """Wraps listeners so they ack first, and keeps their background work until it ends."""

    def __init__(self, secrets: SecretRegistry | None = None) -> None:
        self._background: set[asyncio.Task[None]] = set()
        # The runtime's registry: what `handle_error` logs about a failure is scrubbed with it.
        self.secrets = SecretRegistry() if secrets is None else secrets

    async def handle_error(self, error: Exception, body: dict[str, Any], client: AsyncWebClient) -> None:
        """`handlers.errors.handle_error` with this bot's registry; Bolt's error handler (`app.error`)."""
        await handle_error(error, body, client, secrets=self.secrets)

    def reported(self, listener: Listener, *, acks_at_once: bool = False) -> Callable[[Any], Awaitable[None]]:
        """Wrap a listener: return to Bolt as soon as it acks, finish its work in the background, and
        send anything it raises to `handle_error`.

        `acks_at_once` is for listeners whose first step is a bare `ack()` (buttons): the wrapper
        acks for them before their work is scheduled, so the ack leaves on this turn of the event
        loop instead of waiting for the work's first turns, which queue behind everything else
        under a burst. Their own `ack()` is then a no-op.

        The app runs with process_before_response=True, so Bolt sends the ack when this wrapper
        returns: right after ack() instead of after Bolt's 10 ms polling loop. Errors go to
        `handle_error` here, not through Bolt's runner, because slack_bolt 1.30 drops the ack when a
        listener raises within ~10 ms of acking (asyncio_runner.run_ack_function_asynchronously
        resets ack.response).
        """
        wanted = list(inspect.signature(listener).parameters)
        background = self._background
        report = self.handle_error

        def start(args: Any, ack: Ack) -> asyncio.Task[None]:
            async def work() -> None:
                try:
                    await listener(**{name: ack if name == "ack" else getattr(args, name) for name in wanted})
                except Exception as error:
                    await report(error, args.body, args.client)

            task = asyncio.create_task(work(), name=f"jitbot-listener:{listener.__name__}")
            background.add(task)
            task.add_done_callback(background.discard)
            return task

        # Bolt injects listener arguments by parameter name; `args` asks it for all of them.
        async def run(args: Any) -> None:
            if acks_at_once:
                await args.ack()
                start(args, _already_acked)
                return
            acked = asyncio.Event()
            bolt_ack = args.ack

            async def ack(*ack_args: Any, **ack_kwargs: Any) -> Any:
                try:
                    return await bolt_ack(*ack_args, **ack_kwargs)
                finally:
                    acked.set()

            task = start(args, ack)
            waiter = asyncio.create_task(acked.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

        run.__name__ = run.__qualname__ = listener.__name__
        return run

    def running(self) -> set[asyncio.Task[None]]:
        """Listener work started and not yet finished."""
        return {task for task in self._background if not task.done()}

    async def drain(self, timeout: float = 10.0) -> None:
        """Let listener work already started finish (at shutdown), for at most `timeout` seconds."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)

    async def cancel(self) -> int:
        """Cancel listener work still running (at shutdown, once its time is up) and wait until it has
        unwound; return how many were cancelled. A cancelled grant leaves its row `approved` for
        recovery, rather than failing against clients that are being closed."""
        running = self.running()
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=1.0)
        return len(running)

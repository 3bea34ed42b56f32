"""The sandbox's webhook receiver: the shipped example receiver, listening on 127.0.0.1 on a free port.

It checks what every receiver must (signature, freshness, replays, a grant already over:
docs/webhook-contract.md) with the code of `examples/webhook_receiver.py`, and records what it
accepted in the sandbox's Ledger instead of printing it.
"""

from __future__ import annotations

from aiohttp import web

from examples.webhook_receiver import make_app
from sandbox.ledger import Ledger


class BuiltInReceiver:
    """`url` is where the sandbox points every webhook flow; start() before reading it."""

    def __init__(self, secret: str, ledger: Ledger) -> None:
        self._secret = secret
        self._ledger = ledger
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The address webhook flows deliver to in the sandbox."""
        return f"http://127.0.0.1:{self.port}/grants"

    async def start(self) -> BuiltInReceiver:
        """Listen on 127.0.0.1, a free port."""
        # The receiver checks freshness by its own (wall) clock, like a receiver on another machine:
        # jitbot stamps `sent_at` from the wall clock too, whatever the sandbox's fast-forward.
        app = make_app(self._secret, on_accept=self._ledger.webhook_delivery)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

"""What the local fakes of JSON management APIs (Okta, Aptible) share: serving, the request log, 5xx faults.

A subclass adds its routes in `_routes` and answers in `_answer` (auth, its own faults, its error
bodies); every request is logged in `calls` before `_answer` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from aiohttp import web


@dataclass(frozen=True)
class Call:
    """One request a fake received."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)


class FakeApi:
    """An aiohttp app on 127.0.0.1 (a free port) that logs every request; `fail(n)` queues 5xx answers."""

    def __init__(self, *, page_size: int, now: Callable[[], float] = time.time) -> None:
        self.page_size = page_size
        self.now = now
        self.calls: list[Call] = []
        self._failures: list[int] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def fail(self, times: int, *, status: int = 503) -> None:
        """Answer the next `times` calls with `status`."""
        self._failures = [status] * times

    def calls_to(self, method: str, path_prefix: str = "") -> list[Call]:
        """The recorded calls with this method whose path starts with `path_prefix`."""
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def _next_failure(self) -> int | None:
        """The status of a queued failure to answer with now, if any (each is used once)."""
        return self._failures.pop(0) if self._failures else None

    # --- server ------------------------------------------------------------------------------
    async def start(self) -> str:
        """Serve on 127.0.0.1 with a free port; returns the base URL."""
        app = web.Application(middlewares=[self._log_and_answer])
        self._routes(app.router)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @web.middleware
    async def _log_and_answer(self, request: web.Request, handler) -> web.StreamResponse:
        self.calls.append(Call(request.method, request.path, dict(request.query)))
        return await self._answer(request, handler)

    def _routes(self, router: web.UrlDispatcher) -> None:
        """Add the API's routes."""
        raise NotImplementedError

    async def _answer(self, request: web.Request, handler) -> web.StreamResponse:
        """Answer a logged request: check it, inject faults, call `handler`, map its errors."""
        raise NotImplementedError

"""The bot's HTTP server: `GET /health` for container and orchestrator probes (200 when Slack and the
database answer, else 503), plus whatever other routes the composition root adds (`/metrics`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def start_health_server(
    address: str,
    checks: dict[str, Callable[[], Awaitable[bool]]],
    routes: Mapping[str, Route] | None = None,
) -> web.AppRunner:
    """Serve /health, and each `routes` path (GET), on `address` ('HOST:PORT'); each check is a named
    coroutine returning True when healthy."""
    host, _, port = address.rpartition(":")

    async def health(_request: web.Request) -> web.Response:
        results = {}
        for name, check in checks.items():
            try:
                results[name] = bool(await check())
            except Exception:
                results[name] = False
        healthy = all(results.values())
        return web.json_response(
            {"status": "ok" if healthy else "unhealthy", **results}, status=200 if healthy else 503
        )

    app = web.Application()
    app.router.add_get("/health", health)
    for path, handler in (routes or {}).items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    return runner

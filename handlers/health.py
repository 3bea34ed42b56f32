"""`GET /health` for container and orchestrator probes: 200 when Slack and the database answer, else 503.

The route joins the bot's one HTTP server (api.server.start_http_server) with `/metrics` and the API's routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Check = Callable[[], Awaitable[bool]]


def health_routes(checks: dict[str, Check]) -> list[web.RouteDef]:
    """The /health route; each check is a named coroutine returning True when healthy."""

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

    return [web.get("/health", health)]

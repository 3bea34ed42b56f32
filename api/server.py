"""The bot's one HTTP server (`JITBOT_HTTP_ADDR`): a route table any part may add to.

`/health` comes from handlers.health, `/v1/…` from `api_routes`; the composition root joins the
tables and starts one server. Under `/v1` every answer that is not a success is problem+json
(including the router's own 404 and 405), and a token in the query string is refused first.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable

import structlog
from aiohttp import web

from api.auth import Authenticator, refuse_query_tokens
from api.bodies import MAX_BODY_BYTES
from api.openapi import openapi_document
from api.problems import Problem, problem_for
from api.service import ApiService, Operation
from core.secrets import SecretRegistry

log = structlog.get_logger("jitbot.api")

API_PREFIX = "/v1/"


def problems_middleware(secrets: SecretRegistry) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Under /v1: refuse query-string tokens, and answer every failure as problem+json."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        try:
            refuse_query_tokens(request)
            return await handler(request)
        except web.HTTPException as http:  # the router's 404 / 405, aiohttp's own 413
            if http.status < 400:
                raise
            headers = {"Allow": http.headers["Allow"]} if "Allow" in http.headers else {}
            return Problem(http.status, http.reason, {}, headers).response()
        except Exception as error:
            return problem_for(error, secrets).response()

    return middleware


def api_routes(service: ApiService, auth: Authenticator) -> list[web.RouteDef]:
    """The routes of /v1: every operation of the service, and the OpenAPI document."""
    document = json.dumps(openapi_document(service))

    def route(operation: Operation) -> web.RouteDef:
        async def handle(request: web.Request) -> web.StreamResponse:
            caller = await auth.caller(request, operation.scopes)
            return await operation.handler(request, caller)

        return web.route(operation.method, operation.path, handle)

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    return [web.get("/v1/openapi.json", openapi), *(route(op) for op in service.operations())]


async def start_http_server(address: str, routes: Iterable[web.RouteDef], *, secrets: SecretRegistry) -> web.AppRunner:
    """Serve `routes` on `address` ('HOST:PORT'); returns the runner to clean up."""
    host, _, port = address.rpartition(":")
    app = web.Application(middlewares=[problems_middleware(secrets)], client_max_size=MAX_BODY_BYTES)
    app.add_routes(list(routes))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    log.info("http.serving", address=address)
    return runner

"""Slack handlers: thin listeners that ack first, call the engine, and render with pure builders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from core.config_models import JitConfig
from core.engine import AccessEngine
from handlers import access_actions, actions, commands, deny_modal, views
from handlers.home import Home
from handlers.home import register as register_home
from handlers.listeners import Listeners


class BindLogContext(AsyncMiddleware):
    """Binds who sent the envelope and its kind to every log line written while it is handled.

    A middleware class: Bolt calls it directly, where a function middleware costs an inspection of
    its signature on every envelope.
    """

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        """Bind slack_user / slack_type, then run the rest of the chain."""
        body = req.body
        structlog.contextvars.clear_contextvars()
        user = (body.get("user") or {}).get("id") or body.get("user_id")
        structlog.contextvars.bind_contextvars(slack_user=user, slack_type=body.get("type") or body.get("command"))
        return await next()


def register(app: AsyncApp, *, config: JitConfig, engine: AccessEngine, listeners: Listeners) -> Home:
    """Install the log-context middleware, the error handler and every listener on `app`; return the App
    Home, whose `refresh.changed` the composition root hands the notifier."""

    app.middleware(BindLogContext())

    # A plain function: Bolt passes arguments by the names getfullargspec finds, `self` included.
    async def report_error(error: Exception, body: dict[str, Any], client: AsyncWebClient) -> None:
        await listeners.handle_error(error, body, client)

    app.error(report_error)
    home = Home(config, engine, app.client)
    commands.register(app, config, engine, listeners)
    views.register(app, config, engine, listeners)
    actions.register(app, engine, listeners, home.publish)
    deny_modal.register(app, engine, listeners)
    access_actions.register(app, config, engine, listeners, home.publish)
    register_home(app, home, listeners)
    return home

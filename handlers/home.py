"""The App Home tab: published when a person opens it, after they use one of its buttons, and when one of
its requests changes (handlers/home_refresh.py)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from core.config_models import JitConfig
from core.engine import AccessEngine
from handlers import home_blocks
from handlers.home_refresh import HomeRefresh
from handlers.listeners import Ack, Listeners


class Home:
    """Publishes a person's Home tab from the engine's overview of them."""

    def __init__(self, config: JitConfig, engine: AccessEngine, client: AsyncWebClient) -> None:
        self.config = config
        self.engine = engine
        self.refresh = HomeRefresh(engine, client, self.publish)

    async def publish(self, client: AsyncWebClient, user: str) -> None:
        """Build `user`'s Home tab from the database as it is now and publish it."""
        overview = await self.engine.overview(user, home_blocks.HOME_PER_SECTION)
        await client.views_publish(user_id=user, view=home_blocks.home_view(self.config, overview))
        self.refresh.shown(user, (request.id for request in overview.awaiting.items))


def register(app: AsyncApp, home: Home, listeners: Listeners) -> None:
    """Listen for `app_home_opened`."""

    async def handle_app_home_opened(ack: Ack, event: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        if event.get("tab", "home") == "home" and event.get("user"):
            await home.publish(client, event["user"])

    app.event("app_home_opened")(listeners.reported(handle_app_home_opened, acks_at_once=True))

"""Approve / Deny buttons on the approval-channel message and the Home tab → engine.approve / engine.deny."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from core.engine import AccessEngine
from handlers.access_actions import RefreshHome, message_source
from handlers.deny_modal import deny_clicked
from handlers.ids import ActionId
from handlers.listeners import Ack, Listeners
from handlers.metadata import parse_decision_value
from handlers.redelivery import skip_modal


def register(app: AsyncApp, engine: AccessEngine, listeners: Listeners, refresh_home: RefreshHome) -> None:
    """Listen for the two decision buttons; refusals surface through the error handler."""

    async def handle_approve_button(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        # A click is only valid on the request's own message, or on the clicker's Home tab (no message).
        await engine.approve(parse_decision_value(action.get("value")), body["user"]["id"], source=message_source(body))
        await _after(body, client, refresh_home)

    async def handle_deny_button(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, request: Any
    ) -> None:
        await ack()
        # Opens the reason modal (handlers/deny_modal.py), or denies at once where no reason applies.
        await deny_clicked(
            engine,
            client,
            body,
            parse_decision_value(action.get("value")),
            message_source(body),
            redelivered=skip_modal(request, "deny_reason"),
        )
        await _after(body, client, refresh_home)

    app.action(ActionId.APPROVE)(listeners.reported(handle_approve_button, acks_at_once=True))
    app.action(ActionId.DENY)(listeners.reported(handle_deny_button, acks_at_once=True))


async def _after(body: dict[str, Any], client: AsyncWebClient, refresh_home: RefreshHome) -> None:
    """A decision made on the Home tab: publish the clicker's Home again."""
    if (body.get("container") or {}).get("type") == "view":
        await refresh_home(client, body["user"]["id"])

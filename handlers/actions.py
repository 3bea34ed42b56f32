"""Approve / Deny buttons on the approval-channel message → engine.approve / engine.deny."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from core.engine import AccessEngine
from core.models import MessageRef
from handlers.deny_modal import deny_clicked
from handlers.ids import ActionId
from handlers.listeners import Ack, Listeners
from handlers.metadata import parse_decision_value


def _source(body: dict[str, Any]) -> MessageRef:
    """The message the clicked button sits on: a click is only valid on the request's own message."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    return MessageRef(channel=channel, ts=ts)


def register(app: AsyncApp, engine: AccessEngine, listeners: Listeners) -> None:
    """Listen for the two decision buttons; refusals surface through the error handler."""

    async def handle_approve_button(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await engine.approve(parse_decision_value(action.get("value")), body["user"]["id"], source=_source(body))

    async def handle_deny_button(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        # Opens the reason modal (handlers/deny_modal.py), or denies at once where no reason applies.
        await deny_clicked(engine, client, body, parse_decision_value(action.get("value")), _source(body))

    app.action(ActionId.APPROVE)(listeners.reported(handle_approve_button))
    app.action(ActionId.DENY)(listeners.reported(handle_deny_button))

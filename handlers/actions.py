"""Approve / Deny buttons on the approval-channel message → engine.approve / engine.deny."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from handlers.errors import reported
from handlers.ids import ActionId
from handlers.metadata import parse_decision_value


def register(app: AsyncApp, engine) -> None:
    """Listen for the two decision buttons; refusals surface through the error handler."""

    async def handle_approve_button(ack, body, action) -> None:
        await ack()
        await engine.approve(parse_decision_value(action.get("value")), body["user"]["id"])

    async def handle_deny_button(ack, body, action) -> None:
        await ack()
        await engine.deny(parse_decision_value(action.get("value")), body["user"]["id"])

    app.action(ActionId.APPROVE)(reported(handle_approve_button))
    app.action(ActionId.DENY)(reported(handle_deny_button))

"""Deny with a reason: the Deny button opens a small modal; its submission denies with that reason.

The requester's own Deny goes straight to the engine (no reason to give oneself: it is refused, or
withdraws the request where the engine allows that). A click on a request that is no longer pending
also goes straight to the engine, which says who decided it. Refusals from the modal are shown in the
approval channel, as for any click.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from core.decisions import AlreadyDecided
from core.engine import AccessEngine
from core.errors import JitError
from core.models import MessageRef
from core.models import RequestStatus as S
from core.submission import refuse_nul
from handlers.ids import ActionId, BlockId, CallbackId
from handlers.listeners import Ack, Listeners
from handlers.metadata import DenyMetadata
from handlers.policy_blocks import deny_modal


async def deny_clicked(
    engine: AccessEngine,
    client: AsyncWebClient,
    body: dict[str, Any],
    request_id: str,
    source: MessageRef | None,
    *,
    redelivered: bool = False,
) -> None:
    """A Deny click (already acked): open the reason modal, or decide at once where no reason applies.
    A `redelivered` click opens no modal: the first delivery opened it, and spent its trigger."""
    actor = body["user"]["id"]
    request = await engine.requests.get(request_id)
    if actor == request.requester or request.status is not S.PENDING:
        await engine.deny(request_id, actor, source=source)
        return
    if redelivered:
        return
    # The trigger_id lives 3 seconds: one local read above, then straight to views.open.
    await client.views_open(
        trigger_id=body["trigger_id"],
        # No message when the click was on the Home tab: the submission then carries no source either.
        view=deny_modal(
            request_id, source.channel if source else None, source.ts if source else None, request.requester
        ),
    )


def register(app: AsyncApp, engine: AccessEngine, listeners: Listeners) -> None:
    """Listen for the deny modal's submission."""

    async def handle_deny_reason_submission(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        try:
            meta = DenyMetadata.decode(view.get("private_metadata"))
        except JitError as error:
            await ack(response_action="errors", errors={BlockId.DENY_REASON: error.user_message})
            return
        values = (view.get("state") or {}).get("values") or {}
        reason = ((values.get(BlockId.DENY_REASON) or {}).get(ActionId.VALUE) or {}).get("value")
        try:
            reason = refuse_nul(reason) if isinstance(reason, str) else reason
        except ValueError as error:  # as the API and the request form refuse it (docs/slack-behaviour.md)
            await ack(response_action="errors", errors={BlockId.DENY_REASON: str(error)})
            return
        await ack()
        actor = body["user"]["id"]
        try:
            source = MessageRef(meta.channel, meta.ts) if meta.channel else None
            await engine.deny(meta.request_id, actor, reason=reason, source=source)
        except JitError as error:
            if isinstance(error, AlreadyDecided) and error.status == S.DENIED.value and error.by == actor:
                # Their own denial delivered again (Slack retries a late ack): done, nothing to refuse.
                return
            # Told where they clicked, like any refused click (the submission itself has no channel).
            where = {"user": {"id": actor}, "channel": {"id": meta.channel}} if meta.channel else body
            await listeners.handle_error(error, where, client)

    app.view(CallbackId.DENY_REASON)(listeners.reported(handle_deny_reason_submission))

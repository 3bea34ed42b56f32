"""Revoke now / Cancel request / Extend buttons and the Extend modal → engine.revoke_now / cancel / extend.

The buttons sit on the request's channel message, the requester's DMs and the App Home tab. After
a click on a DM, that DM is edited: its buttons go and what happened is added. After a click on the
Home tab, the clicker's Home is published again. Refusals surface through the one error handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from core.config_models import JitConfig
from core.engine import AccessEngine
from core.errors import InvalidInput, NotAllowed
from core.models import AccessRequest, MessageRef
from core.resubmission import earlier
from core.submission import FieldModels
from handlers import access_blocks, blocks
from handlers.forms import parse_form, submission_key
from handlers.ids import ActionId, BlockId, CallbackId, field_block_id
from handlers.listeners import Ack, Listeners
from handlers.metadata import parse_decision_value
from handlers.redelivery import skip_modal

log = structlog.get_logger("jitbot.actions")

# As for the request form: the checks must fit in Slack's 3 s for a view submission's answer.
VALIDATION_BUDGET_SECONDS = 2.2

RefreshHome = Callable[[AsyncWebClient, str], Awaitable[None]]


def message_source(body: dict[str, Any]) -> MessageRef | None:
    """The message a clicked button sits on; None for a click on a view (the Home tab, a modal)."""
    container = body.get("container") or {}
    if container.get("type") == "view":
        return None
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    # Slack's direct-message conversations have ids starting with D: the clicker's DM with the bot.
    return MessageRef(channel=channel, ts=ts, direct=str(channel or "").startswith("D"))


def register(
    app: AsyncApp, config: JitConfig, engine: AccessEngine, listeners: Listeners, refresh_home: RefreshHome
) -> None:
    """Listen for Revoke now, Cancel request, Extend and the Extend modal's submission."""
    models = FieldModels()

    async def after_click(body: dict[str, Any], client: AsyncWebClient, outcome: str) -> None:
        """Edit the DM the button was on, or publish the clicker's Home again."""
        container = body.get("container") or {}
        if container.get("type") == "view":
            await refresh_home(client, body["user"]["id"])
            return
        channel, message = str(container.get("channel_id") or ""), body.get("message") or {}
        if not channel.startswith("D") or not container.get("message_ts"):
            return  # the channel message is re-rendered by the engine
        try:
            await client.chat_update(
                channel=channel,
                ts=container["message_ts"],
                text=message.get("text") or outcome,
                blocks=access_blocks.dm_outcome(message.get("blocks") or [], outcome),
            )
        except Exception:  # best effort: the action itself is done
            log.exception("dm.update_failed", channel=channel)

    async def handle_revoke_now_button(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        user = body["user"]["id"]
        request = await engine.revoke_now(parse_decision_value(action.get("value")), user, source=message_source(body))
        await after_click(body, client, _ended_outcome(request, user))

    async def handle_cancel_button(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        request = await engine.cancel(parse_decision_value(action.get("value")), body["user"]["id"])
        await after_click(body, client, f":leftwards_arrow_with_hook: You cancelled request `{request.id}`.")

    async def handle_extend_button(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, request: Any
    ) -> None:
        await ack()
        if skip_modal(request, "extend_form"):
            return  # the first delivery opened it; this trigger is spent
        # The trigger lives 3 s: check (one read, one fresh user lookup), then open the modal at once.
        holder, flow = await engine.extensions.extendable(parse_decision_value(action.get("value")), body["user"]["id"])
        label = _target_label(config, holder)
        view = access_blocks.extend_form(
            holder, flow, label, engine.extensions.durations(flow, holder), engine.extensions.time_left(flow, holder)
        )
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    async def handle_extend_form_submission(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        key = submission_key(body, view)
        if key is not None and await earlier(engine.requests, key) is not None:
            await ack()  # Slack delivered this submission again (a late ack): its extension request exists
            return
        try:
            request_id = access_blocks.parse_extend_metadata(view.get("private_metadata"))
            holder = await engine.requests.get(request_id)
            flow = config.flow(holder.flow)
        except Exception:
            first_input = next((b["block_id"] for b in view.get("blocks", []) if b.get("type") == "input"), None)
            await ack(
                response_action="errors",
                errors={first_input or BlockId.TARGET: "This form is out of date; press Extend again."},
            )
            return
        duration_block = field_block_id(flow.duration_field.name)
        values = dict((view.get("state") or {}).get("values") or {})
        # The modal has no target picker: the target is the grant's own.
        values[BlockId.TARGET] = {
            ActionId.VALUE: {"type": "static_select", "selected_option": {"value": holder.target}}
        }
        form = parse_form(flow, values, models=models)
        if form.errors or form.duration is None:
            await ack(response_action="errors", errors=form.errors or {duration_block: "Choose how much more time."})
            return
        try:
            draft = await asyncio.wait_for(
                engine.prepare_extension(request_id, user, int(form.duration.total_seconds()), form.fields),
                VALIDATION_BUDGET_SECONDS,
            )
        except InvalidInput as rejected:
            inputs = {b["block_id"] for b in view.get("blocks", []) if b.get("type") == "input"}
            errors = {
                field_block_id(k) if field_block_id(k) in inputs else duration_block: v
                for k, v in rejected.errors.items()
            }
            await ack(response_action="errors", errors=errors)
            return
        except NotAllowed as refused:
            await ack(response_action="errors", errors={duration_block: refused.user_message})
            return
        except TimeoutError:
            await ack(
                response_action="errors", errors={duration_block: "Could not check this in time; please try again."}
            )
            return
        await ack()
        await engine.submit(replace(draft, key=key))

    app.action(ActionId.REVOKE_NOW)(listeners.reported(handle_revoke_now_button, acks_at_once=True))
    app.action(ActionId.CANCEL)(listeners.reported(handle_cancel_button, acks_at_once=True))
    app.action(ActionId.EXTEND)(listeners.reported(handle_extend_button, acks_at_once=True))
    app.view(CallbackId.EXTEND_FORM)(listeners.reported(handle_extend_form_submission))


def _ended_outcome(request: AccessRequest, user: str) -> str:
    if request.status.value == "revoked":
        return f":lock: Access ended early by {blocks.who(user)}."
    return f":hourglass_flowing_sand: Ending early (asked by {blocks.who(user)}): the revocation is being retried."


def _target_label(config: JitConfig, request: AccessRequest) -> str:
    try:
        return config.flow(request.flow).target(request.target).label
    except KeyError:
        return request.target

"""The slash command: `/sym` opens the flow picker (or the only flow's form); `/sym FLOW` that flow's form;
`/sym help` and `/sym list` answer the caller alone.

Only the flows the person may ask with (`requesters:`, guests) are offered; `/sym FLOW` of another
flow is refused with the reason. What is shown may come from a cache; a submission is checked fresh.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond as Respond
from slack_sdk.web.async_client import AsyncWebClient

from core.config_models import Flow, JitConfig
from core.engine import AccessEngine
from core.errors import NotAllowed
from handlers import blocks, commands_help
from handlers.listeners import Ack, Listeners
from handlers.redelivery import skip_modal

# The slash command's ack and views.open share Slack's 3 s: who may use a flow is looked up within this.
VISIBILITY_BUDGET_SECONDS = 1.5


def register(app: AsyncApp, config: JitConfig, engine: AccessEngine, listeners: Listeners) -> None:
    """Listen for the configured command (`slack.command`, default /sym; docs/configuration.md)."""

    async def handle_request_command(
        ack: Ack, body: dict[str, Any], client: AsyncWebClient, request: Any, respond: Respond
    ) -> None:
        # Acked before anything else runs (`acks_at_once`), like a bare Bolt app: under a burst of
        # /sym the ack no longer waits for the visibility lookups. Text answers go by response_url,
        # which Slack shows to the caller alone, as it would an ack's text.
        await ack()
        text = (body.get("text") or "").strip()
        channel = body.get("channel_id")
        user = body.get("user_id") or ""
        if text.lower() in commands_help.SUBCOMMANDS:
            if text.lower() == "help":
                await respond(text=commands_help.help_text(config), response_type="ephemeral")
            else:
                await respond(text=await commands_help.list_text(config, engine, user), response_type="ephemeral")
            return
        if text:
            flow = next((f for f in config.flows if f.name == text), None)
            if flow is None:
                names = ", ".join(f"`{f.name}`" for f in await _visible(engine, config.flows, user))
                await respond(
                    text=f"There is no flow named `{blocks.escape(_shorten(text))}`. Available: {names or 'none'}.",
                    response_type="ephemeral",
                )
                return
            refusal = await _refusal(engine, flow, user)
            if refusal is not None:
                await respond(text=f":no_entry: {blocks.escape(refusal)}", response_type="ephemeral")
                return
            view = blocks.request_form(flow, channel)
        else:
            visible = await _visible(engine, config.flows, user)
            if not visible:
                await respond(
                    text=":no_entry: There is no access flow you may request; ask the jitbot operators.",
                    response_type="ephemeral",
                )
                return
            view = (
                blocks.request_form(visible[0], channel) if len(visible) == 1 else blocks.flow_picker(visible, channel)
            )
        if skip_modal(request, "request_form"):
            return  # the first delivery opened it; this trigger is spent
        # The trigger_id lives 3 seconds: open the modal before any other I/O.
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    app.command(config.slack.command)(listeners.reported(handle_request_command, acks_at_once=True))


async def _refusal(engine: AccessEngine, flow: Flow, user: str) -> str | None:
    """Why `user` may not ask with `flow` (display only: the submission is checked again, fresh)."""
    try:
        await asyncio.wait_for(engine.may_request(flow.name, user, fresh=False), VISIBILITY_BUDGET_SECONDS)
    except NotAllowed as refused:
        return refused.user_message
    except TimeoutError:
        return "Could not check with Slack in time whether you may use this flow; try again."
    return None


async def _visible(engine: AccessEngine, flows: list[Flow], user: str) -> list[Flow]:
    """The flows `user` may ask with, in file order: the others are not shown in the picker."""
    refusals = await asyncio.gather(*(_refusal(engine, flow, user) for flow in flows))
    return [flow for flow, refusal in zip(flows, refusals, strict=True) if refusal is None]


def _shorten(text: str, limit: int = 40) -> str:
    # Whatever was typed after the command is echoed back; a pasted page must not come back whole.
    return text if len(text) <= limit else text[:limit] + "…"

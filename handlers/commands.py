"""The slash command: `/sym` opens the flow picker (or the only flow's form); `/sym FLOW` that flow's form;
`/sym help` and `/sym list` answer the caller alone."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from core.config_models import JitConfig
from core.engine import AccessEngine
from handlers import blocks, commands_help
from handlers.listeners import Ack, Listeners


def register(app: AsyncApp, config: JitConfig, engine: AccessEngine, listeners: Listeners) -> None:
    """Listen for the configured command (`slack.command`, default /sym; docs/configuration.md)."""

    async def handle_request_command(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        text = (body.get("text") or "").strip()
        channel = body.get("channel_id")
        if text.lower() in commands_help.SUBCOMMANDS:
            # The ack payload is shown to the person as an ephemeral message.
            if text.lower() == "help":
                await ack(text=commands_help.help_text(config))
            else:
                await ack(text=await commands_help.list_text(config, engine, body["user_id"]))
            return
        if text:
            flow = next((f for f in config.flows if f.name == text), None)
            if flow is None:
                names = ", ".join(f"`{f.name}`" for f in config.flows)
                # The ack payload is shown to the person as an ephemeral message.
                await ack(text=f"There is no flow named `{blocks.escape(_shorten(text))}`. Available: {names}.")
                return
            view = blocks.request_form(flow, channel)
        elif len(config.flows) == 1:
            view = blocks.request_form(config.flows[0], channel)
        else:
            view = blocks.flow_picker(config.flows, channel)
        await ack()
        # The trigger_id lives 3 seconds: open the modal before any other I/O.
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    app.command(config.slack.command)(listeners.reported(handle_request_command))


def _shorten(text: str, limit: int = 40) -> str:
    # Whatever was typed after the command is echoed back; a pasted page must not come back whole.
    return text if len(text) <= limit else text[:limit] + "…"

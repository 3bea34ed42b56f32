"""The single error handler: known errors become an ephemeral reason; unknown ones get an error id."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from slack_bolt.error import BoltUnhandledRequestError
from slack_sdk.web.async_client import AsyncWebClient

from core.decisions import AlreadyDecided, AlreadyEnded
from core.errors import JitError
from core.secrets import SecretRegistry
from handlers import blocks

log = structlog.get_logger("jitbot.errors")


def _where(body: dict[str, Any]) -> tuple[str | None, str | None]:
    user = (body.get("user") or {}).get("id") or body.get("user_id")
    channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
    return user, channel


async def handle_error(
    error: Exception, body: dict[str, Any], client: AsyncWebClient, *, secrets: SecretRegistry
) -> None:
    """Tell the person what went wrong, in words they can act on; log the rest (scrubbed of `secrets`)."""
    if isinstance(error, BoltUnhandledRequestError):
        log.warning("slack.unhandled_request", type=body.get("type"))
        return
    user, channel = _where(body)
    if isinstance(error, AlreadyEnded):
        text = blocks.refusal_text(error.user_message)
        log.info("request.refused", user=user, reason=secrets.scrub(error.user_message))
    elif isinstance(error, AlreadyDecided):
        text = blocks.already_decided_text(error.status, error.by)
        log.info("request.refused", user=user, reason=secrets.scrub(error.user_message))
    elif isinstance(error, JitError):
        text = blocks.refusal_text(error.user_message)
        log.info("request.refused", user=user, reason=secrets.scrub(error.user_message))
    else:
        error_id = uuid.uuid4().hex[:8]
        log.exception("handler.crashed", error_id=error_id, exc_info=error)
        text = f":warning: Something went wrong (error id `{error_id}`). The jitbot operators can find it in the logs."
    if not user:
        return
    try:
        if channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=text)
        else:
            opened = await client.conversations_open(users=user)
            await client.chat_postMessage(channel=opened["channel"]["id"], text=text)
    except Exception:
        log.exception("error_report.failed", user=user)

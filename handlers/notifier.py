"""SlackNotifier: renders requests into the approval channel (edited in place), DMs and alerts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core.config_models import Flow, JitConfig
from core.errors import ChatUnavailable
from core.models import AccessRequest, RequestStatus
from core.policy_ports import Reminder
from core.ports import Alert, RequesterNotice
from core.secrets import SecretRegistry
from handlers import access_blocks, blocks, policy_blocks

log = structlog.get_logger("jitbot.notifier")


# Slack's answers that say "not now" rather than "never": the same call may succeed later.
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})


@asynccontextmanager
async def unavailable_as_chat_error() -> AsyncIterator[None]:
    """Turn a throttled or failing Slack (after the client's own retries) into core's ChatUnavailable."""
    try:
        yield
    except SlackApiError as error:
        status = getattr(error.response, "status_code", 200)
        code = error.response.get("error") if hasattr(error.response, "get") else None
        if status == 429 or status >= 500 or code in TRANSIENT_ERRORS:
            raise ChatUnavailable(f"Slack answered {code or status}") from error
        raise
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ChatUnavailable(f"Slack could not be reached ({type(error).__name__})") from error


class SlackNotifier:
    """Implements core.ports.Notifier with chat.postMessage / chat.update / conversations.open."""

    def __init__(
        self,
        client: AsyncWebClient,
        config: JitConfig,
        secrets: SecretRegistry | None = None,
        *,
        lookup: Callable[[str], Awaitable[AccessRequest]] | None = None,
    ) -> None:
        self.client = client
        # Reads a request by id (the store's get): an extension's message shows the end it extends.
        self.lookup = lookup
        self.config = config
        # The runtime's registry; without one, the registry the config was loaded with.
        self.secrets = config.secrets if secrets is None else secrets
        self._dm_channels: dict[str, str] = {}
        # Told of each request posted or edited (the App Home refresh, handlers/home_refresh.py); must not block.
        self.published: Callable[[AccessRequest], None] | None = None

    def _labels(self, request: AccessRequest) -> tuple[Flow | None, str]:
        try:
            flow = self.config.flow(request.flow)
        except KeyError:  # the flow was removed from the config since the request was made
            return None, request.target
        try:
            return flow, flow.target(request.target).label
        except KeyError:  # the target was removed from the config since the request was made
            return flow, request.target

    async def publish(self, request: AccessRequest) -> str:
        """Post the request message the first time, then edit that same message in place; `published`
        hears of every attempt, even a failed one (the request changed, whatever the channel shows)."""
        try:
            return await self._post_or_edit(request)
        finally:
            if self.published is not None:
                self.published(request)

    async def _post_or_edit(self, request: AccessRequest) -> str:
        flow, label = self._labels(request)
        text, message_blocks = access_blocks.message(request, flow, label, await self._extended_end(request))
        channel = request.approval_channel or (flow.approval_channel if flow is not None else None)
        if channel is None:  # a request stored without a channel whose flow is gone: nowhere to post
            raise ValueError(f"request {request.id} has no approval channel")
        async with unavailable_as_chat_error():
            if request.message_ts:
                await self.client.chat_update(channel=channel, ts=request.message_ts, text=text, blocks=message_blocks)
                return request.message_ts
            response = await self.client.chat_postMessage(
                channel=channel, text=text, blocks=message_blocks, unfurl_links=False, unfurl_media=False
            )
        ts: str = response["ts"]
        return ts

    async def notify_requester(
        self, request: AccessRequest, notice: RequesterNotice, detail: str | None = None
    ) -> None:
        """DM the requester (through their IM channel) about a stage of their request."""
        flow, label = self._labels(request)
        text = access_blocks.dm_text(request, notice.value, label, detail)
        if flow is not None and flow.approval_only:  # a decision was recorded; no access was granted
            text = policy_blocks.approval_only_dm(request, notice.value, label, blocks.who(request.decided_by)) or text
        dm_blocks = access_blocks.dm_blocks(request, notice.value, text)
        await self.client.chat_postMessage(
            channel=await self._dm_channel(request.requester),
            text=text,
            blocks=dm_blocks,
        )

    async def remind(self, request: AccessRequest, reminder: Reminder) -> None:
        """Reply in the thread of the request's channel message, mentioning who must decide."""
        flow, _label = self._labels(request)
        channel = request.approval_channel or (flow.approval_channel if flow is not None else None)
        if channel is None or request.message_ts is None:
            raise ValueError(f"request {request.id} has no channel message to reply under")
        text = policy_blocks.reminder_text(request, reminder)
        await self.client.chat_postMessage(
            channel=channel,
            thread_ts=request.message_ts,
            text=text,
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            unfurl_links=False,
            unfurl_media=False,
        )

    async def alert(self, alert: Alert) -> None:
        """Post to the alerts channel when one is configured; always log.

        The alert may quote a hook's error or a requester's reason, so its text is escaped like any
        other text: a `<!channel>` or a `<https://…|link>` in it reaches Slack as plain characters.
        """
        text = self.secrets.scrub(str(alert))
        log.warning("alert", text=text, request_id=alert.request.id if alert.request else None)
        channel = self.config.slack.alerts_channel
        if channel:
            await self.client.chat_postMessage(
                channel=channel,
                text=self.secrets.scrub(blocks.alert_text(alert)),
                unfurl_links=False,
                unfurl_media=False,
            )

    async def _extended_end(self, request: AccessRequest) -> datetime | None:
        """The current end of the grant a pending extension request extends (display only)."""
        if request.extends is None or request.status is not RequestStatus.PENDING or self.lookup is None:
            return None
        try:
            return (await self.lookup(request.extends)).expires_at
        except Exception:
            log.warning("extension.lookup_failed", request_id=request.id, extends=request.extends)
            return None

    async def _dm_channel(self, user: str) -> str:
        channel = self._dm_channels.get(user)
        if channel is None:
            response = await self.client.conversations_open(users=user)
            channel = response["channel"]["id"]
            self._dm_channels[user] = channel
        return channel

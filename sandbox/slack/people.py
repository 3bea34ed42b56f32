"""What a person does in Slack (a slash command, a click, a modal submit), turned into Socket Mode envelopes."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from .blocks_validator import validate_message_blocks
from .errors import EmulatorUsageError, SlackError
from .methods import checked_view, push_view
from .models import EnvelopeResult, Message, View
from .view_state import action_payload, build_submission_state, element_state, find_element
from .web_api import ResponseUrl


class PeopleMixin:
    """Person-level helpers of SlackEmulator; each awaits the bot's ack and returns an EnvelopeResult."""

    # -- envelopes -----------------------------------------------------------------------------

    async def send_envelope(
        self, type: str, payload: dict, *, accepts_response_payload: bool = True, **extra: Any
    ) -> EnvelopeResult:
        """Deliver a hand-built envelope (`extra` adds top-level keys such as retry_attempt)."""
        envelope = {
            "envelope_id": str(uuid.uuid4()),
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            **extra,
        }
        return await self._deliver(envelope)

    async def send_event(self, event: dict, *, retry_attempt: int = 0, retry_reason: str = "") -> EnvelopeResult:
        """Deliver an Events API `event_callback` wrapping `event`."""
        payload = {
            "token": "emulator-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(self.workspace.now().timestamp()),
            "authorizations": [{"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}],
        }
        return await self.send_envelope(
            "events_api",
            payload,
            accepts_response_payload=False,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )

    async def redeliver(
        self, result: EnvelopeResult, *, retry_attempt: int = 1, retry_reason: str = "timeout"
    ) -> EnvelopeResult:
        """Send an envelope's payload again, marked as Slack's retry number `retry_attempt`."""
        envelope = copy.deepcopy(result.envelope)
        envelope.update(envelope_id=str(uuid.uuid4()), retry_attempt=retry_attempt, retry_reason=retry_reason)
        return await self._deliver(envelope)

    async def _deliver(self, envelope: dict) -> EnvelopeResult:
        result = await self.socket.deliver(envelope)
        payload = envelope["payload"]
        if envelope["type"] == "slash_commands":
            self._apply_slash_ack(payload, result)
        elif payload.get("type") == "view_submission":
            view = self.workspace.views.get(payload["view"]["id"])
            if view is not None and view.is_open:
                result.view = self._apply_submission_ack(view, result)
        elif payload.get("type") in ("block_actions", "view_closed") and payload.get("view"):
            result.view = self.workspace.views.get(payload["view"]["id"])
        return result

    # -- slash commands ----------------------------------------------------------------------------

    async def slash_command(
        self, *, user: str, command: str = "/sym", text: str = "", channel: str | None = None
    ) -> EnvelopeResult:
        """`user` types `command text` in `channel` (default: their DM with the bot); issues a fresh trigger_id."""
        person = self._person(user)
        conversation = self._conversation(channel or person.id, person.id)
        payload = {
            "token": "emulator-verification-token",
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": conversation.id,
            "channel_name": "directmessage" if conversation.is_im else conversation.name,
            "user_id": person.id,
            "user_name": person.name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": self._response_url(conversation.id, person.id, None),
            "trigger_id": self.workspace.issue_trigger(person.id),
        }
        return await self.send_envelope("slash_commands", payload)

    def _apply_slash_ack(self, payload: dict, result: EnvelopeResult) -> None:
        body = result.ack_payload
        if not (body.get("text") or body.get("blocks")):
            return
        problems = validate_message_blocks(body["blocks"]) if "blocks" in body else []
        if problems:
            self.record_problem("invalid_ack", f"slash command ack blocks: {'; '.join(problems)}")
            return
        channel, user = payload["channel_id"], payload["user_id"]
        if body.get("response_type") == "in_channel":
            self.workspace.post_message(
                self.workspace.resolve_channel(channel),
                text=body.get("text"),
                blocks=body.get("blocks") or [],
                attachments=[],
            )
        else:
            self.workspace.add_ephemeral(
                channel, user, text=body.get("text"), blocks=body.get("blocks") or [], source="slash_command_ack"
            )

    # -- messages ----------------------------------------------------------------------------------

    async def click(
        self,
        channel: str | Message,
        ts: str | None = None,
        *,
        user: str,
        text: str | None = None,
        action_id: str | None = None,
        block_id: str | None = None,
    ) -> EnvelopeResult:
        """`user` clicks the button (found by label `text` or `action_id`) on the stored message at (channel, ts)."""
        message = self._stored_message(channel, ts)
        person = self._person(user)
        conversation = self._conversation(message.channel, person.id)
        where = f"message {message.channel}/{message.ts}"
        block, element = find_element(
            message.blocks, action_id=action_id, text=text, block_id=block_id, types=("button",), where=where
        )
        payload = {
            **self._interaction_base(person.id, "block_actions"),
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": conversation.id,
                "is_ephemeral": False,
            },
            "channel": {"id": conversation.id, "name": "directmessage" if conversation.is_im else conversation.name},
            "message": message.to_api(self.team_id),
            "state": {"values": {}},
            "response_url": self._response_url(conversation.id, person.id, message.ts),
            "actions": [action_payload(block, element, None, self.workspace.next_ts(), where)],
        }
        return await self.send_envelope("interactive", payload)

    # -- views -------------------------------------------------------------------------------------

    async def submit_view(
        self, view: View | str, values: dict[str, Any] | None = None, *, user: str | None = None
    ) -> EnvelopeResult:
        """Fill the open view's inputs (`values` by block_id or action_id; others keep their value) and submit."""
        target = self._open_view(view, user)
        if target.payload.get("submit") is None:
            raise EmulatorUsageError(f"{target!r} has no submit button")
        target.state_values = {**target.state_values, **build_submission_state(target, values or {})}
        self.workspace.changed()
        payload = {
            **self._interaction_base(target.user, "view_submission"),
            "view": self.view_api(target),
            "response_urls": [],
        }
        return await self.send_envelope("interactive", payload)

    async def select_in_view(
        self, view: View | str, action_id: str, value: Any, user: str | None = None, *, block_id: str | None = None
    ) -> EnvelopeResult:
        """Pick `value` in a select (or other element) of an open view, sending block_actions as Slack does."""
        target = self._open_view(view, user)
        where = f"view {target.id}"
        block, element = find_element(target.blocks, action_id=action_id, block_id=block_id, where=where)
        if element.get("type") == "button":
            raise EmulatorUsageError(f"{where}: {action_id!r} is a button; use click_in_view")
        if block.get("type") == "input" and not block.get("dispatch_action"):
            raise EmulatorUsageError(
                f"{where}: input {block['block_id']!r} has no dispatch_action, so Slack sends no block_actions "
                "when it changes; pass the value to submit_view instead"
            )
        entry = element_state(element, value, where)
        target.state_values.setdefault(block["block_id"], {})[element["action_id"]] = entry
        self.workspace.changed()
        return await self._view_action(target, block, element, value)

    async def click_in_view(
        self, view: View | str, *, text: str | None = None, action_id: str | None = None, user: str | None = None
    ) -> EnvelopeResult:
        """Click a button inside an open view."""
        target = self._open_view(view, user)
        block, element = find_element(
            target.blocks, action_id=action_id, text=text, types=("button",), where=f"view {target.id}"
        )
        return await self._view_action(target, block, element, None)

    async def _view_action(self, view: View, block: dict, element: dict, value: Any) -> EnvelopeResult:
        payload = {
            **self._interaction_base(view.user, "block_actions"),
            "container": {"type": "view", "view_id": view.id},
            "view": self.view_api(view),
            "actions": [action_payload(block, element, value, self.workspace.next_ts(), f"view {view.id}")],
        }
        return await self.send_envelope("interactive", payload)

    async def close_view(self, view: View | str, user: str | None = None) -> EnvelopeResult | None:
        """The person closes the view; returns the view_closed result, or None when the bot did not ask for one."""
        target = self._open_view(view, user)
        cleared = target.clear_on_close
        payload = {
            **self._interaction_base(target.user, "view_closed"),
            "view": self.view_api(target),
            "is_cleared": cleared,
        }
        payload.pop("trigger_id")
        if cleared:
            self.workspace.close_all_views(target.user, "closed_by_user")
        else:
            self.workspace.close_view(target, "closed_by_user")
        if not target.notify_on_close:
            return None
        return await self.send_envelope("interactive", payload)

    def _apply_submission_ack(self, view: View, result: EnvelopeResult) -> View | None:
        """Do what the view_submission ack asks for; returns the view the person now sees (None if closed)."""
        body, action = result.ack_payload, result.response_action
        try:
            if action is None:
                if body:
                    self.record_problem("invalid_ack", f"view_submission ack without response_action: {body}")
                    return view
                self.workspace.close_view(view, "submitted")
            elif action == "errors":
                errors = body.get("errors")
                inputs = {b["block_id"] for b in view.blocks if b.get("type") == "input"}
                if not isinstance(errors, dict) or not errors or not set(errors) <= inputs:
                    self.record_problem("invalid_ack", f"errors must name input block_ids {sorted(inputs)}: {errors}")
                view.errors_history.append(dict(errors or {}))
                self.workspace.changed()
                return view
            elif action == "update":
                return self.workspace.replace_view(view, checked_view(body.get("view"), from_args=False))
            elif action == "push":
                return push_view(self, view.user, checked_view(body.get("view"), from_args=False))
            elif action == "clear":
                self.workspace.close_all_views(view.user, "cleared")
            else:
                self.record_problem("invalid_ack", f"unknown response_action {action!r}")
                return view
        except SlackError as error:
            self.record_problem("invalid_ack", f"response_action {action}: {error.error} {error.messages}")
            return view
        stack = self.workspace.open_views(view.user)
        return stack[-1] if stack else None

    # -- helpers -----------------------------------------------------------------------------------

    def _interaction_base(self, user_id: str, kind: str) -> dict:
        person = self._person(user_id)
        return {
            "type": kind,
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": person.id, "username": person.name, "name": person.name, "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "emulator-verification-token",
            "trigger_id": self.workspace.issue_trigger(person.id),
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _person(self, user_id: str):
        if user_id not in self.workspace.users:
            raise EmulatorUsageError(f"no user {user_id!r}; known: {sorted(self.workspace.users)} (use add_user)")
        return self.workspace.users[user_id]

    def _conversation(self, channel_id: str, user_id: str):
        try:
            conversation = self.workspace.resolve_channel(channel_id)
        except SlackError:
            raise EmulatorUsageError(f"no channel {channel_id!r}; known: {sorted(self.workspace.channels)}") from None
        if not conversation.has_member(user_id):
            raise EmulatorUsageError(f"{user_id} is not a member of {conversation.id}, so cannot act there")
        return conversation

    def _stored_message(self, channel: str | Message, ts: str | None) -> Message:
        if isinstance(channel, Message):
            channel, ts = channel.channel, channel.ts
        conversation = self._conversation_id(channel)
        message = self.workspace.find_message(conversation, ts or "")
        if message is None:
            stored = [m.ts for m in self.workspace.messages.get(conversation, []) if not m.deleted]
            raise EmulatorUsageError(f"no message {ts!r} in {conversation}; stored: {stored}")
        return message

    def _conversation_id(self, channel: str) -> str:
        try:
            return self.workspace.resolve_channel(channel).id
        except SlackError:
            raise EmulatorUsageError(f"no channel {channel!r}; known: {sorted(self.workspace.channels)}") from None

    def _open_view(self, view: View | str, user: str | None) -> View:
        view_id = view.id if isinstance(view, View) else view
        target = self.workspace.views.get(view_id)
        if target is None:
            raise EmulatorUsageError(f"no view {view_id!r}; known: {sorted(self.workspace.views)}")
        if not target.is_open:
            raise EmulatorUsageError(f"{target!r} is no longer open")
        if user is not None and user != target.user:
            raise EmulatorUsageError(f"{target!r} belongs to {target.user}, not {user}")
        return target

    def _response_url(self, channel: str, user: str, message_ts: str | None) -> str:
        response_id = uuid.uuid4().hex
        self.response_urls[response_id] = ResponseUrl(channel=channel, user=user, message_ts=message_ts)
        return f"{self.base_url}/response/{response_id}"

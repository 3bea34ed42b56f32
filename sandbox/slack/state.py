"""The emulated workspace: directory, conversations, messages, views and triggers, plus change signals."""

from __future__ import annotations

import asyncio
import copy
import inspect
import itertools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import SlackError, WaitTimeout
from .models import Channel, Ephemeral, Message, MessageVersion, User, Usergroup, View, interactive_elements


class _UtcClock:
    """Wall-clock time; tests inject anything with `now() -> datetime` instead."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Trigger:
    """A trigger_id handed to the bot with an interaction."""

    id: str
    user: str
    issued_at: datetime
    used: bool = False


class Workspace:
    """All state a test can inspect; every mutation wakes up `wait_for`."""

    def __init__(self, *, team_id: str, bot_user_id: str, bot_id: str, clock: Any = None, trigger_ttl: float = 3.0):
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.clock = clock or _UtcClock()
        self.trigger_ttl = timedelta(seconds=trigger_ttl)
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.usergroups: dict[str, Usergroup] = {}
        self.messages: dict[str, list[Message]] = {}
        self.ephemerals: list[Ephemeral] = []
        self.views: dict[str, View] = {}
        self.view_stacks: dict[str, list[str]] = {}
        self.homes: dict[str, View] = {}  # each user's published Home tab
        self.triggers: dict[str, Trigger] = {}
        self._last_micros = 0
        self._ids = itertools.count(1)
        self._change = asyncio.Event()
        self.version = 0

    # -- change signalling -----------------------------------------------------------------

    def changed(self) -> None:
        """Wake everything waiting in `wait_for` so it re-checks its condition."""
        self.version += 1
        event, self._change = self._change, asyncio.Event()
        event.set()

    async def wait_for(self, condition: Callable[[], Any], timeout: float, describe: Callable[[], str]) -> Any:
        """Return the first truthy value of `condition()`, re-checked on each change, or raise WaitTimeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._change
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise WaitTimeout(f"timed out after {timeout}s waiting for {describe()}")
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    # -- ids and time --------------------------------------------------------------------------

    def now(self) -> datetime:
        """The emulator clock's current time."""
        return self.clock.now()

    def next_ts(self) -> str:
        """A unique, increasing Slack timestamp "<epoch>.<6 digits>" taken from the clock."""
        micros = max(int(self.now().timestamp() * 1_000_000), self._last_micros + 1)
        self._last_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def next_id(self, prefix: str) -> str:
        """A unique Slack-looking id such as V000000007."""
        return f"{prefix}{next(self._ids):09d}"

    # -- directory -------------------------------------------------------------------------------

    def add_user(self, user: User) -> User:
        """Add or replace a member."""
        self.users[user.id] = user
        self.changed()
        return user

    def add_channel(self, channel: Channel) -> Channel:
        """Add or replace a conversation."""
        self.channels[channel.id] = channel
        self.messages.setdefault(channel.id, [])
        self.changed()
        return channel

    def add_usergroup(self, group: Usergroup) -> Usergroup:
        """Add or replace a user group."""
        self.usergroups[group.id] = group
        self.changed()
        return group

    def user(self, user_id: str) -> User:
        """The user with this id, or SlackError user_not_found."""
        if user_id not in self.users:
            raise SlackError("user_not_found")
        return self.users[user_id]

    @staticmethod
    def im_id(user_id: str) -> str:
        """The stable id of the DM channel with `user_id` (U_ALICE -> D_ALICE)."""
        return "D" + user_id[1:]

    def im_for(self, user_id: str) -> Channel:
        """The stable DM channel between the bot and `user_id` (created on first use)."""
        user = self.user(user_id)
        channel_id = self.im_id(user.id)
        if channel_id not in self.channels:
            self.add_channel(Channel(id=channel_id, name=user.name, im_user=user.id))
        return self.channels[channel_id]

    def resolve_channel(self, channel_id: str, *, allow_user: bool = True, allow_name: bool = False) -> Channel:
        """The conversation `channel_id` names; a user id means the DM, `#name` a channel (chat.post* only)."""
        if channel_id in self.channels:
            return self.channels[channel_id]
        if allow_user and channel_id in self.users:
            return self.im_for(channel_id)
        if allow_name:
            for channel in self.channels.values():
                if not channel.is_im and channel.name == channel_id.removeprefix("#"):
                    return channel
        raise SlackError("channel_not_found")

    # -- messages ------------------------------------------------------------------------------

    def post_message(
        self,
        channel: Channel,
        *,
        text: str | None,
        blocks: list[dict],
        attachments: list[dict],
        thread_ts: str | None = None,
        metadata: dict | None = None,
    ) -> Message:
        """Store a new bot message with a fresh ts."""
        message = Message(
            channel=channel.id,
            ts=self.next_ts(),
            text=text,
            blocks=fill_ids(blocks),
            user=self.bot_user_id,
            bot_id=self.bot_id,
            posted_at=self.now(),
            attachments=attachments,
            thread_ts=thread_ts,
            metadata=metadata,
        )
        self.messages.setdefault(channel.id, []).append(message)
        self.changed()
        return message

    def find_message(self, channel_id: str, ts: str) -> Message | None:
        """The live message at (channel, ts), if any."""
        for message in self.messages.get(channel_id, []):
            if message.ts == ts and not message.deleted:
                return message
        return None

    def edit_message(
        self, message: Message, *, text: str | None, blocks: list[dict] | None, attachments: list[dict] | None, via: str
    ) -> Message:
        """Replace a message's content in place, keeping the old version in its history."""
        message.history.append(
            MessageVersion(
                text=message.text,
                blocks=copy.deepcopy(message.blocks),
                attachments=copy.deepcopy(message.attachments),
                replaced_at=self.now(),
                via=via,
            )
        )
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = fill_ids(blocks)
        if attachments is not None:
            message.attachments = attachments
        self.changed()
        return message

    def delete_message(self, message: Message) -> None:
        """Mark a message deleted (it leaves every query)."""
        message.deleted = True
        self.changed()

    def add_ephemeral(
        self, channel_id: str, user_id: str, *, text: str | None, blocks: list[dict], source: str
    ) -> Ephemeral:
        """Record an ephemeral message to one user."""
        ephemeral = Ephemeral(
            channel=channel_id,
            user=user_id,
            ts=self.next_ts(),
            text=text,
            blocks=fill_ids(blocks),
            source=source,
            posted_at=self.now(),
        )
        self.ephemerals.append(ephemeral)
        self.changed()
        return ephemeral

    # -- triggers --------------------------------------------------------------------------

    def issue_trigger(self, user_id: str) -> str:
        """A fresh single-use trigger_id for `user_id`, valid for `trigger_ttl`."""
        trigger_id = f"{next(self._ids)}.{abs(hash(self.team_id)) % 10**11}.{uuid.uuid4().hex}"
        self.triggers[trigger_id] = Trigger(trigger_id, user_id, self.now())
        return trigger_id

    def redeem_trigger(self, trigger_id: Any) -> Trigger:
        """Use a trigger once, or raise the error code Slack gives for an unusable one."""
        trigger = self.triggers.get(trigger_id) if isinstance(trigger_id, str) else None
        if trigger is None:
            raise SlackError(
                "invalid_trigger_id", ["[ERROR] invalid `trigger_id` [json-pointer:/trigger_id]"], rejection=True
            )
        if trigger.used:
            raise SlackError("exchanged_trigger_id", rejection=True)
        if self.now() - trigger.issued_at > self.trigger_ttl:
            raise SlackError("expired_trigger_id", rejection=True)
        trigger.used = True
        return trigger

    # -- views -----------------------------------------------------------------------------------

    def stack(self, user_id: str) -> list[str]:
        """The user's open view ids, bottom first."""
        return self.view_stacks.setdefault(user_id, [])

    def new_view(self, user_id: str, payload: dict, *, previous: View | None) -> View:
        """Open a view on top of the user's stack."""
        view_id = self.next_id("V")
        view = View(
            id=view_id,
            user=user_id,
            payload=fill_ids_in_view(payload),
            hash=self._new_hash(),
            root_view_id=previous.root_view_id if previous else view_id,
            previous_view_id=previous.id if previous else None,
        )
        self.views[view_id] = view
        self.stack(user_id).append(view_id)
        self.changed()
        return view

    def publish_home(self, user_id: str, payload: dict) -> View:
        """views.publish: the user's Home tab, replaced whole (same id, new hash); never on the modal stack."""
        current = self.homes.get(user_id)
        if current is None:
            view_id = self.next_id("V")
            current = View(id=view_id, user=user_id, payload={}, hash="", root_view_id=view_id)
            self.homes[user_id] = self.views[view_id] = current
        else:
            current.history.append(copy.deepcopy(current.payload))
        current.payload = fill_ids_in_view(payload)
        current.hash = self._new_hash()
        self.changed()
        return current

    def replace_view(self, view: View, payload: dict) -> View:
        """views.update / response_action update: new content, same id, new hash; keep matching input state."""
        view.history.append(copy.deepcopy(view.payload))
        view.payload = fill_ids_in_view(payload)
        view.hash = self._new_hash()
        # Slack keeps what the person entered in elements whose block_id and action_id survive the update.
        still_there = {(b.get("block_id"), e.get("action_id")) for b, e in interactive_elements(view.blocks)}
        kept: dict[str, dict[str, dict]] = {}
        for block_id, actions in view.state_values.items():
            for action_id, value in actions.items():
                if (block_id, action_id) in still_there:
                    kept.setdefault(block_id, {})[action_id] = value
        view.state_values = kept
        self.changed()
        return view

    def close_view(self, view: View, how: str) -> None:
        """Close one view (and take it off its user's stack)."""
        if view.is_open:
            view.is_open = False
            view.closed_how = how
            stack = self.stack(view.user)
            if view.id in stack:
                stack.remove(view.id)
            self.changed()

    def close_all_views(self, user_id: str, how: str) -> None:
        """Close the user's whole view stack."""
        for view_id in list(reversed(self.stack(user_id))):
            self.close_view(self.views[view_id], how)

    def open_views(self, user_id: str) -> list[View]:
        """The user's open views, bottom first."""
        return [self.views[v] for v in self.stack(user_id)]

    def find_view(self, view_id: str | None = None, external_id: str | None = None) -> View | None:
        """A view by id (any state), or an open view by external_id."""
        if view_id:
            return self.views.get(view_id)
        for view in self.views.values():
            if external_id and view.external_id == external_id and view.is_open:
                return view
        return None

    def _new_hash(self) -> str:
        return f"{int(self.now().timestamp())}.{uuid.uuid4().hex[:10]}"


def fill_ids(blocks: Iterable[dict]) -> list[dict]:
    """Copy `blocks` with generated block_id / action_id where the bot gave none, as Slack does."""
    filled = copy.deepcopy(list(blocks))
    for block in filled:
        if not isinstance(block, dict):
            continue
        block.setdefault("block_id", uuid.uuid4().hex[:5])
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict):
                elements.append(block[key])
        for element in elements:
            if isinstance(element, dict) and element.get("type") not in ("image", None):
                element.setdefault("action_id", uuid.uuid4().hex[:5])
    return filled


def fill_ids_in_view(payload: dict) -> dict:
    """Copy a view payload with generated ids filled into its blocks."""
    view = copy.deepcopy(payload)
    view["blocks"] = fill_ids(view.get("blocks") or [])
    return view

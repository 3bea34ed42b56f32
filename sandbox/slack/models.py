"""Records the emulator keeps: directory, messages, views, calls, envelopes, problems."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class User:
    """A workspace member as users.info shows it."""

    id: str
    name: str
    email: str | None = None
    real_name: str = ""
    is_bot: bool = False
    deleted: bool = False
    is_restricted: bool = False  # a multi-channel guest
    is_ultra_restricted: bool = False  # a single-channel guest
    is_stranger: bool = False  # a Slack Connect user from another organisation
    team_id: str | None = None  # their home workspace, when it is not the emulator's

    def to_api(self, team_id: str) -> dict[str, Any]:
        """Return the `user` object of users.info."""
        real_name = self.real_name or self.name
        profile: dict[str, Any] = {"real_name": real_name, "display_name": self.name}
        if self.email is not None:
            profile["email"] = self.email
        return {
            "id": self.id,
            "team_id": self.team_id or team_id,
            "name": self.name,
            "real_name": real_name,
            "deleted": self.deleted,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "is_restricted": self.is_restricted or self.is_ultra_restricted,
            "is_ultra_restricted": self.is_ultra_restricted,
            **({"is_stranger": True} if self.is_stranger else {}),
            "tz": "UTC",
            "profile": profile,
        }


@dataclass
class Channel:
    """A conversation; `members=None` means everyone is a member."""

    id: str
    name: str
    is_private: bool = False
    members: set[str] | None = None
    bot_is_member: bool = True
    is_archived: bool = False
    im_user: str | None = None

    @property
    def is_im(self) -> bool:
        """True for a direct-message channel."""
        return self.im_user is not None

    def has_member(self, user_id: str) -> bool:
        """Whether `user_id` can see this conversation."""
        if self.im_user is not None:
            return user_id == self.im_user
        return self.members is None or user_id in self.members

    def to_api(self) -> dict[str, Any]:
        """Return the `channel` object of conversations.info."""
        if self.is_im:
            return {"id": self.id, "is_im": True, "user": self.im_user, "is_open": True}
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_member": self.bot_is_member,
        }


@dataclass
class Usergroup:
    """A user group (subteam) and its members."""

    id: str
    handle: str
    users: list[str] = field(default_factory=list)
    name: str = ""


@dataclass
class MessageVersion:
    """A message's content before an edit."""

    text: str | None
    blocks: list[dict]
    attachments: list[dict]
    replaced_at: datetime
    via: str


@dataclass
class Message:
    """A message stored in a channel; `history` holds earlier versions, oldest first."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict]
    user: str
    bot_id: str | None
    posted_at: datetime
    attachments: list[dict] = field(default_factory=list)
    thread_ts: str | None = None
    metadata: dict | None = None
    history: list[MessageVersion] = field(default_factory=list)
    deleted: bool = False

    @property
    def edited(self) -> bool:
        """True once chat.update (or a response_url replace) changed it."""
        return bool(self.history)

    @property
    def plain(self) -> str:
        """The text plus every text inside its blocks, newline-joined (for `contains` checks)."""
        return "\n".join([self.text or "", *block_texts(self.blocks)])

    @property
    def buttons(self) -> list[dict]:
        """Every button element in the message, in order."""
        return [el for _, el in interactive_elements(self.blocks) if el.get("type") == "button"]

    @property
    def button_texts(self) -> list[str]:
        """The labels of its buttons."""
        return [b.get("text", {}).get("text", "") for b in self.buttons]

    def to_api(self, team_id: str) -> dict[str, Any]:
        """Return the message as Slack sends it in payloads and API answers."""
        body: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "ts": self.ts,
            "text": self.text or "",
            "team": team_id,
            "blocks": copy.deepcopy(self.blocks),
        }
        if self.bot_id:
            body["bot_id"] = self.bot_id
        if self.attachments:
            body["attachments"] = copy.deepcopy(self.attachments)
        if self.thread_ts:
            body["thread_ts"] = self.thread_ts
        if self.history:
            body["edited"] = {"user": self.user, "ts": self.ts}
        return body

    def __repr__(self) -> str:
        edited = f", edited x{len(self.history)}" if self.history else ""
        return f"Message({self.channel} {self.ts}{edited}: {_short(self.plain)!r}, buttons={self.button_texts})"


@dataclass
class Ephemeral:
    """A message only `user` sees (chat.postEphemeral, a slash-command ack, a response_url reply)."""

    channel: str
    user: str
    ts: str
    text: str | None
    blocks: list[dict]
    source: str
    posted_at: datetime

    @property
    def plain(self) -> str:
        """The text plus every text inside its blocks."""
        return "\n".join([self.text or "", *block_texts(self.blocks)])

    def __repr__(self) -> str:
        return f"Ephemeral(to {self.user} in {self.channel} via {self.source}: {_short(self.plain)!r})"


@dataclass
class View:
    """A modal a user has (or had) open; `payload` is the view as the bot sent it, ids filled in."""

    id: str
    user: str
    payload: dict
    hash: str
    root_view_id: str
    previous_view_id: str | None = None
    state_values: dict[str, dict[str, dict]] = field(default_factory=dict)
    is_open: bool = True
    closed_how: str | None = None
    history: list[dict] = field(default_factory=list)
    errors_history: list[dict[str, str]] = field(default_factory=list)

    title = property(lambda self: self.payload.get("title", {}).get("text", ""), doc="The title text.")
    callback_id = property(lambda self: self.payload.get("callback_id", ""), doc="The callback_id.")
    external_id = property(lambda self: self.payload.get("external_id", ""), doc="The external_id.")
    private_metadata = property(lambda self: self.payload.get("private_metadata", ""), doc="Metadata.")
    blocks = property(lambda self: self.payload.get("blocks", []), doc="The view's blocks.")
    notify_on_close = property(lambda self: bool(self.payload.get("notify_on_close")), doc="Flag.")
    clear_on_close = property(lambda self: bool(self.payload.get("clear_on_close")), doc="Flag.")

    @property
    def errors(self) -> dict[str, str]:
        """The errors of the latest `response_action: errors` ack ({} if none)."""
        return self.errors_history[-1] if self.errors_history else {}

    @property
    def plain(self) -> str:
        """The title plus every text in its blocks."""
        return "\n".join([self.title, *block_texts(self.blocks)])

    def to_api(self, *, team_id: str, app_id: str, bot_id: str) -> dict[str, Any]:
        """Return the view object of views.* answers and interactive payloads."""
        body = copy.deepcopy(self.payload)
        body.setdefault("private_metadata", "")
        body.setdefault("callback_id", "")
        body.setdefault("external_id", "")
        body.setdefault("clear_on_close", False)
        body.setdefault("notify_on_close", False)
        body.update(
            id=self.id,
            team_id=team_id,
            state={"values": copy.deepcopy(self.state_values)},
            hash=self.hash,
            root_view_id=self.root_view_id,
            previous_view_id=self.previous_view_id,
            app_id=app_id,
            app_installed_team_id=team_id,
            bot_id=bot_id,
        )
        return body

    def __repr__(self) -> str:
        state = "open" if self.is_open else f"closed({self.closed_how})"
        return f"View({self.id} {state} for {self.user}: {self.title!r} callback_id={self.callback_id!r})"


@dataclass
class Call:
    """One Web API request the bot made, and what the emulator answered."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    time: datetime
    http_method: str
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)
    fault: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the answer was `ok: true`."""
        return bool(self.response.get("ok"))

    def __repr__(self) -> str:
        outcome = "ok" if self.ok else f"error={self.response.get('error')!r}"
        return f"Call({self.method} {outcome}, args={sorted(self.args)})"


@dataclass
class EnvelopeResult:
    """An envelope pushed to the bot and how it was acknowledged."""

    envelope: dict
    connection_id: int | None = None
    ack: dict | None = None
    latency: float | None = None
    view: View | None = None

    envelope_id = property(lambda self: self.envelope["envelope_id"], doc="The envelope id.")
    type = property(lambda self: self.envelope["type"], doc="slash_commands, interactive, events_api.")
    payload = property(lambda self: self.envelope["payload"], doc="The payload the bot received.")
    acked = property(lambda self: self.ack is not None, doc="Whether the bot acknowledged it.")

    @property
    def ack_payload(self) -> dict:
        """The `payload` of the ack frame ({} for an empty ack)."""
        return (self.ack or {}).get("payload") or {}

    @property
    def response_action(self) -> str | None:
        """The view_submission `response_action`, if any."""
        return self.ack_payload.get("response_action")

    @property
    def errors(self) -> dict[str, str]:
        """The `errors` of a `response_action: errors` ack."""
        return self.ack_payload.get("errors") or {} if self.response_action == "errors" else {}

    @property
    def trigger_id(self) -> str | None:
        """The trigger_id the bot received with this envelope."""
        return self.payload.get("trigger_id")

    @property
    def summary(self) -> str:
        """What the person did, e.g. "/sym prod by U_ALICE" or "block_actions approve by U_BOB"."""
        payload = self.payload
        if self.type == "slash_commands":
            return f"{payload.get('command')} {payload.get('text', '')}".rstrip() + f" by {payload.get('user_id')}"
        if self.type == "interactive":
            user = (payload.get("user") or {}).get("id")
            if payload.get("type") == "block_actions":
                actions = ",".join(str(a.get("action_id")) for a in payload.get("actions", []))
                return f"block_actions {actions} by {user}"
            callback_id = (payload.get("view") or {}).get("callback_id")
            return f"{payload.get('type')} callback_id={callback_id!r} by {user}"
        return f"{self.type} {(payload.get('event') or {}).get('type', '')}".rstrip()

    def __repr__(self) -> str:
        retry = f", retry {self.envelope['retry_attempt']}" if self.envelope.get("retry_attempt") else ""
        if self.ack is None:
            return f"EnvelopeResult({self.summary}{retry}, NOT acked)"
        return (
            f"EnvelopeResult({self.summary}{retry}, acked in {self.latency * 1000:.0f} ms, "
            f"ack_payload={self.ack_payload})"
        )


@dataclass
class Problem:
    """Something the bot did that real Slack would refuse or report; fails the test unless expected."""

    kind: str  # "unacked", "rejected", "unknown_method", "invalid_ack"
    detail: str


def block_texts(blocks: list[dict]) -> list[str]:
    """Every `text` string found anywhere inside `blocks`, depth first."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for key, value in node.items():
                if key != "text" or not isinstance(value, str):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return found


def interactive_elements(blocks: list[dict]) -> list[tuple[dict, dict]]:
    """(block, element) pairs for every element a person can act on, in order."""
    pairs: list[tuple[dict, dict]] = []
    for block in blocks:
        if block.get("type") == "actions":
            pairs.extend((block, el) for el in block.get("elements", []))
        elif block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            pairs.append((block, block["accessory"]))
        elif block.get("type") == "input" and isinstance(block.get("element"), dict):
            pairs.append((block, block["element"]))
    return pairs


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

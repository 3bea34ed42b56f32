"""Web API methods: each takes the emulator and the merged arguments and returns the `ok: true` body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .blocks_validator import MESSAGE_TEXT_MAX, VIEW_MAX_BYTES, validate_message_blocks, validate_view, view_size
from .errors import SlackError
from .models import Channel, View

if TYPE_CHECKING:
    from .emulator import SlackEmulator

Method = Callable[["SlackEmulator", dict[str, Any]], dict[str, Any]]
VIEW_STACK_LIMIT = 3


def require(args: dict, name: str, error: str = "invalid_arguments") -> Any:
    """The argument `name`, or the error Slack gives when it is missing."""
    value = args.get(name)
    if value in (None, ""):
        raise SlackError(error, [f"[ERROR] missing required field: {name}"], rejection=error == "invalid_arguments")
    return value


def json_arg(args: dict, name: str, error: str) -> Any:
    """A JSON argument that may arrive as an object (JSON body) or a string (form post)."""
    value = args.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else None
        except json.JSONDecodeError:
            raise SlackError(error, [f"[ERROR] invalid JSON [json-pointer:/{name}]"], rejection=True) from None
    return value


# -- auth / connections -----------------------------------------------------------------------


def auth_test(emu: SlackEmulator, args: dict) -> dict:
    """auth.test: who the bot token belongs to."""
    return {
        "url": f"https://{emu.team_domain}.slack.com/",
        "team": emu.team_domain,
        "user": "jitbot",
        "team_id": emu.team_id,
        "user_id": emu.bot_user_id,
        "bot_id": emu.bot_id,
        "is_enterprise_install": False,
    }


def apps_connections_open(emu: SlackEmulator, args: dict) -> dict:
    """apps.connections.open: a fresh Socket Mode URL."""
    return {"url": emu.socket.issue_url()}


# -- chat -------------------------------------------------------------------------------------------


def _message_content(args: dict, *, require_content: bool = True) -> tuple[str | None, list | None, list | None]:
    text = args.get("text")
    blocks = json_arg(args, "blocks", "invalid_blocks_format")
    attachments = json_arg(args, "attachments", "invalid_attachments")
    if text is not None and not isinstance(text, str):
        text = str(text)
    if require_content and not text and not blocks and not attachments:
        raise SlackError("no_text", ["[ERROR] a message needs `text`, `blocks` or `attachments`"], rejection=True)
    if text is not None and len(text) > MESSAGE_TEXT_MAX:
        raise SlackError(
            "msg_too_long",
            [f"[ERROR] text has {len(text)} characters; Slack allows {MESSAGE_TEXT_MAX}"],
            rejection=True,
        )
    if blocks is not None:
        if not isinstance(blocks, list):
            raise SlackError(
                "invalid_blocks_format", ["[ERROR] must be an array [json-pointer:/blocks]"], rejection=True
            )
        problems = validate_message_blocks(blocks)
        if problems:
            raise SlackError("invalid_blocks", problems, rejection=True)
    if attachments is not None and not isinstance(attachments, list):
        raise SlackError("invalid_attachments", rejection=True)
    return text, blocks, attachments


def _postable_channel(emu: SlackEmulator, args: dict) -> Channel:
    channel = emu.workspace.resolve_channel(require(args, "channel", "channel_not_found"), allow_name=True)
    if channel.is_archived:
        raise SlackError("is_archived")
    if not channel.is_im and not channel.bot_is_member:
        raise SlackError("not_in_channel")
    return channel


def chat_post_message(emu: SlackEmulator, args: dict) -> dict:
    """chat.postMessage: store a message (a user id posts to their DM)."""
    channel = _postable_channel(emu, args)
    text, blocks, attachments = _message_content(args)
    metadata = json_arg(args, "metadata", "invalid_metadata_format")
    message = emu.workspace.post_message(
        channel,
        text=text,
        blocks=blocks or [],
        attachments=attachments or [],
        thread_ts=args.get("thread_ts"),
        metadata=metadata,
    )
    return {"channel": channel.id, "ts": message.ts, "message": message.to_api(emu.team_id)}


def chat_update(emu: SlackEmulator, args: dict) -> dict:
    """chat.update: edit a stored bot message in place."""
    channel_id = require(args, "channel", "channel_not_found")
    if channel_id in emu.workspace.users:
        # Slack documents that chat.update needs the DM's D… id; a user id is a bot bug.
        raise SlackError(
            "channel_not_found", ["[ERROR] chat.update needs the DM channel id (D…), not a user id"], rejection=True
        )
    channel = emu.workspace.resolve_channel(channel_id, allow_user=False)
    ts = require(args, "ts", "message_not_found")
    text, blocks, attachments = _message_content(args, require_content=False)
    if text is None and blocks is None and attachments is None:
        raise SlackError("no_text", ["[ERROR] chat.update needs `text`, `blocks` or `attachments`"], rejection=True)
    message = emu.workspace.find_message(channel.id, ts)
    if message is None:
        raise SlackError("message_not_found")
    if message.user != emu.bot_user_id:
        raise SlackError("cant_update_message")
    # Slack keeps the old text when only blocks change, and clears blocks only when given [].
    emu.workspace.edit_message(message, text=text, blocks=blocks, attachments=attachments, via="chat.update")
    return {"channel": channel.id, "ts": message.ts, "text": message.text or "", "message": message.to_api(emu.team_id)}


def chat_post_ephemeral(emu: SlackEmulator, args: dict) -> dict:
    """chat.postEphemeral: a message only `user` sees."""
    channel = _postable_channel(emu, args)
    user = emu.workspace.user(require(args, "user", "user_not_found"))
    if not channel.has_member(user.id):
        raise SlackError("user_not_in_channel")
    text, blocks, _ = _message_content(args)
    ephemeral = emu.workspace.add_ephemeral(
        channel.id, user.id, text=text, blocks=blocks or [], source="chat.postEphemeral"
    )
    return {"message_ts": ephemeral.ts}


# -- conversations / users -------------------------------------------------------------------------


def conversations_open(emu: SlackEmulator, args: dict) -> dict:
    """conversations.open: the stable DM channel with one user."""
    if args.get("channel"):
        channel = emu.workspace.resolve_channel(args["channel"], allow_user=False)
        return {"no_op": True, "already_open": True, "channel": {"id": channel.id}}
    raw = require(args, "users", "users_list_not_supplied")
    user_ids = [u.strip() for u in (raw.split(",") if isinstance(raw, str) else raw) if u.strip()]
    if len(user_ids) != 1:
        raise SlackError("not_supported", ["[ERROR] the emulator only opens one-to-one DMs"])
    user = emu.workspace.user(user_ids[0])
    if user.deleted:
        raise SlackError("user_disabled")
    existed = emu.workspace.im_id(user.id) in emu.workspace.channels
    channel = emu.workspace.im_for(user.id)
    return {"no_op": existed, "already_open": existed, "channel": {"id": channel.id}}


def conversations_info(emu: SlackEmulator, args: dict) -> dict:
    """conversations.info: a conversation's flags."""
    channel = emu.workspace.resolve_channel(require(args, "channel", "channel_not_found"), allow_user=False)
    return {"channel": channel.to_api()}


def users_info(emu: SlackEmulator, args: dict) -> dict:
    """users.info: one member of the directory."""
    return {"user": emu.workspace.user(require(args, "user", "user_not_found")).to_api(emu.team_id)}


def users_lookup_by_email(emu: SlackEmulator, args: dict) -> dict:
    """users.lookupByEmail: the member with this email (case-insensitive)."""
    email = require(args, "email", "users_not_found").lower()
    for user in emu.workspace.users.values():
        if user.email and user.email.lower() == email:
            return {"user": user.to_api(emu.team_id)}
    raise SlackError("users_not_found")


def usergroups_users_list(emu: SlackEmulator, args: dict) -> dict:
    """usergroups.users.list: the ids in a user group."""
    group = emu.workspace.usergroups.get(require(args, "usergroup", "no_such_subteam"))
    if group is None:
        raise SlackError("no_such_subteam")
    return {"users": list(group.users)}


# -- views -----------------------------------------------------------------------------------------


def checked_view(args_or_view: Any, *, from_args: bool = True) -> dict:
    """The `view` argument after Slack's checks: JSON, ≤ 250 kB, valid Block Kit."""
    view = json_arg(args_or_view, "view", "invalid_arguments") if from_args else args_or_view
    if view is None:
        raise SlackError("invalid_arguments", ["[ERROR] missing required field: view"], rejection=True)
    size = view_size(view)
    if size > VIEW_MAX_BYTES:
        raise SlackError(
            "view_too_large", [f"[ERROR] view is {size} bytes; the limit is {VIEW_MAX_BYTES}"], rejection=True
        )
    problems = validate_view(view)
    if problems:
        raise SlackError("invalid_arguments", problems, rejection=True)
    return view


def _external_id_free(emu: SlackEmulator, view: dict, keep: View | None = None) -> None:
    external_id = view.get("external_id")
    if external_id:
        other = emu.workspace.find_view(external_id=external_id)
        if other is not None and other is not keep:
            raise SlackError("duplicate_external_id", rejection=True)


def views_open(emu: SlackEmulator, args: dict) -> dict:
    """views.open: open a modal with a fresh, unused trigger_id."""
    view = checked_view(args)
    require(args, "trigger_id")
    _external_id_free(emu, view)
    trigger = emu.workspace.redeem_trigger(args["trigger_id"])
    # A new modal from a trigger replaces whatever modal the person had open.
    emu.workspace.close_all_views(trigger.user, "replaced_by_views.open")
    return {"view": emu.view_api(emu.workspace.new_view(trigger.user, view, previous=None))}


def views_push(emu: SlackEmulator, args: dict) -> dict:
    """views.push: stack a modal on the person's open ones."""
    view = checked_view(args)
    require(args, "trigger_id")
    _external_id_free(emu, view)
    trigger = emu.workspace.redeem_trigger(args["trigger_id"])
    return {"view": emu.view_api(push_view(emu, trigger.user, view))}


def push_view(emu: SlackEmulator, user_id: str, view: dict) -> View:
    """Put `view` on top of the user's modal stack (at most three deep)."""
    stack = emu.workspace.open_views(user_id)
    if len(stack) >= VIEW_STACK_LIMIT:
        raise SlackError(
            "push_limit_reached", [f"[ERROR] {user_id} already has {len(stack)} views open"], rejection=True
        )
    return emu.workspace.new_view(user_id, view, previous=stack[-1] if stack else None)


def views_update(emu: SlackEmulator, args: dict) -> dict:
    """views.update: replace an open view by view_id or external_id (optional hash check)."""
    view_id, external_id = args.get("view_id"), args.get("external_id")
    if bool(view_id) == bool(external_id):
        raise SlackError(
            "invalid_arguments", ["[ERROR] exactly one of `view_id` or `external_id` is required"], rejection=True
        )
    new = checked_view(args)
    target = emu.workspace.find_view(view_id=view_id, external_id=external_id)
    if target is None or not target.is_open:
        raise SlackError("not_found")
    if args.get("hash") and args["hash"] != target.hash:
        raise SlackError("hash_conflict")
    _external_id_free(emu, new, keep=target)
    return {"view": emu.view_api(emu.workspace.replace_view(target, new))}


def views_publish(emu: SlackEmulator, args: dict) -> dict:
    """views.publish: set a user's Home tab (a `home` view; optional hash check)."""
    user = emu.workspace.user(require(args, "user_id", "user_not_found"))
    view = checked_view(args)
    if view.get("type") != "home":
        raise SlackError("invalid_arguments", ["[ERROR] views.publish takes a view of type home"], rejection=True)
    current = emu.workspace.homes.get(user.id)
    if args.get("hash") and (current is None or args["hash"] != current.hash):
        raise SlackError("hash_conflict")
    return {"view": emu.view_api(emu.workspace.publish_home(user.id, view))}


BOT_METHODS: dict[str, Method] = {
    "auth.test": auth_test,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
    "conversations.open": conversations_open,
    "conversations.info": conversations_info,
    "users.info": users_info,
    "users.lookupByEmail": users_lookup_by_email,
    "usergroups.users.list": usergroups_users_list,
    "views.open": views_open,
    "views.push": views_push,
    "views.update": views_update,
    "views.publish": views_publish,
}
APP_METHODS: dict[str, Method] = {"apps.connections.open": apps_connections_open}

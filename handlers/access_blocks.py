"""Pure Block Kit builders for the life of access after approval: the Revoke now / Extend / Cancel
request buttons, the requester's DMs that carry them, the extension line of a request's message,
the status lines of cancelled and early-ended requests, and the Extend modal. No I/O.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from core.config_models import FieldSpec, Flow
from core.errors import JitError
from core.models import AccessRequest
from core.models import RequestStatus as S
from core.schema import format_duration
from handlers import blocks
from handlers.ids import ActionId, BlockId, CallbackId
from handlers.metadata import decision_value

# The DMs that carry buttons, and which: the end time with Revoke now and Extend, a pending
# request with Cancel request, the warning with Extend.
_DM_BUTTONS: dict[str, tuple[ActionId, ...]] = {
    "submitted": (ActionId.CANCEL,),
    "granted": (ActionId.REVOKE_NOW, ActionId.EXTEND),
    "extended": (ActionId.REVOKE_NOW, ActionId.EXTEND),
    "warning": (ActionId.EXTEND, ActionId.REVOKE_NOW),
}
_LABELS = {
    ActionId.APPROVE: ("Approve", "primary"),
    ActionId.DENY: ("Deny", "danger"),
    ActionId.REVOKE_NOW: ("Revoke now", "danger"),
    ActionId.EXTEND: ("Extend", None),
    ActionId.CANCEL: ("Cancel request", None),
}


class BadExtendMetadata(JitError):
    """An Extend modal carried metadata we did not write."""


def button(action: ActionId, request: AccessRequest) -> dict[str, Any]:
    """One of the request buttons, its value the request id."""
    label, style = _LABELS[action]
    element: dict[str, Any] = {
        "type": "button",
        "action_id": action,
        "text": blocks.plain(label),
        "value": decision_value(request.id),
    }
    if style:
        element["style"] = style
    if action is ActionId.REVOKE_NOW:
        element["confirm"] = {
            "title": blocks.plain("End this access now?", 100),
            "text": blocks.plain("The access is taken away at once.", 300),
            "confirm": blocks.plain("Revoke now", 30),
            "deny": blocks.plain("Keep it", 30),
        }
    return element


def actions(request: AccessRequest, *wanted: ActionId, block_id: str = BlockId.ACCESS) -> dict[str, Any]:
    """An actions block with the given buttons of `request`."""
    return {"type": "actions", "block_id": block_id, "elements": [button(a, request) for a in wanted]}


def live(request: AccessRequest) -> bool:
    """Whether the request holds access that can still be ended early or extended."""
    return request.status is S.GRANTED and request.revoked_by is None


# ── the request's own message ─────────────────────────────────────────────────────────────────


def extension_line(request: AccessRequest, extended_end: datetime | None) -> str | None:
    """'Extends request `G` · until 15:40, +1h' for an extension request (None for any other)."""
    if request.extends is None:
        return None
    plus = blocks.human_duration(request.duration_seconds)
    if request.status in (S.GRANTED, S.REVOKED) and request.expires_at is not None and request.granted_at:
        until = f" · until {blocks.slack_date(request.expires_at)}"
    elif extended_end is not None:
        until = f" · until {blocks.slack_date(extended_end + timedelta(seconds=request.duration_seconds))}"
    else:
        until = ""
    return f":arrows_counterclockwise: Extends request `{blocks.escape(request.extends)}`{until}, +{plus}"


def after_approval_status(request: AccessRequest) -> str | None:
    """The status line of a cancelled, early-ended or handed-over request (None: the usual line)."""
    status = request.status
    if status is S.CANCELLED:
        reason = f": {blocks.escape(blocks.clip(request.decision_reason, 500))}" if request.decision_reason else ""
        return f":leftwards_arrow_with_hook: Cancelled by the requester {blocks.who(request.decided_by)}{reason}"
    if status is S.GRANTED and request.revoked_by is not None:
        return (
            f":hourglass_flowing_sand: Being ended early by {blocks.who(request.revoked_by)}: "
            "the revocation is being retried"
        )
    if status is S.REVOKED and request.revoked_by is not None:
        ended = blocks.slack_date(request.ended_at) if request.ended_at else "?"
        return (
            f":lock: Access ended {ended}, early, by {blocks.who(request.revoked_by)} · "
            f"approved by {blocks.who(request.decided_by)}"
        )
    if status is S.REVOKED and request.end_reason:
        return (
            f":arrows_counterclockwise: Access continues: {blocks.escape(request.end_reason)} · "
            f"approved by {blocks.who(request.decided_by)}"
        )
    return None


def status(request: AccessRequest, flow: Flow | None = None) -> str:
    """The one status line of a request at any stage (the usual ones from blocks.status_line)."""
    return after_approval_status(request) or blocks.status_line(request, flow)


def message(
    request: AccessRequest, flow: Flow | None, target_label: str, extended_end: datetime | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The request's channel message (blocks.request_message) with what comes after approval: the
    extension line, the status of a cancelled or early-ended request, and Revoke now on a live grant.
    `extended_end` is the current end of the grant an extension request extends."""
    text, message_blocks = blocks.request_message(request, flow, target_label)
    for block in message_blocks:
        if block.get("block_id") == BlockId.STATUS:
            block["elements"] = [blocks.mrkdwn(status(request, flow))]
    line = extension_line(request, extended_end)
    if line:
        message_blocks.insert(1, {"type": "context", "elements": [blocks.mrkdwn(line)]})
    if live(request):
        message_blocks.append(actions(request, ActionId.REVOKE_NOW))
    return text, message_blocks


# ── DMs ───────────────────────────────────────────────────────────────────────────────────────


def dm_text(request: AccessRequest, notice: str, target_label: str, detail: str | None = None) -> str:
    """The text of a DM to the requester, for every notice (the older ones from blocks.requester_dm)."""
    what = f"*{blocks.escape(target_label)}*"
    until = blocks.slack_date(request.expires_at) if request.expires_at else "soon"
    texts = {
        "cancelled": f":leftwards_arrow_with_hook: You cancelled your request `{request.id}` for {what}.",
        "ended_early": (
            f":lock: Your access to {what} was ended early by {blocks.who(request.revoked_by)} "
            f"(request `{request.id}`)."
        ),
        "extended": (
            f":arrows_counterclockwise: Your access to {what} is extended, approved by "
            f"{blocks.who(request.decided_by)}. It now ends {until}."
        ),
        "warning": f":hourglass: Your access to {what} ends {until}. Need more time? Extend it.",
    }
    text = texts.get(notice)
    if text is None:
        return blocks.requester_dm(request, notice, target_label, detail)
    if detail:
        text += "\n" + blocks.escape(blocks.clip(detail, 2000))
    return text


def dm_blocks(request: AccessRequest, notice: str, text: str) -> list[dict[str, Any]] | None:
    """The DM's blocks when it carries buttons (None: plain text is enough)."""
    wanted = _DM_BUTTONS.get(notice)
    if not wanted:
        return None
    if notice == "submitted" and request.status is not S.PENDING:
        return None
    if notice != "submitted" and not live(request):
        return None
    return [{"type": "section", "text": blocks.mrkdwn(text)}, actions(request, *wanted)]


def dm_outcome(message_blocks: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    """A DM after one of its buttons was used: the same text, buttons gone, what happened added."""
    kept = [b for b in message_blocks if b.get("block_id") not in (BlockId.ACCESS, BlockId.OUTCOME)]
    return [*kept, {"type": "context", "block_id": BlockId.OUTCOME, "elements": [blocks.mrkdwn(outcome)]}]


# ── the Extend modal ──────────────────────────────────────────────────────────────────────────


def extend_metadata(request_id: str) -> str:
    """The Extend modal's private_metadata."""
    return json.dumps({"v": 1, "extend": request_id}, separators=(",", ":"))


def parse_extend_metadata(text: str | None) -> str:
    """The request id an Extend modal is about; BadExtendMetadata when it is not ours."""
    try:
        data = json.loads(text or "")
        request_id = data["extend"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadExtendMetadata("this form is out of date; press Extend again") from exc
    if not isinstance(request_id, str) or not request_id or len(request_id) > 64:
        raise BadExtendMetadata("this form is out of date; press Extend again")
    return request_id


def extend_form(
    holder: AccessRequest, flow: Flow, target_label: str, durations: list[str], left: timedelta | None
) -> dict[str, Any]:
    """The Extend modal: the flow's fields (the grant's answers filled in), durations limited to what
    `max_total_duration` still leaves."""
    until = blocks.slack_date(holder.expires_at) if holder.expires_at else "?"
    room = f" At most {format_duration(left)} more can be added." if left is not None else ""
    intro = f"Extend *{blocks.escape(target_label)}* ({blocks.escape(flow.label)}), now until {until}.{room}"
    inputs: list[dict[str, Any]] = []
    for spec in flow.fields:
        if spec.type == "duration":
            inputs.append(_duration_input(spec, durations))
            continue
        block = blocks.field_input(spec)
        value = holder.fields.get(spec.name)
        if spec.type in ("string", "text") and isinstance(value, str) and value:
            block["element"]["initial_value"] = value[: block["element"].get("max_length", len(value))]
        inputs.append(block)
    return {
        "type": "modal",
        "callback_id": CallbackId.EXTEND_FORM,
        "title": blocks.plain("Extend access", 24),
        "submit": blocks.plain("Ask", 24),
        "close": blocks.plain("Cancel", 24),
        "private_metadata": extend_metadata(holder.id),
        "blocks": [{"type": "section", "text": blocks.mrkdwn(intro)}, *inputs],
    }


def _duration_input(spec: FieldSpec, durations: list[str]) -> dict[str, Any]:
    if spec.allowed_values:
        spec = spec.model_copy(update={"allowed_values": durations, "default": None})
    block = blocks.field_input(spec)
    block["label"] = blocks.plain("How much more time?", 2000)
    return block

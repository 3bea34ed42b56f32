"""Pure Block Kit builders of the approval policy: who decides, approvals so far, reminders, the deny modal.

Kept beside handlers/blocks.py (the request message and DMs), which calls `deciders_section` and
`pending_line` for a pending request. Every text stays within Slack's limits however many approvers
a flow names or however long a reason is: mentions are capped (with "and N more"), text is clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from core.approvals import DENY_REASON_MAX, still_needed
from core.config_models import Flow
from core.models import AccessRequest
from core.policy_ports import Reminder
from core.reminders import deciders
from core.schema import format_duration
from handlers.ids import ActionId, BlockId, CallbackId
from handlers.metadata import DenyMetadata

MAX_MENTIONS = 50  # mentions named in one text; the rest are counted ("and 12 more")
SECTION_TEXT_MAX = 3000


def _escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _date(moment: datetime) -> str:
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{moment.strftime('%Y-%m-%d %H:%M UTC')}>"


def mentions(users: Sequence[str] = (), groups: Sequence[str] = (), limit: int = MAX_MENTIONS) -> str:
    """`<!subteam^S…>` and `<@U…>` mentions (groups first: fewer, and they reach the most people), at
    most `limit` of them, then "and N more"."""
    every = [f"<!subteam^{_escape(g)}>" for g in groups] + [f"<@{_escape(u)}>" for u in users]
    shown = ", ".join(every[:limit])
    if len(every) > limit:
        shown += f" and {len(every) - limit} more"
    return shown


def approvals_text(flow: Flow | None, request: AccessRequest) -> str:
    """'1 of 2 approvals: <@bob>' (empty when the flow needs one approval and none was given)."""
    required = flow.approvals_required if flow is not None else 1
    if required <= 1 and not request.approvals:
        return ""
    given = mentions(request.approvals)
    return f"{len(request.approvals)} of {required} approvals" + (f": {given}" if given else "")


def deciders_section(request: AccessRequest, flow: Flow | None, now: datetime | None = None) -> dict[str, Any]:
    """The pending message's 'who decides' block: approvers, approvals so far, expiry, the identity."""
    users, groups = deciders(flow, request)
    if request.approvers == ():
        who = "nobody (the approval rule could not be evaluated)"
    elif users or groups:
        who = mentions(users, groups)
    elif flow is not None and flow.allow_self_approval and flow.approvals_required == 1:
        who = "anyone in the workspace"
    else:
        who = "anyone in the workspace except the requester"
    lines = [f"*Who decides:* {who}"]
    policy = flow.reminders if flow is not None else None
    if policy is not None and policy.escalate_after is not None and policy.escalate_to is not None:
        escalate = mentions(policy.escalate_to.users, policy.escalate_to.usergroups, limit=10)
        lines.append(f"*Escalates to:* {escalate} after {format_duration(policy.escalate_after)}")
    needed = still_needed(flow, request)
    counted = approvals_text(flow, request)
    if counted:
        lines.append(f"*Approvals:* {counted}" + (f" · {needed} more needed" if needed else ""))
    if request.timeout_at is not None:
        lines.append(f"*Expires:* {_date(request.timeout_at)} if nobody decides")
    identity, system = request.grant_to.get("identity"), request.grant_to.get("system")
    if identity and system:
        lines.append(f"*Grants access as:* {_escape(_clip(identity, 200))} in {_escape(_clip(system, 75))}")
    elif flow is not None and flow.approval_only:
        lines.append("*Approval only:* nothing is granted in any system; the decision and its window are recorded")
    return {"type": "section", "block_id": BlockId.DECIDERS, "text": _mrkdwn("\n".join(lines))}


def pending_line(request: AccessRequest, flow: Flow | None) -> str:
    """The status line of a pending request that someone may decide."""
    counted = approvals_text(flow, request)
    progress = f" · {counted}" if counted else ""
    return f":hourglass_flowing_sand: Waiting for approval{progress} · request `{request.id}`"


def reminder_text(request: AccessRequest, reminder: Reminder) -> str:
    """The thread reply that reminds (or escalates): who is mentioned, and for how long it has waited."""
    waiting = format_duration(timedelta(minutes=max(int(reminder.waiting.total_seconds() // 60), 1)))
    who = mentions(reminder.users, reminder.usergroups)
    if reminder.escalating_now:
        backup = mentions(reminder.escalate_users, reminder.escalate_groups)
        text = (
            f":rotating_light: This request has waited {waiting} for a decision: escalating to {backup}, "
            "who may now approve or deny it."
        )
        if who:
            text += f" Approvers: {who}."
        return _clip(text, SECTION_TEXT_MAX)
    text = f":bell: Reminder: this request has waited {waiting} for a decision."
    if who:
        text += f" {who}, please approve or deny it."
    if reminder.escalated:
        text += f" Escalated to {mentions(reminder.escalate_users, reminder.escalate_groups)}."
    return _clip(text, SECTION_TEXT_MAX)


def approval_only_dm(request: AccessRequest, notice: str, target_label: str, approved_by: str) -> str | None:
    """The requester's DM of an approval-only flow where it differs from access (approved, window ended)."""
    what = f"*{_escape(target_label)}*"
    reason = f" ({_escape(_clip(request.decision_reason, 500))})" if request.decision_reason else ""
    if notice == "granted":
        until = _date(request.expires_at) if request.expires_at else "soon"
        return (
            f":white_check_mark: Your request for {what} was approved by {approved_by}{reason}. "
            f"It is valid until {until}."
        )
    if notice == "revoked":
        return f":lock: The approval window of your request for {what} has ended."
    return None


def deny_modal(request_id: str, channel: str | None, ts: str | None, requester: str) -> dict[str, Any]:
    """The small modal Deny opens: an optional, bounded reason the requester will read."""
    return {
        "type": "modal",
        "callback_id": CallbackId.DENY_REASON,
        "title": {"type": "plain_text", "text": "Deny request", "emoji": True},
        "submit": {"type": "plain_text", "text": "Deny", "emoji": True},
        "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
        "private_metadata": DenyMetadata(request_id=request_id, channel=channel, ts=ts).encode(),
        "blocks": [
            {"type": "section", "text": _mrkdwn(f"Deny <@{_escape(requester)}>'s request `{_escape(request_id)}`?")},
            {
                "type": "input",
                "block_id": BlockId.DENY_REASON,
                "optional": True,
                "label": {"type": "plain_text", "text": "Reason (shown to the requester)", "emoji": True},
                "element": {
                    "type": "plain_text_input",
                    "action_id": ActionId.VALUE,
                    "multiline": True,
                    "max_length": DENY_REASON_MAX,
                },
            },
        ],
    }


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _clip(text or " ", SECTION_TEXT_MAX)}

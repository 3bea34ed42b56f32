"""Pure Block Kit builders: views, the approval message and DMs. No client calls, no I/O.

Every builder returns plain dicts that stay within Slack's limits (the test emulator checks them:
sandbox/slack/blocks_validator.py): user-supplied text is escaped and truncated, option
lists are split into groups of at most 100.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from core.config_models import FieldSpec, Flow
from core.models import AccessRequest
from core.models import RequestStatus as S
from core.ports import Alert
from core.schema import format_duration
from handlers import policy_blocks
from handlers.forms import MAX_INT_DIGITS, MAX_STRING_LENGTH, MAX_TEXT_LENGTH
from handlers.ids import ActionId, BlockId, CallbackId, field_block_id
from handlers.metadata import FormMetadata, decision_value

SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
OPTION_TEXT_MAX = 75
MAX_OPTIONS = 100


def escape(text: Any) -> str:
    """Escape the three characters Slack mrkdwn treats as control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, limit: int = OPTION_TEXT_MAX) -> dict[str, Any]:
    """A plain_text object (never empty: Slack refuses empty text)."""
    return {"type": "plain_text", "text": clip(text or " ", limit), "emoji": True}


def mrkdwn(text: str, limit: int = SECTION_TEXT_MAX) -> dict[str, Any]:
    """A mrkdwn text object."""
    return {"type": "mrkdwn", "text": clip(text or " ", limit)}


def option(label: str, value: str) -> dict[str, Any]:
    """A select option."""
    return {"text": plain(label), "value": value[:150]}


def _select(options: list[dict[str, Any]], placeholder: str, initial: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": ActionId.VALUE,
        "placeholder": plain(placeholder, 150),
    }
    if len(options) <= MAX_OPTIONS:
        element["options"] = options
    else:
        element["option_groups"] = [
            {"label": plain(f"{i + 1}–{min(i + MAX_OPTIONS, len(options))}"), "options": options[i : i + MAX_OPTIONS]}
            for i in range(0, len(options), MAX_OPTIONS)
        ]
    chosen = next((o for o in options if o["value"] == initial), None)
    if chosen is not None:
        element["initial_option"] = chosen
    return element


def slack_date(moment: datetime, fallback_fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    """A Slack date token that shows in the reader's time zone, with a UTC fallback."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{moment.strftime(fallback_fmt)}>"


def human_duration(seconds: int) -> str:
    """'1h', '30m', '10s' for a whole number of seconds."""
    from datetime import timedelta

    return format_duration(timedelta(seconds=seconds))


# ── views ─────────────────────────────────────────────────────────────────────────────────────


def flow_picker(flows: Iterable[Flow], channel: str | None = None) -> dict[str, Any]:
    """The first modal when several flows exist: choosing one updates the modal to its form."""
    options = [option(f.label, f.name) for f in flows]
    return {
        "type": "modal",
        "callback_id": CallbackId.FLOW_PICKER,
        "title": plain("Request access", 24),
        "close": plain("Cancel", 24),
        "private_metadata": FormMetadata(flow="", channel=channel).encode(),
        "blocks": [
            {"type": "section", "text": mrkdwn("What do you need access to?")},
            {
                "type": "actions",
                "block_id": "flow",
                "elements": [{**_select(options, "Choose an access flow"), "action_id": ActionId.PICK_FLOW}],
            },
        ],
    }


def request_form(flow: Flow, channel: str | None = None) -> dict[str, Any]:
    """The request modal of one flow: the target picker first, then each field as a typed input."""
    targets = [option(t.label, t.name) for t in flow.targets]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": mrkdwn(f"*{escape(flow.label)}*")},
        {
            "type": "input",
            "block_id": BlockId.TARGET,
            "label": plain("Target", 2000),
            "element": _select(targets, "Choose what you need", targets[0]["value"] if len(targets) == 1 else None),
        },
    ]
    for spec in flow.fields:
        blocks.append(field_input(spec))
    return {
        "type": "modal",
        "callback_id": CallbackId.REQUEST_FORM,
        "title": plain("Request access", 24),
        "submit": plain("Request", 24),
        "close": plain("Cancel", 24),
        "private_metadata": FormMetadata(flow=flow.name, channel=channel).encode(),
        "blocks": blocks,
    }


def field_input(spec: FieldSpec) -> dict[str, Any]:
    """The modal input block of one flow field, typed and bounded like the form parser."""
    default = getattr(spec, "default", None)
    placeholder = getattr(spec, "placeholder", None)
    kind = spec.type
    if kind in ("string", "text"):
        element: dict[str, Any] = {
            "type": "plain_text_input",
            "action_id": ActionId.VALUE,
            "multiline": kind == "text",
            "max_length": MAX_TEXT_LENGTH if kind == "text" else MAX_STRING_LENGTH,
        }
        if default is not None:
            element["initial_value"] = str(default)
    elif kind == "int":
        # The same bounds the form parser enforces, so Slack refuses what the parser would.
        element = {
            "type": "number_input",
            "action_id": ActionId.VALUE,
            "is_decimal_allowed": False,
            "min_value": str(1 - 10**MAX_INT_DIGITS),
            "max_value": str(10**MAX_INT_DIGITS - 1),
        }
        if default is not None:
            element["initial_value"] = str(default)
    elif kind == "bool":
        element = {"type": "checkboxes", "action_id": ActionId.VALUE, "options": [option("Yes", "true")]}
        if default:
            element["initial_options"] = [option("Yes", "true")]
    elif kind == "list" or (kind == "duration" and spec.allowed_values):
        assert spec.allowed_values is not None, "FieldSpec refuses a list field without allowed_values"
        values = [str(v) for v in spec.allowed_values]
        element = _select(
            [option(v, v) for v in values],
            placeholder or "Choose one",
            str(default) if default is not None else (values[0] if len(values) == 1 else None),
        )
    else:  # a free duration bounded by `max`
        element = {"type": "plain_text_input", "action_id": ActionId.VALUE, "max_length": 12}
        if default is not None:
            element["initial_value"] = str(default)
        if not placeholder:
            assert spec.max is not None, "FieldSpec refuses a duration field with neither allowed_values nor max"
            placeholder = f"e.g. 30m (at most {format_duration(spec.max)})"
    if placeholder and element["type"] in ("plain_text_input", "number_input"):
        element["placeholder"] = plain(placeholder, 150)
    block: dict[str, Any] = {
        "type": "input",
        "block_id": field_block_id(spec.name),
        "label": plain(spec.label, 2000),
        "element": element,
        # Checkboxes can only express "true" by a tick, so an unticked bool is a valid answer.
        "optional": (not spec.required) or kind == "bool",
    }
    hint = getattr(spec, "hint", None)
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


# ── the approval-channel message ──────────────────────────────────────────────────────────────


def request_message(request: AccessRequest, flow: Flow | None, target_label: str) -> tuple[str, list[dict[str, Any]]]:
    """The channel message of a request at its current stage: (fallback text, blocks).

    `flow` is None when the flow has been removed from the config since the request was made.
    """
    duration = human_duration(request.duration_seconds)
    flow_label = flow.label if flow is not None else request.flow
    facts = [
        mrkdwn(f"*Target*\n{escape(target_label)}", FIELD_TEXT_MAX),
        mrkdwn(f"*Duration*\n{duration}", FIELD_TEXT_MAX),
    ]
    specs = flow.fields if flow is not None else []
    labels = {f.name: f.label for f in specs}
    duration_field = next((f.name for f in specs if f.type == "duration"), "duration")
    for name, value in request.fields.items():
        if name == duration_field or len(facts) >= 10:
            continue
        facts.append(mrkdwn(f"*{escape(labels.get(name, name))}*\n{escape(_show(value))}", FIELD_TEXT_MAX))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": mrkdwn(headline(request, flow_label, target_label))},
        {"type": "section", "fields": facts},
    ]
    if request.status is S.PENDING:  # who decides, approvals so far, when it expires, as whom
        blocks.append(policy_blocks.deciders_section(request, flow))
    blocks.append({"type": "context", "block_id": BlockId.STATUS, "elements": [mrkdwn(status_line(request, flow))]})
    if request.status is S.PENDING and request.approvers != ():  # () = nobody may decide
        blocks.append(
            {
                "type": "actions",
                "block_id": BlockId.DECISION,
                "elements": [
                    {
                        "type": "button",
                        "action_id": ActionId.APPROVE,
                        "text": plain("Approve"),
                        "style": "primary",
                        "value": decision_value(request.id),
                    },
                    {
                        "type": "button",
                        "action_id": ActionId.DENY,
                        "text": plain("Deny"),
                        "style": "danger",
                        "value": decision_value(request.id),
                    },
                ],
            }
        )
    text = f"Access request from <@{request.requester}> for {target_label} ({duration}): {request.status.value}"
    return text, blocks


def headline(request: AccessRequest, flow_label: str, target_label: str) -> str:
    """'<@ann> requests *Prod Admin* (Database Access) for *1h*': the first line of a request wherever it is shown."""
    duration = human_duration(request.duration_seconds)
    return f"<@{request.requester}> requests *{escape(target_label)}* ({escape(flow_label)}) for *{duration}*"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "—"
    return str(value) if value not in (None, "") else "—"


def who(actor: str | None) -> str:
    """Render an actor: a Slack user mention, or a hook / system name as code."""
    if not actor:
        return "someone"
    if actor.startswith("hook:"):
        return f"policy hook `{escape(actor[5:])}`"
    if actor.startswith("system"):
        return "jitbot"
    return f"<@{actor}>"


def status_line(request: AccessRequest, flow: Flow | None = None) -> str:
    """One line saying where the request stands, for the message's status context block."""
    reason = f": {escape(clip(request.decision_reason, 500))}" if request.decision_reason else ""
    status = request.status
    if status is S.PENDING and request.approvers == ():
        return (
            ":no_entry: Nobody may approve this request: its approval rule could not be evaluated. "
            f"The operators have been alerted · request `{request.id}`"
        )
    if status is S.PENDING:
        return policy_blocks.pending_line(request, flow)
    if flow is not None and flow.approval_only and status is S.GRANTED:
        until = slack_date(request.expires_at) if request.expires_at else "?"
        return f":white_check_mark: Approved by {who(request.decided_by)}{reason} · approved until {until}"
    if flow is not None and flow.approval_only and status is S.REVOKED:
        ended = slack_date(request.ended_at) if request.ended_at else "?"
        return f":lock: Approval window ended {ended} · approved by {who(request.decided_by)}{reason}"
    if status is S.APPROVED:
        return f":gear: Approved by {who(request.decided_by)}{reason} · granting access…"
    if status is S.GRANTED:
        until = slack_date(request.expires_at) if request.expires_at else "?"
        return f":white_check_mark: Approved by {who(request.decided_by)}{reason} · access granted until {until}"
    if status is S.REVOKED:
        ended = slack_date(request.ended_at) if request.ended_at else "?"
        return f":lock: Access ended {ended} · approved by {who(request.decided_by)}{reason}"
    if status is S.DENIED:
        return f":no_entry_sign: Denied by {who(request.decided_by)}{reason}"
    if status is S.FAILED:
        failure = escape(clip(request.failure_reason or "unknown error", 1500))
        return f":x: Approved by {who(request.decided_by)}, but the grant failed: {failure}"
    if status is S.EXPIRED:
        return f":alarm_clock: Expired{reason or ': nobody decided in time'}"
    return status.value


# ── DMs and alerts ────────────────────────────────────────────────────────────────────────────


def requester_dm(request: AccessRequest, notice: str, target_label: str, detail: str | None = None) -> str:
    """The text of a DM to the requester about their request."""
    duration = human_duration(request.duration_seconds)
    what = f"*{escape(target_label)}* for {duration}"
    channel = f"<#{request.approval_channel}>" if request.approval_channel else "the approval channel"
    reason = f" ({escape(clip(request.decision_reason, 500))})" if request.decision_reason else ""
    texts = {
        "submitted": f"Your request for {what} was sent to {channel} for approval (request `{request.id}`).",
        "not_posted": (
            f"Your request for {what} was saved (request `{request.id}`) but could not be posted to "
            f"{channel}, so nobody can approve it yet."
        ),
        "granted": (
            f":white_check_mark: Access to *{escape(target_label)}* is granted, approved by "
            f"{who(request.decided_by)}{reason}. It ends "
            f"{slack_date(request.expires_at) if request.expires_at else 'soon'}."
        ),
        "denied": f":no_entry_sign: Your request for {what} was denied by {who(request.decided_by)}{reason}.",
        "failed": (
            f":x: Your request for {what} was approved, but granting it failed: "
            f"{escape(clip(request.failure_reason or 'unknown error', 1500))}. The operators have been alerted."
        ),
        "revoked": f":lock: Your access to *{escape(target_label)}* has expired and was removed.",
        "superseded": f"Your request `{request.id}` for *{escape(target_label)}* has ended.",
        "expired": (
            f":alarm_clock: Your request for {what} expired: nobody decided in time. "
            "You can ask again with the command."
        ),
    }
    text = texts[notice]
    if detail:
        text += "\n" + escape(clip(detail, 2000))
    return text


def refusal_text(reason: str) -> str:
    """Ephemeral text shown to someone whose click was refused."""
    return f":warning: {escape(reason)}"


def already_decided_text(status: str, by: str | None) -> str:
    """Ephemeral text for a click on a request someone already decided."""
    decided = f" by {who(by)}" if by else ""
    return f":warning: This request is already {escape(status)}{decided}."


def alert_text(alert: Alert) -> str:
    """An operator alert: its plain text escaped like any other text, plus who the request is for."""
    text = f":rotating_light: {escape(alert.summary)}"
    request = alert.request
    if request is not None:
        where = f"{escape(request.flow)}/{escape(request.target)}"
        text += f" · request `{escape(request.id)}` ({where}) for <@{request.requester}>"
    if alert.error:
        text += f": {escape(clip(alert.error.rstrip('. '), 1500))}"
    if alert.action:
        text += f". {escape(alert.action)}"
    return text

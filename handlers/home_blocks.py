"""Pure builders of the App Home tab and of `/sym list`: a person's live grants (Revoke now, Extend),
their pending requests (Cancel request) and the requests waiting for their decision (Approve, Deny).

Each request is shown by the same builders as its channel message and DMs (headline, status line,
buttons). A Home view holds at most 100 blocks, so each section shows its newest `HOME_PER_SECTION`
and says how many there are in all.
"""

from __future__ import annotations

from typing import Any

from core.config_models import JitConfig
from core.models import AccessRequest
from core.overview import Overview, Section
from handlers import access_blocks, blocks
from handlers.ids import ActionId, CallbackId

HOME_PER_SECTION = 15  # 3 sections x (header + 15 x 2 + a count) + an intro = 97 blocks, within Slack's 100
LIST_PER_SECTION = 20


def labels(config: JitConfig, request: AccessRequest) -> tuple[str, str]:
    """(flow label, target label) of a request; its names when the flow or target is gone."""
    try:
        flow = config.flow(request.flow)
    except KeyError:
        return request.flow, request.target
    try:
        return flow.label, flow.target(request.target).label
    except KeyError:
        return flow.label, request.target


def headline(config: JitConfig, request: AccessRequest) -> str:
    """The request's first line, as on its channel message (blocks.headline)."""
    return blocks.headline(request, *labels(config, request))


def home_view(config: JitConfig, overview: Overview) -> dict[str, Any]:
    """The Home tab of `overview.user`."""
    view_blocks: list[dict[str, Any]] = [
        {"type": "section", "text": blocks.mrkdwn(f"Ask for access with `{config.slack.command}`.")}
    ]
    sections = (
        ("Your access", overview.live, (ActionId.REVOKE_NOW, ActionId.EXTEND), "You hold no access through jitbot."),
        ("Your pending requests", overview.pending, (ActionId.CANCEL,), "No pending requests."),
        ("Waiting for your decision", overview.awaiting, (ActionId.APPROVE, ActionId.DENY), "Nothing to decide."),
    )
    for title, section, buttons, empty in sections:
        view_blocks.append({"type": "header", "text": blocks.plain(title, 150)})
        shown = section.items[:HOME_PER_SECTION]
        for request in shown:
            line = access_blocks.extension_line(request, None)
            text = f"{headline(config, request)}\n{access_blocks.status(request)}" + (f"\n{line}" if line else "")
            view_blocks.append({"type": "section", "text": blocks.mrkdwn(text)})
            view_blocks.append(access_blocks.actions(request, *buttons, block_id=f"home:{request.id}"))
        if not shown:
            view_blocks.append({"type": "context", "elements": [blocks.mrkdwn(empty)]})
        elif section.total > len(shown):
            view_blocks.append({"type": "context", "elements": [blocks.mrkdwn(_count(len(shown), section.total))]})
    return {"type": "home", "callback_id": CallbackId.HOME, "blocks": view_blocks}


def list_text(config: JitConfig, overview: Overview) -> str:
    """The ephemeral answer to `/sym list`: the caller's live grants and pending requests."""
    parts = [
        _list_section(config, "*Your access*", overview.live, "You hold no access through jitbot."),
        _list_section(config, "*Your pending requests*", overview.pending, "No pending requests."),
        "Open jitbot's *Home* tab to end, extend or cancel them.",
    ]
    return "\n\n".join(parts)


def _list_section(config: JitConfig, title: str, section: Section, empty: str) -> str:
    lines = [title]
    shown = section.items[:LIST_PER_SECTION]
    for request in shown:
        flow_label, target_label = labels(config, request)
        if request.expires_at is not None and request.status.value == "granted":
            when = f"until {blocks.slack_date(request.expires_at)}"
        else:
            when = f"for {blocks.human_duration(request.duration_seconds)}"
        lines.append(f"• *{blocks.escape(target_label)}* ({blocks.escape(flow_label)}) {when} · request `{request.id}`")
    if not shown:
        lines.append(empty)
    elif section.total > len(shown):
        lines.append(_count(len(shown), section.total))
    return "\n".join(lines)


def _count(shown: int, total: int) -> str:
    return f"Showing the {shown} newest of {total}."

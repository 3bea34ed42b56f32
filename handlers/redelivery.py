"""Envelopes Slack sends again: when the ack of the first delivery was late, Slack redelivers it
(Socket Mode's `retry_attempt` / `retry_reason`, which Bolt passes on as the `X-Slack-Retry-Num` /
`X-Slack-Retry-Reason` headers of the request).

A redelivered click or command that opens a modal does not open it again: its trigger_id lives
3 seconds and is spent by the first delivery, so views.open could only fail, and the person would be
told "something went wrong" beside the modal they already have. What the envelope records is made
idempotent elsewhere: decisions are compare-and-set, a submitted modal makes its request once
(core/resubmission.py).
"""

from __future__ import annotations

from typing import Any

import structlog

log = structlog.get_logger("jitbot.slack")


def redelivered(request: Any) -> bool:
    """Whether Bolt's `request` is an envelope Slack sent again (a retry number above 0)."""
    headers = getattr(request, "headers", None) or {}
    values = headers.get("x-slack-retry-num") or []
    return any(str(value).strip() not in ("", "0") for value in values)


def skip_modal(request: Any, what: str) -> bool:
    """True (and logged) when the modal `what` must not be opened because this envelope is a redelivery."""
    if not redelivered(request):
        return False
    reason = ((getattr(request, "headers", None) or {}).get("x-slack-retry-reason") or [""])[0]
    log.info("slack.redelivered", opens=what, retry_reason=reason)
    return True

"""What the sweep posts that never reached its approval channel.

A pending request whose post failed is posted again (with its buttons) and its requester told it
was submitted. A live grant with no channel message at all is posted too: a fast-tracked request
(approved by `on_request` before anything was posted) is first posted by its grant's notification,
which runs in the background and can be lost with the process (a stop, a crash). Nobody would then
see in the channel an access that is live. Such a grant is only posted once it is older than any
notification could still be retrying (`LIVE_GRACE`), so another replica's first post, still under
way, is not doubled.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from core.follow_ups import Lane
from core.lifecycle import Lifecycle
from core.models import AccessRequest
from core.models import RequestStatus as S
from core.ports import RequesterNotice

log = structlog.get_logger("jitbot.engine")

# Longer than a message's whole retry schedule (`core.retry.MESSAGE_EDIT` with the Slack client's
# own Retry-After waits: about 20 minutes in all).
LIVE_GRACE = timedelta(minutes=30)


async def unposted(life: Lifecycle) -> tuple[list[AccessRequest], list[AccessRequest]]:
    """Pending requests and live grants the sweep should post, leaving those this process is still at."""
    pending = [r for r in await life.requests.list_unposted() if r.id not in life.submitting and not life.busy(r.id)]
    live = [
        r
        for r in await life.requests.list_live_unposted(life.clock.now() - LIVE_GRACE)
        if not life.follow_ups.owed(r.id, Lane.MESSAGE) and not life.busy(r.id)
    ]
    return pending, live


async def repost_pending(life: Lifecycle, request_id: str) -> None:
    """Try again to post a pending request that never reached its approval channel."""
    async with life.lock(request_id):
        request = await life.requests.get(request_id)
        if request.status is not S.PENDING or request.message_ts:
            return
        try:
            ts = await life.notifier.publish(request)
        except Exception as exc:
            log.warning("publish.still_failing", request_id=request_id, error=life.scrub(str(exc)))
            return
        request = await life.requests.update(request_id, {"message_ts": ts})
    await life.tell(request, RequesterNotice.SUBMITTED)


async def post_live(life: Lifecycle, request_id: str) -> None:
    """Post a live grant that has no channel message (its first post was lost); failures are logged."""
    async with life.lock(request_id):
        request = await life.requests.get(request_id)
        if request.status is not S.GRANTED or request.message_ts:
            return
        log.warning("publish.live_grant_unposted", request_id=request_id)
        await life.publish(request)

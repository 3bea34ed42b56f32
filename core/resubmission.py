"""One submission, one request: a submission delivered twice makes the request once.

Slack sends a modal's submission again when its ack was late (the envelope marked `retry_attempt`,
`retry_reason`), and a retry may reach another replica. A submission that names what makes it one
(its `key`: for a Slack modal, the workspace, view and trigger ids, see handlers/forms.py) gets a request
id derived from that key. Submissions of one key take turns (a guard, which with replicas is also a
database lease), and each looks for the request its key names before making one; the requests
table's primary key refuses a second row all the same. The later delivery gets the earlier request
back and does nothing more: no second message, DM, hook call or audit row.

A submission without a key (the HTTP API, whose POSTs carry no idempotency key) gets a random id.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable

from core.errors import RequestNotFound
from core.lifecycle import Lifecycle
from core.models import AccessRequest
from core.ports import RequestStore

ID_LENGTH = 16  # hex characters of a request id, keyed or random alike


def request_id_for(key: str | None) -> str:
    """The id of the request a submission makes: derived from its key, random without one."""
    if key is None:
        return uuid.uuid4().hex[:ID_LENGTH]
    return hashlib.sha256(f"jitbot-submission:{key}".encode()).hexdigest()[:ID_LENGTH]


async def earlier(requests: RequestStore, key: str) -> AccessRequest | None:
    """The request an earlier delivery of the submission `key` made, if any."""
    try:
        return await requests.get(request_id_for(key))
    except RequestNotFound:
        return None


async def once(life: Lifecycle, key: str, submit: Callable[[], Awaitable[AccessRequest]]) -> AccessRequest:
    """Run `submit` unless a delivery of the submission `key` already made its request (then return that)."""
    async with life.guards.guard(f"submission:{request_id_for(key)}"):
        made = await earlier(life.requests, key)
        if made is not None:
            return made
        return await submit()

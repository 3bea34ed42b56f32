"""A minimal receiver for jitbot's `webhook` strategy, to try the shipped config/flows.yaml end to end.

    WEBHOOK_SECRET=… python examples/webhook_receiver.py      # listens on 127.0.0.1:9000/grants

It does what every receiver must do before acting (docs/webhook-contract.md):

1. check `X-Jitbot-Signature`, the HMAC-SHA256 of the raw body with the shared secret (else 401);
2. refuse a delivery that is not fresh (403): `sent_at` older than REPLAY_WINDOW or more than
   MAX_CLOCK_SKEW in the future, or a `delivery_id` already seen. A captured grant replayed after
   its revoke would otherwise give the access back;
3. refuse a grant whose `expires_at` has passed (422).

Then it prints the grant or revoke and answers 200 with a `grant_id` (jitbot treats any 2xx as
success). A real receiver would change database roles here, keyed by `request_id` and `action`, so
that jitbot's retries (each a new delivery, with a new `delivery_id`) change nothing twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

REPLAY_WINDOW = timedelta(minutes=5)
MAX_CLOCK_SKEW = timedelta(seconds=30)
# delivery_id -> sent_at of every accepted delivery still inside the replay window.
SEEN_DELIVERIES = web.AppKey("seen_deliveries", dict)


class Refused(Exception):
    """A delivery the receiver will not act on; `status` and the message are the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _utc_now() -> datetime:
    return datetime.now(UTC)


def print_delivery(body: dict[str, Any]) -> None:
    """Show an accepted grant or revoke on standard output (where a real receiver changes access)."""
    who = body["requester"].get("identity") or body["requester"].get("email") or body["requester"].get("slack_id")
    print(
        f"{body['action']:>6}  {body['target']['name']}  for {who}  until {body['expires_at']}"
        f"  (request {body['request_id']})",
        flush=True,
    )


def make_app(
    secret: str,
    *,
    now: Callable[[], datetime] = _utc_now,
    on_accept: Callable[[dict[str, Any]], None] = print_delivery,
) -> web.Application:
    """The receiver: POST /grants with a signed jitbot body; `now` is the receiver's clock, `on_accept`
    acts on each accepted body (the sandbox keeps who holds what with it)."""
    app = web.Application()
    app[SEEN_DELIVERIES] = {}

    async def grants(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = accept(raw, request.headers.get("X-Jitbot-Signature", ""))
        except Refused as refusal:
            return web.json_response({"error": str(refusal)}, status=refusal.status)
        on_accept(body)
        return web.json_response({"ok": True, "grant_id": body["request_id"]})

    def accept(raw: bytes, signature: str) -> dict[str, Any]:
        """The body, once it is authentic, fresh, new and (for a grant) not already over; else Refused."""
        expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise Refused(401, "bad signature")
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refused(400, "the body is not JSON") from None
        if not isinstance(body, dict) or body.get("action") not in ("grant", "revoke"):
            raise Refused(400, "the body must be a JSON object whose action is grant or revoke")
        sent_at = _time(body, "sent_at")
        # A grant must have an end; a revoke is welcome either way.
        expires_at = _time(body, "expires_at") if body["action"] == "grant" or body.get("expires_at") else None
        delivery_id = body.get("delivery_id")
        if not isinstance(delivery_id, str) or not delivery_id:
            raise Refused(400, "delivery_id is missing")

        moment = now()
        seen = app[SEEN_DELIVERIES]
        # Anything sent before the window is refused below, so older ids need not be remembered.
        for old_id in [i for i, sent in seen.items() if sent < moment - REPLAY_WINDOW]:
            del seen[old_id]
        if not moment - REPLAY_WINDOW <= sent_at <= moment + MAX_CLOCK_SKEW:
            raise Refused(403, f"sent_at {body['sent_at']} is outside the replay window; check both clocks")
        if delivery_id in seen:
            raise Refused(403, f"delivery_id {delivery_id} was already received: a replay")
        if expires_at is not None and body["action"] == "grant" and expires_at <= moment:
            raise Refused(422, f"the grant's expires_at {body['expires_at']} has passed")
        seen[delivery_id] = sent_at
        return body

    app.router.add_post("/grants", grants)
    return app


def _time(body: dict[str, Any], key: str) -> datetime:
    """A body's ISO 8601 UTC time (`2026-01-02T03:04:05Z`); Refused(400) when missing or without a zone."""
    try:
        moment = datetime.fromisoformat(body[key])
    except (KeyError, TypeError, ValueError):
        raise Refused(400, f"{key} is missing or not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise Refused(400, f"{key} has no time zone")
    return moment


if __name__ == "__main__":
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        sys.exit("set WEBHOOK_SECRET to the same value the bot uses")
    web.run_app(make_app(secret), host="127.0.0.1", port=int(os.environ.get("PORT", "9000")))

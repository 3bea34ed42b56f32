"""A minimal receiver for jitbot's `webhook` strategy, to try the shipped config/flows.yaml end to end.

    WEBHOOK_SECRET=… python examples/webhook_receiver.py      # listens on 127.0.0.1:9000/grants

It checks `X-Jitbot-Signature` (HMAC-SHA256 of the raw body with the shared secret), prints each
grant and revoke, and answers 200 (jitbot treats any 2xx as success). A real receiver would change
database roles here, keyed by `request_id` so a repeated delivery changes nothing twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys

from aiohttp import web


def make_app(secret: str) -> web.Application:
    """The receiver: POST /grants with a signed jitbot body."""

    async def grants(request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Jitbot-Signature", "")):
            return web.json_response({"error": "bad signature"}, status=401)
        body = json.loads(raw)
        who = body["requester"]["email"] or body["requester"]["slack_id"]
        print(f"{body['action']:>6}  {body['target']['name']}  for {who}  until {body['expires_at']}"
              f"  (request {body['request_id']})", flush=True)
        return web.json_response({"ok": True, "grant_id": body["request_id"]})

    app = web.Application()
    app.router.add_post("/grants", grants)
    return app


if __name__ == "__main__":
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        sys.exit("set WEBHOOK_SECRET to the same value the bot uses")
    web.run_app(make_app(secret), host="127.0.0.1", port=int(os.environ.get("PORT", "9000")))

import hashlib
import hmac
import json

from aiohttp.test_utils import TestClient, TestServer

from examples.webhook_receiver import make_app


async def test_the_example_receiver_accepts_signed_bodies_and_refuses_others():
    body = json.dumps({"action": "grant", "request_id": "r1", "target": {"name": "prod"},
                       "requester": {"slack_id": "U1", "email": "a@example.com"},
                       "expires_at": "2026-11-21T13:00:00Z"}).encode()
    signature = "sha256=" + hmac.new(b"s3cret-value", body, hashlib.sha256).hexdigest()
    async with TestClient(TestServer(make_app("s3cret-value"))) as client:
        ok = await client.post("/grants", data=body, headers={"X-Jitbot-Signature": signature})
        assert ok.status == 200 and (await ok.json())["grant_id"] == "r1"
        forged = await client.post("/grants", data=body, headers={"X-Jitbot-Signature": "sha256=00"})
        assert forged.status == 401

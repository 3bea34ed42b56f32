"""Hooks of the `deploy_prod` approval-only flow (config/flows.example.yaml): a deploy gate.

The flow has no strategy: jitbot records the approvals and the deploy window. These hooks tell the
CI system when the window opens and closes, through a webhook whose URL and token come from the
environment of the bot (DEPLOY_GATE_URL, DEPLOY_GATE_TOKEN). Hook failures are alerted, never
retried by jitbot: a CI system that must not miss one should also poll `bot.py audit`.
"""

import os

import httpx


async def _tell_ci(evt, state):
    url = os.environ["DEPLOY_GATE_URL"]
    headers = {"Authorization": f"Bearer {os.environ['DEPLOY_GATE_TOKEN']}"}
    body = {"state": state, "request_id": evt.request_id, "ticket": evt.fields["reason"], "by": evt.user.email}
    async with httpx.AsyncClient(timeout=3) as client:
        response = await client.post(url, json=body, headers=headers)
        response.raise_for_status()


async def after_grant(evt):
    await _tell_ci(evt, "open")


async def after_revoke(evt):
    await _tell_ci(evt, "closed")

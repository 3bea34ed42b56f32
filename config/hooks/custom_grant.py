"""A `type: custom` strategy: grant and revoke through an internal access API of your own.

jitbot calls `grant(evt)` after approval and `revoke(evt)` at the end time (and again after a crash
or a failed attempt), so both must be idempotent: granting what is held and revoking what is gone
must succeed. Raise to fail: a failed grant is shown and alerted; a failed revoke is retried with
back-off until it succeeds. Whatever dict `grant` returns comes back to `revoke` as `evt.state`.

    evt.request_id, evt.flow, evt.target.name / .label / .settings, evt.fields,
    evt.user.slack_id / .email / .identity, evt.expires_at, evt.state (in revoke)

These are plain `def`s, so they run in a separate hook process that jitbot kills at the flow's
hook time limit: a grant jitbot has given up on stops there and cannot land after the clean-up
revoke. A PUT already sent may still be applied by the API, which is why it carries expires_at.
(Plain `def`s cannot use `evt.integrations`; hooks that need those are `async def`.)

The API URL and token come from the environment of the bot process; never hard-code secrets here.
"""

import os

import httpx

ACCESS_API = os.environ.get("REPORTING_ACCESS_API", "https://reporting-access.internal.example.com")


# Give up on the API before jitbot gives up on the hook: the flow's hook time limit (5 s unless the
# flow sets hook_timeout) kills this hook outright. Failing first reports the API's own error
# (ConnectTimeout, ReadTimeout) instead of a bare time-out. 1 s to connect plus 3 s for the answer
# stays under 5 s; lower these if you lower hook_timeout.
HTTP_TIMEOUT = httpx.Timeout(3.0, connect=1.0)


def _client() -> httpx.Client:
    token = os.environ.get("REPORTING_ACCESS_TOKEN", "")
    return httpx.Client(base_url=ACCESS_API, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT)


def grant(evt):
    user = evt.user.identity or evt.user.email
    with _client() as client:
        # PUT is idempotent on the access API: the same (user, role) twice is one membership.
        response = client.put(
            f"/roles/{evt.target.settings['role']}/members/{user}",
            json={"request_id": evt.request_id, "expires_at": evt.expires_at.isoformat()},
        )
        response.raise_for_status()
    return {"member": user}


def revoke(evt):
    user = evt.state.get("member") or evt.user.identity or evt.user.email
    with _client() as client:
        response = client.delete(f"/roles/{evt.target.settings['role']}/members/{user}")
        if response.status_code != 404:  # already gone counts as revoked
            response.raise_for_status()

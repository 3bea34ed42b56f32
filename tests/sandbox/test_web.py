"""The page's endpoints refuse what a person could not do, and the event stream starts with the whole state."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sandbox.directory import REQUESTER_ID
from sandbox.web import make_app


@pytest.fixture
async def client(sandbox):
    async with TestClient(TestServer(make_app(sandbox))) as http:
        yield http


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("command", {"user": "U_NOBODY", "text": "/sym"}, "U_NOBODY is not one of the sandbox's people"),
        ("command", {"user": REQUESTER_ID, "text": "/other"}, "the bot's command is /sym; type it first"),
        ("command", {"user": REQUESTER_ID}, "text must be a string of at most 3000 characters"),
        ("fast-forward", {"minutes": 0}, "fast-forward by more than nothing and at most 7 days"),
        ("fast-forward", {"minutes": "15"}, "minutes must be a number"),
        ("submit", {"user": REQUESTER_ID, "view": "V404", "values": {}}, "no view 'V404'"),
        ("click", {"user": REQUESTER_ID, "channel": "C0APPROVALS", "ts": "1.2", "action_id": "x"}, "no message"),
        ("home-click", {"user": REQUESTER_ID, "action_id": "x"}, "has no Home tab published"),
        ("home-click", {"user": "U0BOT", "action_id": "x"}, "U0BOT is not one of the sandbox's people"),
        ("click", {"user": REQUESTER_ID, "channel": "DADMIN1", "ts": "1.2", "action_id": "x"}, "no channel"),
    ],
)
async def test_what_a_person_could_not_do_is_refused_with_a_sentence_and_changes_nothing(
    client, sandbox, path, body, error
):
    before = sandbox.emu.workspace.version
    answer = await client.post(f"/api/{path}", json=body)
    assert answer.status == 400
    assert error in (await answer.json())["error"]
    assert sandbox.emu.calls("chat.postMessage") == [] and sandbox.emu.envelopes == []
    assert sandbox.emu.workspace.version == before


async def test_a_body_that_is_not_a_json_object_is_refused(client):
    for raw in (b"not json", b"[1, 2]"):
        answer = await client.post("/api/command", data=raw, headers={"Content-Type": "application/json"})
        assert answer.status == 400


async def test_what_another_web_site_could_make_a_browser_send_is_refused(client, sandbox):
    body = json.dumps({"user": REQUESTER_ID, "text": "/sym"})
    # A cross-site form or fetch in text/plain is sent without asking first: it must not act.
    answer = await client.post("/api/command", data=body, headers={"Content-Type": "text/plain"})
    assert answer.status == 415
    # DNS rebinding: a page at evil.example whose name now points at 127.0.0.1.
    answer = await client.get("/api/state", headers={"Host": "evil.example:8000"})
    assert answer.status == 421
    assert sandbox.emu.envelopes == []


async def test_the_event_stream_opens_with_the_whole_state_and_follows_changes(client, sandbox):
    async with client.get("/api/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"

        async def next_state() -> dict:
            data = None
            async for raw in stream.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and data is not None:
                    return data
            raise AssertionError("the stream ended")

        first = await next_state()
        assert first["ready"] and first["instance"] == sandbox.instance
        assert first["holdings"] == [] and first["dms"][REQUESTER_ID] == []

        answer = await client.post("/api/command", json={"user": REQUESTER_ID, "text": "/sym nosuchflow"})
        assert (await answer.json())["ok"]
        while not (state := await next_state())["ephemerals"][REQUESTER_ID]:
            pass
        assert "There is no flow named" in state["ephemerals"][REQUESTER_ID][0]["text"]

"""The sandbox's web page: the in-process Slack as a person sees it, and what they can do there.

GET / serves the page (sandbox/page/, plain HTML and JavaScript, no build step); GET /api/events
streams the whole state as server-sent events whenever it changes; the POST endpoints act as the
chosen person would in Slack (a slash command, a modal submit, a click), through the same people
API the test suite uses, so the bot receives exactly what Slack would send.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.app import Sandbox
from sandbox.slack import AckTimeout, EmulatorUsageError, Message, NotConnected, SlackError, View, WaitTimeout

PAGE = Path(__file__).parent / "page"
KEEPALIVE_SECONDS = 15.0
SANDBOX = web.AppKey("sandbox", Sandbox)
CLOSING = web.AppKey("closing", asyncio.Event)

Handler = Callable[[Sandbox, dict[str, Any]], Awaitable[dict[str, Any]]]
RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@web.middleware
async def _same_machine_only(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    """Refuse what another web site could make a browser send: a Host that is not this machine (DNS
    rebinding), and a POST that is not JSON (a cross-site form or text/plain request needs no preflight)."""
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    if host not in LOCAL_HOSTS:
        return _refused(f"the sandbox answers only on 127.0.0.1, not {host or 'no host'}", status=421)
    if request.method == "POST" and request.content_type != "application/json":
        return _refused("send JSON (Content-Type: application/json)", status=415)
    return await handler(request)


def make_app(sandbox: Sandbox) -> web.Application:
    """The page, its event stream and its actions."""
    app = web.Application(client_max_size=256 * 1024, middlewares=[_same_machine_only])
    app[SANDBOX] = sandbox
    app[CLOSING] = asyncio.Event()
    app.router.add_get("/", _index)
    app.router.add_static("/static/", PAGE, show_index=False)
    app.router.add_get("/api/state", _state)
    app.router.add_get("/api/events", _events)
    for path, handler in ACTIONS.items():
        app.router.add_post(f"/api/{path}", _action(handler))
    app.on_shutdown.append(_closing)
    return app


async def _closing(app: web.Application) -> None:
    app[CLOSING].set()  # ends every event stream, so shutdown does not wait for them
    emu = app[SANDBOX].emu
    if emu is not None:
        emu.workspace.changed()  # wakes the streams waiting for a change


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-store"})


async def _state(request: web.Request) -> web.Response:
    return web.json_response(snapshot(request.app[SANDBOX]))


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the full state at once and after every change, a comment every 15 s."""
    sandbox, closing = request.app[SANDBOX], request.app[CLOSING]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    # `retry` tells the browser how soon to reconnect when the sandbox restarts.
    await response.write(b"retry: 1000\n\n")
    workspace = sandbox.emu.workspace if sandbox.emu else None
    seen = -1

    def news() -> bool:
        return closing.is_set() or workspace is None or workspace.version != seen

    try:
        while not closing.is_set() and workspace is not None:
            if workspace.version != seen:
                seen = workspace.version
                data = json.dumps(snapshot(sandbox), default=str)
                await response.write(f"event: state\ndata: {data}\n\n".encode())
                continue
            try:
                await workspace.wait_for(news, KEEPALIVE_SECONDS, lambda: "a change")
            except WaitTimeout:
                await response.write(b": still here\n\n")
    except ConnectionResetError:
        pass  # the page was closed or reloaded
    return response


def _action(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def respond(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _refused("the body must be JSON")
        if not isinstance(body, dict):
            return _refused("the body must be a JSON object")
        try:
            return web.json_response(await handler(request.app[SANDBOX], body))
        except (EmulatorUsageError, ValueError, KeyError) as error:
            # Something a person could not do in Slack (not a member, a required field left empty).
            return _refused(str(error).strip("'\""))
        except (SlackError, AckTimeout, NotConnected, WaitTimeout) as error:
            return _refused(f"the bot did not answer: {error}", status=502)

    return respond


def _refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


def _text(body: dict[str, Any], key: str, *, limit: int = 3000) -> str:
    value = body.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{key} must be a string of at most {limit} characters")
    return value


def _person(sandbox: Sandbox, body: dict[str, Any]) -> str:
    user = _text(body, "user", limit=32)
    if user not in {p.id for p in sandbox.people}:
        raise ValueError(f"{user} is not one of the sandbox's people")
    return user


async def _command(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    """`/sym …` typed by the person, in the conversation they are looking at (their DM by default)."""
    assert sandbox.emu is not None and sandbox.config is not None
    user, typed = _person(sandbox, body), _text(body, "text").strip()
    command, _, text = typed.partition(" ")
    if command != sandbox.config.slack.command:
        raise ValueError(f"the bot's command is {sandbox.config.slack.command}; type it first")
    channel = body.get("channel") if isinstance(body.get("channel"), str) else None
    await sandbox.emu.slash_command(user=user, command=command, text=text.strip(), channel=channel)
    return {"ok": True}


async def _submit(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    """The person presses the modal's submit button with these input values (by block_id)."""
    assert sandbox.emu is not None
    values = body.get("values")
    if not isinstance(values, dict):
        raise ValueError("values must be an object of block_id → value")
    result = await sandbox.emu.submit_view(_text(body, "view", limit=64), values, user=_person(sandbox, body))
    return {"ok": True, "errors": result.errors}


async def _view_action(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    """A button in a modal, or a select that dispatches its change."""
    assert sandbox.emu is not None
    user, view = _person(sandbox, body), _text(body, "view", limit=64)
    action_id = _text(body, "action_id", limit=255)
    if body.get("value") is None:
        await sandbox.emu.click_in_view(view, action_id=action_id, user=user)
    else:
        block_id = body.get("block_id") if isinstance(body.get("block_id"), str) else None
        await sandbox.emu.select_in_view(view, action_id, body["value"], user, block_id=block_id)
    return {"ok": True}


async def _close(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    """The person closes the modal."""
    assert sandbox.emu is not None
    await sandbox.emu.close_view(_text(body, "view", limit=64), user=_person(sandbox, body))
    return {"ok": True}


async def _click(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    """The person clicks a button of a message (Approve, Deny, or any other the bot sent)."""
    assert sandbox.emu is not None
    block_id = body.get("block_id") if isinstance(body.get("block_id"), str) else None
    await sandbox.emu.click(
        _text(body, "channel", limit=64),
        _text(body, "ts", limit=32),
        user=_person(sandbox, body),
        action_id=_text(body, "action_id", limit=255),
        block_id=block_id,
    )
    return {"ok": True}


async def _home(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    """The person opens the bot's App Home tab: Slack sends app_home_opened (with the view last published)."""
    assert sandbox.emu is not None
    user = _person(sandbox, body)
    if "app_home_opened" not in sandbox.events:
        return {"ok": True, "sent": False}  # the app does not subscribe to it, so Slack sends nothing
    await sandbox.emu.open_home(user)
    return {"ok": True, "sent": True}


async def _home_click(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    """The person clicks a button on their own App Home tab (Revoke now, Extend, Cancel, Approve, Deny)."""
    assert sandbox.emu is not None
    block_id = body.get("block_id") if isinstance(body.get("block_id"), str) else None
    await sandbox.emu.click_in_home(
        _person(sandbox, body), action_id=_text(body, "action_id", limit=255), block_id=block_id
    )
    return {"ok": True}


async def _fast_forward(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    """Move the bot's clock ahead by `minutes`."""
    minutes = body.get("minutes")
    if not isinstance(minutes, int | float) or isinstance(minutes, bool):
        raise ValueError("minutes must be a number")
    await sandbox.fast_forward(timedelta(minutes=minutes))
    return {"ok": True, "now": sandbox.clock.now().isoformat()}


ACTIONS: dict[str, Handler] = {
    "command": _command,
    "submit": _submit,
    "view-action": _view_action,
    "close": _close,
    "click": _click,
    "home": _home,
    "home-click": _home_click,
    "fast-forward": _fast_forward,
}


def snapshot(sandbox: Sandbox) -> dict[str, Any]:
    """Everything the page shows, for every person (the page picks whose eyes it looks through)."""
    emu, config, ledger = sandbox.emu, sandbox.config, sandbox.ledger
    if emu is None or config is None or ledger is None:
        return {"instance": sandbox.instance, "ready": False}
    ws = emu.workspace
    people = [asdict(p) for p in sandbox.people]
    return {
        "instance": sandbox.instance,
        "ready": sandbox.runtime is not None and sandbox.runtime.engine is not None,
        "now": sandbox.clock.now().isoformat(),
        "offset_seconds": sandbox.clock.offset.total_seconds(),
        "command": config.slack.command,
        "home_tab": sandbox.home_tab,
        "bot": {"id": emu.bot_user_id, "name": "jitbot"},
        "people": people,
        "users": {u.id: {"name": u.name, "real_name": u.real_name} for u in ws.users.values()},
        "channels": [
            {"id": c.id, "name": c.name, "messages": [_message(m) for m in emu.messages_in(c.id)]}
            for c in ws.channels.values()
            if not c.is_im
        ],
        "dms": {p["id"]: [_message(m) for m in emu.dms_to(p["id"])] for p in people},
        "ephemerals": {
            p["id"]: [
                {"channel": e.channel, "ts": e.ts, "text": e.text, "blocks": e.blocks}
                for e in emu.ephemerals_to(p["id"])
            ]
            for p in people
        },
        "views": {p["id"]: [_view(v) for v in emu.open_views(p["id"])] for p in people},
        "homes": {p["id"]: _home_view(sandbox, p["id"]) for p in people},
        "holdings": [asdict(h) for h in ledger.holdings.values()],
        "history": [asdict(c) for c in reversed(ledger.history)],
        "receiver": sandbox.receiver.url if sandbox.receiver else None,
        "notes": sandbox.notes,
        "problems": [{"kind": p.kind, "detail": p.detail} for p in emu.problems],
    }


def _message(message: Message) -> dict[str, Any]:
    return {
        "channel": message.channel,
        "ts": message.ts,
        "user": message.user,
        "text": message.text,
        "blocks": message.blocks,
        "edited": bool(message.history),
    }


def _view(view: View) -> dict[str, Any]:
    return {
        "id": view.id,
        "type": view.payload.get("type"),
        "title": view.title,
        "submit": (view.payload.get("submit") or {}).get("text"),
        "close": (view.payload.get("close") or {}).get("text"),
        "blocks": view.blocks,
        "errors": view.errors,
        "state": view.state_values,
    }


def _home_view(sandbox: Sandbox, user: str) -> dict[str, Any] | None:
    """The App Home the bot published for `user` (views.publish), if it did."""
    assert sandbox.emu is not None
    home = sandbox.emu.home_of(user)
    return _view(home) if home is not None else None

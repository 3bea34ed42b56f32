"""The HTTP face of the emulator: `/api/{method}` as slack_sdk calls it, and `/response/{id}` (response_url)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .blocks_validator import validate_message_blocks
from .errors import SlackError
from .methods import APP_METHODS, BOT_METHODS
from .models import Call

if TYPE_CHECKING:
    from .emulator import SlackEmulator

# Arguments that carry JSON; form posts send them as strings.
_JSON_ARGS = ("view", "blocks", "attachments", "metadata")
_RESPONSE_URL_MAX_USES = 5


@dataclass
class Fault:
    """A scripted misbehaviour of one Web API method."""

    kind: str  # "fail", "rate_limit" or "delay"
    remaining: int | None  # None: every call
    error: str = "internal_error"
    retry_after: int = 1
    seconds: float = 0.0


@dataclass
class ResponseUrl:
    """Where a response_url posts to: the conversation, the person, and the message it came from."""

    channel: str
    user: str
    message_ts: str | None
    uses: int = 0


def build_app(emu: SlackEmulator) -> web.Application:
    """The aiohttp application serving the Web API, response_urls and the Socket Mode WebSocket."""

    async def api(request: web.Request) -> web.Response:
        return await handle_api(emu, request)

    async def response_url(request: web.Request) -> web.Response:
        return await handle_response_url(emu, request)

    app = web.Application()
    app.router.add_route("*", "/api/{method}", api)
    app.router.add_post("/response/{response_id}", response_url)
    app.router.add_get("/link/", emu.socket.handle)
    return app


async def read_args(request: web.Request) -> dict[str, Any]:
    """Query string + form body + JSON body, merged the way Slack reads them."""
    args: dict[str, Any] = dict(request.query)
    if request.body_exists:
        if request.content_type == "application/json":
            raw = await request.text()
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise SlackError("invalid_json")
            args.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    for name in _JSON_ARGS:
        if isinstance(args.get(name), str):
            try:
                args[name] = json.loads(args[name])
            except json.JSONDecodeError:
                pass  # the method answers with its own error for malformed JSON
    return args


def bearer_token(request: web.Request, args: dict[str, Any]) -> str | None:
    """The token from `Authorization: Bearer …`, else from a `token` argument (older clients)."""
    header = request.headers.get("Authorization", "")
    token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else None
    from_args = args.pop("token", None)
    return token or from_args


def check_token(emu: SlackEmulator, method: str, token: str | None) -> None:
    """Raise Slack's auth error unless `token` is the right kind of token for `method`."""
    if not token:
        raise SlackError("not_authed")
    expected = emu.app_token if method in APP_METHODS else emu.bot_token
    if token == expected:
        return
    if token in (emu.bot_token, emu.app_token):
        raise SlackError("not_allowed_token_type")
    raise SlackError("invalid_auth")


async def apply_faults(emu: SlackEmulator, method: str) -> str | None:
    """Sleep for delay faults, then raise the first pending failure; returns the fault's name if any."""
    faults = emu.faults.get(method, [])
    throttle = emu.throttles.get(method)
    retry_after = throttle.admit() if throttle is not None else None
    if retry_after is not None:
        raise SlackError("ratelimited", status=429, headers={"Retry-After": str(retry_after)})
    for fault in [f for f in faults if f.kind == "delay"]:
        _consume(faults, fault)
        await asyncio.sleep(fault.seconds)
    for fault in faults:
        if fault.kind == "rate_limit":
            _consume(faults, fault)
            raise SlackError("ratelimited", status=429, headers={"Retry-After": str(fault.retry_after)})
        if fault.kind == "fail":
            _consume(faults, fault)
            raise SlackError(fault.error)
    return None


def _consume(faults: list[Fault], fault: Fault) -> None:
    if fault.remaining is not None:
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.remove(fault)


async def handle_api(emu: SlackEmulator, request: web.Request) -> web.Response:
    """Answer one Web API call and record it."""
    method = request.match_info["method"]
    call = Call(
        method=method, args={}, headers=dict(request.headers), time=emu.workspace.now(), http_method=request.method
    )
    headers = {"x-oauth-scopes": ",".join(emu.scopes)}
    try:
        try:
            call.args = await read_args(request)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SlackError("invalid_json") from None
        token = bearer_token(request, call.args)
        implementation = BOT_METHODS.get(method) or APP_METHODS.get(method)
        if implementation is None:
            emu.record_problem("unknown_method", f"the bot called {method}, which the emulator does not implement")
            raise SlackError("unknown_method")
        check_token(emu, method, token)
        try:
            await apply_faults(emu, method)
        except SlackError as fault:
            call.fault = fault.error
            raise
        body = {"ok": True, **implementation(emu, call.args)}
        status = 200
    except SlackError as error:
        body, status = error.body(), error.status
        headers.update(error.headers)
        if error.rejection and call.fault is None:
            detail = "; ".join(error.messages) or "no details"
            emu.record_problem("rejected", f"{method} answered {error.error}: {detail}")
    call.status, call.response = status, body
    emu.record_call(call)
    return web.json_response(body, status=status, headers=headers)


async def handle_response_url(emu: SlackEmulator, request: web.Request) -> web.Response:
    """A response_url post: reply ephemerally, in channel, or replace/delete the original message."""
    target = emu.response_urls.get(request.match_info["response_id"])
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    call = Call(
        method="response_url",
        args=body if isinstance(body, dict) else {},
        headers=dict(request.headers),
        time=emu.workspace.now(),
        http_method=request.method,
    )
    status, answer = 200, {"ok": True}
    if target is None:
        status, answer = 404, {"ok": False, "error": "expired_url"}
    elif target.uses >= _RESPONSE_URL_MAX_USES:
        status, answer = 404, {"ok": False, "error": "used_url"}
    elif not isinstance(body, dict):
        status, answer = 400, {"ok": False, "error": "invalid_payload"}
    else:
        target.uses += 1
        problems = validate_message_blocks(body["blocks"]) if "blocks" in body else []
        if problems:
            status, answer = 400, {"ok": False, "error": "invalid_blocks", "response_metadata": {"messages": problems}}
            emu.record_problem("rejected", f"response_url answered invalid_blocks: {'; '.join(problems)}")
        else:
            _apply_response(emu, target, body)
    call.status, call.response = status, answer
    emu.record_call(call)
    return web.json_response(answer, status=status)


def _apply_response(emu: SlackEmulator, target: ResponseUrl, body: dict) -> None:
    workspace = emu.workspace
    original = workspace.find_message(target.channel, target.message_ts) if target.message_ts else None
    text, blocks = body.get("text"), body.get("blocks")
    if body.get("delete_original") and original is not None:
        workspace.delete_message(original)
    elif body.get("replace_original") and original is not None:
        workspace.edit_message(
            original,
            text=text,
            blocks=blocks if blocks is not None else [],
            attachments=body.get("attachments"),
            via="response_url",
        )
    elif body.get("response_type") == "in_channel":
        channel = workspace.resolve_channel(target.channel)
        workspace.post_message(channel, text=text, blocks=blocks or [], attachments=body.get("attachments") or [])
    else:
        workspace.add_ephemeral(target.channel, target.user, text=text, blocks=blocks or [], source="response_url")

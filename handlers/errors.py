"""The single error handler: known errors become an ephemeral reason; unknown ones get an error id."""

from __future__ import annotations

import asyncio
import inspect
import uuid

import structlog
from slack_bolt.error import BoltUnhandledRequestError

from core.decisions import AlreadyDecided
from core.errors import JitError
from core.secrets import scrub
from handlers import blocks

log = structlog.get_logger("jitbot.errors")


def _where(body: dict) -> tuple[str | None, str | None]:
    user = (body.get("user") or {}).get("id") or body.get("user_id")
    channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
    return user, channel


_background: set[asyncio.Task] = set()


def reported(listener):
    """Wrap a listener: return to Bolt as soon as it acks, finish its work in the background, and
    send anything it raises to `handle_error`.

    The app runs with process_before_response=True, so Bolt sends the ack when this wrapper returns:
    right after ack() instead of after Bolt's 10 ms polling loop. Errors go to `handle_error` here,
    not through Bolt's runner, because slack_bolt 1.30 drops the ack when a listener raises within
    ~10 ms of acking (asyncio_runner.run_ack_function_asynchronously resets ack.response).
    """
    wanted = list(inspect.signature(listener).parameters)

    # Bolt injects listener arguments by parameter name; `args` asks it for all of them.
    async def run(args) -> None:
        acked = asyncio.Event()
        bolt_ack = args.ack

        async def ack(*ack_args, **ack_kwargs):
            try:
                return await bolt_ack(*ack_args, **ack_kwargs)
            finally:
                acked.set()

        async def work() -> None:
            try:
                await listener(**{name: ack if name == "ack" else getattr(args, name) for name in wanted})
            except Exception as error:
                await handle_error(error, args.body, args.client)

        task = asyncio.create_task(work(), name=f"jitbot-listener:{listener.__name__}")
        _background.add(task)
        task.add_done_callback(_background.discard)
        waiter = asyncio.create_task(acked.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    run.__name__ = run.__qualname__ = listener.__name__
    return run


def running_listeners() -> set[asyncio.Task]:
    """Listener work started and not yet finished."""
    return {task for task in _background if not task.done()}


async def drain_listeners(timeout: float = 10.0) -> None:
    """Let listener work already started finish (at shutdown), for at most `timeout` seconds."""
    if _background:
        await asyncio.wait(set(_background), timeout=timeout)


async def handle_error(error: Exception, body: dict, client) -> None:
    """Tell the person what went wrong, in words they can act on; log the rest."""
    if isinstance(error, BoltUnhandledRequestError):
        log.warning("slack.unhandled_request", type=body.get("type"))
        return
    user, channel = _where(body)
    if isinstance(error, AlreadyDecided):
        text = blocks.already_decided_text(error.status, error.by)
        log.info("request.refused", user=user, reason=scrub(error.user_message))
    elif isinstance(error, JitError):
        text = blocks.refusal_text(error.user_message)
        log.info("request.refused", user=user, reason=scrub(error.user_message))
    else:
        error_id = uuid.uuid4().hex[:8]
        log.exception("handler.crashed", error_id=error_id, exc_info=error)
        text = f":warning: Something went wrong (error id `{error_id}`). The jitbot operators can find it in the logs."
    if not user:
        return
    try:
        if channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=text)
        else:
            opened = await client.conversations_open(users=user)
            await client.chat_postMessage(channel=opened["channel"]["id"], text=text)
    except Exception:
        log.exception("error_report.failed", user=user)

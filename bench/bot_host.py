"""The bot under test, run by the bench scripts: jitbot's Runtime or a bare Bolt app, against an emulator.

As a child process it prints one JSON line when started (start-up time, timers armed, memory), waits
for a line on stdin, stops, and prints one JSON line more (CPU seconds, memory). The bench scripts
start it through `common.start_bot`; `python bench/bot_host.py --help` lists the options.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import BotSpec, rss_mb  # noqa: E402

if TYPE_CHECKING:
    from core.secrets import SecretRegistry

# A modal as small as Slack accepts: what the bare app opens for `/sym`.
TRIVIAL_MODAL = {
    "type": "modal",
    "title": {"type": "plain_text", "text": "Bench"},
    "close": {"type": "plain_text", "text": "Close"},
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hello"}}],
}

Stop = Callable[[], Awaitable[dict[str, Any]]]


def _hand_written() -> Any:
    from strategies.aiohttp_transport import AiohttpTransport

    return AiohttpTransport()


def _httpx_aiohttp() -> Any:
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    # The session production would give it: 16 connections, proxies from the environment.
    return AiohttpTransport(
        client=lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16), trust_env=True)
    )


def _httpcore() -> Any:
    import httpx

    return httpx.AsyncHTTPTransport()


# The transports `--transport` can put under the webhook strategy's LimitedTransport.
TRANSPORTS: dict[str, Callable[[], Any]] = {
    "hand-written": _hand_written,
    "httpx-aiohttp": _httpx_aiohttp,
    "httpcore": _httpcore,
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def configure_bot_logging(log_path: Path | None) -> SecretRegistry:
    """Log as production does (JSON, INFO), into `log_path` or nowhere; return the registry it scrubs
    with, for the bot that `start` builds."""
    # Production logs at INFO; the bench keeps that cost but sends the lines to a file.
    from core.logging import configure_logging
    from core.secrets import SecretRegistry

    secrets = SecretRegistry()
    stream = open(log_path, "a", encoding="utf-8") if log_path else open(os.devnull, "w")
    configure_logging("json", "INFO", stream=stream, secrets=secrets)
    return secrets


async def start(spec, secrets: SecretRegistry | None = None) -> tuple[dict[str, Any], Stop]:
    """Start the bot described by `spec` (a common.BotSpec) in the running loop; return (report, stop)."""
    if spec.kind == "jitbot":
        return await _start_jitbot(spec, secrets)
    if spec.kind == "bare":
        return await _start_bare(spec)
    raise ValueError(f"unknown bot kind {spec.kind!r}")


async def _start_jitbot(spec, secrets: SecretRegistry | None) -> tuple[dict[str, Any], Stop]:
    from core.secrets import SecretRegistry
    from runtime import Runtime, Settings
    from strategies.registry import STRATEGY_TYPES

    settings = Settings(
        bot_token=spec.bot_token,
        app_token=spec.app_token,
        config_path=Path(spec.config),
        db_path=str(spec.db),
        slack_api_url=spec.api_url,
    )
    types = dict(STRATEGY_TYPES)
    if spec.transport:
        types["webhook"] = _webhook_over(TRANSPORTS[spec.transport])
    runtime = Runtime(
        settings,
        start_timers=spec.timers,
        strategy_types=types,
        secrets=SecretRegistry() if secrets is None else secrets,
    )
    cpu, started = _cpu_seconds(), time.perf_counter()
    await runtime.start()
    report = {
        "event": "ready",
        "kind": "jitbot",
        "start_seconds": time.perf_counter() - started,
        "start_cpu_seconds": _cpu_seconds() - cpu,
        "armed": runtime.scheduler.armed(),
        **rss_mb(),
    }

    async def stop() -> dict[str, Any]:
        final = {"event": "stopped", "cpu_seconds": _cpu_seconds(), **rss_mb()}
        await runtime.stop()
        return final

    return report, stop


def _webhook_over(transport: Callable[[], Any]) -> type:
    """The webhook strategy with `transport` under its LimitedTransport instead of the default one."""
    from strategies.webhook import WebhookStrategy

    class BenchWebhookStrategy(WebhookStrategy):
        def __init__(self, config: Any, **kwargs: Any) -> None:
            super().__init__(config, transport=transport(), **kwargs)

    return BenchWebhookStrategy


async def _start_bare(spec) -> tuple[dict[str, Any], Stop]:
    # Built the way runtime.py builds jitbot's app, so the only difference is what the listener does.
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=spec.bot_token, base_url=spec.api_url)
    app = AsyncApp(client=client, process_before_response=False)

    @app.command("/sym")
    async def open_trivial_modal(ack, body, client) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=TRIVIAL_MODAL)

    started = time.perf_counter()
    handler = AsyncSocketModeHandler(app, spec.app_token)
    await handler.connect_async()
    report = {"event": "ready", "kind": "bare", "start_seconds": time.perf_counter() - started, **rss_mb()}

    async def stop() -> dict[str, Any]:
        final = {"event": "stopped", "cpu_seconds": _cpu_seconds(), **rss_mb()}
        await handler.close_async()
        return final

    return report, stop


async def _serve(spec, secrets: SecretRegistry) -> int:
    def emit(report: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()

    # Main-thread CPU time, not wall time: waiting (for I/O, or for a CPU the OS gave to another
    # process) is then not billed to whatever function happened to be running.
    start_profiler = cProfile.Profile(time.thread_time) if spec.profile_start else None
    try:
        if start_profiler:
            start_profiler.enable()
        report, stop = await start(spec, secrets)
    except Exception as exc:
        traceback.print_exc()
        emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        if start_profiler:
            start_profiler.disable()
            start_profiler.dump_stats(str(spec.profile_start))
    emit(report)
    # Steady state only: imports and start-up would drown what happens per request.
    run_profiler = cProfile.Profile(time.thread_time) if spec.profile else None
    if run_profiler and spec.profile_on_signal:
        # Only the steps the bench brackets with SIGUSR1 … SIGUSR2 (latency.py --profile-step).
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, run_profiler.enable)
        loop.add_signal_handler(signal.SIGUSR2, run_profiler.disable)
    elif run_profiler:
        run_profiler.enable()
    # Any line (or EOF, if the bench died) on stdin means: stop.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if run_profiler:
        run_profiler.disable()
        run_profiler.dump_stats(str(spec.profile))
    emit(await stop())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run one bot until told to stop."""
    parser = argparse.ArgumentParser(description="Run one bot for the bench scripts.")
    parser.add_argument("--kind", choices=("jitbot", "bare"), required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--bot-token", required=True)
    parser.add_argument("--app-token", required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--db")  # a file path or a postgresql:// URL (a Path would fold its "//")
    parser.add_argument("--log", type=Path, help="bot log file (JSON lines, INFO); default: discarded")
    parser.add_argument("--profile", type=Path, help="cProfile from ready to stop (the steady state) into this file")
    parser.add_argument("--profile-start", type=Path, help="cProfile start-up into this file")
    parser.add_argument(
        "--profile-on-signal", action="store_true", help="with --profile: only between SIGUSR1 and SIGUSR2"
    )
    parser.add_argument("--no-timers", dest="timers", action="store_false")
    parser.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS),
        help="the webhook strategy's transport under its size and time limits (default: production's)",
    )
    args = parser.parse_args(argv)
    spec = BotSpec(
        kind=args.kind,
        api_url=args.api_url,
        bot_token=args.bot_token,
        app_token=args.app_token,
        config=args.config,
        db=args.db,
        log=args.log,
        profile=args.profile,
        profile_start=args.profile_start,
        profile_on_signal=args.profile_on_signal,
        timers=args.timers,
        transport=args.transport,
    )
    secrets = configure_bot_logging(spec.log)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    # Both bots on the loop production runs on (core/event_loop.py): the ratios then compare jitbot's
    # work with Bolt's alone, not one event loop with another.
    from core import event_loop

    return event_loop.run(_serve(spec, secrets))


if __name__ == "__main__":
    sys.exit(main())

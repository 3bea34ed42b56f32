"""`bot.py sandbox`: check the flows file, bind the page's port, start the sandbox, print one line, serve.

Failures are one sentence on stderr and a non-zero exit, as for `bot.py run`: a port in use, a
flows file with errors (validate's report, exit 2), a bot that cannot start.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sqlite3
import sys
from pathlib import Path

from aiohttp import web

from core import event_loop
from core.config import check_config
from core.errors import ConfigError, JitError
from core.logging import configure_logging
from sandbox.app import Sandbox
from sandbox.web import make_app
from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

EXIT_STARTUP = 1
EXIT_INVALID_CONFIG = 2
HOST = "127.0.0.1"  # the page acts as anyone in the sandbox: never on another interface
# slack_sdk reads proxy variables even for the WebSocket and ignores NO_PROXY; the sandbox is all local.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def main(config: str | None, db: str | None, port: int) -> int:
    """Run the sandbox until SIGINT / SIGTERM; return the exit code."""
    path = Path(config or os.environ.get("JITBOT_CONFIG", "config/flows.yaml"))
    issues = check_config(path, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES)
    if issues:
        for issue in issues:
            print(issue, file=sys.stderr)
        count = len(issues)
        print(f"{path}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    if not 0 <= port <= 65535:
        return _fail(f"--port {port} is not a port number (0 to 65535).")
    for name in PROXY_VARIABLES:
        os.environ.pop(name, None)
    sandbox = Sandbox(path, db_path=db)
    # Warnings only: the terminal shows the one line with the URL, and whatever goes wrong.
    configure_logging(os.environ.get("JITBOT_LOG_FORMAT"), level="WARNING", secrets=sandbox.secrets)
    return event_loop.run(_serve(sandbox, port))


def _fail(message: str, code: int = EXIT_STARTUP) -> int:
    print(f"jitbot: {message}", file=sys.stderr)
    return code


async def _serve(sandbox: Sandbox, port: int) -> int:
    runner = web.AppRunner(make_app(sandbox), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        # Bound first: a port in use is reported before anything else starts.
        await web.TCPSite(runner, HOST, port).start()
    except OSError as error:
        await runner.cleanup()
        if error.errno == errno.EADDRINUSE:
            return _fail(f"port {port} on {HOST} is in use: stop what uses it, or pick another with --port.")
        return _fail(f"cannot listen on {HOST}:{port} ({error.strerror}).")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        code = await _start(sandbox)
        if code:
            return code
        for note in sandbox.notes:
            print(f"jitbot sandbox: {note}", flush=True)
        url = f"http://{HOST}:{runner.addresses[0][1]}"
        print(f"jitbot sandbox: open {url} (a local Slack and the real bot, no workspace needed; Ctrl-C stops it)")
        sys.stdout.flush()
        await stop.wait()
        return 0
    finally:
        await runner.cleanup()
        await sandbox.stop()


async def _start(sandbox: Sandbox) -> int:
    """Start the sandbox; 0, or the exit code after saying in one sentence why it could not start."""
    try:
        await sandbox.start()
    except ConfigError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        count = len(error.issues)
        return _fail(
            f"{sandbox.config_path} is not usable ({count} error{'s' if count != 1 else ''}); nothing was started.",
            EXIT_INVALID_CONFIG,
        )
    except JitError as error:
        return _fail(error.user_message)
    except (OSError, sqlite3.Error) as error:
        return _fail(f"could not start the sandbox: {sandbox.secrets.scrub(str(error))}.")
    return 0

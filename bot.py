"""jitbot: just-in-time, peer-approved, time-boxed access through Slack. The command line.

    python bot.py [run]                      start the bot (Socket Mode)
    python bot.py validate [--config PATH]   check a flows file; exit 0 when valid, 2 with every error
    python bot.py sandbox [--port 8000]      the whole product on this machine, no Slack workspace needed
    python bot.py identities …               manage identity overrides (Slack user → target-system user)
    python bot.py audit [--request ID]       print the audit trail as JSON lines (evidence for auditors)
    python bot.py report access --since …    the access review: who held what, when, approved by whom (CSV/HTML)
    python bot.py audit verify [--against FILE]        check the hash chain (exit 1 naming the first bad event)
    python bot.py audit export --since D --until D [--flow F] [--format jsonl|csv]   stream events out
    python bot.py audit destinations         each destination's backlog and last error
    python bot.py tokens create|list|revoke  API tokens (only their hash is stored)
    python bot.py request FLOW …             ask for access through the HTTP API (JITBOT_API_URL, JITBOT_API_TOKEN)
    python bot.py requests [--mine]          list requests through the HTTP API
    python bot.py revoke ID                  end a live grant now through the HTTP API

This module only parses arguments, runs the chosen command and turns failures into exit codes
(each command's work is in cli/: identities, audit, report, tokens and the API calls);
`runtime.py` is the composition root that builds and starts the bot for `run`. Startup failures
print one clear sentence and exit non-zero, never a traceback. docs/configuration.md lists the
commands, environment variables and exit codes.

JITBOT_DB is a SQLite file path or a postgresql:// URL; any other URL (sqlite://…, mysql://…) is
refused. Only `run` takes the database's run lock, so a second bot on the same database refuses to
start; `identities` and `audit` open the database beside a running bot, as both engines allow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from cli.common import EXIT_INVALID_CONFIG, row_limit
from cli.common import fail as _fail


def build_parser() -> argparse.ArgumentParser:
    """The command line: every subcommand with a one-line description."""
    parser = argparse.ArgumentParser(prog="bot.py", description="jitbot: just-in-time access requests through Slack.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="start the bot (the default); needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN")
    validate = sub.add_parser("validate", help="check a flows file without starting anything (exit 2 on errors)")
    validate.add_argument("--config", help="flows file (default: $JITBOT_CONFIG or config/flows.yaml)")

    sandbox = sub.add_parser(
        "sandbox", help="the real bot against a local Slack, with a web page to use it; no workspace needed"
    )
    sandbox.add_argument("--config", help="flows file (default: $JITBOT_CONFIG or config/flows.yaml)")
    sandbox.add_argument("--db", help="SQLite file to keep (default: a throw-away database)")
    sandbox.add_argument("--port", type=int, default=8000, help="the page's port on 127.0.0.1 (default: 8000)")

    identities = sub.add_parser("identities", help="manage identity overrides: set, list, remove, import")
    isub = identities.add_subparsers(dest="action", metavar="ACTION", required=True)
    iset = isub.add_parser("set", help="map a Slack user to their user name in a target system")
    iset.add_argument("slack_id")
    iset.add_argument("identity")
    iset.add_argument("--system", default="*", help="integration name or strategy type it applies to (default: all)")
    isub.add_parser("list", help="list every override")
    iremove = isub.add_parser("remove", help="remove an override")
    iremove.add_argument("slack_id")
    iremove.add_argument("--system", default="*")
    iimport = isub.add_parser("import", help="import overrides from a CSV file (slack_id,system,identity)")
    iimport.add_argument("file")

    audit = sub.add_parser("audit", help="print the audit trail as JSON lines; verify, export, destinations")
    audit.add_argument("--request", help="only this request id")
    audit.add_argument("--limit", type=row_limit, default=10_000, help="at most this many events (1 to 1000000000)")
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    verify = asub.add_parser("verify", help="check the whole hash chain; exit 1 naming the first bad event")
    verify.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="FILE",
        help="also check a file destination's copy (JSON lines): catches rows removed from the end",
    )
    export = asub.add_parser("export", help="stream events between two dates as JSON lines or CSV")
    export.add_argument("--since", required=True, help="from this date or time (inclusive, UTC)")
    export.add_argument("--until", required=True, help="to this date (the whole day) or time (exclusive, UTC)")
    export.add_argument("--flow", help="only events of this flow")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--output", help="write to this file instead of standard output")
    destinations = asub.add_parser("destinations", help="each audit destination's backlog and last error")
    destinations.add_argument("--config", help="flows file (default: $JITBOT_CONFIG or config/flows.yaml)")

    report = sub.add_parser("report", help="reports for auditors")
    rsub = report.add_subparsers(dest="report", metavar="REPORT", required=True)
    access = rsub.add_parser("access", help="per target: who had access, when, approved by whom, why, how it ended")
    access.add_argument("--since", required=True, help="start of the period (2026-11-01 or an ISO time; UTC)")
    access.add_argument("--until", help="end of the period, excluded (default: now)")
    access.add_argument("--format", choices=("csv", "html"), default="csv")
    access.add_argument("--output", help="write to this file instead of standard output")

    tokens = sub.add_parser("tokens", help="API tokens for scripts and CI: create, list, revoke")
    tsub = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    tcreate = tsub.add_parser("create", help="make a token acting as a Slack user; prints it once")
    tcreate.add_argument("--user", required=True, help="the Slack user id the token acts as (U123…)")
    tcreate.add_argument("--name", help="a name for the audit trail (default: token-<id>)")
    tcreate.add_argument("--expires", default="90d", help="lifetime like 30d or 12h, or 'never' (default: 90d)")
    tcreate.add_argument("--scope", help="comma-separated: request, decide, read (default: request,read)")
    tsub.add_parser("list", help="list tokens (never the tokens themselves)")
    trevoke = tsub.add_parser("revoke", help="revoke a token by name or id")
    trevoke.add_argument("token", metavar="NAME_OR_ID")

    request = sub.add_parser("request", help="ask for access through the HTTP API (exit 0 granted with --wait)")
    request.add_argument("flow", metavar="FLOW")
    request.add_argument("--target", required=True, help="the target's name (or label)")
    request.add_argument("--field", action="append", default=[], metavar="NAME=VALUE", help="a form field; repeat")
    request.add_argument("--duration", help="how long, like 30m or 1h (the flow's duration field)")
    request.add_argument("--wait", action="store_true", help="follow the request until it is decided")
    listing = sub.add_parser("requests", help="list requests through the HTTP API, as a table")
    listing.add_argument("--mine", action="store_true", help="only your own requests")
    listing.add_argument("--status", help="only requests in this status (pending, granted, …)")
    revoke = sub.add_parser("revoke", help="end a live grant now through the HTTP API")
    revoke.add_argument("request_id", metavar="ID")
    for api_command in (request, listing, revoke):
        api_command.add_argument(
            "--insecure-http",
            action="store_true",
            help="send the API token over plain http:// to a host other than this machine, where it can be read "
            "on the way (refused without this flag; use an https:// JITBOT_API_URL instead)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; return the exit code."""
    from core import event_loop
    from core.errors import StartupError

    args = build_parser().parse_args(argv)
    command = args.command or "run"
    try:
        if command == "validate":
            return validate(args.config)
        if command == "sandbox":
            from sandbox.main import main as sandbox

            return sandbox(args.config, args.db, args.port)
        # Each command's work lives in cli/ and is imported only when it runs (`--help` stays quick).
        if command == "identities":
            from cli.identities import identities

            return event_loop.run(identities(args))
        if command == "audit":
            from cli import audit

            return event_loop.run(audit.command(args) if args.audit_command else audit.trail(args))
        if command == "report":
            from cli import report

            return event_loop.run(report.access(args))
        if command == "tokens":
            from cli.commands import tokens

            return tokens(args)
        if command in ("request", "requests", "revoke"):
            from cli.commands import api_command

            return api_command(args)
        return run()
    except StartupError as error:  # an unusable JITBOT_DB for identities / audit: a sentence, no traceback
        return _fail(error.user_message)
    except KeyboardInterrupt:
        return 130


def validate(config_path: str | None) -> int:
    """Validate the flows file with the production registries; print one line per problem."""
    from core.config import check_config
    from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

    path = Path(config_path or os.environ.get("JITBOT_CONFIG", "config/flows.yaml"))
    # References (${env:…}) are not resolved here: validate runs where the secrets may not be.
    issues = check_config(path, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES)
    if issues:
        for issue in issues:
            print(issue, file=sys.stderr)
        print(f"{path}: {len(issues)} error{'s' if len(issues) != 1 else ''}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    print(f"{path}: OK")
    return 0


def run() -> int:
    """Start the bot and serve until SIGINT / SIGTERM."""
    import sqlite3

    import structlog

    from core import event_loop
    from core.errors import ConfigError, JitError
    from core.logging import configure_logging
    from core.secrets import SecretRegistry
    from runtime import Runtime, Settings

    # This process's one registry: logging scrubs with it from the first line, the tokens are
    # registered as they are read, and the runtime registers every resolved value in it.
    secrets = SecretRegistry()
    configure_logging(os.environ.get("JITBOT_LOG_FORMAT"), secrets=secrets)
    try:
        settings = Settings.from_env(secrets=secrets)
    except JitError as error:
        return _fail(error.user_message)

    async def serve() -> int:
        runtime = Runtime(settings, secrets=secrets)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await runtime.start()
        except ConfigError as error:
            for issue in error.issues:
                print(issue, file=sys.stderr)
            await runtime.stop()
            count = len(error.issues)
            return _fail(
                f"{settings.config_path} is not usable ({count} error{'s' if count != 1 else ''}); "
                "nothing was started.",
                EXIT_INVALID_CONFIG,
            )
        except JitError as error:
            await runtime.stop()
            return _fail(error.user_message)
        except (OSError, sqlite3.Error) as error:
            await runtime.stop()
            return _fail(f"could not start: {secrets.scrub(str(error))}.")
        except Exception as error:  # one sentence for the operator; the detail goes to the log
            structlog.get_logger("jitbot").exception("startup.crashed")
            await runtime.stop()
            return _fail(f"could not start: {type(error).__name__}: {secrets.scrub(str(error))}.")
        await stop.wait()
        await runtime.stop()
        return 0

    return event_loop.run(serve())


if __name__ == "__main__":
    sys.exit(main())

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

This module only parses arguments, runs the chosen command and turns failures into exit codes;
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
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

EXIT_STARTUP = 1
EXIT_INVALID_CONFIG = 2


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
    audit.add_argument("--limit", type=int, default=10_000)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; return the exit code."""
    from core.errors import StartupError

    args = build_parser().parse_args(argv)
    command = args.command or "run"
    try:
        if command == "validate":
            return validate(args.config)
        if command == "sandbox":
            from sandbox.main import main as sandbox

            return sandbox(args.config, args.db, args.port)
        if command == "identities":
            return asyncio.run(identities(args))
        if command == "audit":
            return asyncio.run(audit_command(args) if args.audit_command else audit(args))
        if command == "report":
            return asyncio.run(access_report(args))
        if command == "tokens":
            return tokens(args)
        if command in ("request", "requests", "revoke"):
            return api_command(args)
        return run()
    except StartupError as error:  # an unusable JITBOT_DB for identities / audit: a sentence, no traceback
        return _fail(error.user_message)
    except KeyboardInterrupt:
        return 130


def _database_path() -> str:
    """JITBOT_DB (default data/jitbot.db) for the commands that open the database; StartupError if unusable."""
    from storage.db import DEFAULT_DATABASE_PATH, check_database_path

    return check_database_path(os.environ.get("JITBOT_DB") or DEFAULT_DATABASE_PATH, name="JITBOT_DB")


def _fail(message: str, code: int = EXIT_STARTUP) -> int:
    print(f"jitbot: {message}", file=sys.stderr)
    return code


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

    return asyncio.run(serve())


async def identities(args) -> int:
    """Manage identity overrides in the database named by JITBOT_DB."""
    from storage.db import Store
    from storage.identities import IdentityImportError, IdentityStore

    store = await Store.open(_database_path())
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    try:
        repo = IdentityStore(store)
        if args.action == "set":
            await repo.set(args.slack_id, args.system, args.identity, actor=actor)
            print(f"{args.slack_id} → {args.identity} ({args.system})")
        elif args.action == "list":
            for item in await repo.list():
                print(f"{item.slack_id}\t{item.system}\t{item.identity}")
        elif args.action == "remove":
            if not await repo.remove(args.slack_id, args.system, actor=actor):
                return _fail(f"no override for {args.slack_id} ({args.system}).")
            print(f"removed {args.slack_id} ({args.system})")
        elif args.action == "import":
            try:
                count = await repo.import_csv(Path(args.file), actor=actor)
            except IdentityImportError as error:
                return _fail(str(error), EXIT_INVALID_CONFIG)
            print(f"imported {count} override{'s' if count != 1 else ''}")
        return 0
    finally:
        await store.close()


async def audit_command(args) -> int:
    """`audit verify`, `audit export` and `audit destinations` (audit_cli.py does the work)."""
    import sqlite3
    from datetime import UTC, datetime

    import audit_cli
    from storage.audit_outbox import ExportFilter
    from storage.db import Store

    selection = None
    if args.audit_command == "export":
        try:
            since, until = audit_cli.parse_when(args.since), audit_cli.parse_when(args.until, end=True)
        except ValueError as error:
            return _fail(str(error), EXIT_INVALID_CONFIG)
        if until <= since:
            return _fail("--until must be after --since.", EXIT_INVALID_CONFIG)
        selection = ExportFilter(since=since, until=until, flow=args.flow)
    store = await Store.open(_database_path())
    try:
        if args.audit_command == "verify":
            try:
                result = await audit_cli.verify(store, [Path(p) for p in args.against])
            except ValueError as error:
                return _fail(str(error), EXIT_INVALID_CONFIG)
            except sqlite3.DatabaseError as error:
                return _fail(f"the audit trail cannot be read: {error}")
            if result.problem is not None:
                problem = result.problem
                print(
                    f"audit chain BROKEN at event {problem.event_id} (seq {problem.seq}): {problem.problem}",
                    file=sys.stderr,
                )
                return 1
            if not result.checked:
                print("audit chain OK: the trail is empty")
            else:
                print(f"audit chain OK: {result.checked} events, head seq {result.head_seq} ({result.head_hash})")
            return 0
        if args.audit_command == "export":
            assert selection is not None
            out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
            try:
                count = await audit_cli.export(store, selection, args.format, out)
            finally:
                if args.output:
                    out.close()
            print(f"exported {count} event{'s' if count != 1 else ''}", file=sys.stderr)
            return 0
        names = _destination_names(args.config)
        audit_cli.print_status(await audit_cli.destination_status(store, names), datetime.now(UTC))
        return 0
    finally:
        await store.close()


def _destination_names(config_path: str | None) -> list[str] | None:
    """The destinations of the flows file, or None (every cursor in the database) when it cannot be read."""
    from core.config import load_config
    from core.errors import JitError
    from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

    path = Path(config_path or os.environ.get("JITBOT_CONFIG", "config/flows.yaml"))
    try:
        config = load_config(
            path, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES, resolve_secrets=False
        )
    except (JitError, OSError) as error:
        message = getattr(error, "user_message", None) or str(error)
        print(f"jitbot: {path} could not be read ({message}); showing every destination on record", file=sys.stderr)
        return None
    return [destination.key for destination in config.audit.destinations]


def tokens(args) -> int:
    """Create, list or revoke API tokens in the database named by JITBOT_DB."""
    from cli import tokens as commands
    from storage.tokens import TokenError

    db_path = _database_path()
    try:
        if args.action == "create":
            return asyncio.run(commands.create(db_path, args.user, args.name, args.expires, args.scope))
        if args.action == "list":
            return asyncio.run(commands.list_tokens(db_path))
        return asyncio.run(commands.revoke(db_path, args.token))
    except (TokenError, ValueError) as error:
        return _fail(str(error), EXIT_INVALID_CONFIG)


def api_command(args) -> int:
    """`request`, `requests` and `revoke`: calls to the HTTP API at JITBOT_API_URL with JITBOT_API_TOKEN."""
    from cli import requests as commands
    from cli.api_client import ApiClient, ApiFailure

    try:
        client = ApiClient.from_env()
        if args.command == "request":
            return commands.request(client, args.flow, args.target, args.field, args.duration, wait=args.wait)
        if args.command == "revoke":
            return commands.revoke(client, args.request_id)
        return commands.requests_table(client, mine=args.mine, status=args.status)
    except ApiFailure as failure:
        return _fail(failure.message, failure.code)


async def audit(args) -> int:
    """Print audit events as JSON lines, oldest first."""
    from storage.audit import AuditLog
    from storage.db import Store

    store = await Store.open(_database_path())
    try:
        log = AuditLog(store)
        events = await (log.for_request(args.request) if args.request else log.list(limit=args.limit))
        for event in events:
            print(
                json.dumps(
                    {
                        "at": event.at.isoformat(),
                        "actor": event.actor,
                        "action": event.action,
                        "request_id": event.request_id,
                        "status_from": event.status_from,
                        "status_to": event.status_to,
                        "detail": event.detail,
                    },
                    default=str,
                )
            )
        return 0
    finally:
        await store.close()


def _instant(text: str, name: str) -> datetime:
    """An ISO date or time from the command line, as aware UTC (a time without an offset is UTC)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{name} '{text[:40]}' is not a date like 2026-11-01 or a time like 2026-11-01T09:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def access_report(args) -> int:
    """Write the access review of a period as CSV or one self-contained HTML file."""
    from reports.access import write_csv, write_html
    from storage.access_review import review_grants, review_targets
    from storage.db import Store

    now = datetime.now(UTC)
    try:
        since = _instant(args.since, "--since")
        until = _instant(args.until, "--until") if args.until else now
    except ValueError as error:
        return _fail(str(error), EXIT_INVALID_CONFIG)
    if since >= until:
        return _fail("--since must be before --until.", EXIT_INVALID_CONFIG)

    def render(db, out) -> int:
        if args.format == "csv":
            return write_csv(out, review_grants(db, since, until), now=now)
        return write_html(
            out,
            review_targets(db, since, until),
            lambda t, lanes: review_grants(db, since, until, flow=t.flow, target=t.target, by_person=lanes),
            since=since,
            until=until,
            now=now,
        )

    store = await Store.open(_database_path())
    try:
        if not args.output:
            count = await store.read(lambda db: render(db, sys.stdout))
        else:
            # Written beside the target and renamed over it: a failed run never leaves half a report.
            path = Path(args.output)
            partial = path.with_name(f".{path.name}.partial")
            try:
                with partial.open("w", encoding="utf-8", newline="") as out:
                    count = await store.read(lambda db: render(db, out))
                partial.replace(path)
            except OSError as error:
                partial.unlink(missing_ok=True)
                return _fail(f"cannot write {path}: {error.strerror or error}.")
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        print(
            f"{count} grant{'s' if count != 1 else ''} from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC",
            file=sys.stderr,
        )
        return 0
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(main())

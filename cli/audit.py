"""`bot.py audit`: the trail as JSON lines; `audit verify`, `audit export`, `audit destinations`
(audit_cli.py does the chain and export work)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cli.common import EXIT_INVALID_CONFIG, database_path, fail


async def trail(args: argparse.Namespace) -> int:
    """Print audit events as JSON lines, oldest first."""
    from storage.audit import AuditLog
    from storage.db import Store

    store = await Store.open(database_path())
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


async def command(args: argparse.Namespace) -> int:
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
            return fail(str(error), EXIT_INVALID_CONFIG)
        if until <= since:
            return fail("--until must be after --since.", EXIT_INVALID_CONFIG)
        selection = ExportFilter(since=since, until=until, flow=args.flow)
    store = await Store.open(database_path())
    try:
        if args.audit_command == "verify":
            try:
                result = await audit_cli.verify(store, [Path(p) for p in args.against])
            except ValueError as error:
                return fail(str(error), EXIT_INVALID_CONFIG)
            except sqlite3.DatabaseError as error:
                return fail(f"the audit trail cannot be read: {error}")
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
        names = destination_names(args.config)
        audit_cli.print_status(await audit_cli.destination_status(store, names), datetime.now(UTC))
        return 0
    finally:
        await store.close()


def destination_names(config_path: str | None) -> list[str] | None:
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

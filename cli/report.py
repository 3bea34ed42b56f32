"""`bot.py report access`: the access review of a period, as CSV or one self-contained HTML file."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import sqlite_utils

from cli.common import EXIT_INVALID_CONFIG, database_path, fail


def instant(text: str, name: str) -> datetime:
    """An ISO date or time from the command line, as aware UTC (a time without an offset is UTC)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{name} '{text[:40]}' is not a date like 2026-11-01 or a time like 2026-11-01T09:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def access(args: argparse.Namespace) -> int:
    """Write the access review of a period as CSV or one self-contained HTML file."""
    from reports.access import write_csv, write_html
    from storage.access_review import review_grants, review_targets
    from storage.db import Store

    now = datetime.now(UTC)
    try:
        since = instant(args.since, "--since")
        until = instant(args.until, "--until") if args.until else now
    except ValueError as error:
        return fail(str(error), EXIT_INVALID_CONFIG)
    if since >= until:
        return fail("--since must be before --until.", EXIT_INVALID_CONFIG)

    def render(db: sqlite_utils.Database, out: TextIO) -> int:
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

    store = await Store.open(database_path())
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
                return fail(f"cannot write {path}: {error.strerror or error}.")
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

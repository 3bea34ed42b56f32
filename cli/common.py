"""What the command line's subcommands share: the database path, one-sentence failures, exit codes."""

from __future__ import annotations

import argparse
import os
import sys

EXIT_STARTUP = 1
EXIT_INVALID_CONFIG = 2


def database_path() -> str:
    """JITBOT_DB (data/jitbot.db by default, or a postgresql:// URL); StartupError if it is unusable."""
    from storage.db import DEFAULT_DATABASE_PATH, check_database_path

    return check_database_path(os.environ.get("JITBOT_DB") or DEFAULT_DATABASE_PATH, name="JITBOT_DB")


def fail(message: str, code: int = EXIT_STARTUP) -> int:
    """Print `jitbot: message` on stderr; return `code`."""
    print(f"jitbot: {message}", file=sys.stderr)
    return code


MAX_ROW_LIMIT = 1_000_000_000


def row_limit(text: str) -> int:
    """A `--limit` value: a whole number from 1 to MAX_ROW_LIMIT (argparse reports anything else as a usage error).

    Bounded so that no number reaches the database that one engine takes and another refuses (SQLite
    and PostgreSQL both stop at 2**63 - 1, each with its own error), and a typo never reads everything.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_ROW_LIMIT:
        raise argparse.ArgumentTypeError(f"{text} is out of range: use 1 to {MAX_ROW_LIMIT}")
    return value
